//! The checker's own account of what one event does: its own match over the
//! event kinds, written here from the documented semantics and independent of
//! the product's rule (`escrow::plan`) and counter mapping
//! (`escrow::counter_deltas`).

use crate::escrow::{Share, TransferLeg};
use crate::model::{EventKind, EventRequest, NodeId, Policy, ReservationId};

/// One node's part of one pool, as the model counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Units the node brought in.
    pub minted: i64,
    /// Units the node took out.
    pub consumed: i64,
    /// Units the node put on hold.
    pub reserved: i64,
    /// Held units the node released or fulfilled.
    pub released: i64,
    /// Rights other nodes granted to it.
    pub granted_in: i64,
    /// Rights it granted to other nodes.
    pub granted_out: i64,
}

impl Tally {
    /// The raw sums of a replica's share (the product's formulas are not used).
    pub fn of(s: &Share) -> Self {
        Self {
            minted: s.minted,
            consumed: s.consumed,
            reserved: s.reserved,
            released: s.released,
            granted_in: s.granted_in,
            granted_out: s.granted_out,
        }
    }

    /// Units on hold.
    pub fn held(&self) -> i64 {
        self.reserved - self.released
    }

    /// Units the node may consume alone; negative is a shortfall.
    pub fn rights(&self) -> i64 {
        self.minted + self.granted_in - self.granted_out - self.consumed - self.held()
    }

    /// The node's own counters (everything but what others granted it).
    pub fn own(&self) -> [i64; 5] {
        [
            self.minted,
            self.consumed,
            self.reserved,
            self.released,
            self.granted_out,
        ]
    }
}

/// How an event must be covered by its node's rights.
pub(super) enum Cover {
    /// It takes no rights.
    Free,
    /// It takes this many rights, deciding a shortfall under this policy.
    Takes(i64, Policy),
    /// It asks for `record` but promises stock not in hand: it must be refused.
    Refuse,
}

pub(super) fn cover(req: &EventRequest) -> Cover {
    let q = req.qty.as_i64();
    match &req.kind {
        EventKind::OnlineOrder | EventKind::Grant { .. } | EventKind::Reserve { .. } => {
            match req.policy {
                Some(Policy::Record) => Cover::Refuse,
                _ => Cover::Takes(q, Policy::Strict),
            }
        }
        EventKind::Adjustment {
            increase: false, ..
        } => Cover::Takes(q, req.policy.unwrap_or(Policy::Record)),
        EventKind::Sale | EventKind::TransferOut { .. } => {
            Cover::Takes(q, req.policy.unwrap_or(Policy::Strict))
        }
        EventKind::Return
        | EventKind::Receipt
        | EventKind::Adjustment { increase: true, .. }
        | EventKind::TransferIn { .. }
        | EventKind::Release { .. }
        | EventKind::Fulfil { .. } => Cover::Free,
    }
}

/// What a hold event does to its reservation.
#[derive(Clone)]
pub(super) enum HoldChange {
    Open(ReservationId, i64),
    Take(ReservationId, i64),
}

/// What one event does to its node's counters (and a grant to the receiver's).
#[derive(Default)]
pub(super) struct Effect {
    pub(super) own: Tally,
    pub(super) grant_to: Option<NodeId>,
    pub(super) shipped: Option<TransferLeg>,
    pub(super) received: Option<TransferLeg>,
    pub(super) hold: Option<HoldChange>,
}

pub(super) fn effect(req: &EventRequest) -> Effect {
    let q = req.qty.as_i64();
    let leg = |transfer: &crate::model::TransferId, from, to| TransferLeg {
        transfer: transfer.clone(),
        from,
        to,
        sku: req.pool.sku.clone(),
    };
    let mut e = Effect::default();
    match &req.kind {
        EventKind::Sale
        | EventKind::OnlineOrder
        | EventKind::Adjustment {
            increase: false, ..
        } => e.own.consumed = q,
        EventKind::Receipt | EventKind::Return | EventKind::Adjustment { increase: true, .. } => {
            e.own.minted = q
        }
        EventKind::TransferOut { to, transfer } => {
            e.own.consumed = q;
            e.shipped = Some(leg(transfer, req.pool.location.clone(), to.clone()));
        }
        EventKind::TransferIn { from, transfer } => {
            e.own.minted = q;
            e.received = Some(leg(transfer, from.clone(), req.pool.location.clone()));
        }
        EventKind::Reserve { reservation } => {
            e.own.reserved = q;
            e.hold = Some(HoldChange::Open(reservation.clone(), q));
        }
        EventKind::Release { reservation } => {
            e.own.released = q;
            e.hold = Some(HoldChange::Take(reservation.clone(), q));
        }
        EventKind::Fulfil { reservation } => {
            e.own.released = q;
            e.own.consumed = q;
            e.hold = Some(HoldChange::Take(reservation.clone(), q));
        }
        EventKind::Grant { to } => {
            e.own.granted_out = q;
            e.grant_to = Some(*to);
        }
    }
    e
}

pub(super) fn add(t: &mut Tally, d: &Tally) {
    t.minted += d.minted;
    t.consumed += d.consumed;
    t.reserved += d.reserved;
    t.released += d.released;
    t.granted_in += d.granted_in;
    t.granted_out += d.granted_out;
}
