//! What goes into and comes out of the sync engine: its configuration, inputs,
//! effects, reported events and work counters.

use crate::fleet::VerifiedRoster;
use crate::model::{NodeId, Position};
use crate::replica::CommittedChange;
use crate::store::{ChangeRange, RecoveredBatch, RemoteChange, StockRow, StoredChange};

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
    /// Most change bytes in one bundle (a relayed bundle may exceed it by the
    /// changes up to the next signed one).
    pub bundle_bytes: usize,
    /// Most out-of-order bundles held back until their gap is filled.
    pub max_parked: usize,
    /// Most bytes of changes held back that way, over all writers.
    pub max_parked_bytes: usize,
    /// Most bundles held back for one writer.
    pub max_parked_per_writer: usize,
    /// How long a held-back bundle waits for its gap before it is dropped.
    pub parked_ttl_ms: u64,
    /// Recent changes per writer kept in memory for eager push and relay.
    pub recent_per_writer: usize,
    /// Coalescing delay of eager pushes: 0 pushes each change at once; more
    /// gathers the changes of that many milliseconds into one signed bundle.
    pub push_delay_ms: u64,
    /// Least time between two sends of the same roster to a peer whose digests
    /// keep showing an older version (a peer that refuses it, or lost it).
    pub roster_resend_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            probe_interval_ms: 1_000,
            ack_timeout_ms: 3_000,
            window_bytes: 1 << 20,
            bundle_changes: 512,
            bundle_bytes: 1 << 20,
            max_parked: 256,
            max_parked_bytes: 32 << 20,
            max_parked_per_writer: 16,
            parked_ttl_ms: 30_000,
            recent_per_writer: 256,
            push_delay_ms: 0,
            roster_resend_ms: 10_000,
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
        /// Encoded message (see [`super::message::encode`]).
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
    /// Time passed; run what is due (see [`super::SyncEngine::poll_timeout`]).
    Tick,
    /// The replica's roster was replaced locally (an enrolment): send it to every peer.
    RosterInstalled,
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
        reason: RejectReason,
    },
    /// A peer holds changes signed with this node's own key that this node does
    /// not have: its data directory was restored from an older copy, or the
    /// key runs on a second device. The node stops taking events (its next
    /// change would reuse a position already taken) until its own history is
    /// recovered or it re-enrols under a new identity.
    OwnHistoryConflict {
        /// The peer the evidence came from.
        from: NodeId,
        /// This node's own head.
        held: Position,
        /// The own change seen, signed with this node's key.
        seen: Position,
    },
    /// Own changes a peer held (signed with this node's key, on its own chain
    /// beyond its head) were recovered as this node's own history.
    OwnHistoryRecovered {
        /// The peer they came from.
        from: NodeId,
        /// The own head now held.
        held: Position,
        /// The furthest own change any peer showed.
        seen: Position,
    },
    /// A writer signed two histories that disagree at `position` (a cloned
    /// device, a restored backup, a stolen key). The writer is frozen from
    /// that position on: no more of its changes there are applied or pushed.
    /// The proof was checked, stored and relayed to every peer.
    Fork {
        /// The peer the evidence came from (this node itself when it found it).
        from: NodeId,
        /// The writer that forked.
        writer: NodeId,
        /// The first position where the two histories differ.
        position: Position,
    },
    /// A peer refused this node's offer of `writer`'s changes up to `position`
    /// for a reason resending cannot cure; they are not offered to it again
    /// until it reconnects or a newer roster is installed.
    RefusedByPeer {
        /// The peer that refused.
        peer: NodeId,
        /// Whose changes.
        writer: NodeId,
        /// The last position it refused.
        position: Position,
        /// Its reason, as it stated it.
        reason: String,
    },
    /// A revoked (retired) writer signed changes after its revocation point:
    /// they were refused (nothing applied), and what they spent is reported,
    /// decoded from the verified changes, so HQ sees the units that left the
    /// store without rights as a deficit to reconcile.
    RetiredNodeWrote {
        /// The peer they came from.
        from: NodeId,
        /// The revoked writer.
        writer: NodeId,
        /// Its revocation point: its last accepted position.
        after: Position,
        /// The first and last refused positions of these changes.
        first: Position,
        /// See `first`.
        last: Position,
        /// Units consumed or granted beyond the counters this replica holds
        /// for the writer, per pool (absolute values, so a later report of
        /// the same writer supersedes an earlier one).
        spent: Vec<(crate::model::PoolKey, i64)>,
    },
    /// Remote changes were applied in memory but could not be made durable: they
    /// were dropped again (no ack, no relay); anti-entropy brings them back.
    PersistFailed {
        /// How many changes were lost.
        changes: usize,
        /// The storage error.
        error: String,
    },
}

/// Why a message or change from a peer was refused, typed so that a transport
/// can tell a forgery (disconnect, report) from a loss (the protocol repairs it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The bytes are not a message of this protocol.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A bundle's signature is not its writer's over its last change: a forgery
    /// (or corruption on a path that does not check integrity).
    #[error("forged: the bundle's signature is not its writer's")]
    Forgery,
    /// A bundle's changes do not parse or do not form one hash chain.
    #[error("bad chain: {0}")]
    BadChain(String),
    /// A change does not follow the last change held of its writer (a gap: an
    /// earlier change was lost; repair brings it).
    #[error("gap: change {got:?} does not follow {have:?}")]
    Gap {
        /// The last position held.
        have: Position,
        /// The change's position.
        got: Position,
    },
    /// The change's author is not the writer it is filed under.
    #[error("wrong author: {0}")]
    WrongAuthor(String),
    /// The change touches something other than its author's grow-only counters
    /// (lowers a counter, writes outside the counters, uses increments).
    #[error("forbidden write: {0}")]
    Forbidden(String),
    /// A counter would leave its range.
    #[error("a counter would overflow")]
    Overflow,
    /// The writer is not a member of the fleet (refused before its signature
    /// is checked; nothing of it is parked or relayed).
    #[error("the writer is not a member of the fleet")]
    NotMember,
    /// The writer was revoked; this change comes after its revocation point.
    #[error("the writer was revoked after {after:?}; change {got:?} is later")]
    Revoked {
        /// The writer's last position that stays accepted.
        after: Position,
        /// The refused change's position.
        got: Position,
    },
    /// The roster forbids the writer a counter the change writes (a location
    /// not its own, a mint by a channel, a grant to a non-member...).
    #[error("not permitted by the fleet roster: {0}")]
    NotPermitted(String),
    /// A roster that does not verify under this node's fleet id: another
    /// fleet's, or forged.
    #[error("a roster not signed by this fleet's authority: {0}")]
    ForeignRoster(String),
    /// A fork proof that proves nothing (a branch does not verify, or the
    /// branches agree).
    #[error("a fork proof that proves nothing: {0}")]
    BadForkProof(String),
}

impl From<crate::error::ChangeError> for RejectReason {
    fn from(e: crate::error::ChangeError) -> Self {
        use crate::error::ChangeError as C;
        match e {
            C::Malformed(s) => RejectReason::BadChain(s),
            C::WrongAuthor { claimed, actual } => {
                RejectReason::WrongAuthor(format!("authored by {actual}, filed under {claimed}"))
            }
            C::Forbidden(s) => RejectReason::Forbidden(s),
            C::OutOfOrder { have, got } => RejectReason::Gap { have, got },
            C::Event(_) => RejectReason::Overflow,
            C::NotMember => RejectReason::NotMember,
            C::Revoked { after, got } => RejectReason::Revoked { after, got },
            C::NotPermitted(e) => RejectReason::NotPermitted(e.to_string()),
        }
    }
}

impl From<super::bundle::BundleError> for RejectReason {
    fn from(e: super::bundle::BundleError) -> Self {
        match e {
            super::bundle::BundleError::BadSignature => RejectReason::Forgery,
            super::bundle::BundleError::WrongAuthor(i) => {
                RejectReason::WrongAuthor(format!("change {i} is not by the bundle's writer"))
            }
            other => RejectReason::BadChain(other.to_string()),
        }
    }
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
    /// Read the stored changes `range` asks for and answer with [`Input::Loaded`].
    Load {
        /// The peer they are for.
        peer: NodeId,
        /// What to read (`after` is what the peer already holds in that epoch).
        range: ChangeRange,
    },
    /// Make a remote change durable (store's `commit_remote`; consecutive
    /// persists of one `handle` call may share a transaction).
    Persist(RemoteChange),
    /// Store this roster, just installed in the replica (store's `set_roster`).
    PersistRoster(VerifiedRoster),
    /// Store this checked fork proof (store's `record_fork`).
    PersistFork(super::fork::ForkProof),
    /// Make own changes recovered from a peer durable, with their journal rows
    /// and the stock rows they changed (store's `commit_recovered`, one
    /// transaction per bundle). The replica holds them already: if this fails,
    /// rebuild it from the store.
    RecoverOwn {
        /// The recovered changes, events and holds.
        batch: RecoveredBatch,
        /// Stock rows of the pools they touched, as they stand after them.
        stock: Vec<StockRow>,
    },
    /// Remember that a peer showed own history up to this position (store's
    /// `record_own_seen`): until the node holds it, it takes no events.
    PersistOwnSeen(Position),
    /// Report an event (log it, count it).
    Report(SyncEvent),
    /// A rights-exchange message from a connected peer, for the node's
    /// rebalancing desk (the engine only decodes and routes it).
    Rights {
        /// The peer it came from.
        from: NodeId,
        /// A request or an answer.
        message: RightsMessage,
    },
}

/// A rights-exchange message (see [`crate::rebalance`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RightsMessage {
    /// A peer asks for rights.
    Request(crate::rebalance::RightsRequest),
    /// A peer answers an earlier request.
    Answer(crate::rebalance::RightsAnswer),
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
    /// Bundles held back until a gap is filled (now).
    pub parked_bundles: usize,
    /// Bytes of those bundles (now).
    pub parked_bytes: usize,
}
