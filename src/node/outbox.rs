//! Messages the sync engine produced, waiting for a transport to send them.
//!
//! Bounded per peer: the engine's window already limits unacknowledged change
//! bytes, so the queue only overflows when a transport stops draining it. Then
//! the newest messages are dropped and counted; the protocol's timers (ack
//! timeout, probes) repair what was lost once the transport drains again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::model::NodeId;

/// One encoded message for a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The receiver.
    pub to: NodeId,
    /// The encoded message (see [`crate::sync::message::encode`]).
    pub message: Vec<u8>,
}

#[derive(Default)]
struct Queues {
    order: VecDeque<Outgoing>,
    bytes: HashMap<NodeId, usize>,
    dropped: u64,
}

/// The queue of outgoing messages, shared by the node and its transport.
pub(crate) struct Outbox {
    queues: Mutex<Queues>,
    ready: Condvar,
    max_bytes_per_peer: usize,
}

impl Outbox {
    pub(crate) fn new(max_bytes_per_peer: usize) -> Self {
        Self {
            queues: Mutex::new(Queues::default()),
            ready: Condvar::new(),
            max_bytes_per_peer: max_bytes_per_peer.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queues> {
        // Every update below is a single step on plain collections.
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `message` for `to`, or drops it when `to`'s queue is full.
    pub(crate) fn push(&self, to: NodeId, message: Vec<u8>) {
        let mut q = self.lock();
        let queued = q.bytes.entry(to).or_default();
        if *queued + message.len() > self.max_bytes_per_peer {
            q.dropped += 1;
            return;
        }
        *queued += message.len();
        q.order.push_back(Outgoing { to, message });
        drop(q);
        self.ready.notify_all();
    }

    /// Forgets every queued message for `peer` (its connection is gone).
    pub(crate) fn purge(&self, peer: &NodeId) {
        let mut q = self.lock();
        q.order.retain(|o| o.to != *peer);
        q.bytes.remove(peer);
    }

    /// Takes every queued message, oldest first.
    pub(crate) fn take(&self) -> Vec<Outgoing> {
        let mut q = self.lock();
        q.bytes.clear();
        q.order.drain(..).collect()
    }

    /// Like [`Outbox::take`], but waits up to `timeout` for a first message.
    pub(crate) fn wait(&self, timeout: Duration) -> Vec<Outgoing> {
        let q = self.lock();
        let (mut q, _) = self
            .ready
            .wait_timeout_while(q, timeout, |q| q.order.is_empty())
            .unwrap_or_else(|e| e.into_inner());
        q.bytes.clear();
        q.order.drain(..).collect()
    }

    /// Messages dropped because a peer's queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Bytes queued, over all peers.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.lock().bytes.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_peer_queue_drops_and_counts_and_others_still_flow() {
        let (a, b) = (NodeId([1; 32]), NodeId([2; 32]));
        let o = Outbox::new(10);
        o.push(a, vec![0; 6]);
        o.push(a, vec![0; 6]);
        o.push(b, vec![0; 6]);
        assert_eq!(o.dropped(), 1);
        assert_eq!(o.queued_bytes(), 12);
        let sent = o.take();
        assert_eq!(sent.iter().map(|s| s.to).collect::<Vec<_>>(), vec![a, b]);
        // Draining makes room again.
        o.push(a, vec![0; 6]);
        assert_eq!(o.take().len(), 1);
        o.push(a, vec![0; 6]);
        o.purge(&a);
        assert!(o.wait(Duration::from_millis(1)).is_empty());
    }
}
