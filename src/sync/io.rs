//! What goes into and comes out of the sync engine: its configuration, inputs,
//! effects, reported events and work counters.

use crate::model::{NodeId, Position};
use crate::replica::CommittedChange;
use crate::store::{RemoteChange, StoredChange};

/// Tunables of the protocol.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Anti-entropy period per peer.
    pub probe_interval_ms: u64,
    /// Unacknowledged bytes after which the window to a peer is reset and repaired.
    pub ack_timeout_ms: u64,
    /// Most unacknowledged bytes in flight to one peer (back-pressure).
    pub window_bytes: usize,
    /// Most changes in one bundle.
    pub bundle_changes: usize,
    /// Most out-of-order bundles held back until their gap is filled.
    pub max_parked: usize,
    /// Recent changes per writer kept in memory for eager push and relay.
    pub recent_per_writer: usize,
    /// Coalescing delay of eager pushes: 0 pushes each change at once; more
    /// gathers the changes of that many milliseconds into one signed bundle.
    pub push_delay_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            probe_interval_ms: 1_000,
            ack_timeout_ms: 3_000,
            window_bytes: 1 << 20,
            bundle_changes: 512,
            max_parked: 256,
            recent_per_writer: 256,
            push_delay_ms: 0,
        }
    }
}

/// What happened, from the outside.
#[derive(Debug)]
pub enum Input {
    /// A connection to an authenticated peer is up.
    PeerUp(NodeId),
    /// The connection to a peer is gone.
    PeerDown(NodeId),
    /// A message arrived from a peer.
    Received {
        /// Sender.
        from: NodeId,
        /// Encoded message (see [`message::encode`]).
        message: Vec<u8>,
    },
    /// An own change was made durable.
    LocalCommitted(CommittedChange),
    /// The answer to an [`Effect::Load`].
    Loaded {
        /// The peer the load was for.
        peer: NodeId,
        /// Whose changes.
        writer: NodeId,
        /// The stored changes, in order.
        changes: Vec<StoredChange>,
    },
    /// Time passed; run what is due (see [`SyncEngine::poll_timeout`]).
    Tick,
}

/// Something the protocol reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent {
    /// A change of `writer` was applied.
    Applied {
        /// The peer it came from.
        from: NodeId,
        /// Its writer.
        writer: NodeId,
        /// Its position.
        position: Position,
    },
    /// A message or change from `from` was refused; nothing of it was applied or relayed.
    Rejected {
        /// The peer it came from.
        from: NodeId,
        /// The writer it claimed, if it got that far.
        writer: Option<NodeId>,
        /// Why.
        reason: String,
    },
}

/// What the caller must do.
#[derive(Debug)]
pub enum Effect {
    /// Send an encoded message to a peer.
    Send {
        /// Receiver.
        to: NodeId,
        /// Encoded message.
        message: Vec<u8>,
    },
    /// Read at most `limit` stored changes of `writer` in `epoch` after `after`,
    /// and answer with [`Input::Loaded`].
    Load {
        /// The peer they are for.
        peer: NodeId,
        /// Whose changes.
        writer: NodeId,
        /// Which epoch.
        epoch: u32,
        /// Sequence number already held by the peer in that epoch.
        after: u64,
        /// Most changes to read.
        limit: usize,
    },
    /// Make a remote change durable (store's `commit_remote`; consecutive
    /// persists of one `handle` call may share a transaction).
    Persist(RemoteChange),
    /// Report an event (log it, count it).
    Report(SyncEvent),
}

/// Counters of the protocol's work, for benches and the hub.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Bytes of messages sent.
    pub bytes_sent: u64,
    /// Messages sent.
    pub messages_sent: u64,
    /// Bytes of messages received.
    pub bytes_received: u64,
    /// Remote changes applied.
    pub changes_applied: u64,
    /// Messages or changes refused.
    pub rejected: u64,
}
