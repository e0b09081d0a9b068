//! A till restored from an old backup: its directory copied early, put back
//! later; it must recover its own history before it may sell again.

use std::path::Path;

use anyhow::{anyhow, Result};

use super::acts::{Findings, T2B};
use super::day::{wait_for, Day, LIMIT, TSHIRT};
use super::fleet::HUB;
use stocksync::error::NodeError;
use stocksync::model::{EventKind, Policy};

/// Files of a data directory that belong to a running process, not to the node.
const RUNTIME_FILES: [&str; 2] = ["lock", "daemon.json"];

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
