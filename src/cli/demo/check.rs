//! The day's end: the table per SKU and location as the hub sees it, and the
//! invariant check (every replica equals the demo's tally, no oversell,
//! totals conserved, no fork, the web shop up to date, every directory verifies).

use std::collections::BTreeMap;

use anyhow::Result;

use super::acts::{Findings, Shop, WEB};
use super::day::{pool_at, Day, MUG, TSHIRT};
use super::fleet::HUB;
use stocksync::data_dir::Reader;
use stocksync::model::{NodeId, PoolKey};

/// Prints the hub's table: on hand, rights per node, in transit (shipped from
/// the location, not yet received) and deficits, per SKU and location.
pub fn table(d: &Day) -> Result<()> {
    let names: BTreeMap<NodeId, String> = d.fleet.names().into_iter().collect();
    let rows = d.fleet.node(HUB)?.query(|r| {
        let book = r.book();
        book.pools()
            .map(|(k, p)| {
                let transit: i64 = book
                    .transits()
                    .filter(|(leg, _)| leg.sku == k.sku && leg.from == k.location)
                    .map(|(_, t)| t.in_transit())
                    .sum();
                let rights: Vec<(NodeId, i64)> = book
                    .rights_by_node(k)
                    .into_iter()
                    .filter(|(_, v)| *v != 0)
                    .collect();
                (
                    k.clone(),
                    p.on_hand(),
                    p.held(),
                    transit,
                    book.deficit(k),
                    rights,
                )
            })
            .collect::<Vec<_>>()
    })?;
    println!(
        "    {:<9} {:<8} {:>7} {:>5} {:>10} {:>7}  rights per node",
        "SKU", "LOCATION", "ON HAND", "HELD", "IN TRANSIT", "DEFICIT"
    );
    let mut sorted = rows;
    sorted.sort_by(|a, b| (&a.0.sku, &a.0.location).cmp(&(&b.0.sku, &b.0.location)));
    for (k, on_hand, held, transit, deficit, rights) in sorted {
        let who: Vec<String> = rights
            .iter()
            .map(|(n, v)| {
                format!(
                    "{}={v}",
                    names.get(n).cloned().unwrap_or_else(|| n.to_string())
                )
            })
            .collect();
        println!(
            "    {:<9} {:<8} {:>7} {:>5} {:>10} {:>7}  {}",
            k.sku.as_str(),
            k.location.as_str(),
            on_hand,
            held,
            transit,
            deficit,
            who.join(" ")
        );
    }
    println!("    (in transit: shipped from the location, not yet received)");
    Ok(())
}

/// One line of the check.
struct Line {
    ok: bool,
    name: &'static str,
    detail: String,
}

/// Runs every check, prints one line each and the verdict; true when all hold.
pub fn check(d: &Day, shop: &Shop, found: &Findings) -> Result<bool> {
    let mut lines = Vec::new();
    let all: Vec<usize> = d.fleet.all().collect();

    let mut off = Vec::new();
    for &i in &all {
        for (p, got, want) in d.off_tally(i)? {
            off.push(format!("{} {p}: {got}, tally {want}", d.fleet.name(i)));
        }
    }
    let synced = d.synced(&all)?;
    lines.push(Line {
        ok: off.is_empty() && synced,
        name: "converged",
        detail: if off.is_empty() && synced {
            format!(
                "all {} replicas hold every change and equal the demo's tally on {} pools",
                all.len(),
                d.tally.on_hand.len()
            )
        } else {
            format!("synced {synced}; {}", off.join("; "))
        },
    });

    let mut over = Vec::new();
    for &i in &all {
        let bad = d.fleet.node(i)?.query(|r| {
            let book = r.book();
            book.pools()
                .filter(|(k, p)| {
                    p.on_hand() < 0
                        || book.deficit(k) != 0
                        || book.rights_by_node(k).values().any(|v| *v < 0)
                })
                .map(|(k, _)| k.clone())
                .collect::<Vec<PoolKey>>()
        })?;
        over.extend(bad.into_iter().map(|k| format!("{} {k}", d.fleet.name(i))));
    }
    lines.push(Line {
        ok: over.is_empty(),
        name: "no oversell",
        detail: if over.is_empty() {
            "no pool below zero, no deficit, no node's rights negative, on every replica".into()
        } else {
            over.join("; ")
        },
    });

    let (rights_ok, on_hand, transit) = d.fleet.node(HUB)?.query(|r| {
        let book = r.book();
        let rights_ok = book
            .pools()
            .all(|(k, p)| book.rights_by_node(k).values().sum::<i64>() + p.held() == p.on_hand());
        let on_hand: i64 = book.pools().map(|(_, p)| p.on_hand()).sum();
        let transit: i64 = book.transits().map(|(_, t)| t.in_transit()).sum();
        (rights_ok, on_hand, transit)
    })?;
    let net = d.tally.brought_in - d.tally.gone_out;
    let totals_ok = rights_ok && on_hand + transit == net && transit == d.tally.in_transit();
    lines.push(Line {
        ok: totals_ok,
        name: "totals conserved",
        detail: format!(
            "brought in {} - gone out {} = {net} = on hand {on_hand} + in transit {transit}; \
             rights + held = on hand in every pool: {rights_ok}",
            d.tally.brought_in, d.tally.gone_out
        ),
    });

    let mut forks = Vec::new();
    for &i in &all {
        let n = d.fleet.node(i)?;
        if !n.forks().is_empty() || n.sync_status().own_history_conflict.is_some() {
            forks.push(d.fleet.name(i));
        }
    }
    lines.push(Line {
        ok: forks.is_empty(),
        name: "no fork",
        detail: if forks.is_empty() {
            "no node saw a fork or a conflict over its own history".into()
        } else {
            format!("at {}", forks.join(", "))
        },
    });

    let got = shop.receiver.got();
    let mut web_ok = shop.receiver.bad_signatures() == 0 && found.out_of_order == 0;
    let mut shown = Vec::new();
    for sku in [TSHIRT, MUG] {
        let holds = d.rights(WEB, &pool_at("HQ", sku)?)?;
        let last = got
            .iter()
            .rev()
            .find(|g| g.sku == sku)
            .map(|g| g.available as i64);
        web_ok &= last == Some(holds);
        shown.push(format!("{sku} {holds}"));
    }
    lines.push(Line {
        ok: web_ok,
        name: "web shop",
        detail: format!(
            "{} updates, signatures good, in order; last values = the channel's rights ({})",
            got.len(),
            shown.join(", ")
        ),
    });

    lines.push(Line {
        ok: found.oversell_refused && found.lan_borrow,
        name: "acts",
        detail: format!(
            "oversell refused: {}; LAN borrow sold: {}; restored till caught while recovering: {}",
            found.oversell_refused, found.lan_borrow, found.restored_refused
        ),
    });

    let mut failed = Vec::new();
    for &i in &all {
        let report = Reader::open(&d.fleet.dir(i)?)?.verify()?;
        if !report.ok {
            let why: Vec<String> = report
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect();
            failed.push(format!("{} ({})", d.fleet.name(i), why.join("; ")));
        }
    }
    lines.push(Line {
        ok: failed.is_empty(),
        name: "verify",
        detail: if failed.is_empty() {
            format!("all {} data directories verify", all.len())
        } else {
            failed.join("; ")
        },
    });

    for l in &lines {
        println!(
            "    {} {:<16} {}",
            if l.ok { "ok  " } else { "FAIL" },
            l.name,
            l.detail
        );
    }
    let passed = lines.iter().filter(|l| l.ok).count();
    let ok = passed == lines.len();
    println!();
    println!(
        "check: {} ({passed}/{} checks, {:.1} s)",
        if ok { "PASSED" } else { "FAILED" },
        lines.len(),
        d.out.elapsed_s()
    );
    Ok(ok)
}
