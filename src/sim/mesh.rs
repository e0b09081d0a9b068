//! A lossless, zero-latency network of real nodes: for benches, engine tests
//! and examples (the fault-injecting fleet is [`super::world`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::error::{NodeError, StoreError};
use crate::escrow::StockBook;
use crate::identity::Identity;
use crate::model::{EventOutcome, EventRequest, NodeId, NodeMeta, Position};
use crate::node::{Node, NodeOptions};
use crate::store::Store;
use crate::sync::{RejectReason, SyncConfig, SyncEvent};

/// One node of the mesh.
pub struct MeshNode {
    /// Its id.
    pub id: NodeId,
    /// The running node.
    pub node: Node,
    /// Refusals it reported.
    pub rejected: Vec<RejectReason>,
}

/// Nodes joined by in-order, lossless links (unless cut).
pub struct Mesh {
    /// The nodes, by index.
    pub nodes: Vec<MeshNode>,
    /// Messages in flight: `(from, to, bytes)`.
    pub queue: VecDeque<(usize, usize, Vec<u8>)>,
    /// Directed links `(from, to)` whose messages are dropped.
    pub cut: Vec<(usize, usize)>,
    /// Bytes handed to the network.
    pub bytes: u64,
    /// The largest message handed to the network.
    pub max_message: usize,
    clock: Arc<AtomicI64>,
    options: NodeOptions,
}

impl Mesh {
    /// An empty mesh whose engines use `config`.
    pub fn new(config: SyncConfig) -> Self {
        Self::with_options(NodeOptions {
            sync: config,
            ..NodeOptions::default()
        })
    }

    /// An empty mesh whose nodes use `options`.
    pub fn with_options(options: NodeOptions) -> Self {
        Self {
            nodes: Vec::new(),
            queue: VecDeque::new(),
            cut: Vec::new(),
            bytes: 0,
            max_message: 0,
            clock: Arc::new(AtomicI64::new(0)),
            options,
        }
    }

    /// The time every node sees.
    pub fn now(&self) -> u64 {
        self.clock.load(Ordering::Relaxed) as u64
    }

    /// Adds a node with the identity of `seed`; `meta` gets its id. The store
    /// must be durable (nodes sync only over durable stores).
    pub fn add(
        &mut self,
        seed: [u8; 32],
        store: impl Store + 'static,
        meta: impl FnOnce(NodeId) -> NodeMeta,
    ) -> Result<usize, StoreError> {
        let options = self.options.clone();
        self.add_with(seed, store, options, meta)
    }

    /// [`Mesh::add`] with this node's own options (another fleet, open mode...).
    pub fn add_with(
        &mut self,
        seed: [u8; 32],
        store: impl Store + 'static,
        options: NodeOptions,
        meta: impl FnOnce(NodeId) -> NodeMeta,
    ) -> Result<usize, StoreError> {
        if !store.durable() {
            return Err(StoreError::Failed(NodeError::NotDurable.to_string()));
        }
        let identity = Identity::from_seed(seed);
        let id = identity.node_id();
        let clock = self.clock.clone();
        let node = Node::start(
            identity,
            meta(id),
            store,
            options,
            Arc::new(move || clock.load(Ordering::Relaxed)),
        )?;
        self.nodes.push(MeshNode {
            id,
            node,
            rejected: Vec::new(),
        });
        Ok(self.nodes.len() - 1)
    }

    /// Queues what node `i` sent and notes what it refused.
    pub fn collect(&mut self, i: usize) {
        for o in self.nodes[i].node.take_sends() {
            let Some(j) = self.nodes.iter().position(|n| n.id == o.to) else {
                continue;
            };
            if !self.cut.contains(&(i, j)) {
                self.bytes += o.message.len() as u64;
                self.max_message = self.max_message.max(o.message.len());
                self.queue.push_back((i, j, o.message));
            }
        }
        for e in self.nodes[i].node.take_events() {
            if let SyncEvent::Rejected { reason, .. } = e {
                self.nodes[i].rejected.push(reason);
            }
        }
    }

    /// Connects nodes `a` and `b`.
    pub fn connect(&mut self, a: usize, b: usize) {
        let (ia, ib) = (self.nodes[a].id, self.nodes[b].id);
        // `add` admits durable stores only, the one reason `peer_up` refuses.
        let durable = "mesh stores are durable";
        self.nodes[a].node.peer_up(ib).expect(durable);
        self.collect(a);
        self.nodes[b].node.peer_up(ia).expect(durable);
        self.collect(b);
    }

    /// Disconnects nodes `a` and `b` (both sides see the link go down).
    pub fn disconnect(&mut self, a: usize, b: usize) {
        let (ia, ib) = (self.nodes[a].id, self.nodes[b].id);
        self.nodes[a].node.peer_down(ib);
        self.nodes[b].node.peer_down(ia);
        self.queue
            .retain(|(f, t, _)| !((*f == a && *t == b) || (*f == b && *t == a)));
    }

    /// Hands `message` to node `to` as if `from` sent it.
    pub fn receive(&mut self, to: usize, from: NodeId, message: Vec<u8>) {
        self.nodes[to].node.receive(from, message);
        self.collect(to);
    }

    /// Delivers up to `max` messages; returns how many.
    pub fn deliver(&mut self, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some((from, to, message)) = self.queue.pop_front() else {
                break;
            };
            let from = self.nodes[from].id;
            self.receive(to, from, message);
            n += 1;
        }
        n
    }

    /// Delivers until no message is in flight.
    pub fn settle(&mut self) {
        while self.deliver(usize::MAX) > 0 {}
    }

    /// Moves time to `at` and runs every node's due timers (delivers nothing).
    pub fn tick(&mut self, at: u64) {
        self.clock.store(at as i64, Ordering::Relaxed);
        for i in 0..self.nodes.len() {
            self.nodes[i].node.tick();
            self.collect(i);
        }
    }

    /// Moves time to `at`, runs every node's due timers, and settles.
    pub fn advance(&mut self, at: u64) {
        self.tick(at);
        self.settle();
    }

    /// Commits `req` on node `i` and queues what it gossips.
    pub fn event(&mut self, i: usize, req: EventRequest) -> Result<EventOutcome, NodeError> {
        let answer = self.nodes[i].node.execute(req);
        self.collect(i);
        answer
    }

    /// Commits `reqs` on node `i` in one group commit (submitted together).
    pub fn group(
        &mut self,
        i: usize,
        reqs: Vec<EventRequest>,
    ) -> Vec<Result<EventOutcome, NodeError>> {
        let tickets: Vec<_> = reqs
            .into_iter()
            .map(|r| self.nodes[i].node.submit(r))
            .collect();
        let answers = tickets.into_iter().map(|t| t.wait()).collect();
        self.collect(i);
        answers
    }

    /// A copy of node `i`'s stock book.
    pub fn book(&self, i: usize) -> StockBook {
        self.nodes[i]
            .node
            .query(|r| r.book().clone())
            .unwrap_or_default()
    }

    /// The head node `i` holds of node `writer`'s history.
    pub fn head(&self, i: usize, writer: usize) -> Option<Position> {
        let w = self.nodes[writer].id;
        self.nodes[i]
            .node
            .query(|r| r.heads().get(&w).map(|h| h.position))
            .ok()
            .flatten()
    }
}
