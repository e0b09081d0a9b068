//! A lossless, zero-latency network of real writers and sync engines: for
//! benches, engine tests and examples (the fault-injecting fleet is [`super::world`]).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::error::{NodeError, StoreError};
use crate::identity::Identity;
use crate::model::{EventOutcome, EventRequest, NodeId, NodeMeta, Position};
use crate::node::{NodeOptions, Writer};
use crate::store::Store;
use crate::sync::{Effect, Input, SyncConfig, SyncEngine, SyncEvent};

/// One node of the mesh.
pub struct MeshNode {
    /// Its id.
    pub id: NodeId,
    /// Its replica and store.
    pub writer: Writer,
    /// Its sync state.
    pub engine: SyncEngine,
    /// Refusals its engine reported.
    pub rejected: Vec<String>,
}

/// Nodes joined by in-order, lossless links (unless cut).
pub struct Mesh {
    /// The nodes, by index.
    pub nodes: Vec<MeshNode>,
    /// Messages in flight: `(from, to, bytes)`.
    pub queue: VecDeque<(usize, usize, Vec<u8>)>,
    /// The time every node sees.
    pub now: u64,
    /// Directed links `(from, to)` whose messages are dropped.
    pub cut: Vec<(usize, usize)>,
    /// Bytes handed to the network.
    pub bytes: u64,
    config: SyncConfig,
}

impl Mesh {
    /// An empty mesh whose engines use `config`.
    pub fn new(config: SyncConfig) -> Self {
        Self {
            nodes: Vec::new(),
            queue: VecDeque::new(),
            now: 0,
            cut: Vec::new(),
            bytes: 0,
            config,
        }
    }

    /// Adds a node with the identity of `seed`; `meta` gets its id.
    pub fn add(
        &mut self,
        seed: [u8; 32],
        store: Box<dyn Store>,
        meta: impl FnOnce(NodeId) -> NodeMeta,
    ) -> Result<usize, StoreError> {
        let identity = Identity::from_seed(seed);
        let id = identity.node_id();
        let writer = Writer::new(meta(id), store, &NodeOptions::default(), Arc::new(|| 0))?;
        self.nodes.push(MeshNode {
            id,
            writer,
            engine: SyncEngine::new(identity, self.config.clone()),
            rejected: Vec::new(),
        });
        Ok(self.nodes.len() - 1)
    }

    /// Feeds `input` to node `i` and queues what it sends.
    pub fn input(&mut self, i: usize, input: Input) {
        let n = &mut self.nodes[i];
        for e in n.writer.sync(&mut n.engine, self.now, input) {
            match e {
                Effect::Send { to, message } => {
                    let Some(j) = self.nodes.iter().position(|n| n.id == to) else {
                        continue;
                    };
                    if !self.cut.contains(&(i, j)) {
                        self.bytes += message.len() as u64;
                        self.queue.push_back((i, j, message));
                    }
                }
                Effect::Report(SyncEvent::Rejected { reason, .. }) => {
                    self.nodes[i].rejected.push(reason)
                }
                _ => {}
            }
        }
    }

    /// Connects nodes `a` and `b`.
    pub fn connect(&mut self, a: usize, b: usize) {
        let (ia, ib) = (self.nodes[a].id, self.nodes[b].id);
        self.input(a, Input::PeerUp(ib));
        self.input(b, Input::PeerUp(ia));
    }

    /// Delivers up to `max` messages; returns how many.
    pub fn deliver(&mut self, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some((from, to, message)) = self.queue.pop_front() else {
                break;
            };
            let from = self.nodes[from].id;
            self.input(to, Input::Received { from, message });
            n += 1;
        }
        n
    }

    /// Delivers until no message is in flight.
    pub fn settle(&mut self) {
        while self.deliver(usize::MAX) > 0 {}
    }

    /// Moves time to `at`, runs every node's due timers, and settles.
    pub fn advance(&mut self, at: u64) {
        self.now = at;
        for i in 0..self.nodes.len() {
            if self.nodes[i].engine.poll_timeout().is_some_and(|t| t <= at) {
                self.input(i, Input::Tick);
            }
        }
        self.settle();
    }

    /// Commits `req` on node `i` and gossips the change.
    pub fn event(&mut self, i: usize, req: EventRequest) -> Result<EventOutcome, NodeError> {
        let answer = self.nodes[i]
            .writer
            .commit_group(vec![req])
            .pop()
            .unwrap_or(Err(NodeError::Stopped));
        for c in self.nodes[i].writer.take_committed() {
            self.input(i, Input::LocalCommitted(c));
        }
        answer
    }

    /// The head node `i` holds of node `writer`'s history.
    pub fn head(&self, i: usize, writer: usize) -> Option<Position> {
        let w = self.nodes[writer].id;
        self.nodes[i]
            .writer
            .replica()?
            .heads()
            .get(&w)
            .map(|h| h.position)
    }
}
