//! A hand-pumped network of real `Node`s for the library-level tests: every
//! message goes `take_sends` → queue → `receive`, in order, unless the test
//! drops it; one clock the test advances (`AtomicI64`) drives every node.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use stocksync::identity::Identity;
use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeId, NodeMeta, Position, Quantity, Role, Sku,
};
use stocksync::node::{Clock, Node, NodeOptions, Outgoing};
use stocksync::sync::message::{self, Message};
use stocksync::sync::SyncEvent;

/// Copies a data directory, the lock file left out (a backup, or a clone).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "lock" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// An event on SKU `A` at location `S1`.
pub fn req(id: &str, qty: u64, kind: EventKind) -> EventRequest {
    EventRequest::new(
        EventId::new(id).unwrap(),
        LocationId::new("S1").unwrap(),
        Sku::new("A").unwrap(),
        Quantity::new(qty).unwrap(),
        kind,
    )
}

/// The identity of test node `seed` and its metadata (a till at S1).
pub fn member(seed: u8) -> (Identity, NodeMeta) {
    let identity = Identity::from_seed([seed; 32]);
    let meta = NodeMeta {
        id: identity.node_id(),
        name: format!("n{seed}"),
        location: LocationId::new("S1").unwrap(),
        role: Role::Till,
    };
    (identity, meta)
}

/// Decodes an outgoing message (the node only sends well-formed ones).
pub fn decode(o: &Outgoing) -> Message {
    message::decode(&o.message).expect("a node sends well-formed messages")
}

/// Nodes joined by in-order links; the test decides what is lost.
pub struct Fleet {
    /// The nodes, by index.
    pub nodes: Vec<Node>,
    /// Messages sent and not yet delivered: `(from, to, bytes)`.
    pub queue: VecDeque<(usize, usize, Vec<u8>)>,
    /// Every sync event each node reported, in order.
    pub events: Vec<Vec<SyncEvent>>,
    clock: Arc<AtomicI64>,
}

impl Default for Fleet {
    fn default() -> Self {
        Self::new()
    }
}

impl Fleet {
    /// An empty fleet at time 0.
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            queue: VecDeque::new(),
            events: Vec::new(),
            clock: Arc::new(AtomicI64::new(0)),
        }
    }

    /// The clock every node of this fleet must be started with.
    pub fn clock(&self) -> Clock {
        let c = self.clock.clone();
        Arc::new(move || c.load(Ordering::SeqCst))
    }

    /// The current time.
    pub fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst) as u64
    }

    /// Adds a running node (started with [`Fleet::clock`]); returns its index.
    pub fn add(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.events.push(Vec::new());
        self.nodes.len() - 1
    }

    /// Starts test node `seed` over `store` and adds it.
    pub fn start(
        &mut self,
        seed: u8,
        store: impl stocksync::store::Store + 'static,
        options: NodeOptions,
    ) -> usize {
        let (identity, meta) = member(seed);
        let node = Node::start(identity, meta, store, options, self.clock()).unwrap();
        self.add(node)
    }

    fn index(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id() == id)
    }

    /// Queues `sends` of node `i` for delivery.
    pub fn route(&mut self, i: usize, sends: Vec<Outgoing>) {
        for o in sends {
            if let Some(j) = self.index(o.to) {
                self.queue.push_back((i, j, o.message));
            }
        }
    }

    /// Queues what node `i` sent and records what it reported.
    pub fn collect(&mut self, i: usize) {
        let sends = self.nodes[i].take_sends();
        self.route(i, sends);
        let reported = self.nodes[i].take_events();
        self.events[i].extend(reported);
    }

    /// Tells nodes `a` and `b` they are connected.
    pub fn connect(&mut self, a: usize, b: usize) {
        let (ia, ib) = (self.nodes[a].id(), self.nodes[b].id());
        self.nodes[a].peer_up(ib).unwrap();
        self.collect(a);
        self.nodes[b].peer_up(ia).unwrap();
        self.collect(b);
    }

    /// Delivers queued messages (and what they cause) until none is left.
    pub fn settle(&mut self) {
        while let Some((from, to, bytes)) = self.queue.pop_front() {
            let from = self.nodes[from].id();
            self.nodes[to].receive(from, bytes);
            self.collect(to);
        }
    }

    /// Drops every queued message (they are lost).
    pub fn lose_all(&mut self) -> usize {
        let n = self.queue.len();
        self.queue.clear();
        n
    }

    /// Moves the clock to `at` and runs every node's due timers (delivers nothing).
    pub fn tick(&mut self, at: u64) {
        self.clock.store(at as i64, Ordering::SeqCst);
        for i in 0..self.nodes.len() {
            self.nodes[i].tick();
            self.collect(i);
        }
    }

    /// Moves the clock to `at`, runs the due timers, and settles.
    pub fn advance(&mut self, at: u64) {
        self.tick(at);
        self.settle();
    }

    /// Commits `req` on node `i` (it must be accepted) and queues what it gossips.
    pub fn event(&mut self, i: usize, req: EventRequest) -> stocksync::model::EventOutcome {
        let o = self.nodes[i].execute(req).unwrap();
        self.collect(i);
        o
    }

    /// The head node `i` holds of `writer`'s history.
    pub fn head(&self, i: usize, writer: NodeId) -> Option<Position> {
        head(&self.nodes[i], writer)
    }
}

/// The head `node` holds of `writer`'s history.
pub fn head(node: &Node, writer: NodeId) -> Option<Position> {
    node.query(|r| r.heads().get(&writer).map(|h| h.position))
        .unwrap()
}

/// Every counter of `writer` as `node` holds it, by key.
pub fn counters(node: &Node, writer: NodeId) -> BTreeMap<String, i64> {
    node.query(|r| {
        r.book()
            .counters_of(&writer)
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    })
    .unwrap()
}

/// Nodes on threads: each delivers what the others send, as a transport
/// does, and runs its timer (unlike [`Fleet`], nothing is hand-pumped).
pub struct Pumped {
    /// The nodes, in the order given.
    pub nodes: Vec<Node>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pumped {
    /// Links each pair of `links` (indices into `nodes`) and starts one pump per node.
    pub fn start(nodes: Vec<Node>, links: &[(usize, usize)]) -> Self {
        for &(a, b) in links {
            nodes[a].peer_up(nodes[b].id()).unwrap();
            nodes[b].peer_up(nodes[a].id()).unwrap();
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = nodes
            .iter()
            .map(|n| {
                let (n, all, stop) = (n.clone(), nodes.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        for o in n.wait_sends(std::time::Duration::from_millis(5)) {
                            if let Some(to) = all.iter().find(|x| x.id() == o.to) {
                                to.receive(n.id(), o.message);
                            }
                        }
                        n.tick();
                    }
                })
            })
            .collect();
        Self {
            nodes,
            stop,
            threads,
        }
    }

    /// Every pair of `n` nodes linked.
    pub fn mesh(n: usize) -> Vec<(usize, usize)> {
        (0..n)
            .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
            .collect()
    }

    /// Waits up to 10 s for `cond`, then fails naming `what`.
    pub fn wait_for(&self, what: &str, cond: impl Fn() -> bool) {
        for _ in 0..2_000 {
            if cond() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("timed out waiting for {what}");
    }
}

impl Drop for Pumped {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
