//! Leader/follower group commit.
//!
//! There is no commit thread. A caller queues its event and waits for its
//! answer; when no leader is active, a waiting caller becomes the leader: it
//! takes up to `max_batch` queued events, decides and commits them in one
//! transaction, hands their committed change to the sync engine, hands out the
//! answers and, if events are still queued, wakes one waiting caller to lead
//! the next group. A caller alone pays no thread hand-off; concurrent callers
//! share each commit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, MutexGuard};

use tracing::info_span;

use super::writer::Answer;
use super::Shared;
use crate::error::NodeError;
use crate::model::{EventOutcome, EventRequest};

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

/// Submitted events and who leads.
#[derive(Default)]
pub(super) struct Queue {
    entries: HashMap<u64, Entry>,
    /// Ids of events not yet taken by a leader, oldest first.
    order: VecDeque<u64>,
    next_id: u64,
    leader_active: bool,
}

impl Queue {
    /// Queues `req`; returns its id and the condition variable its caller waits on.
    pub(super) fn push(&mut self, req: EventRequest) -> (u64, Arc<Condvar>) {
        let wake = Arc::new(Condvar::new());
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(
            id,
            Entry {
                request: Some(req),
                answer: None,
                waiting: false,
                wake: wake.clone(),
            },
        );
        self.order.push_back(id);
        (id, wake)
    }
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // The queue holds plain data and every update to it is a single step, so a
        // panic elsewhere cannot leave it half-changed.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
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
            // the poisoned core lock makes the next user reload from storage.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut core = self.core();
                if let Some(refusal) = core.history_refusal() {
                    return (0..count).map(|_| Err(refusal.error())).collect();
                }
                let kinds: Vec<crate::model::EventKind> =
                    requests.iter().map(|r| r.kind.clone()).collect();
                let answers = core.writer.commit_group(requests);
                core.flush_deltas();
                // The committed change goes to the sync engine before any caller
                // hears back: an acknowledged sale is already on its way out.
                for change in core.writer.take_committed() {
                    self.run(&mut core, crate::sync::Input::LocalCommitted(change));
                }
                self.after_commit(&mut core, &kinds, &answers);
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
    pub(super) shared: Arc<Shared>,
    pub(super) id: u64,
    pub(super) wake: Arc<Condvar>,
    pub(super) done: bool,
    /// The event's kind slot in the node's counters; `None` when the caller
    /// counts the answer itself ([`super::Node::execute`] counts its final answer).
    pub(super) counted: Option<usize>,
}

impl Ticket {
    /// Waits for the answer.
    pub fn wait(mut self) -> Result<EventOutcome, NodeError> {
        self.done = true;
        let answer = self.shared.drive(self.id, &self.wake);
        self.count(&answer);
        answer
    }

    fn count(&self, answer: &Result<EventOutcome, NodeError>) {
        if let Some(kind) = self.counted {
            self.shared.counters.record(kind, answer);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            let answer = self.shared.drive(self.id, &self.wake);
            self.count(&answer);
        }
    }
}
