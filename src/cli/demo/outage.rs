//! Store 1's internet outage: offline sales, a LAN borrow while the hub is
//! unreachable, a refused oversell, and the reconnection.

use anyhow::{anyhow, ensure, Result};

use super::acts::{Findings, T1A, T1B};
use super::day::{pool_at, wait_for, Day, MUG, TSHIRT};
use super::fleet::HUB;
use stocksync::model::{EventKind, Policy};

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

/// 13:00: a strict sale beyond what the store holds is refused.
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

/// 12:30: a till short of rights borrows from the other till of its store over the LAN.
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
