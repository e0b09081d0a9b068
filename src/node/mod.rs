//! A running node: the handle callers use, and the commit loop behind it.

mod commit_loop;

use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use commit_loop::Command;
use commit_loop::CommitLoop;

use crate::error::{NodeError, StoreError};
use crate::model::{EventOutcome, EventRequest, NodeMeta};
use crate::replica::Replica;
use crate::store::Store;

/// Milliseconds since the Unix epoch, supplied by the caller (a fixed clock in tests).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}

/// Tunables of a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Changes per epoch of the own document before it rolls over (bounds restart cost).
    pub epoch_changes: u64,
    /// Most events committed in one transaction.
    pub max_batch: usize,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            epoch_changes: 10_000,
            max_batch: 1024,
        }
    }
}

/// A pending answer: resolves once the event is durable or refused.
pub struct Ticket(Receiver<Result<EventOutcome, NodeError>>);

impl Ticket {
    /// Waits for the answer.
    pub fn wait(self) -> Result<EventOutcome, NodeError> {
        self.0.recv().unwrap_or(Err(NodeError::Stopped))
    }
}

/// A handle on a running node. Dropping it stops the node after its queue drains.
pub struct Node {
    meta: NodeMeta,
    tx: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl Node {
    /// Loads the replica from `store` and starts the commit loop.
    pub fn start<S: Store + 'static>(
        meta: NodeMeta,
        mut store: S,
        options: NodeOptions,
        clock: Clock,
    ) -> Result<Self, StoreError> {
        let snapshot = store.load(&meta.id)?;
        let replica = Replica::open(meta.id, snapshot, options.epoch_changes)
            .map_err(|e| StoreError::Replica(e.to_string()))?;
        let (tx, rx) = mpsc::channel();
        let lp = CommitLoop {
            meta: meta.clone(),
            store,
            replica: Some(replica),
            epoch_changes: options.epoch_changes,
            max_batch: options.max_batch.max(1),
            clock,
        };
        let thread = std::thread::Builder::new()
            .name(format!("commit-{}", meta.name))
            .spawn(move || lp.run(rx))?;
        Ok(Self {
            meta,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// The node's identity and place.
    pub fn meta(&self) -> &NodeMeta {
        &self.meta
    }

    /// Queues an event; the ticket resolves once it is durable (or refused).
    pub fn submit(&self, req: EventRequest) -> Ticket {
        let (tx, rx) = mpsc::channel();
        if let Some(q) = &self.tx {
            if let Err(mpsc::SendError(Command::Event(_, reply))) = q.send(Command::Event(req, tx))
            {
                let _ = reply.send(Err(NodeError::Stopped));
            }
        }
        Ticket(rx)
    }

    /// Submits an event and waits until it is durable (or refused).
    pub fn execute(&self, req: EventRequest) -> Result<EventOutcome, NodeError> {
        self.submit(req).wait()
    }

    /// Runs `f` on the replica, between batches, and returns its result.
    pub fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Replica) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        let (tx, rx) = mpsc::channel();
        let q = self.tx.as_ref().ok_or(NodeError::Stopped)?;
        q.send(Command::Query(Box::new(move |r| {
            let _ = tx.send(f(r));
        })))
        .map_err(|_| NodeError::Stopped)?;
        rx.recv().map_err(|_| NodeError::Stopped)
    }

    /// Stops the node once its queue is drained and waits for it.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}
