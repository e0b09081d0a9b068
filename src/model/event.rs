//! Events: what happens to stock, as requested by a caller, and what came of it.

use serde::{Deserialize, Serialize};

use super::ids::{
    EventId, LocationId, NodeId, PoolKey, ReasonCode, ReservationId, Sku, TransferId,
};
use super::quantity::Quantity;

/// Longest reference an event may carry, in bytes: it travels in the change's
/// audit line, so it bounds the size of every change (see docs/sync.md).
pub const MAX_REFERENCE: usize = 256;

/// What a node does when its rights do not cover a consumption.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Refuse with [`crate::error::EventError::InsufficientRights`].
    Strict,
    /// Accept (the units were in hand) and record the shortfall as a deficit.
    Record,
}

impl std::str::FromStr for Policy {
    type Err = crate::error::InputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" => Ok(Policy::Strict),
            "record" => Ok(Policy::Record),
            other => Err(crate::error::InputError::BadPolicy(other.to_string())),
        }
    }
}

/// The kinds of event, with what each needs beyond SKU and quantity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A till sold units.
    Sale,
    /// A customer brought units back.
    Return,
    /// Goods in from a supplier.
    Receipt,
    /// Units leave for another location; in transit until received.
    TransferOut {
        /// Destination.
        to: LocationId,
        /// Transfer id shared by both ends.
        transfer: TransferId,
    },
    /// Units arrive from another location.
    TransferIn {
        /// Origin.
        from: LocationId,
        /// Transfer id shared by both ends.
        transfer: TransferId,
    },
    /// A count, damage or shrinkage correction.
    Adjustment {
        /// True adds units, false removes them.
        increase: bool,
        /// Why.
        reason: ReasonCode,
    },
    /// An order from an online channel.
    OnlineOrder,
    /// Hold units for an order: they stay on hand but are no longer available.
    Reserve {
        /// The hold's id.
        reservation: ReservationId,
    },
    /// Give held units back to availability.
    Release {
        /// The hold's id.
        reservation: ReservationId,
    },
    /// Ship held units: they leave the pool.
    Fulfil {
        /// The hold's id.
        reservation: ReservationId,
    },
    /// Hand some of this node's rights to another node.
    Grant {
        /// Receiver.
        to: NodeId,
    },
}

impl EventKind {
    /// A short lower-case name for logs, tables and JSON.
    pub fn label(&self) -> &'static str {
        match self {
            EventKind::Sale => "sale",
            EventKind::Return => "return",
            EventKind::Receipt => "receipt",
            EventKind::TransferOut { .. } => "transfer_out",
            EventKind::TransferIn { .. } => "transfer_in",
            EventKind::Adjustment { .. } => "adjustment",
            EventKind::OnlineOrder => "online_order",
            EventKind::Reserve { .. } => "reserve",
            EventKind::Release { .. } => "release",
            EventKind::Fulfil { .. } => "fulfil",
            EventKind::Grant { .. } => "grant",
        }
    }

    /// False for events that promise stock not in hand (online orders, grants,
    /// reservations): they are always `strict`. Till sales, shipments out and
    /// counted removals move units that are physically there, so `record` may accept
    /// a shortfall.
    pub fn may_record(&self) -> bool {
        !matches!(
            self,
            EventKind::OnlineOrder | EventKind::Grant { .. } | EventKind::Reserve { .. }
        )
    }

    /// The policy used when the caller names none.
    ///
    /// Negative adjustments are counted facts, so they record a deficit; every
    /// other consumption refuses unless the caller asks for `record` (allowed only
    /// where [`EventKind::may_record`] says the units are in hand).
    pub fn default_policy(&self) -> Policy {
        match self {
            EventKind::Adjustment {
                increase: false, ..
            } => Policy::Record,
            _ => Policy::Strict,
        }
    }
}

/// An event as a caller asks for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EventRequest {
    /// Idempotency key: the same id twice is applied once.
    pub id: EventId,
    /// Which pool: the location (the node's home location when built by the CLI) and SKU.
    pub pool: PoolKey,
    /// How many units.
    pub qty: Quantity,
    /// What happened.
    pub kind: EventKind,
    /// Overrides the kind's default policy.
    pub policy: Option<Policy>,
    /// Free reference for the audit trail (receipt number, order id...), at
    /// most [`MAX_REFERENCE`] bytes.
    pub reference: Option<String>,
}

impl EventRequest {
    /// Checks what the types cannot: the reference's length.
    pub fn validate(&self) -> Result<(), crate::error::InputError> {
        match &self.reference {
            Some(r) if r.len() > MAX_REFERENCE => Err(crate::error::InputError::TooLong {
                what: "reference",
                len: r.len(),
                max: MAX_REFERENCE,
            }),
            _ => Ok(()),
        }
    }

    /// A request with no policy override and no reference.
    pub fn new(
        id: EventId,
        location: LocationId,
        sku: Sku,
        qty: Quantity,
        kind: EventKind,
    ) -> Self {
        Self {
            id,
            pool: PoolKey::new(location, sku),
            qty,
            kind,
            policy: None,
            reference: None,
        }
    }

    /// The policy in force for this request.
    pub fn effective_policy(&self) -> Policy {
        self.policy.unwrap_or_else(|| self.kind.default_policy())
    }
}

/// Where a committed change sits in its writer's history.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Position {
    /// History epoch (a new one starts at each compaction).
    pub epoch: u32,
    /// Change number within the epoch, from 1.
    pub seq: u64,
}

/// What an accepted event did, returned to the caller once it is durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventOutcome {
    /// The event's id.
    pub id: EventId,
    /// Kind label.
    pub kind: String,
    /// The pool it touched.
    pub pool: PoolKey,
    /// Units.
    pub qty: u64,
    /// Units consumed beyond this node's rights (non-zero only under `record`).
    pub deficit_created: u64,
    /// This node's rights in the pool after the event (negative means a deficit).
    pub rights_after: i64,
    /// The pool's on-hand count in this node's view after the event.
    pub on_hand_after: i64,
    /// The change that carries it.
    pub position: Position,
    /// True when this is the stored result of an earlier call with the same id.
    pub replayed: bool,
}
