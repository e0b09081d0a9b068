//! The simulated fleet: nodes running the real writer, replica and sync engine
//! over fault-injecting stores (in memory or SQLite), wired to the simulated
//! network.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::disk::{Disk, RunDir, SimStore};
use super::faults::{Fault, FaultKind, FaultyStore};
use super::grants::{tallies, GrantBatch};
use super::net::{Delivery, Network};
use super::rng::SimRng;
use crate::error::{NodeError, StoreError};
use crate::identity::Identity;
use crate::model::{EventId, EventOutcome, EventRequest, LocationId, NodeId, NodeMeta, Role};
use crate::node::{Node, NodeOptions, Ticket};
use crate::sync::SyncEvent;

/// One simulated node.
pub struct SimNode {
    /// Identity and place.
    pub meta: NodeMeta,
    seed: [u8; 32],
    /// What survives a crash.
    pub disk: Disk,
    /// The running node; `None` while crashed.
    pub live: Option<Node>,
    /// The running node's store handle (shared with the node); `None` while crashed.
    pub store: Option<FaultyStore<SimStore>>,
    /// This node's clock minus the global clock.
    pub skew_ms: i64,
    clock: Arc<AtomicI64>,
    /// Starts so far (each seeds the node's request ids differently).
    boots: u64,
}

impl SimNode {
    /// A node with a deterministic identity from `index`, its replica on `disk`.
    pub fn new(
        index: usize,
        name: String,
        location: LocationId,
        role: Role,
        skew_ms: i64,
        disk: Disk,
    ) -> Self {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(index as u64 + 1).to_le_bytes());
        let identity = Identity::from_seed(seed);
        Self {
            meta: NodeMeta {
                id: identity.node_id(),
                name,
                location,
                role,
            },
            seed,
            disk,
            live: None,
            store: None,
            skew_ms,
            clock: Arc::new(AtomicI64::new(0)),
            boots: 0,
        }
    }

    /// This node's local time at global time `now`.
    pub fn local(&self, now: u64) -> u64 {
        (now as i64 + self.skew_ms).max(0) as u64
    }

    /// (Re)starts the node from what its disk holds. Its self-made grants are
    /// recorded for the checker, and its request ids follow from `run_seed`,
    /// its identity and how many times it started (unique across restarts).
    pub fn boot(&mut self, options: &NodeOptions, run_seed: u64) -> Result<(), StoreError> {
        let clock = self.clock.clone();
        let store = FaultyStore::new(self.disk.open(&self.meta)?);
        let node = Node::start(
            Identity::from_seed(self.seed),
            self.meta.clone(),
            store.clone(),
            options.clone(),
            Arc::new(move || clock.load(Ordering::Relaxed)),
        )?;
        node.record_grants();
        self.boots += 1;
        let mut ids = super::rng::SimRng::new(
            run_seed ^ u64::from_le_bytes(self.seed[..8].try_into().unwrap_or_default()),
        );
        for _ in 0..self.boots {
            ids.range(0, 1 << 62);
        }
        node.seed_request_ids(ids.range(0, 1 << 62));
        self.live = Some(node);
        self.store = Some(store);
        Ok(())
    }

    /// Drops the running node and its store (a SQLite store closes its file).
    pub fn halt(&mut self) {
        self.live = None;
        self.store = None;
    }

    /// The journal row of event `id` (the node must be up).
    pub fn journal(&self, id: &EventId) -> Result<Option<(EventRequest, EventOutcome)>, String> {
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| format!("{} is down: its journal cannot be read", self.meta.name))?;
        store
            .with_inner(|s| crate::store::Store::find_event(s, id))
            .map_err(|e| format!("reading the journal of {}: {e}", self.meta.name))
    }

    /// Sets the node's clock to global time `now`.
    pub fn set_time(&self, now: u64) {
        self.clock.store(self.local(now) as i64, Ordering::Relaxed);
    }
}

/// Store faults injected so far, by kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultCounts {
    /// Disk failures (nothing persisted, the node lives on).
    pub disk: usize,
    /// Crashes before a commit.
    pub crash_before: usize,
    /// Crashes after a commit, before any answer.
    pub crash_after: usize,
}

/// Nodes, network and what the run has seen.
pub struct World {
    /// The nodes, by index.
    pub nodes: Vec<SimNode>,
    /// The network.
    pub net: Network,
    /// The run's randomness.
    pub rng: SimRng,
    /// Global time.
    pub now: u64,
    /// Refusals reported by any engine, of anything but the attacker's.
    pub rejected: Vec<String>,
    /// The attacker's id, if the run has one: refusals of what it sends are expected.
    pub attacker: Option<NodeId>,
    /// Refusals of the attacker's messages.
    pub attacks_refused: usize,
    /// The fleet roster every node installs when it first starts.
    pub roster: Option<crate::fleet::SignedRoster>,
    /// Node options of every node (sync configuration included).
    pub options: NodeOptions,
    /// Store faults injected.
    pub faults: FaultCounts,
    /// The run's directory for SQLite nodes (removed last, when the world drops).
    pub dir: Option<RunDir>,
    /// Grants the nodes made by themselves, not yet learned by the checker.
    pub grants: Vec<GrantBatch>,
    /// The run's seed.
    pub seed: u64,
}

impl World {
    /// The index of the node with id `id`.
    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.meta.id == *id)
    }

    /// Runs `f` on node `i` (if it is up) at the current time, then hands what
    /// it sent to the network and notes what it refused. If a store fault
    /// crashed the node meanwhile, nothing it sent leaves and the node is
    /// dropped (check `live` afterwards).
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&Node) -> R) -> Option<R> {
        let now = self.now;
        let node = &self.nodes[i];
        node.set_time(now);
        let live = node.live.as_ref()?;
        let r = f(live);
        let sends = live.take_sends();
        let events = live.take_events();
        let grants = live.take_grants();
        let store = node.store.as_ref()?;
        let (fired, crashed) = (store.take_fired(), store.crashed());
        if !grants.is_empty() {
            let after = match crashed {
                true => None,
                false => tallies(self, i, grants.iter().map(|g| &g.request.pool)).ok(),
            };
            self.grants.push(GrantBatch {
                node: i,
                grants,
                after,
            });
        }
        for fault in fired {
            match fault.kind {
                FaultKind::DiskFailure => self.faults.disk += 1,
                FaultKind::CrashBefore => self.faults.crash_before += 1,
                FaultKind::CrashAfter => self.faults.crash_after += 1,
            }
        }
        if crashed {
            self.crash(i);
            return Some(r);
        }
        for o in sends {
            let Some(j) = self.index_of(&o.to) else {
                continue;
            };
            if self.net.up(i, j) {
                let d = Delivery {
                    from: i,
                    to: j,
                    bytes: o.message,
                };
                self.net.send(&mut self.rng, self.now, d);
            }
        }
        for e in events {
            if let SyncEvent::Rejected {
                from,
                writer,
                reason,
            } = e
            {
                if Some(from) == self.attacker {
                    self.attacks_refused += 1;
                    continue;
                }
                self.rejected.push(format!(
                    "node {} rejected from {from} (writer {writer:?}): {reason}",
                    self.nodes[i].meta.name
                ));
            }
        }
        Some(r)
    }

    /// Submits `reqs` to node `i` together and waits for every answer, so they
    /// share one group commit. `None` when the node is down or died during the
    /// group (then no answer was handed out).
    pub fn submit_group(
        &mut self,
        i: usize,
        reqs: &[EventRequest],
    ) -> Option<Vec<Result<EventOutcome, NodeError>>> {
        let answers = self.with_node(i, |n| {
            let tickets: Vec<Ticket> = reqs.iter().map(|r| n.submit(r.clone())).collect();
            tickets.into_iter().map(Ticket::wait).collect::<Vec<_>>()
        })?;
        self.nodes[i].live.is_some().then_some(answers)
    }

    /// Arms `fault` on node `i`'s store (if it is up).
    pub fn arm(&mut self, i: usize, fault: Fault) {
        if let Some(s) = &self.nodes[i].store {
            s.arm(fault);
        }
    }

    /// Removes every armed store fault.
    pub fn disarm_all(&mut self) {
        for s in self.nodes.iter().filter_map(|n| n.store.as_ref()) {
            s.disarm();
        }
    }

    /// Connects `a` and `b` at the protocol level (both must be up and linked).
    pub fn connect(&mut self, a: usize, b: usize) {
        if !self.net.up(a, b) || self.nodes[a].live.is_none() || self.nodes[b].live.is_none() {
            return;
        }
        let (ida, idb) = (self.nodes[a].meta.id, self.nodes[b].meta.id);
        // Every simulated store is durable: a refusal is a failure of the run.
        for (i, peer) in [(a, idb), (b, ida)] {
            if let Some(Err(e)) = self.with_node(i, |n| n.peer_up(peer)) {
                let name = &self.nodes[i].meta.name;
                self.rejected
                    .push(format!("node {name} refused a peer: {e}"));
            }
        }
    }

    /// Tells `a` and `b` their connection is gone.
    pub fn disconnect(&mut self, a: usize, b: usize) {
        let (ida, idb) = (self.nodes[a].meta.id, self.nodes[b].meta.id);
        self.with_node(a, |n| n.peer_down(idb));
        self.with_node(b, |n| n.peer_down(ida));
    }

    /// Neighbours of `i` over links that are not cut.
    pub fn neighbours(&self, i: usize) -> Vec<usize> {
        self.net
            .links()
            .filter_map(|&(a, b)| {
                if a == i {
                    Some(b)
                } else if b == i {
                    Some(a)
                } else {
                    None
                }
            })
            .filter(|&j| self.net.up(i, j))
            .collect()
    }

    /// Crashes node `i`: its in-memory state is gone, its disk stays.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].halt();
        let id = self.nodes[i].meta.id;
        for j in self.neighbours(i) {
            // `with_node` skips neighbours that are down themselves.
            self.with_node(j, |n| n.peer_down(id));
        }
    }

    /// Restarts node `i` from its disk and reconnects it.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        let options = self.options.clone();
        self.nodes[i]
            .boot(&options, self.seed)
            .map_err(|e| format!("{} does not restart: {e}", self.nodes[i].meta.name))?;
        // First start: the node is enrolled (HQ's roster installed).
        if let (Some(roster), Some(node)) = (&self.roster, &self.nodes[i].live) {
            if node.roster_version() == 0 {
                node.install_roster(roster.clone())
                    .map_err(|e| format!("{} refuses the roster: {e}", self.nodes[i].meta.name))?;
            }
        }
        for j in self.neighbours(i) {
            self.connect(i, j);
        }
        Ok(())
    }

    /// Delivers every message due by now; returns how many were handled.
    pub fn deliver_due(&mut self) -> usize {
        let mut n = 0;
        while let Some(d) = self.net.pop_due(self.now) {
            let Some(d) = d else { continue };
            if self.nodes[d.to].live.is_none() || self.nodes[d.from].live.is_none() {
                continue;
            }
            n += 1;
            let from = self.nodes[d.from].meta.id;
            self.with_node(d.to, |n| n.receive(from, d.bytes));
        }
        n
    }

    /// Runs every engine timer that is due by now.
    pub fn run_timers(&mut self) {
        for i in 0..self.nodes.len() {
            let local = self.nodes[i].local(self.now);
            let due = self.nodes[i]
                .live
                .as_ref()
                .and_then(Node::poll_timeout)
                .is_some_and(|t| t <= local);
            if due {
                self.with_node(i, Node::tick);
            }
        }
    }

    /// The earliest global time at which some timer or message is due.
    pub fn next_due(&self) -> Option<u64> {
        let timers = self.nodes.iter().filter_map(|n| {
            let t = n.live.as_ref()?.poll_timeout()?;
            Some((t as i64 - n.skew_ms).max(0) as u64)
        });
        timers.chain(self.net.next_due()).min()
    }

    /// Advances time to `until`, delivering messages and running timers on the way.
    pub fn advance(&mut self, until: u64) {
        let mut guard = 0u32;
        while let Some(t) = self.next_due() {
            if t > until || guard > 1_000_000 {
                break;
            }
            guard += 1;
            self.now = self.now.max(t);
            self.deliver_due();
            self.run_timers();
        }
        self.now = self.now.max(until);
    }
}
