//! The checker: ground truth from every writer's durable own counters, the
//! escrow invariant over it, and convergence of every replica to it.

use std::collections::{BTreeMap, HashMap};

use super::world::World;
use crate::escrow::{CounterKey, StockBook};
use crate::model::NodeId;

/// Every writer's own counters as last committed (what survives any crash).
pub type Truth = HashMap<NodeId, BTreeMap<CounterKey, i64>>;

/// Records node `i`'s own counters from its live replica.
pub fn record(world: &World, truth: &mut Truth, i: usize) {
    let node = &world.nodes[i];
    if let Some(own) = counters_of(world, i, &node.meta.id) {
        truth.insert(node.meta.id, own);
    }
}

/// Node `i`'s replica's view of `writer`'s counters (`None` while it is down).
fn counters_of(world: &World, i: usize, writer: &NodeId) -> Option<BTreeMap<CounterKey, i64>> {
    let node = world.nodes[i].live.as_ref()?;
    node.query(|r| {
        r.book()
            .counters_of(writer)
            .map(|(k, v)| (k.clone(), v))
            .collect()
    })
    .ok()
}

/// The book of the truth.
pub fn book(truth: &Truth) -> StockBook {
    let mut b = StockBook::new();
    let mut writers: Vec<_> = truth.keys().collect();
    writers.sort();
    for w in writers {
        for (k, v) in &truth[w] {
            // Truth values come from validated replicas, within range.
            let _ = b.raise(*w, k, *v);
        }
    }
    b
}

/// No pool's on-hand and no node's rights below zero (every event is `strict`).
pub fn invariant(truth: &Truth) -> Result<(), String> {
    let b = book(truth);
    for (pool, state) in b.pools() {
        if state.on_hand() < 0 {
            return Err(format!("oversell: {pool} on hand {}", state.on_hand()));
        }
        for (n, share) in &state.shares {
            if share.rights() < 0 {
                return Err(format!("node {n} has rights {} in {pool}", share.rights()));
            }
            if share.held() < 0 {
                return Err(format!("node {n} holds {} in {pool}", share.held()));
            }
        }
    }
    Ok(())
}

/// Node `i` holds exactly its own truth (after a restart, nothing acknowledged was lost).
pub fn own_state_survived(world: &World, truth: &Truth, i: usize) -> Result<(), String> {
    let node = &world.nodes[i];
    let Some(own) = counters_of(world, i, &node.meta.id) else {
        return Ok(());
    };
    let want = truth.get(&node.meta.id).cloned().unwrap_or_default();
    if own != want {
        return Err(format!(
            "{} restarted with counters {own:?}, committed {want:?}",
            node.meta.name
        ));
    }
    Ok(())
}

/// Names of live nodes whose replica differs from the truth for some writer.
pub fn diverged(world: &World, truth: &Truth) -> Vec<String> {
    let mut out = Vec::new();
    for (i, node) in world.nodes.iter().enumerate() {
        if node.live.is_none() {
            out.push(format!("{} is down", node.meta.name));
            continue;
        }
        for (w, counters) in truth {
            let held = counters_of(world, i, w).unwrap_or_default();
            if held != *counters {
                out.push(format!("{} lags writer {w}", node.meta.name));
                break;
            }
        }
    }
    out
}

/// Every acknowledged event is in its node's journal with the same outcome.
pub fn acknowledged_kept(world: &mut World) -> Result<(), String> {
    use crate::store::Store;
    for (i, req, outcome) in &world.acked {
        let found = world.nodes[*i]
            .store
            .find_event(&req.id)
            .map_err(|e| e.to_string())?;
        match found {
            Some((r, o)) if r == *req && o.id == outcome.id && o.position == outcome.position => {}
            other => {
                return Err(format!(
                    "acknowledged event {} of {} is {other:?} in its journal",
                    req.id, world.nodes[*i].meta.name
                ))
            }
        }
    }
    Ok(())
}

/// Each node's own counters are exactly the sum of its acknowledged events:
/// none lost, none counted twice (retries come back `replayed` and add nothing).
pub fn acknowledged_counted_once(world: &World, truth: &Truth) -> Result<(), String> {
    let mut expect: HashMap<NodeId, BTreeMap<CounterKey, i64>> = HashMap::new();
    for (i, req, outcome) in &world.acked {
        if outcome.replayed {
            continue;
        }
        let e = expect.entry(world.nodes[*i].meta.id).or_default();
        for (k, d) in crate::escrow::counter_deltas(req) {
            *e.entry(k).or_default() += d;
        }
    }
    for node in &world.nodes {
        let want = expect.remove(&node.meta.id).unwrap_or_default();
        let have = truth.get(&node.meta.id).cloned().unwrap_or_default();
        if want != have {
            return Err(format!(
                "{}: acknowledged events add up to {want:?}, its counters are {have:?}",
                node.meta.name
            ));
        }
    }
    Ok(())
}
