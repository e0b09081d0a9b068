//! The vocabulary: ids, quantities and events. Plain data, no behaviour beyond validation.

mod event;
mod ids;
mod node_meta;
mod quantity;

pub use event::{EventKind, EventOutcome, EventRequest, Policy, Position, MAX_REFERENCE};
pub use ids::{EventId, LocationId, NodeId, PoolKey, ReasonCode, ReservationId, Sku, TransferId};
pub use node_meta::{NodeMeta, Role};
pub use quantity::{parse_delta, Quantity, MAX_QUANTITY};
