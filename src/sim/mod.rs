//! A deterministic fleet simulator: the real escrow rule, replica, writer and
//! sync engine on many nodes over in-memory or SQLite stores and a simulated
//! network with delays, drops, duplicates, reordering, replays, partitions,
//! crashes, store faults and clock skew, all drawn from one seed.
//!
//! The checker keeps its own model of every event's effect and asserts the
//! exact oversell bound under `strict` and `record`, the deficit each event
//! must record, that nothing acknowledged is lost and nothing is applied
//! twice, and that every replica converges to the model after the network heals.
//!
//! Every node runs the rights exchange ([`rebalancing`]): the checker learns
//! each grant a node makes by itself from the node's report and checks it
//! ([`grants`]): no over-grant, floors kept, rights conserved, and rights at
//! rest once the network heals.

pub mod adversary;
pub mod check;
pub mod disk;
pub mod effect;
pub mod faults;
pub mod fleet;
pub mod grants;
pub mod mesh;
pub mod model;
pub mod net;
pub mod rebalancing;
pub mod rng;
pub mod workload;
pub mod world;

use std::fmt;

use adversary::Adversary;
use check::{Checker, Counts};
use net::NetConfig;
use rebalancing::Borrows;
use world::{FaultCounts, World};

pub use crate::escrow::flaw::RuleFlaw;

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
    /// Workload groups (1 to 6 events each).
    pub steps: u64,
    /// Simulated time between workload groups.
    pub step_ms: u64,
    /// Per step: probability a random link is cut / a cut link heals.
    pub partition: f64,
    /// Per step: probability a random node crashes / a crashed node restarts.
    pub crash: f64,
    /// Per step: probability a store fault is armed on a random node's upcoming commit.
    pub store_fault: f64,
    /// Nodes whose replica is a SQLite database (in a temporary directory).
    pub sqlite_nodes: usize,
    /// Largest clock offset of a node, either way.
    pub max_skew_ms: i64,
    /// Network delays and faults.
    pub net: NetConfig,
    /// Most simulated time allowed for convergence once everything is healed.
    pub converge_within_ms: u64,
    /// A deliberate flaw in the escrow rule for this run (the checker must fail).
    pub flaw: Option<RuleFlaw>,
    /// A hostile member that equivocates, forges and floods (see [`adversary`]).
    pub attacker: bool,
    /// Per step: probability the attacker acts (each of its three kinds).
    pub attack: f64,
    /// The nodes' rights exchange ([`rebalancing::settings`]).
    pub rebalance: crate::rebalance::RebalanceSettings,
    /// Per step: probability a store's or the hub's manager orders a rebalance.
    pub manager_rebalance: f64,
}

impl SimConfig {
    /// The CI shape: 4 stores of 1 store node and 3 tills, a hub, 3 channels
    /// (20 nodes); every 10th seed runs 3 of them on SQLite.
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
            store_fault: 0.04,
            sqlite_nodes: if seed.is_multiple_of(10) { 3 } else { 0 },
            max_skew_ms: 500,
            net: NetConfig {
                min_latency_ms: 1,
                max_latency_ms: 120,
                drop: 0.05,
                duplicate: 0.03,
                replay: 0.01,
            },
            converge_within_ms: 60_000,
            flaw: None,
            attacker: seed % 2 == 1,
            attack: 0.2,
            rebalance: rebalancing::settings(),
            manager_rebalance: 0.04,
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
    /// What the checker counted (acknowledged, refused, groups, deficits...).
    pub counts: Counts,
    /// Store faults injected, by kind.
    pub faults: FaultCounts,
    /// Whole-node crashes outside commits.
    pub crashes: usize,
    /// Nodes on SQLite.
    pub sqlite_nodes: usize,
    /// Simulated milliseconds from the heal to convergence.
    pub converge_ms: u64,
    /// Bytes handed to the network.
    pub bytes: u64,
    /// What the attacker sent, if there was one.
    pub attacks: adversary::AttackCounts,
    /// Refusals of the attacker's messages reported by honest nodes.
    pub attacks_refused: usize,
    /// Grants, rebalances and borrows the run made.
    pub rebalance: grants::RebalanceCounts,
}

/// A failing run: everything needed to replay it.
#[derive(Clone, Debug)]
pub struct SimFailure {
    /// The seed.
    pub seed: u64,
    /// The rule flaw that was on, if any.
    pub flaw: Option<RuleFlaw>,
    /// Simulated time of the failure.
    pub at_ms: u64,
    /// What broke.
    pub what: String,
}

impl SimFailure {
    /// The command that replays this run.
    pub fn replay(&self) -> String {
        let flaw = match self.flaw {
            Some(f) => format!(" --broken-rule {f}"),
            None => String::new(),
        };
        format!("cargo run --release -- sim --seed {}{flaw}", self.seed)
    }
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} failed at {} ms: {}\n  replay: {}",
            self.seed,
            self.at_ms,
            self.what,
            self.replay()
        )
    }
}

/// Runs one simulation; `Err` carries the seed and what broke.
pub fn run(config: &SimConfig) -> Result<SimReport, SimFailure> {
    let _flaw = crate::escrow::flaw::set(config.flaw);
    let mut world = fleet::build(config).map_err(|what| SimFailure {
        seed: config.seed,
        flaw: config.flaw,
        at_ms: 0,
        what,
    })?;
    let mut report = SimReport {
        sqlite_nodes: world.nodes.iter().filter(|n| n.disk.is_sqlite()).count(),
        ..SimReport::default()
    };
    let mut check = Checker::new(&world);
    let mut attacker = config
        .attacker
        .then(|| Adversary::new(config.seed, fleet::attacker_targets(config)));
    let result = simulate(
        config,
        &mut world,
        &mut check,
        &mut report,
        attacker.as_mut(),
    );
    report.counts = check.counts;
    report.rebalance = check.grants.counts;
    report.attacks = attacker.map(|a| a.counts).unwrap_or_default();
    report.attacks_refused = world.attacks_refused;
    report.faults = world.faults;
    report.bytes = world.net.bytes_sent;
    result.map(|()| report).map_err(|what| SimFailure {
        seed: config.seed,
        flaw: config.flaw,
        at_ms: world.now,
        what,
    })
}

fn simulate(
    config: &SimConfig,
    world: &mut World,
    check: &mut Checker,
    report: &mut SimReport,
    mut attacker: Option<&mut Adversary>,
) -> Result<(), String> {
    for i in 0..world.nodes.len() {
        world.restart(i)?;
        check.restarted(world, i)?;
    }
    fleet::stock_up(world, check)?;
    check.model.invariant()?;
    let mut borrows = Borrows::default();
    for step in 0..config.steps {
        let until = world.now + config.step_ms;
        world.advance(until);
        check.learn(world)?;
        fleet::step(world, check, config, &mut report.crashes)?;
        for i in 0..world.nodes.len() {
            check.own_state(world, i)?;
        }
        grants::conserved(world)?;
        if let Some(g) = workload::next(world, step, &check.retryable) {
            check.group(world, g.node, g.requests)?;
        }
        borrows.start(world, check);
        borrows.retry(world, check)?;
        if world.rng.chance(config.manager_rebalance) {
            rebalancing::manager(world, check, workload::SKUS)?;
        }
        check.model.invariant()?;
        if let Some(a) = attacker.as_deref_mut() {
            fleet::attack(world, a, config.attack);
            check.bounded(world)?;
        }
    }
    // Heal: no more store faults, every link back, every node up, old
    // messages replayed once more.
    let healed_at = world.now;
    check.learn(world)?;
    world.disarm_all();
    for (a, b) in world.net.cut_links() {
        world.net.heal(a, b);
        world.connect(a, b);
    }
    for i in 0..world.nodes.len() {
        if world.nodes[i].live.is_none() {
            world.restart(i)?;
            check.restarted(world, i)?;
        }
    }
    check.model.invariant()?;
    world.net.replay_all(world.now + 1);
    // The attacker's last word: each side gets its history once more.
    if let Some(a) = attacker.as_deref_mut() {
        a.equivocate(world);
    }
    converge(config, world, check, attacker.as_deref(), healed_at)?;
    report.converge_ms = world.now - healed_at;
    check.model.invariant()?;
    grants::conserved(world)?;
    // No ping-pong: rights come to rest, then every replica agrees again.
    rebalancing::quiet(world, check)?;
    let quiet_at = world.now;
    converge(config, world, check, attacker.as_deref(), quiet_at)?;
    if let Some(r) = world.rejected.first() {
        return Err(format!("an honest change was rejected: {r}"));
    }
    check.replicas_match(world)?;
    check.forks(world, attacker.as_deref())?;
    for i in 0..world.nodes.len() {
        check.own_state(world, i)?;
    }
    check.model.invariant()?;
    grants::conserved(world)?;
    check.journals(world)
}

/// Runs the world until every live node holds every writer's latest change
/// and exactly the forks the run made, at most `converge_within_ms` after `from`.
fn converge(
    config: &SimConfig,
    world: &mut World,
    check: &mut Checker,
    attacker: Option<&Adversary>,
    from: u64,
) -> Result<(), String> {
    loop {
        check.learn(world)?;
        let mut lagging = Checker::lagging(world);
        if let Err(e) = check.forks(world, attacker) {
            lagging.push(e);
        }
        if lagging.is_empty() {
            return Ok(());
        }
        if world.now > from + config.converge_within_ms {
            return Err(format!(
                "no convergence within {} ms of the heal: {}",
                config.converge_within_ms,
                lagging.join(", ")
            ));
        }
        let until = world.now + 50;
        world.advance(until);
    }
}
