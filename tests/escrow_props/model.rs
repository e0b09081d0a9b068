//! The reference model: what the escrow rule must answer for an event, what an
//! accepted event does to rights and on-hand counts, and what `apply_remote` must
//! answer for a delivered change under per-writer, in-order delivery.

use stocksync::error::EventError;
use stocksync::model::{EventKind, EventRequest, NodeId, Policy, Position};
use stocksync::replica::Replica;

/// What an accepted event does to the node's rights and the pool's on-hand count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Class {
    Mint,
    Consume,
    Grant,
    Reserve,
    Release,
    Fulfil,
}

impl Class {
    /// `(Δ own rights, Δ on_hand)` for quantity `q`.
    pub(crate) fn deltas(self, q: i64) -> (i64, i64) {
        match self {
            Class::Mint => (q, q),
            Class::Consume => (-q, -q),
            Class::Grant => (-q, 0),
            Class::Reserve => (-q, 0),
            Class::Release => (q, 0),
            Class::Fulfil => (0, -q),
        }
    }
}

/// What the escrow rule must answer for `req` on replica `r` of node `me`:
/// `Ok(deficit_created)` or the refusal.
pub(crate) fn oracle(
    r: &Replica,
    me: NodeId,
    req: &EventRequest,
    class: Class,
) -> Result<u64, EventError> {
    let book = r.book();
    let q = req.qty.as_i64();
    let rights = book.rights(&req.pool, &me);
    let known = book.knows_sku(&req.pool.sku);
    let consume = |policy: Policy| -> Result<u64, EventError> {
        if !known {
            return Err(EventError::UnknownSku(req.pool.sku.clone()));
        }
        if q <= rights {
            Ok(0)
        } else if policy == Policy::Strict {
            Err(EventError::InsufficientRights {
                pool: req.pool.clone(),
                available: rights.max(0),
                requested: req.qty.get(),
            })
        } else {
            Ok((q - rights.max(0)) as u64)
        }
    };
    match (&req.kind, class) {
        (_, Class::Mint) => {
            if matches!(req.kind, EventKind::Return) && !known {
                Err(EventError::UnknownSku(req.pool.sku.clone()))
            } else {
                Ok(0)
            }
        }
        (_, Class::Consume) => consume(req.effective_policy()),
        (EventKind::Grant { to }, _) => {
            if *to == me {
                Err(EventError::SelfGrant)
            } else {
                consume(Policy::Strict)
            }
        }
        (EventKind::Reserve { reservation }, _) => {
            if r.holds().contains_key(reservation) {
                Err(EventError::ReservationExists(reservation.clone()))
            } else {
                consume(Policy::Strict)
            }
        }
        (EventKind::Release { reservation }, _) | (EventKind::Fulfil { reservation }, _) => {
            match r.holds().get(reservation) {
                None => Err(EventError::UnknownReservation(reservation.clone())),
                Some(h) if h.pool != req.pool => {
                    Err(EventError::ReservationPoolMismatch(reservation.clone()))
                }
                Some(h) if q > h.outstanding => Err(EventError::ReservationExceeded {
                    reservation: reservation.clone(),
                    outstanding: h.outstanding,
                    requested: req.qty.get(),
                }),
                Some(_) => Ok(0),
            }
        }
        _ => unreachable!("class and kind agree"),
    }
}

/// What `apply_remote` must answer, per the delivery model.
#[derive(Debug, PartialEq, Clone, Copy)]
pub(crate) enum Expect {
    Applied,
    Ignored,
    OutOfOrder,
}

/// What `apply_remote` must answer for the change at `pos` of a writer, given the
/// receiver's head for that writer (`own`: the writer is the receiver itself).
pub(crate) fn delivery(own: bool, pos: Position, head: Position) -> Expect {
    if own || pos <= head {
        Expect::Ignored
    } else if pos.seq == 1 || (pos.epoch == head.epoch && pos.seq == head.seq + 1) {
        Expect::Applied
    } else {
        Expect::OutOfOrder
    }
}
