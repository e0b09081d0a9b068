//! The day's acts, in order. Each act does its part through the library
//! calls a node's API uses, then narrates what happened with the figures.

use std::path::Path;

use anyhow::{anyhow, ensure, Result};

use super::channel::WebChannel;
use super::day::{pool_at, wait_for, Day, LIMIT, MUG, TSHIRT};
use super::fleet::HUB;
use super::webhook::Receiver;
use stocksync::error::NodeError;
use stocksync::model::{EventKind, LocationId, Policy, TransferId};

/// Node indices (see [`super::fleet::MEMBERS`]).
pub const T1A: usize = 1;
/// Till b of store 1.
pub const T1B: usize = 2;
/// Till a of store 2.
pub const T2A: usize = 3;
/// Till b of store 2 (the one restored from a backup).
pub const T2B: usize = 4;
/// The web channel node.
pub const WEB: usize = 5;

/// Files of a data directory that belong to a running process, not to the node.
const RUNTIME_FILES: [&str; 2] = ["lock", "daemon.json"];

/// The web shop: its receiver and the channel publishing to it.
pub struct Shop {
    /// The web shop's webhook receiver.
    pub receiver: Receiver,
    /// The channel runner and its feeder.
    pub channel: WebChannel,
}

/// What the acts found that the final check reports.
#[derive(Default)]
pub struct Findings {
    /// The oversell was refused.
    pub oversell_refused: bool,
    /// The LAN borrow let the sale through.
    pub lan_borrow: bool,
    /// The restored till refused a sale while recovering.
    pub restored_refused: bool,
    /// Updates received out of order (per SKU, a sequence not above the last).
    pub out_of_order: usize,
}

/// Copies data directory `from` to `to` as a backup or a restore does
/// (the lock and the runtime file left out).
pub fn copy_dir(from: &Path, to: &Path) -> Result<usize> {
    std::fs::create_dir_all(to)?;
    let mut n = 0;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let name = e.file_name();
        if RUNTIME_FILES.iter().any(|r| name == *r) {
            continue;
        }
        if e.file_type()?.is_dir() {
            n += copy_dir(&e.path(), &to.join(&name))?;
        } else {
            std::fs::copy(e.path(), to.join(&name))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Whether the web shop's last value of each SKU at HQ is what the channel holds.
fn published(d: &Day, shop: &Shop) -> Result<bool> {
    let got = shop.receiver.got();
    for sku in [TSHIRT, MUG] {
        let holds = d.rights(WEB, &pool_at("HQ", sku)?)?.max(0) as u64;
        let last = got
            .iter()
            .rev()
            .find(|g| g.sku == sku && g.location == "HQ")
            .map(|g| g.available);
        if last != Some(holds) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn web_figures(d: &Day) -> Result<String> {
    Ok(format!(
        "web channel holds {} {TSHIRT}, {} {MUG}",
        d.rights(WEB, &pool_at("HQ", TSHIRT)?)?,
        d.rights(WEB, &pool_at("HQ", MUG)?)?
    ))
}

/// 08:00: goods in everywhere; the hub grants the web channel part of HQ's stock.
pub fn goods_in(d: &mut Day, shop: &Shop) -> Result<()> {
    d.out
        .step("08:00", "goods in; HQ grants the web channel its stock");
    let web = d.fleet.node(WEB)?.id();
    d.event(HUB, TSHIRT, 30, EventKind::Receipt)?;
    d.event(HUB, MUG, 20, EventKind::Receipt)?;
    d.event(HUB, TSHIRT, 20, EventKind::Grant { to: web })?;
    d.event(HUB, MUG, 12, EventKind::Grant { to: web })?;
    for (till, t, m) in [(T1A, 12, 6), (T1B, 14, 6), (T2A, 10, 6), (T2B, 10, 6)] {
        d.event(till, TSHIRT, t, EventKind::Receipt)?;
        d.event(till, MUG, m, EventKind::Receipt)?;
    }
    d.out
        .say("received: HQ 30 T-shirts, 20 mugs; each till its own delivery");
    d.out
        .say("hub grants web 20 T-shirts and 12 mugs of HQ's; keeps 10 and 8 as safety stock");
    let took = d.settle_all()?;
    d.out.say(format!(
        "all 6 replicas converged in {} ms: {}; {}; {}",
        took.as_millis(),
        d.figures(HUB, "HQ")?,
        d.figures(HUB, "STORE-1")?,
        d.figures(HUB, "STORE-2")?
    ));
    let took = wait_for("the web shop to get the channel's stock", || {
        published(d, shop)
    })?;
    d.out.say(format!(
        "{}; the web shop's webhook has it ({} signed updates, {} ms)",
        web_figures(d)?,
        shop.receiver.got().len(),
        took.as_millis()
    ));
    Ok(())
}

/// 08:30: till-2b's backup, copied while it is stopped.
pub fn backup(d: &mut Day, to: &Path) -> Result<()> {
    d.out.step(
        "08:30",
        "till-2b's backup: its directory copied while it is stopped",
    );
    let dir = d.fleet.dir(T2B)?;
    let me = d.fleet.node(T2B)?.id();
    let head = d.fleet.head(T2B, &me)?.unwrap_or_default();
    d.fleet.stop(T2B)?;
    let files = copy_dir(&dir, to)?;
    d.fleet.start(T2B, true)?;
    d.out.say(format!(
        "{files} files copied; the copy holds till-2b's history up to change {}",
        head.seq
    ));
    Ok(())
}

/// 09:00-11:00: sales in both stores and on the web.
pub fn sales(d: &mut Day) -> Result<()> {
    d.out.step("09:00", "sales in both stores and online");
    d.sell(T1A, TSHIRT, 3, 1)?;
    d.sell(T1A, MUG, 1, 1)?;
    d.sell(T1B, TSHIRT, 2, 1)?;
    d.sell(T2A, TSHIRT, 2, 2)?;
    d.sell(T2A, MUG, 2, 1)?;
    d.sell(T2B, TSHIRT, 6, 1)?;
    d.sell(T2B, MUG, 3, 1)?;
    d.event(WEB, TSHIRT, 1, EventKind::OnlineOrder)?;
    d.event(WEB, TSHIRT, 1, EventKind::OnlineOrder)?;
    d.event(WEB, MUG, 2, EventKind::OnlineOrder)?;
    d.out.say("till-1a 3 T-shirts, 1 mug; till-1b 2 T-shirts; till-2a 4 T-shirts, 2 mugs; till-2b 6 T-shirts, 3 mugs");
    d.out
        .say("web orders: 2 T-shirts, 2 mugs (strict: from the channel's own rights)");
    let took = d.settle_all()?;
    d.out.say(format!(
        "converged in {} ms: {}; {}; {}",
        took.as_millis(),
        d.figures(HUB, "STORE-1")?,
        d.figures(HUB, "STORE-2")?,
        web_figures(d)?
    ));
    Ok(())
}

/// 12:00: store 1 loses its internet link (the LAN stays); its tills sell offline.
pub fn outage(d: &mut Day) -> Result<()> {
    d.out.step(
        "12:00",
        "STORE-1 loses its internet link (its LAN stays up)",
    );
    d.fleet.cut(T1A)?;
    d.fleet.cut(T1B)?;
    let took = wait_for("store 1's links to the hub to drop", || {
        Ok(!d.fleet.hub_link_up(T1A)? && !d.fleet.hub_link_up(T1B)?)
    })?;
    ensure!(d.fleet.lan_up(T1A)?, "store 1's LAN link dropped too");
    d.out.say(format!(
        "both tills saw the hub go after {} ms (QUIC idle timeout); the LAN link stays",
        took.as_millis()
    ));
    d.sell(T1A, TSHIRT, 3, 1)?;
    d.sell(T1B, TSHIRT, 2, 1)?;
    d.sell(T1B, MUG, 1, 1)?;
    d.settle(&[T1A, T1B])?;
    d.out.say(format!(
        "offline sales: till-1a 3 T-shirts, till-1b 2 T-shirts and a mug; both tills show {}",
        d.figures(T1A, "STORE-1")?
    ));
    d.out.say(format!(
        "the hub still shows {} (what it last heard)",
        d.figures(HUB, "STORE-1")?
    ));
    Ok(())
}

/// 12:30: a strict sale beyond what the store holds is refused.
pub fn oversell(d: &mut Day, found: &mut Findings) -> Result<()> {
    d.out
        .step("13:00", "a customer asks till-1a for 40 T-shirts (strict)");
    let store = d.on_hand(T1A, &pool_at("STORE-1", TSHIRT)?)?;
    match d.try_event(T1A, TSHIRT, 40, EventKind::Sale, Some(Policy::Strict))? {
        Err(e) if e.is_refusal() => {
            found.oversell_refused = true;
            let text = e.to_string();
            let first: String = text.chars().take(150).collect();
            d.out.say(format!(
                "refused: the store holds {store}; nothing changed ({first}{})",
                if text.len() > first.len() { "..." } else { "" }
            ));
        }
        Err(e) => return Err(anyhow!("expected a refusal, got: {e}")),
        Ok(o) => return Err(anyhow!("an oversell was accepted: {o:?}")),
    }
    Ok(())
}

/// 13:00: a till short of rights borrows from the other till of its store over the LAN.
pub fn lan_rebalance(d: &mut Day, found: &mut Findings) -> Result<()> {
    d.out.step(
        "12:30",
        "LAN rebalance: a till short of rights borrows from its neighbour",
    );
    let p = pool_at("STORE-1", TSHIRT)?;
    let (a, b) = (d.rights(T1A, &p)?, d.rights(T1B, &p)?);
    let (short, donor) = if a <= b { (T1A, T1B) } else { (T1B, T1A) };
    let own = a.min(b).max(0) as u64;
    let want = own + 3;
    let (sn, dn) = (d.fleet.name(short), d.fleet.name(donor));
    d.out.say(format!(
        "{sn} holds {own} T-shirt rights, {dn} {}; a customer wants {want}; the hub is unreachable",
        a.max(b)
    ));
    let asks = d.fleet.node(short)?.rights_stats().asks_sent;
    let t0 = std::time::Instant::now();
    let sold = d.try_event(short, TSHIRT, want, EventKind::Sale, Some(Policy::Strict))?;
    let took = t0.elapsed();
    match sold {
        Ok(_) => {
            found.lan_borrow = true;
            let stats = d.fleet.node(short)?.rights_stats();
            d.out.say(format!(
                "sold: {sn} asked {dn} over the LAN ({} ask(s)), got the rights and sold {want} in {} ms",
                stats.asks_sent - asks,
                took.as_millis()
            ));
        }
        Err(e) => return Err(anyhow!("the LAN borrow failed: {e}")),
    }
    d.settle(&[T1A, T1B])?;
    d.out.say(format!(
        "rights now: {sn} {}, {dn} {}; the store shows {}",
        d.rights(short, &p)?,
        d.rights(donor, &p)?,
        d.figures(T1A, "STORE-1")?
    ));
    Ok(())
}

/// 14:00: store 1's link comes back; everything converges to the tally.
pub fn reconnect(d: &mut Day) -> Result<()> {
    d.out.step("14:00", "STORE-1's internet link is back");
    d.fleet.restore(T1A)?;
    d.fleet.restore(T1B)?;
    let up = wait_for("store 1's links to the hub", || {
        Ok(d.fleet.hub_link_up(T1A)? && d.fleet.hub_link_up(T1B)?)
    })?;
    let took = d.settle_all()?;
    let off = d.off_tally(HUB)?;
    ensure!(off.is_empty(), "the hub differs from the tally: {off:?}");
    d.out.say(format!(
        "links up after {} ms; every replica converged {} ms later",
        up.as_millis(),
        took.as_millis()
    ));
    d.out.say(format!(
        "the hub equals the demo's tally: {}; {}",
        d.figures(HUB, "STORE-1")?,
        d.figures(HUB, "STORE-2")?
    ));
    Ok(())
}

/// Units of `transfer` in transit as the hub sees them.
fn hub_in_transit(d: &Day, transfer: &TransferId) -> Result<i64> {
    Ok(d.fleet.node(HUB)?.query(|r| {
        r.book()
            .transits()
            .filter(|(leg, _)| leg.transfer == *transfer)
            .map(|(_, t)| t.in_transit())
            .sum()
    })?)
}

/// 15:00: store 2 sends store 1 four T-shirts, in transit at the hub until
/// received; store 1 sends store 2 two mugs, still on the road at closing.
pub fn transfer(d: &mut Day) -> Result<()> {
    d.out.step("15:00", "transfers between the stores");
    let id = TransferId::new("T-0001")?;
    let out = EventKind::TransferOut {
        to: LocationId::new("STORE-1")?,
        transfer: id.clone(),
    };
    d.event(T2A, TSHIRT, 4, out)?;
    d.settle_all()?;
    d.out.say(format!(
        "till-2a ships 4 (transfer {id}): the hub shows {} in transit; {}",
        hub_in_transit(d, &id)?,
        d.figures(HUB, "STORE-2")?
    ));
    let into = EventKind::TransferIn {
        from: LocationId::new("STORE-2")?,
        transfer: id.clone(),
    };
    d.event(T1B, TSHIRT, 4, into)?;
    d.settle_all()?;
    ensure!(
        hub_in_transit(d, &id)? == 0,
        "the transfer is still in transit"
    );
    d.out.say(format!(
        "till-1b receives them: in transit {}; {}",
        hub_in_transit(d, &id)?,
        d.figures(HUB, "STORE-1")?
    ));
    let id = TransferId::new("T-0002")?;
    let out = EventKind::TransferOut {
        to: LocationId::new("STORE-2")?,
        transfer: id.clone(),
    };
    d.event(T1A, MUG, 2, out)?;
    d.settle_all()?;
    d.out.say(format!(
        "till-1a ships 2 mugs to STORE-2 (transfer {id}, arriving tomorrow): {} in transit at the hub",
        hub_in_transit(d, &id)?
    ));
    Ok(())
}

/// Updates received out of order: per SKU, a sequence not above the one before.
fn out_of_order(shop: &Shop) -> usize {
    let mut last = std::collections::BTreeMap::new();
    let mut bad = 0;
    for g in shop.receiver.got() {
        let prev = last.insert((g.sku.clone(), g.location.clone()), g.sequence);
        if prev.is_some_and(|p| p >= g.sequence) {
            bad += 1;
        }
    }
    bad
}

/// 16:00: the web shop's receiver goes down; orders and a top-up go on; it comes back.
pub fn webhook_outage(d: &mut Day, shop: &mut Shop, found: &mut Findings) -> Result<()> {
    d.out.step(
        "16:00",
        "the web shop's webhook receiver goes down, then comes back",
    );
    let before = shop.channel.status()?;
    let got_before = shop.receiver.got().len();
    shop.receiver.down();
    let web = d.fleet.node(WEB)?.id();
    d.event(WEB, TSHIRT, 1, EventKind::OnlineOrder)?;
    d.event(WEB, MUG, 1, EventKind::OnlineOrder)?;
    d.event(HUB, TSHIRT, 5, EventKind::Grant { to: web })?;
    d.settle_all()?;
    d.event(WEB, TSHIRT, 2, EventKind::OnlineOrder)?;
    wait_for("the channel to fail a delivery", || {
        Ok(shop.channel.status()?.failed_attempts > before.failed_attempts)
    })?;
    let down = shop.channel.status()?;
    d.out.say(format!(
        "web orders 3 T-shirts and a mug; HQ tops the channel up with 5 T-shirts from its reserve; {}",
        web_figures(d)?
    ));
    d.out.say(format!(
        "receiver down: {} delivery attempt(s) failed so far, retried with backoff ({})",
        down.failed_attempts - before.failed_attempts,
        down.last_error
            .unwrap_or_default()
            .chars()
            .take(60)
            .collect::<String>()
    ));
    shop.receiver.up()?;
    let took = wait_for("the webhook to catch up", || {
        Ok(published(d, shop)? && shop.channel.status()?.outbox_depth == 0)
    })?;
    found.out_of_order = out_of_order(shop);
    d.out.say(format!(
        "receiver back: caught up in {} ms with {} new update(s), each SKU's in sequence order ({} out of order)",
        took.as_millis(),
        shop.receiver.got().len() - got_before,
        found.out_of_order
    ));
    Ok(())
}

/// 17:00: till-2b's disk is replaced by the morning backup; it recovers its
/// own history from the hub before it may sell again.
pub fn restored_till(d: &mut Day, backup: &Path, found: &mut Findings) -> Result<()> {
    d.out
        .step("17:00", "till-2b is restored from the morning's backup");
    let dir = d.fleet.dir(T2B)?;
    let me = d.fleet.node(T2B)?.id();
    let truth = d.fleet.head(T2B, &me)?.unwrap_or_default();
    d.fleet.stop(T2B)?;
    std::fs::remove_dir_all(&dir)?;
    copy_dir(backup, &dir)?;
    d.fleet.start(T2B, false)?;
    let restored = d.fleet.head(T2B, &me)?.unwrap_or_default();
    d.out.say(format!(
        "its history now ends at change {}; the fleet holds it up to change {}",
        restored.seq, truth.seq
    ));
    // Caught part-way: as soon as it knows it is behind, its uplink is cut
    // (looked at without sleeping: the hub sends one change per round trip).
    let mut caught = false;
    let t0 = std::time::Instant::now();
    loop {
        let node = d.fleet.node(T2B)?;
        if node.sync_status().own_history_recovering.is_some() {
            d.fleet.cut(T2B)?;
            caught = true;
            break;
        }
        if d.fleet.head(T2B, &me)? >= Some(truth) {
            break;
        }
        if t0.elapsed() > LIMIT {
            return Err(anyhow!("till-2b never learnt it is behind"));
        }
        std::thread::yield_now();
    }
    if caught {
        let held = d.fleet.head(T2B, &me)?.unwrap_or_default();
        match d.try_event(T2B, TSHIRT, 1, EventKind::Sale, Some(Policy::Strict))? {
            Err(NodeError::Recovering { held, seen }) => {
                found.restored_refused = true;
                d.out.say(format!(
                    "the hub showed it its own changes up to {}: recovering own history; a sale is refused (it holds {})",
                    seen.seq, held.seq
                ));
            }
            Err(e) => return Err(anyhow!("expected `recovering own history`, got: {e}")),
            Ok(o) => return Err(anyhow!("a recovering till sold: {o:?}")),
        }
        d.out.say(format!(
            "its link is cut part-way (at change {}): it keeps refusing, it cannot spend twice",
            held.seq
        ));
        d.fleet.restore(T2B)?;
    } else {
        d.out
            .say("it recovered everything before anything could be sold (no window to catch)");
    }
    let took = wait_for("till-2b to recover its history", || {
        Ok(d.fleet
            .node(T2B)?
            .sync_status()
            .own_history_recovering
            .is_none()
            && d.fleet.head(T2B, &me)? >= Some(truth))
    })?;
    let sold = d.event(T2B, TSHIRT, 1, EventKind::Sale)?;
    d.fleet.join_lan(T2B)?;
    d.settle_all()?;
    d.out.say(format!(
        "history back in {} ms; it sells again at change {} (the next one); the hub: {}",
        took.as_millis(),
        sold.position.seq,
        d.figures(HUB, "STORE-2")?
    ));
    Ok(())
}
