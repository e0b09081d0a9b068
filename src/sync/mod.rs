//! The sync protocol: messages, head signatures, and the pure state machine
//! that gossips changes between replicas (see docs/sync.md).

pub(crate) mod bundle;
mod engine;
mod equivocation;
pub mod fork;
mod inbound;
mod io;
mod lag;
pub mod message;
mod outbound;
mod parked;
mod reconcile;
mod refusal;
mod retired;
mod roster;
pub mod signing;

pub use engine::{
    Effect, Input, RejectReason, RightsMessage, SyncConfig, SyncEngine, SyncEvent, SyncStats,
};
pub use equivocation::MAX_FORKS;
pub use fork::{Fork, ForkProof, ForkProofError};
pub use lag::PeerLag;
pub use message::{Bundle, Message, WireError};
