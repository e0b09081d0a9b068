//! Error types, one enum per kind of operation.

use crate::model::{EventId, PoolKey, ReservationId, Sku};

/// A value from a user or a peer that is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// Quantities must be at least 1.
    #[error("quantity must be at least 1")]
    ZeroQuantity,
    /// Quantities are counts of units, never negative.
    #[error("quantity {0} is negative: give a positive count (use `adjust` with a negative delta to remove units)")]
    NegativeQuantity(String),
    /// Not a whole number.
    #[error("{0:?} is not a whole number of units")]
    NotANumber(String),
    /// Larger than one event may carry.
    #[error("quantity {value} is larger than the maximum of {max} per event")]
    QuantityTooLarge {
        /// The text given.
        value: String,
        /// The maximum.
        max: u64,
    },
    /// An empty name.
    #[error("{what} must not be empty")]
    Empty {
        /// Which name.
        what: &'static str,
    },
    /// A name over the length limit.
    #[error("{what} is {len} bytes long; the maximum is {max}")]
    TooLong {
        /// Which name.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A name with a character outside `A-Z a-z 0-9 - _ . : / # +`.
    #[error("{what} contains {ch:?}; allowed are A-Z a-z 0-9 and - _ . : / # +")]
    BadChar {
        /// Which name.
        what: &'static str,
        /// The first bad character.
        ch: char,
    },
    /// Not 64 hex digits.
    #[error("a node id is 64 hex digits")]
    BadNodeId,
    /// Not `strict` or `record`.
    #[error("policy {0:?} is unknown: use strict or record")]
    BadPolicy(String),
    /// Not one of till, store, hub, channel.
    #[error("role {0:?} is unknown: use till, store, hub or channel")]
    BadRole(String),
    /// A node name outside the allowed form.
    #[error("node name {0:?} must be 1 to 64 characters of A-Z a-z 0-9 - _ .")]
    BadNodeName(String),
    /// Not a counter key of the replica's format.
    #[error("malformed counter key {0:?}")]
    BadCounterKey(String),
}

/// Why the escrow rule or the event model refused an event. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The node's rights do not cover the consumption under `strict`.
    #[error("insufficient rights for {pool}: {available} available, {requested} requested (rebalance first; a till sale of units in hand may use --policy record)")]
    InsufficientRights {
        /// The pool.
        pool: PoolKey,
        /// This node's rights (never shown below 0).
        available: i64,
        /// What was asked.
        requested: u64,
    },
    /// `record` was asked for an event that promises stock not in hand.
    #[error("policy record is not allowed for {kind}: it promises stock not in hand; use strict")]
    RecordNotAllowed {
        /// Kind label.
        kind: &'static str,
    },
    /// No pool or transfer has ever mentioned this SKU.
    #[error("unknown SKU {0}: receive it first")]
    UnknownSku(Sku),
    /// The id was used before for a different event.
    #[error("event id {id} was already used for a different event; use a new id")]
    DuplicateEvent {
        /// The id.
        id: EventId,
    },
    /// A counter would leave its range.
    #[error("a counter would overflow")]
    Overflow,
    /// A node cannot grant rights to itself.
    #[error("a node cannot grant rights to itself")]
    SelfGrant,
    /// A transfer whose other end is the pool's own location.
    #[error("transfer {transfer} names the pool's own location {location} as its other end; a transfer moves units between two locations")]
    TransferToSameLocation {
        /// The transfer id.
        transfer: crate::model::TransferId,
        /// The pool's location.
        location: crate::model::LocationId,
    },
    /// The reservation id is open already.
    #[error("reservation {0} is already open")]
    ReservationExists(ReservationId),
    /// No open reservation has this id.
    #[error("no open reservation {0} on this node")]
    UnknownReservation(ReservationId),
    /// The reservation belongs to another pool.
    #[error("reservation {0} holds another SKU or location")]
    ReservationPoolMismatch(ReservationId),
    /// More units than the reservation holds.
    #[error("reservation {reservation} holds {outstanding} units, {requested} requested")]
    ReservationExceeded {
        /// The reservation.
        reservation: ReservationId,
        /// Units still held.
        outstanding: i64,
        /// What was asked.
        requested: u64,
    },
    /// The fleet roster forbids this node the event's counter writes; nothing changed.
    #[error("not permitted by the fleet roster: {0}")]
    NotPermitted(crate::fleet::RosterError),
    /// A strict consumption short of rights borrowed from connected peers
    /// until its deadline and is still short; the report says what it had,
    /// what it asked and who answered what.
    #[error("{0}")]
    InsufficientAfterBorrow(Box<crate::rebalance::BorrowReport>),
    /// A malformed value.
    #[error(transparent)]
    Input(#[from] InputError),
}

/// Why a change from another writer was rejected. Nothing was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// The bytes are not an Automerge change.
    #[error("malformed change: {0}")]
    Malformed(String),
    /// The change's actor is not the writer it claims to be from.
    #[error("change authored by {actual} claims writer {claimed}")]
    WrongAuthor {
        /// Claimed writer.
        claimed: String,
        /// The change's actor.
        actual: String,
    },
    /// The change touches something other than its author's grow-only counters.
    #[error("change breaks the counter rules: {0}")]
    Forbidden(String),
    /// The change does not follow the writer's previous change.
    #[error("change {got:?} does not follow {have:?}")]
    OutOfOrder {
        /// The last position held.
        have: crate::model::Position,
        /// The change's position.
        got: crate::model::Position,
    },
    /// The counter values would overflow.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The writer is not a member of the fleet.
    #[error("the writer is not a member of the fleet")]
    NotMember,
    /// The writer was revoked before this change.
    #[error("the writer was revoked after {after:?}; change {got:?} is later")]
    Revoked {
        /// The writer's last position that stays accepted.
        after: crate::model::Position,
        /// The change's position.
        got: crate::model::Position,
    },
    /// The roster forbids the writer a counter this change writes.
    #[error("not permitted by the fleet roster: {0}")]
    NotPermitted(crate::fleet::RosterError),
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another stocksync process")]
    Locked(String),
    /// The directory holds no initialized node.
    #[error("no node in {0}: run `stocksync init` first")]
    NotInitialized(String),
    /// `init` on a directory that already has a node.
    #[error("{0} already holds a node; choose another directory")]
    AlreadyInitialized(String),
    /// The database file is not a readable stocksync database.
    #[error("database is corrupt or not a stocksync database: {0}; nothing was changed (restore a backup or re-init under a new identity)")]
    Corrupt(String),
    /// The schema is newer than this program.
    #[error("database schema version {found} is newer than this program's {supported}; upgrade stocksync")]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Highest version known.
        supported: i64,
    },
    /// The disk is full.
    #[error("disk full: the event was not recorded")]
    DiskFull,
    /// A failure reported again to every caller of a failed group commit.
    #[error("commit failed: {0}")]
    Failed(String),
    /// Any other SQLite failure.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file-system failure.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The stored Automerge data does not load.
    #[error("stored replica data does not load: {0}")]
    Replica(String),
    /// The stored fleet roster does not fit the node's configured fleet id.
    #[error("stored fleet roster: {0}")]
    Roster(String),
}

impl StoreError {
    /// A copy for each caller of a failed group commit (typed where it matters).
    pub fn duplicate(&self) -> StoreError {
        match self {
            StoreError::DiskFull => StoreError::DiskFull,
            StoreError::Corrupt(s) => StoreError::Corrupt(s.clone()),
            other => StoreError::Failed(other.to_string()),
        }
    }
}

/// Why an operation on a running node failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The event was refused; nothing changed.
    #[error(transparent)]
    Event(#[from] EventError),
    /// Storage failed; the event was not acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The node cannot take events (its replica failed to reload, or a group panicked).
    #[error("node is stopped")]
    Stopped,
    /// A peer showed changes signed with this node's key that this node does
    /// not hold (a restored backup or a cloned key): writing now would reuse
    /// their positions. Recover the history or re-enrol under a new identity.
    #[error("own history conflict: peers hold this node's changes up to {seen:?}, this node holds {held:?}; it takes no events until its history is recovered or it re-enrols under a new identity")]
    OwnHistoryConflict {
        /// The own head this node holds.
        held: crate::model::Position,
        /// The newest own change seen at a peer.
        seen: crate::model::Position,
    },
    /// Peers showed this node its own history beyond the head it holds (its
    /// data directory was restored from an older copy) on the same chain: it
    /// is recovering those changes and takes no events until it holds them
    /// (its next change would otherwise reuse their positions).
    #[error("recovering own history: peers showed this node's changes up to {seen:?}, it holds {held:?}; it takes events again once it holds them")]
    Recovering {
        /// The own head this node holds.
        held: crate::model::Position,
        /// The furthest own change a peer showed.
        seen: crate::model::Position,
    },
    /// Peers showed this node its own history in a later epoch than the head
    /// it holds (its directory was restored from a copy taken before an epoch
    /// roll-over). Peers send only a writer's newest epoch, whose snapshot does
    /// not commit to the change before it, so the node cannot check it
    /// continues its own chain: recovery across an epoch roll is not built.
    #[error("own history seen in a later epoch: peers hold this node's changes up to {seen:?}, it holds {held:?}; recovery across an epoch roll-over is not built: it takes no events; re-enrol it under a new identity")]
    OwnHistoryInLaterEpoch {
        /// The own head this node holds.
        held: crate::model::Position,
        /// The furthest own change a peer showed.
        seen: crate::model::Position,
    },
    /// Sync was asked of a node whose store may lose acknowledged commits on
    /// power loss: it could then send changes it later forgets and reuse their
    /// positions (a fork). Open the store with full durability to sync.
    #[error("this node's store is not durable (synchronous=NORMAL): it cannot sync; open it with full durability")]
    NotDurable,
    /// A roster offered to the node was not installed.
    #[error(transparent)]
    Roster(#[from] crate::fleet::InstallError),
}

impl NodeError {
    /// True when the escrow rule refused the event (CLI exit code 3).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            NodeError::Event(
                EventError::InsufficientRights { .. } | EventError::InsufficientAfterBorrow(_)
            )
        )
    }
}
