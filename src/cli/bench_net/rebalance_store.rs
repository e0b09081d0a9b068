//! `stocksync bench rebalance`, second part: a store manager's rebalance of
//! a store node and its tills over real QUIC on loopback (a full mesh, every
//! node on SQLite with full durability). The store received 60 units of each
//! SKU and granted half of each to till-1; the manager's even rebalance then
//! moves the store's own surplus itself and orders till-1 to grant its own.
//! Figures: the time from the command until every node's replica shows every
//! holder at its target, and the bytes the links carried meanwhile. The
//! baseline in the same run is that earlier grant of half of every SKU to
//! till-1 (one grant per SKU, submitted together), timed until every till
//! holds it, over the same links.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Map, Value};

use super::fleet::{start, Fleet, Live};
use super::{wait_for, wait_synced};
use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeId, PoolKey, Quantity, Role, Sku,
};
use stocksync::node::{Node, RebalanceCommand};
use stocksync::rebalance::{RebalanceSettings, Strategy};
use stocksync::store::sqlite::Durability;

/// Units the store receives of each SKU.
const RECEIVED: u64 = 60;
/// The longest the manager waits for its orders' answers.
const ORDER_WAIT: Duration = Duration::from_secs(600);
/// Pause between two checks of a replica against every target.
const SETTLE_POLL: Duration = Duration::from_millis(5);

fn sku(k: usize) -> Result<Sku> {
    Ok(Sku::new(format!("SKU-{k:05}"))?)
}

/// One event per SKU on `node`, submitted together (they share group commits).
fn per_sku(node: &Node, tag: &str, skus: usize, qty: u64, kind: EventKind) -> Result<()> {
    let tickets = (0..skus)
        .map(|k| {
            let req = EventRequest::new(
                EventId::new(format!("{tag}-{k}"))?,
                node.meta().location.clone(),
                sku(k)?,
                Quantity::new(qty)?,
                kind.clone(),
            );
            anyhow::Ok(node.submit(req))
        })
        .collect::<Result<Vec<_>>>()?;
    for t in tickets {
        t.wait()?;
    }
    Ok(())
}

/// Payload and UDP bytes every node has sent on its links so far.
fn sent(lives: &[Live]) -> (u64, u64) {
    lives
        .iter()
        .flat_map(|l| l.net.link_stats())
        .fold((0, 0), |(p, u), s| {
            (p + s.payload_tx_bytes, u + s.udp_tx_bytes)
        })
}

/// Runs the store's figures with `tills` tills and `skus` SKUs in `base`.
pub(super) fn measure(base: &Path, tills: usize, skus: usize) -> Result<Map<String, Value>> {
    let mut f = Fleet::new(base)?;
    let store = f.add("store", Role::Store, "S1")?;
    let peers = (1..=tills)
        .map(|t| f.add(&format!("till-{t}"), Role::Till, "S1"))
        .collect::<Result<Vec<_>>>()?;
    f.seal()?;
    // No automatic pull (nothing moves but the manager's plan); floors of 0.
    let settings = RebalanceSettings {
        auto_pull: false,
        low_water: Some(1),
        floor: Some(0),
        borrow_deadline_ms: 0,
        ..RebalanceSettings::lan()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("async runtime")?;
    let mut lives: Vec<Live> = Vec::new();
    for p in std::iter::once(&store).chain(&peers) {
        let node = f.open_with(p, Durability::Full, settings.clone())?;
        let addrs = lives.iter().map(|l| l.net.local_addr()).collect();
        lives.push(start(&rt, &f, p, node, addrs)?);
    }
    wait_for("the store's full mesh", || {
        Ok(lives
            .iter()
            .all(|l| l.net.peers().iter().filter(|p| p.connected).count() >= tills))
    })?;
    let manager = lives[0].node.clone();
    per_sku(&manager, "in", skus, RECEIVED, EventKind::Receipt)?;
    for l in &lives[1..] {
        wait_synced(&l.node, &manager)?;
    }
    // Baseline: half of every SKU granted to till-1, until every till holds it.
    let (p0, u0) = sent(&lives);
    let t0 = Instant::now();
    let to = EventKind::Grant { to: peers[0].id };
    per_sku(&manager, "to-till-1", skus, RECEIVED / 2, to)?;
    for l in &lives[1..] {
        wait_synced(&l.node, &manager)?;
    }
    let baseline = t0.elapsed();
    let (p1, u1) = sent(&lives);
    // The manager's rebalance, until every replica shows every target.
    let cmd = RebalanceCommand {
        location: LocationId::new("S1")?,
        skus: Vec::new(),
        strategy: Strategy::Even,
        dry_run: false,
    };
    let t1 = Instant::now();
    let report = manager.rebalance(&cmd, ORDER_WAIT)?;
    let answered = t1.elapsed();
    let mut targets: Vec<(PoolKey, Vec<(NodeId, i64)>)> = Vec::new();
    let ids: HashMap<String, NodeId> = lives
        .iter()
        .map(|l| (l.node.id().to_hex(), l.node.id()))
        .collect();
    let (mut moves, mut not_granted) = (0usize, 0usize);
    for p in &report.pools {
        let pool = PoolKey::new(cmd.location.clone(), p.sku.clone());
        let holders = p
            .holders
            .iter()
            .map(|h| {
                let id = ids
                    .get(&h.node_id)
                    .ok_or(anyhow!("unknown holder {}", h.node))?;
                anyhow::Ok((*id, h.target))
            })
            .collect::<Result<Vec<_>>>()?;
        targets.push((pool, holders));
        moves += p.moves.len();
        not_granted += p.moves.iter().filter(|m| m.outcome != "granted").count();
    }
    for l in &lives {
        // A check reads 60,000 rights under the node's lock: poll gently.
        while !l.node.query(|r| {
            targets.iter().all(|(pool, holders)| {
                holders
                    .iter()
                    .all(|(id, t)| r.book().rights(pool, id) == *t)
            })
        })? {
            if t1.elapsed() > ORDER_WAIT {
                return Err(anyhow!("{} never showed every target", l.node.meta().name));
            }
            std::thread::sleep(SETTLE_POLL);
        }
    }
    let settled = t1.elapsed();
    let (p2, u2) = sent(&lives);
    let ms = |d: Duration| (d.as_secs_f64() * 10_000.0).round() / 10.0;
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            (a / b * 10.0).round() / 10.0
        } else {
            0.0
        }
    };
    let mut out = Map::new();
    out.insert("store_tills".into(), json!(tills));
    out.insert("store_skus".into(), json!(skus));
    out.insert(
        "store_rebalance_pools_moved".into(),
        json!(report.pools.len()),
    );
    out.insert("store_rebalance_moves".into(), json!(moves));
    out.insert(
        "store_rebalance_moves_not_granted".into(),
        json!(not_granted),
    );
    out.insert("store_rebalance_units".into(), json!(report.moved));
    out.insert("store_rebalance_answered_ms".into(), json!(ms(answered)));
    out.insert("store_rebalance_settle_ms".into(), json!(ms(settled)));
    out.insert("store_rebalance_payload_bytes".into(), json!(p2 - p1));
    out.insert("store_rebalance_udp_bytes".into(), json!(u2 - u1));
    out.insert("baseline_grants".into(), json!(skus));
    out.insert("baseline_grants_settle_ms".into(), json!(ms(baseline)));
    out.insert("baseline_grants_payload_bytes".into(), json!(p1 - p0));
    out.insert("baseline_grants_udp_bytes".into(), json!(u1 - u0));
    out.insert(
        "settle_over_baseline".into(),
        json!(ratio(settled.as_secs_f64(), baseline.as_secs_f64())),
    );
    out.insert(
        "udp_bytes_over_baseline".into(),
        json!(ratio((u2 - u1) as f64, (u1 - u0) as f64)),
    );
    for l in lives {
        rt.block_on(l.net.shutdown());
    }
    Ok(out)
}
