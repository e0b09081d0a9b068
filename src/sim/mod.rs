//! A deterministic fleet simulator: the real escrow rule, replica, writer and
//! sync engine on many nodes over in-memory stores and a simulated network
//! with delays, drops, duplicates, reordering, replays, partitions, crashes and
//! clock skew, all drawn from one seed. A checker asserts no oversell, no lost
//! acknowledged event, and convergence after the network heals.

pub mod check;
pub mod mesh;
pub mod net;
pub mod rng;
pub mod workload;
pub mod world;

use std::fmt;

use check::Truth;
use net::{NetConfig, Network};
use rng::SimRng;
use world::{SimNode, World};

use crate::model::{LocationId, Role};
use crate::node::NodeOptions;

/// One simulation's shape and fault rates.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed every random draw comes from.
    pub seed: u64,
    /// Stores; each has one store node and `tills_per_store` tills on a LAN.
    pub stores: usize,
    /// Tills per store.
    pub tills_per_store: usize,
    /// Online-channel nodes attached to the hub.
    pub channels: usize,
    /// Workload events.
    pub steps: u64,
    /// Simulated time between workload events.
    pub step_ms: u64,
    /// Per step: probability a random link is cut / a cut link heals.
    pub partition: f64,
    /// Per step: probability a random node crashes / a crashed node restarts.
    pub crash: f64,
    /// Largest clock offset of a node, either way.
    pub max_skew_ms: i64,
    /// Network delays and faults.
    pub net: NetConfig,
    /// Most simulated time allowed for convergence once everything is healed.
    pub converge_within_ms: u64,
    /// Sell against the pool's on-hand count instead of rights (the checker must fail).
    pub broken_rule: bool,
}

impl SimConfig {
    /// The CI shape: 4 stores of 1 store node and 3 tills, a hub, 3 channels (20 nodes).
    pub fn standard(seed: u64) -> Self {
        Self {
            seed,
            stores: 4,
            tills_per_store: 3,
            channels: 3,
            steps: 150,
            step_ms: 25,
            partition: 0.05,
            crash: 0.02,
            max_skew_ms: 500,
            net: NetConfig {
                min_latency_ms: 1,
                max_latency_ms: 120,
                drop: 0.05,
                duplicate: 0.03,
                replay: 0.01,
            },
            converge_within_ms: 60_000,
            broken_rule: false,
        }
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.stores * (1 + self.tills_per_store) + 1 + self.channels
    }
}

/// What a passing run measured.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    /// Acknowledged events.
    pub acked: usize,
    /// Events refused by the rule.
    pub refused: usize,
    /// Simulated milliseconds from the heal to convergence.
    pub converge_ms: u64,
    /// Bytes handed to the network.
    pub bytes: u64,
    /// Crashes.
    pub crashes: usize,
}

/// A failing run: everything needed to replay it.
#[derive(Clone, Debug)]
pub struct SimFailure {
    /// The seed.
    pub seed: u64,
    /// Whether the broken rule was on.
    pub broken_rule: bool,
    /// Simulated time of the failure.
    pub at_ms: u64,
    /// What broke.
    pub what: String,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} failed at {} ms: {}\n  replay: cargo run --release -- sim --seed {}{}",
            self.seed,
            self.at_ms,
            self.what,
            self.seed,
            if self.broken_rule {
                " --broken-rule"
            } else {
                ""
            }
        )
    }
}

fn build(config: &SimConfig) -> World {
    let mut rng = SimRng::new(config.seed);
    let mut nodes = Vec::new();
    let mut net = Network::new(config.net.clone());
    let skew =
        |rng: &mut SimRng| rng.range(0, 2 * config.max_skew_ms as u64) as i64 - config.max_skew_ms;
    let loc = |s: String| LocationId::new(s).expect("valid location");
    let hub = config.stores * (1 + config.tills_per_store);
    for s in 0..config.stores {
        let first = nodes.len();
        let sk = skew(&mut rng);
        nodes.push(SimNode::new(
            nodes.len(),
            format!("store-{s}"),
            loc(format!("S{s}")),
            Role::Store,
            sk,
        ));
        for t in 0..config.tills_per_store {
            let sk = skew(&mut rng);
            nodes.push(SimNode::new(
                nodes.len(),
                format!("till-{s}-{t}"),
                loc(format!("S{s}")),
                Role::Till,
                sk,
            ));
        }
        // The store's LAN is a full mesh; the store node also links to the hub.
        for a in first..nodes.len() {
            for b in a + 1..nodes.len() {
                net.link(a, b);
            }
        }
        net.link(first, hub);
    }
    let sk = skew(&mut rng);
    nodes.push(SimNode::new(
        nodes.len(),
        "hub".into(),
        loc("W0".into()),
        Role::Hub,
        sk,
    ));
    for c in 0..config.channels {
        let sk = skew(&mut rng);
        nodes.push(SimNode::new(
            nodes.len(),
            format!("channel-{c}"),
            loc("W0".into()),
            Role::Channel,
            sk,
        ));
        net.link(hub, nodes.len() - 1);
    }
    World {
        nodes,
        net,
        rng,
        now: 0,
        acked: Vec::new(),
        rejected: Vec::new(),
        options: NodeOptions {
            epoch_changes: 40,
            max_batch: 64,
            ..NodeOptions::default()
        },
    }
}

/// Advances time to `until`, delivering messages and running timers on the way.
fn advance(world: &mut World, until: u64) {
    let mut guard = 0u32;
    while let Some(t) = world.next_due() {
        if t > until || guard > 1_000_000 {
            break;
        }
        guard += 1;
        world.now = world.now.max(t);
        world.deliver_due();
        world.run_timers();
    }
    world.now = world.now.max(until);
}

fn faults(world: &mut World, config: &SimConfig, crashes: &mut usize) {
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
            world.restart(i);
        }
    }
}

/// Day start: every store and the hub receive stock and hand part of it to
/// their tills and channels.
fn stock_up(world: &mut World) {
    use crate::model::{EventId, EventKind, EventRequest, Quantity, Sku};
    let mut n = 0u64;
    let mut event = |world: &mut World, i: usize, k: usize, qty: u64, kind: EventKind| {
        n += 1;
        let req = EventRequest::new(
            EventId::new(format!("init{n}")).expect("valid id"),
            world.nodes[i].meta.location.clone(),
            Sku::new(format!("K{k}")).expect("valid sku"),
            Quantity::new(qty).expect("valid qty"),
            kind,
        );
        world.local_event(i, req);
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
            event(world, i, k, 60, EventKind::Receipt);
            for to in &takers {
                event(world, i, k, 12, EventKind::Grant { to: *to });
            }
        }
    }
}

/// Runs one simulation; `Err` carries the seed and what broke.
pub fn run(config: &SimConfig) -> Result<SimReport, SimFailure> {
    let mut world = build(config);
    let fail = |world: &World, what: String| SimFailure {
        seed: config.seed,
        broken_rule: config.broken_rule,
        at_ms: world.now,
        what,
    };
    let mut truth = Truth::new();
    let mut report = SimReport::default();
    for i in 0..world.nodes.len() {
        world.restart(i);
    }
    stock_up(&mut world);
    for i in 0..world.nodes.len() {
        check::record(&world, &mut truth, i);
    }
    for id in 0..config.steps {
        let until = world.now + config.step_ms;
        advance(&mut world, until);
        faults(&mut world, config, &mut report.crashes);
        for i in 0..world.nodes.len() {
            if world.nodes[i].live.is_some() && !truth.contains_key(&world.nodes[i].meta.id) {
                check::record(&world, &mut truth, i);
            }
            check::own_state_survived(&world, &truth, i).map_err(|e| fail(&world, e))?;
        }
        // Now and then, retry an acknowledged event: it must be applied once.
        let retry = (world.rng.chance(0.05) && !world.acked.is_empty()).then(|| {
            let k = world.rng.pick(world.acked.len());
            (world.acked[k].0, world.acked[k].1.clone())
        });
        let step = match retry {
            Some((node, request)) => Some(workload::Step {
                node,
                request,
                broken: false,
            }),
            None => workload::next(&mut world, id, config.broken_rule),
        };
        let Some(step) = step else { continue };
        if world.local_event(step.node, step.request) {
            check::record(&world, &mut truth, step.node);
        } else {
            report.refused += 1;
        }
        check::invariant(&truth).map_err(|e| fail(&world, e))?;
    }
    // Heal: every link back, every node up, old messages replayed once more.
    let healed_at = world.now;
    for (a, b) in world.net.cut_links() {
        world.net.heal(a, b);
        world.connect(a, b);
    }
    for i in 0..world.nodes.len() {
        if world.nodes[i].live.is_none() {
            world.restart(i);
            check::own_state_survived(&world, &truth, i).map_err(|e| fail(&world, e))?;
        }
    }
    world.net.replay_all(world.now + 1);
    loop {
        let lagging = check::diverged(&world, &truth);
        if lagging.is_empty() {
            break;
        }
        if world.now > healed_at + config.converge_within_ms {
            return Err(fail(
                &world,
                format!(
                    "no convergence within {} ms of the heal: {}",
                    config.converge_within_ms,
                    lagging.join(", ")
                ),
            ));
        }
        let until = world.now + 50;
        advance(&mut world, until);
    }
    report.converge_ms = world.now - healed_at;
    if let Some(r) = world.rejected.first() {
        return Err(fail(&world, format!("an honest change was rejected: {r}")));
    }
    check::acknowledged_kept(&mut world).map_err(|e| fail(&world, e))?;
    check::acknowledged_counted_once(&world, &truth).map_err(|e| fail(&world, e))?;
    report.acked = world.acked.len();
    report.bytes = world.net.bytes_sent;
    Ok(report)
}
