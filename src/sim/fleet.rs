//! Building the fleet, stocking it up, and the per-step faults: partitions,
//! node crashes and restarts, and store faults armed on upcoming commits.

use super::adversary::Adversary;
use super::check::Checker;
use super::disk::{Disk, RunDir};
use super::faults::Fault;
use super::net::Network;
use super::rng::SimRng;
use super::world::{FaultCounts, SimNode, World};
use super::{workload, SimConfig};
use crate::fleet::{FleetAuthority, Member};
use crate::model::{EventId, EventKind, EventRequest, LocationId, Quantity, Role, Sku};
use crate::node::NodeOptions;
use crate::store::memory::MemoryStore;

/// A 32-byte seed of the run's seed and a purpose tag.
fn seed_bytes(seed: u64, tag: u8) -> [u8; 32] {
    let mut s = [tag; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s
}

/// The honest nodes the attacker talks to: the hub and the first store node.
pub fn attacker_targets(config: &SimConfig) -> [usize; 2] {
    [config.stores * (1 + config.tills_per_store), 0]
}

/// One step of the attacker: each of its kinds with probability `p`.
pub fn attack(world: &mut World, attacker: &mut Adversary, p: f64) {
    if world.rng.chance(p) {
        attacker.equivocate(world);
    }
    if world.rng.chance(p) {
        let pick = world.rng.range(0, 1 << 20);
        attacker.forge(world, pick);
    }
    if world.rng.chance(p) {
        let pick = world.rng.range(0, 1 << 20);
        attacker.flood(world, pick);
    }
}

/// The fleet of `config`: stores with their tills on a LAN, a hub, channels.
pub fn build(config: &SimConfig) -> Result<World, String> {
    let mut rng = SimRng::new(config.seed);
    let n = config.nodes();
    let mut sqlite = vec![false; n];
    let wanted = config.sqlite_nodes.min(n);
    while sqlite.iter().filter(|s| **s).count() < wanted {
        sqlite[rng.pick(n)] = true;
    }
    let dir = match wanted {
        0 => None,
        _ => Some(RunDir::new(config.seed).map_err(|e| format!("temporary directory: {e}"))?),
    };
    let mut nodes = Vec::new();
    let mut net = Network::new(config.net.clone());
    let mut add = |rng: &mut SimRng, name: String, loc: &str, role: Role| {
        let i = nodes.len();
        let skew = rng.range(0, 2 * config.max_skew_ms as u64) as i64 - config.max_skew_ms;
        let disk = match &dir {
            Some(d) if sqlite[i] => Disk::Sqlite(d.path().join(&name)),
            _ => Disk::Memory(MemoryStore::new()),
        };
        // Location names here are valid.
        let loc = LocationId::new(loc).expect("valid location");
        nodes.push(SimNode::new(i, name, loc, role, skew, disk));
        i
    };
    let hub = config.stores * (1 + config.tills_per_store);
    for s in 0..config.stores {
        let loc = format!("S{s}");
        let first = add(&mut rng, format!("store-{s}"), &loc, Role::Store);
        for t in 0..config.tills_per_store {
            add(&mut rng, format!("till-{s}-{t}"), &loc, Role::Till);
        }
        // The store's LAN is a full mesh; the store node also links to the hub.
        for a in first..=first + config.tills_per_store {
            for b in a + 1..=first + config.tills_per_store {
                net.link(a, b);
            }
        }
        net.link(first, hub);
    }
    add(&mut rng, "hub".into(), "W0", Role::Hub);
    for c in 0..config.channels {
        let i = add(&mut rng, format!("channel-{c}"), "W0", Role::Channel);
        net.link(hub, i);
    }
    // HQ's roster: every node at its own location, and the attacker at its own.
    let authority = FleetAuthority::from_seed(seed_bytes(config.seed, 0xF1));
    let mut roster = authority.roster();
    roster.version = 1;
    for n in &nodes {
        let member = Member::new(n.meta.name.clone(), n.meta.role, [n.meta.location.clone()]);
        roster = roster.with_member(n.meta.id, member);
    }
    let attacker = config.attacker.then(|| {
        let a = Adversary::new(config.seed, attacker_targets(config));
        for (id, member) in a.members() {
            roster = roster.clone().with_member(id, member);
        }
        a.id
    });
    let roster = authority
        .sign(&roster)
        .map_err(|e| format!("signing the roster: {e}"))?;
    Ok(World {
        nodes,
        net,
        rng,
        now: 0,
        rejected: Vec::new(),
        attacker,
        attacks_refused: 0,
        roster: Some(roster),
        options: NodeOptions {
            epoch_changes: 40,
            max_batch: 64,
            fleet: Some(authority.fleet()),
            // Few enough that the attacker's parking floods reach the bound.
            sync: crate::sync::SyncConfig {
                max_parked: 32,
                ..crate::sync::SyncConfig::default()
            },
            rebalance: config.rebalance.clone(),
            ..NodeOptions::default()
        },
        faults: FaultCounts::default(),
        dir,
        grants: Vec::new(),
        seed: config.seed,
    })
}

/// Day start: every store and the hub receive stock and hand part of it to
/// their tills and channels, one group per SKU.
pub fn stock_up(world: &mut World, check: &mut Checker) -> Result<(), String> {
    let mut n = 0u64;
    let mut event = |world: &World, i: usize, k: usize, qty: u64, kind: EventKind| {
        n += 1;
        // Ids, SKUs and quantities here are valid.
        EventRequest::new(
            EventId::new(format!("init{n}")).expect("valid id"),
            world.nodes[i].meta.location.clone(),
            Sku::new(format!("K{k}")).expect("valid sku"),
            Quantity::new(qty).expect("valid qty"),
            kind,
        )
    };
    for i in 0..world.nodes.len() {
        if !matches!(world.nodes[i].meta.role, Role::Store | Role::Hub) {
            continue;
        }
        let loc = world.nodes[i].meta.location.clone();
        let takers: Vec<_> = world
            .nodes
            .iter()
            .filter(|n| n.meta.location == loc && n.meta.role != world.nodes[i].meta.role)
            .map(|n| n.meta.id)
            .collect();
        for k in 0..workload::SKUS {
            let mut group = vec![event(world, i, k, 60, EventKind::Receipt)];
            for to in &takers {
                group.push(event(world, i, k, 12, EventKind::Grant { to: *to }));
            }
            check.group(world, i, group)?;
        }
    }
    Ok(())
}

/// One step's faults: links cut and healed, nodes crashed and restarted, and
/// now and then a store fault armed on a live node's upcoming commit.
pub fn step(
    world: &mut World,
    check: &mut Checker,
    config: &SimConfig,
    crashes: &mut usize,
) -> Result<(), String> {
    let links: Vec<(usize, usize)> = world.net.links().copied().collect();
    if world.rng.chance(config.partition) {
        let (a, b) = links[world.rng.pick(links.len())];
        if world.net.up(a, b) {
            world.disconnect(a, b);
            world.net.cut(a, b);
        }
    }
    if world.rng.chance(config.partition) {
        let cut = world.net.cut_links();
        if !cut.is_empty() {
            let (a, b) = cut[world.rng.pick(cut.len())];
            world.net.heal(a, b);
            world.connect(a, b);
        }
    }
    if world.rng.chance(config.crash) {
        let i = world.rng.pick(world.nodes.len());
        if world.nodes[i].live.is_some() {
            world.crash(i);
            *crashes += 1;
        }
    }
    if world.rng.chance(config.crash * 2.0) {
        let down: Vec<usize> = (0..world.nodes.len())
            .filter(|&i| world.nodes[i].live.is_none())
            .collect();
        if !down.is_empty() {
            let i = down[world.rng.pick(down.len())];
            world.restart(i)?;
            check.restarted(world, i)?;
        }
    }
    if world.rng.chance(config.store_fault) {
        let i = world.rng.pick(world.nodes.len());
        let fault = Fault::draw(&mut world.rng);
        world.arm(i, fault);
    }
    Ok(())
}
