//! `stocksync demo`: a narrated day of a whole fleet in one process — a hub,
//! two stores of two tills each and a web channel with its webhook receiver
//! — over real QUIC on loopback with certificates from a fleet made for the
//! run. The day: sales, a store's internet outage with offline sales, a
//! refused oversell, a LAN rebalance, reconnection, a transfer, a webhook
//! outage, a till restored from an old backup; then a table and an
//! invariant check (exit code 1 when any check fails).
//!
//! - [`fleet`]: the fleet's setup (enrolment, nodes, transports, uplinks).
//! - [`link`]: an uplink that can be cut; [`webhook`]: the web shop's receiver.
//! - [`channel`]: the web channel's runner over the channel node's rights.
//! - [`day`], [`tally`], [`narrate`]: events, the demo's own truth, the progress lines.
//! - [`acts`], [`outage`], [`restore`]: the day's acts; [`check`]: the table and the check.
//! - [`serve`]: `--keep-running`, the hub's HTTP API.

mod acts;
mod channel;
mod check;
mod day;
mod fleet;
mod link;
mod narrate;
mod outage;
mod restore;
mod serve;
mod tally;
mod webhook;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use acts::{Findings, Shop, WEB};
use channel::WebChannel;
use day::Day;
use fleet::Fleet;
use webhook::Receiver;

/// Steps of the day, as the progress display counts them.
const STEPS: usize = 12;
/// The webhook's HMAC secret (the demo's own).
const SECRET: &str = "demo-webhook-secret";

/// Runs the day in a temporary directory, or in `keep` (left in place);
/// with `keep_running`, serves the hub's API afterwards until a signal.
pub fn run(keep: Option<PathBuf>, keep_running: bool) -> Result<()> {
    let base = match &keep {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("stocksync-demo-{}", super::events::fresh_id()?)),
    };
    std::fs::create_dir_all(&base).with_context(|| format!("create {}", base.display()))?;
    let result = day(&base, keep_running);
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&base);
    }
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(anyhow::anyhow!("the demo's check failed")),
        Err(e) => Err(e),
    }
}

fn day(base: &Path, keep_running: bool) -> Result<bool> {
    println!("== stocksync demo: a fleet's day over QUIC on 127.0.0.1 ==");
    let fleet = Fleet::build(base)?;
    let mut d = Day::new(fleet, STEPS);
    d.out.step("07:30", "the fleet starts");
    d.out.say(format!(
        "fleet made in {}: hub (HQ), till-1a and till-1b (STORE-1), till-2a and till-2b (STORE-2), web (channel at HQ)",
        base.display()
    ));
    d.out.say(format!(
        "each enrolled by the hub (certificate, signed roster); QUIC with mutual TLS, hub on {}, no mDNS",
        d.fleet.hub_addr()
    ));
    let receiver = Receiver::start(SECRET)?;
    let channel = WebChannel::start(
        d.fleet.node(WEB)?.clone(),
        &d.fleet.dir(WEB)?,
        &d.fleet.location(WEB)?,
        &receiver.url(),
        SECRET,
    )?;
    d.out.say(format!(
        "web shop's webhook receiver on {} (checks each request's HMAC signature)",
        receiver.url()
    ));
    let mut shop = Shop { receiver, channel };
    let mut found = Findings::default();
    let backup = base.join("till-2b.backup");
    acts::goods_in(&mut d, &shop)?;
    acts::backup(&mut d, &backup)?;
    acts::sales(&mut d)?;
    outage::outage(&mut d)?;
    outage::lan_rebalance(&mut d, &mut found)?;
    outage::oversell(&mut d, &mut found)?;
    outage::reconnect(&mut d)?;
    acts::transfer(&mut d)?;
    acts::webhook_outage(&mut d, &mut shop, &mut found)?;
    restore::restored_till(&mut d, &backup, &mut found)?;
    d.out
        .step("18:00", "closing: the hub's table and the check");
    d.settle_all()?;
    check::table(&d)?;
    println!();
    let ok = check::check(&d, &shop, &found)?;
    if keep_running {
        serve::serve(&d.fleet)?;
    }
    shop.channel.shutdown();
    drop(shop.receiver);
    d.fleet.shutdown();
    Ok(ok)
}
