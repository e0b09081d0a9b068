//! The sync protocol: messages, head signatures, and the pure state machine
//! that gossips changes between replicas (see docs/sync.md).

pub mod bundle;
pub mod engine;
mod inbound;
pub mod io;
pub mod message;
mod outbound;
pub mod signing;

pub use engine::{Effect, Input, SyncConfig, SyncEngine, SyncEvent, SyncStats};
pub use message::{Bundle, Message, WireError};
