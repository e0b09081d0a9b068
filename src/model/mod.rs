//! The vocabulary: ids, quantities and events. Plain data, no behaviour beyond validation.

pub mod event;
pub mod ids;
pub mod node_meta;
pub mod quantity;

pub use event::{EventKind, EventOutcome, EventRequest, Policy, Position};
pub use ids::{EventId, LocationId, NodeId, PoolKey, ReasonCode, ReservationId, Sku, TransferId};
pub use node_meta::{NodeMeta, Role};
pub use quantity::Quantity;
