//! The simulated fleet: nodes running the real writer, replica and sync engine
//! over in-memory stores, wired to the simulated network.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::net::{Delivery, Network};
use super::rng::SimRng;
use crate::identity::Identity;
use crate::model::{EventOutcome, EventRequest, LocationId, NodeId, NodeMeta, Role};
use crate::node::{Node, NodeOptions};
use crate::store::memory::MemoryStore;
use crate::sync::SyncEvent;

/// One simulated node.
pub struct SimNode {
    /// Identity and place.
    pub meta: NodeMeta,
    seed: [u8; 32],
    /// What survives a crash.
    pub store: MemoryStore,
    /// The running node; `None` while crashed.
    pub live: Option<Node>,
    /// This node's clock minus the global clock.
    pub skew_ms: i64,
    clock: Arc<AtomicI64>,
}

impl SimNode {
    /// A node with a deterministic identity from `seed`.
    pub fn new(index: usize, name: String, location: LocationId, role: Role, skew_ms: i64) -> Self {
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
            store: MemoryStore::new(),
            live: None,
            skew_ms,
            clock: Arc::new(AtomicI64::new(0)),
        }
    }

    /// This node's local time at global time `now`.
    pub fn local(&self, now: u64) -> u64 {
        (now as i64 + self.skew_ms).max(0) as u64
    }

    /// (Re)starts the node from what its store holds.
    pub fn boot(&mut self, options: &NodeOptions) {
        let clock = self.clock.clone();
        let node = Node::start(
            Identity::from_seed(self.seed),
            self.meta.clone(),
            self.store.clone(),
            options.clone(),
            Arc::new(move || clock.load(Ordering::Relaxed)),
        );
        // The memory store cannot fail to load what it committed itself.
        self.live = Some(node.expect("memory store loads"));
    }

    /// Sets the node's clock to global time `now`.
    pub fn set_time(&self, now: u64) {
        self.clock.store(self.local(now) as i64, Ordering::Relaxed);
    }
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
    /// Acknowledged events: `(node index, request, outcome)`.
    pub acked: Vec<(usize, EventRequest, EventOutcome)>,
    /// Refusals reported by any engine.
    pub rejected: Vec<String>,
    /// Node options of every node (sync configuration included).
    pub options: NodeOptions,
}

impl World {
    /// The index of the node with id `id`.
    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.meta.id == *id)
    }

    /// Runs `f` on node `i` (if it is up) at the current time, then hands what
    /// it sent to the network and notes what it refused.
    pub fn with_node<R>(&mut self, i: usize, f: impl FnOnce(&Node) -> R) -> Option<R> {
        let now = self.now;
        let node = &self.nodes[i];
        node.set_time(now);
        let live = node.live.as_ref()?;
        let r = f(live);
        let sends = live.take_sends();
        let events = live.take_events();
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
                self.rejected.push(format!(
                    "node {} rejected from {from} (writer {writer:?}): {reason}",
                    self.nodes[i].meta.name
                ));
            }
        }
        Some(r)
    }

    /// Runs a local event on node `i`; true when it was acknowledged.
    pub fn local_event(&mut self, i: usize, req: EventRequest) -> bool {
        let answer = self.with_node(i, |n| n.execute(req.clone()));
        match answer {
            Some(Ok(outcome)) => {
                self.acked.push((i, req, outcome));
                true
            }
            _ => false,
        }
    }

    /// Connects `a` and `b` at the protocol level (both must be up and linked).
    pub fn connect(&mut self, a: usize, b: usize) {
        if !self.net.up(a, b) || self.nodes[a].live.is_none() || self.nodes[b].live.is_none() {
            return;
        }
        let (ida, idb) = (self.nodes[a].meta.id, self.nodes[b].meta.id);
        self.with_node(a, |n| n.peer_up(idb));
        self.with_node(b, |n| n.peer_up(ida));
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

    /// Crashes node `i`: its in-memory state is gone, its store stays.
    pub fn crash(&mut self, i: usize) {
        let id = self.nodes[i].meta.id;
        for j in self.neighbours(i) {
            // `with_node` skips neighbours that are down themselves.
            self.with_node(j, |n| n.peer_down(id));
        }
        self.nodes[i].live = None;
    }

    /// Restarts node `i` from its store and reconnects it.
    pub fn restart(&mut self, i: usize) {
        let options = self.options.clone();
        self.nodes[i].boot(&options);
        for j in self.neighbours(i) {
            self.connect(i, j);
        }
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
}
