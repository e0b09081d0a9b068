//! Rebalancing in the simulated fleet: every node runs the rights exchange
//! (automatic pull when low, a donor's desk answering peers), strict
//! consumptions short of rights borrow, store and hub managers order
//! rebalances, all under the run's partitions, drops, delays and crashes.
//!
//! A real borrow (`Node::execute`) blocks its caller on a condition variable
//! until the grants arrive; the simulated world runs on one thread, so
//! nothing would deliver them. Here a borrow is the same two steps on the
//! simulated clock: [`crate::node::Node::pull`] asks the peers for what the
//! sale lacks at once (the node's borrow deadline is 0), and the same request
//! is submitted again [`BORROW_WAIT_MS`] later. A manager's rebalance is
//! `Node::rebalance` with no wait: its orders' answers come back as the
//! world runs.

use std::collections::BTreeSet;
use std::time::Duration;

use super::check::Checker;
use super::world::World;
use crate::model::{EventId, EventRequest, Role, Sku};
use crate::node::RebalanceCommand;
use crate::rebalance::{RebalanceSettings, Strategy};

/// Simulated time a strict consumption waits for its borrow before it is
/// submitted again (the daemon's borrow deadline is 250 ms).
pub const BORROW_WAIT_MS: u64 = 250;

/// Reconnection rounds after the heal in which rights must come to rest.
pub const QUIET_ROUNDS: usize = 6;

/// The nodes' rebalancing settings in the simulator: automatic pull below a
/// fixed mark of 3 (refilled to 6), donors keep 3, a cool-down of 1 s, no
/// blocking borrow (see the module's note).
pub fn settings() -> RebalanceSettings {
    RebalanceSettings {
        auto_pull: true,
        low_water: Some(3),
        refill_factor: 2,
        floor: None,
        cool_down_ms: 1_000,
        borrow_deadline_ms: 0,
        answer_timeout_ms: 400,
        ..RebalanceSettings::lan()
    }
}

/// The floor a donor keeps under `s` (its fixed floor, else its fixed mark).
pub fn floor(s: &RebalanceSettings) -> i64 {
    s.floor.or(s.low_water).unwrap_or(0) as i64
}

/// Borrows waiting for their retry.
#[derive(Default)]
pub struct Borrows {
    due: Vec<(u64, usize, EventRequest)>,
    tried: BTreeSet<(usize, EventId)>,
}

impl Borrows {
    /// Strict consumptions the checker saw refused for want of rights: each
    /// (once per request) asks its node's peers and is retried later.
    pub fn start(&mut self, world: &mut World, check: &mut Checker) {
        for (i, req, need) in std::mem::take(&mut check.short) {
            if !self.tried.insert((i, req.id.clone())) {
                continue;
            }
            let pool = req.pool.clone();
            if world.with_node(i, |n| n.pull(&pool, need)).unwrap_or(0) > 0 {
                check.grants.counts.borrows += 1;
                self.due.push((world.now + BORROW_WAIT_MS, i, req));
            }
        }
    }

    /// Submits again every borrowing request whose wait is over.
    pub fn retry(&mut self, world: &mut World, check: &mut Checker) -> Result<(), String> {
        let now = world.now;
        let (due, later) = std::mem::take(&mut self.due)
            .into_iter()
            .partition(|(at, _, _)| *at <= now);
        self.due = later;
        for (_, i, req) in due {
            let id = req.id.clone();
            check.group(world, i, vec![req])?;
            let me = world.nodes[i].meta.id;
            if check.model.applied(&me, &id).is_some() {
                check.grants.counts.borrows_ok += 1;
            }
        }
        // A retry refused again does not borrow again.
        check
            .short
            .retain(|(i, r, _)| !self.tried.contains(&(*i, r.id.clone())));
        Ok(())
    }
}

/// A store's or the hub's manager rebalances its location (every SKU, or
/// one), without waiting for the donors' answers.
pub fn manager(world: &mut World, check: &mut Checker, skus: usize) -> Result<(), String> {
    let managers: Vec<usize> = (0..world.nodes.len())
        .filter(|&i| {
            world.nodes[i].live.is_some()
                && matches!(world.nodes[i].meta.role, Role::Store | Role::Hub)
        })
        .collect();
    if managers.is_empty() {
        return Ok(());
    }
    let i = managers[world.rng.pick(managers.len())];
    let strategy = if world.rng.chance(0.5) {
        Strategy::Even
    } else {
        Strategy::Velocity
    };
    let skus = match world.rng.chance(0.5) {
        // "K0".."K2" are valid names.
        true => vec![Sku::new(format!("K{}", world.rng.pick(skus))).expect("valid sku")],
        false => Vec::new(),
    };
    let cmd = RebalanceCommand {
        location: world.nodes[i].meta.location.clone(),
        skus,
        strategy,
        dry_run: world.rng.chance(0.1),
    };
    check.grants.counts.rebalances += 1;
    world.with_node(i, |n| n.rebalance(&cmd, Duration::ZERO));
    check.learn(world)
}

/// Once the network is healed and the workload stopped: past the cool-down,
/// every node checks each of its pools against its low-water mark and pulls
/// where it is below (as a new connection makes it do), [`QUIET_ROUNDS`]
/// times. No grant may go back to a holder that granted the giver rights in
/// that pool since (checked as the grants are learned), and the last two
/// rounds must move no rights: rights may flow on along a chain of holders
/// (one hop a round, a receiver cools down), but come to rest.
pub fn quiet(world: &mut World, check: &mut Checker) -> Result<(), String> {
    let s = &world.options.rebalance;
    let pause = s.cool_down_ms + s.answer_timeout_ms + 100;
    check.learn(world)?;
    check.grants.quiet = Some(Vec::new());
    let mut per_round = Vec::new();
    for _ in 0..QUIET_ROUNDS {
        let before = moved(check);
        for i in 0..world.nodes.len() {
            nudge(world, i);
        }
        let until = world.now + pause;
        world.advance(until);
        check.learn(world)?;
        per_round.push(moved(check) - before);
    }
    check.grants.counts.quiet_grants = per_round.iter().sum();
    if per_round.iter().rev().take(2).any(|&n| n > 0) {
        return Err(format!(
            "ping-pong: rights still move after the heal with no sales; grants per round {per_round:?}"
        ));
    }
    Ok(())
}

/// Node `i` checks every pool it holds a share of against its low-water
/// mark and pulls where it is below (what a new connection makes it do).
fn nudge(world: &mut World, i: usize) {
    let me = world.nodes[i].meta.id;
    let Some(Ok(pools)) = world.with_node(i, |n| {
        n.query(|r| {
            r.book()
                .pools()
                .filter(|(_, p)| p.shares.contains_key(&me))
                .map(|(k, _)| k.clone())
                .collect::<Vec<_>>()
        })
    }) else {
        return;
    };
    for pool in pools {
        world.with_node(i, |n| n.pull(&pool, 0));
    }
}

fn moved(check: &Checker) -> usize {
    let c = &check.grants.counts;
    c.pulls + c.orders + c.own_moves
}
