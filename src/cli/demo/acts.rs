//! The day's acts, in order. Each act does its part through the library
//! calls a node's API uses, then narrates what happened with the figures:
//! the morning, transfers and the webhook outage here; store 1's outage in
//! [`super::outage`]; the restored till in [`super::restore`].

use std::path::Path;

use anyhow::{ensure, Result};

use super::channel::WebChannel;
use super::day::{pool_at, wait_for, Day, MUG, TSHIRT};
use super::fleet::HUB;
use super::restore::copy_dir;
use super::webhook::Receiver;
use stocksync::model::{EventKind, LocationId, TransferId};

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

/// The web channel's rights, as text.
pub fn web_figures(d: &Day) -> Result<String> {
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
