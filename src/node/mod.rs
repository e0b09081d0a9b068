//! A running node: the handle callers use, and leader/follower group commit.
//!
//! There is no commit thread. A caller queues its event and waits for its
//! answer; when no leader is active, a waiting caller becomes the leader: it
//! takes up to `max_batch` queued events, decides and commits them in one transaction, hands
//! out the answers and, if events are still queued, wakes one waiting caller to
//! lead the next group. A caller alone pays no thread hand-off; concurrent
//! callers share each commit.

mod writer;

pub use writer::Writer;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tracing::info_span;

use writer::Answer;

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

/// Groups a caller whose answer is ready still leads while events are queued
/// (saves waking another thread for each group under load).
const EXTRA_ROUNDS: u32 = 2;

/// One submitted event until its caller has taken the answer.
struct Entry {
    request: Option<EventRequest>,
    answer: Option<Answer>,
    waiting: bool,
    wake: Arc<Condvar>,
}

#[derive(Default)]
struct Queue {
    entries: HashMap<u64, Entry>,
    /// Ids of events not yet taken by a leader, oldest first.
    order: VecDeque<u64>,
    next_id: u64,
    leader_active: bool,
}

struct Shared {
    meta: NodeMeta,
    queue: Mutex<Queue>,
    writer: Mutex<Writer>,
    max_batch: usize,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // The queue holds plain data and every update to it is a single step, so a
        // panic elsewhere cannot leave it half-changed.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        match self.writer.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                // A leader panicked mid-group: the in-memory state may be half
                // applied, so rebuild it from what the store committed.
                let mut g = poisoned.into_inner();
                g.reload();
                self.writer.clear_poison();
                g
            }
        }
    }

    /// Waits for the answer of event `id`, leading group commits when no one else does.
    fn drive(&self, id: u64, wake: &Condvar) -> Answer {
        let mut q = self.queue();
        let mut extra_rounds = 0;
        loop {
            let Some(entry) = q.entries.get_mut(&id) else {
                return Err(NodeError::Stopped);
            };
            if entry.answer.is_some() {
                if extra_rounds < EXTRA_ROUNDS && !q.leader_active && !q.order.is_empty() {
                    extra_rounds += 1;
                    q = self.lead(q);
                    continue;
                }
                let answer = q.entries.remove(&id).and_then(|e| e.answer);
                return answer.unwrap_or(Err(NodeError::Stopped));
            }
            if !q.leader_active && !q.order.is_empty() {
                q = self.lead(q);
                continue;
            }
            if let Some(entry) = q.entries.get_mut(&id) {
                entry.waiting = true;
            }
            q = wake.wait(q).unwrap_or_else(|e| e.into_inner());
            if let Some(e) = q.entries.get_mut(&id) {
                e.waiting = false;
            }
        }
    }

    /// Commits the oldest queued events as one group and hands out their answers.
    fn lead<'a>(&'a self, mut q: MutexGuard<'a, Queue>) -> MutexGuard<'a, Queue> {
        q.leader_active = true;
        let n = q.order.len().min(self.max_batch);
        let ids: Vec<u64> = q.order.drain(..n).collect();
        let requests: Vec<EventRequest> = ids
            .iter()
            .filter_map(|i| q.entries.get_mut(i).and_then(|e| e.request.take()))
            .collect();
        drop(q);
        let count = requests.len();
        let answers = {
            let span = info_span!("group_commit", node = %self.meta.id, events = count);
            let _g = span.enter();
            // A panic inside the group must not leave `leader_active` set (every
            // later caller would wait forever): answer the group with an error;
            // the poisoned writer lock makes the next leader reload from storage.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut w = self.writer();
                let answers = w.commit_group(requests);
                // No sync engine is attached to this handle yet: the own changes
                // are durable in the store, where sync reads them.
                w.take_committed();
                answers
            }))
            .unwrap_or_else(|_| (0..count).map(|_| Err(NodeError::Stopped)).collect())
        };
        let mut q = self.queue();
        for (i, answer) in ids.iter().zip(answers) {
            if let Some(e) = q.entries.get_mut(i) {
                e.answer = Some(answer);
                e.wake.notify_one();
            }
        }
        q.leader_active = false;
        // Hand the lead to a caller that is waiting on a still-queued event.
        let next = q
            .order
            .iter()
            .filter_map(|i| q.entries.get(i))
            .find(|e| e.waiting)
            .map(|e| e.wake.clone());
        if let Some(w) = next {
            w.notify_one();
        }
        q
    }
}

/// A pending answer: resolves once the event is durable or refused.
///
/// Waiting drives the commit; a ticket dropped unwaited is still committed.
pub struct Ticket {
    shared: Arc<Shared>,
    id: u64,
    wake: Arc<Condvar>,
    done: bool,
}

impl Ticket {
    /// Waits for the answer.
    pub fn wait(mut self) -> Result<EventOutcome, NodeError> {
        self.done = true;
        self.shared.drive(self.id, &self.wake)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.shared.drive(self.id, &self.wake);
        }
    }
}

/// A handle on a running node; clones share the node.
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
}

impl Node {
    /// Loads the replica from `store` and makes the node ready.
    pub fn start<S: Store + 'static>(
        meta: NodeMeta,
        store: S,
        options: NodeOptions,
        clock: Clock,
    ) -> Result<Self, StoreError> {
        let writer = Writer::new(meta.clone(), Box::new(store), &options, clock)?;
        Ok(Self {
            shared: Arc::new(Shared {
                meta,
                queue: Mutex::new(Queue::default()),
                writer: Mutex::new(writer),
                max_batch: options.max_batch.max(1),
            }),
        })
    }

    /// The node's identity and place.
    pub fn meta(&self) -> &NodeMeta {
        &self.shared.meta
    }

    /// Queues an event; the ticket resolves once it is durable (or refused).
    pub fn submit(&self, req: EventRequest) -> Ticket {
        let wake = Arc::new(Condvar::new());
        let mut q = self.shared.queue();
        let id = q.next_id;
        q.next_id += 1;
        q.entries.insert(
            id,
            Entry {
                request: Some(req),
                answer: None,
                waiting: false,
                wake: wake.clone(),
            },
        );
        q.order.push_back(id);
        drop(q);
        Ticket {
            shared: self.shared.clone(),
            id,
            wake,
            done: false,
        }
    }

    /// Submits an event and waits until it is durable (or refused).
    pub fn execute(&self, req: EventRequest) -> Result<EventOutcome, NodeError> {
        self.submit(req).wait()
    }

    /// Runs `f` on the replica between group commits (it never sees staged state).
    pub fn query<R>(&self, f: impl FnOnce(&Replica) -> R) -> Result<R, NodeError> {
        let writer = self.shared.writer();
        writer.replica().map(f).ok_or(NodeError::Stopped)
    }

    /// Releases this handle (the store closes when the last handle goes).
    pub fn shutdown(self) {}
}
