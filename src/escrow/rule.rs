//! The escrow rule: turns a requested event into counter writes, or refuses it.
//!
//! A node consumes or grants only what its own view of its rights covers
//! (`strict`), or records the shortfall as a deficit (`record`). Its view never
//! exceeds its true rights, because it knows all of its own outgoing writes and
//! unseen incoming grants only add. See docs/escrow.md for the proof sketch.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::book::StockBook;
use super::counter_key::{CounterKey, TransferLeg};
use crate::error::EventError;
use crate::model::{EventKind, EventRequest, NodeId, Policy, PoolKey, ReservationId};

/// An open hold of this node's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The pool the units are held in.
    pub pool: PoolKey,
    /// Units still held.
    pub outstanding: i64,
}

/// This node's open holds, by reservation id.
pub type Holds = HashMap<ReservationId, Hold>;

/// The counter writes an accepted event makes, computed before anything changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// `(counter, new absolute value)` for this node's own counters.
    pub writes: Vec<(CounterKey, i64)>,
    /// Units consumed beyond rights under `record`.
    pub deficit_created: u64,
    /// The hold to store (`Some(outstanding = 0)` closes it), if the event touches one.
    pub hold: Option<(ReservationId, Hold)>,
}

fn bump(
    book: &StockBook,
    me: &NodeId,
    key: CounterKey,
    by: i64,
) -> Result<(CounterKey, i64), EventError> {
    let v = book
        .counter(me, &key)
        .checked_add(by)
        .ok_or(EventError::Overflow)?;
    Ok((key, v))
}

/// The counters of its own writer that `req` raises, and by how much.
///
/// The product's one mapping from events to counters: the rule and `verify`
/// use it. (The simulator's checker deliberately has its own, in `sim::effect`.)
pub fn counter_deltas(req: &EventRequest) -> Vec<(CounterKey, i64)> {
    let pool = &req.pool;
    let q = req.qty.as_i64();
    let p = || pool.clone();
    let leg = |transfer: &crate::model::TransferId,
               from: &crate::model::LocationId,
               to: &crate::model::LocationId| TransferLeg {
        transfer: transfer.clone(),
        from: from.clone(),
        to: to.clone(),
        sku: pool.sku.clone(),
    };
    match &req.kind {
        EventKind::Sale
        | EventKind::OnlineOrder
        | EventKind::Adjustment {
            increase: false, ..
        } => {
            vec![(CounterKey::Consumed(p()), q)]
        }
        EventKind::TransferOut { to, transfer } => vec![
            (CounterKey::Consumed(p()), q),
            (CounterKey::Shipped(leg(transfer, &pool.location, to)), q),
        ],
        EventKind::Grant { to } => vec![(CounterKey::Granted(p(), *to), q)],
        EventKind::Reserve { .. } => vec![(CounterKey::Reserved(p()), q)],
        EventKind::Release { .. } => vec![(CounterKey::Released(p()), q)],
        EventKind::Fulfil { .. } => vec![
            (CounterKey::Released(p()), q),
            (CounterKey::Consumed(p()), q),
        ],
        EventKind::Return | EventKind::Receipt | EventKind::Adjustment { increase: true, .. } => {
            vec![(CounterKey::Minted(p()), q)]
        }
        EventKind::TransferIn { from, transfer } => vec![
            (CounterKey::Minted(p()), q),
            (CounterKey::Received(leg(transfer, from, &pool.location)), q),
        ],
    }
}

/// Decides `req` for node `me` against `book` and `holds`; changes nothing.
pub fn plan(
    book: &StockBook,
    holds: &Holds,
    me: &NodeId,
    req: &EventRequest,
) -> Result<Plan, EventError> {
    if req.policy == Some(Policy::Record) && !req.kind.may_record() {
        return Err(EventError::RecordNotAllowed {
            kind: req.kind.label(),
        });
    }
    let pool = &req.pool;
    let q = req.qty.as_i64();
    let rights = book.rights(pool, me);
    let mut deficit_created = 0u64;
    // A consumption: checks rights under the policy and notes any deficit.
    let mut consume = |policy: Policy| -> Result<(), EventError> {
        if !book.knows_sku(&pool.sku) {
            return Err(EventError::UnknownSku(pool.sku.clone()));
        }
        if q > rights {
            match policy {
                Policy::Strict => {
                    // The simulator's deliberate flaws (feature `sim`, set only by a
                    // `--broken-rule` run): let a refused consumption through.
                    #[cfg(feature = "sim")]
                    if super::flaw::lets_through(&req.kind, q, rights) {
                        return Ok(());
                    }
                    return Err(EventError::InsufficientRights {
                        pool: pool.clone(),
                        available: rights.max(0),
                        requested: req.qty.get(),
                    });
                }
                // q > rights.max(0) here, so the difference is positive.
                Policy::Record => deficit_created = (q - rights.max(0)) as u64,
            }
        }
        Ok(())
    };
    match &req.kind {
        EventKind::TransferOut {
            to: other,
            transfer,
        }
        | EventKind::TransferIn {
            from: other,
            transfer,
        } if *other == pool.location => {
            return Err(EventError::TransferToSameLocation {
                transfer: transfer.clone(),
                location: pool.location.clone(),
            });
        }
        _ => {}
    }
    let mut hold = None;
    match &req.kind {
        EventKind::Sale
        | EventKind::OnlineOrder
        | EventKind::TransferOut { .. }
        | EventKind::Adjustment {
            increase: false, ..
        } => consume(req.effective_policy())?,
        EventKind::Grant { to } => {
            if to == me {
                return Err(EventError::SelfGrant);
            }
            consume(Policy::Strict)?;
        }
        EventKind::Reserve { reservation } => {
            if holds.contains_key(reservation) {
                return Err(EventError::ReservationExists(reservation.clone()));
            }
            consume(Policy::Strict)?;
            let h = Hold {
                pool: pool.clone(),
                outstanding: q,
            };
            hold = Some((reservation.clone(), h));
        }
        EventKind::Release { reservation } | EventKind::Fulfil { reservation } => {
            let h = holds
                .get(reservation)
                .ok_or_else(|| EventError::UnknownReservation(reservation.clone()))?;
            if h.pool != *pool {
                return Err(EventError::ReservationPoolMismatch(reservation.clone()));
            }
            if q > h.outstanding {
                return Err(EventError::ReservationExceeded {
                    reservation: reservation.clone(),
                    outstanding: h.outstanding,
                    requested: req.qty.get(),
                });
            }
            let left = Hold {
                pool: pool.clone(),
                outstanding: h.outstanding - q,
            };
            hold = Some((reservation.clone(), left));
        }
        EventKind::Return => {
            if !book.knows_sku(&pool.sku) {
                return Err(EventError::UnknownSku(pool.sku.clone()));
            }
        }
        EventKind::Receipt
        | EventKind::Adjustment { increase: true, .. }
        | EventKind::TransferIn { .. } => {}
    }
    let writes = counter_deltas(req)
        .into_iter()
        .map(|(k, d)| bump(book, me, k, d))
        .collect::<Result<Vec<_>, _>>()?;
    for (_, v) in &writes {
        if *v > super::book::MAX_COUNTER {
            return Err(EventError::Overflow);
        }
    }
    Ok(Plan {
        writes,
        deficit_created,
        hold,
    })
}

/// Applies a plan made by [`plan`] against the same `book` and `holds`.
pub fn apply(
    book: &mut StockBook,
    holds: &mut Holds,
    me: &NodeId,
    plan: &Plan,
) -> Result<(), EventError> {
    for (k, v) in &plan.writes {
        book.raise(*me, k, *v)?;
    }
    if let Some((id, h)) = &plan.hold {
        if h.outstanding == 0 {
            holds.remove(id);
        } else {
            holds.insert(id.clone(), h.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escrow::MAX_COUNTER;
    use crate::model::{EventId, LocationId, Quantity, Sku, TransferId};

    fn req(kind: EventKind) -> EventRequest {
        EventRequest::new(
            EventId::new("e1").unwrap(),
            LocationId::new("S1").unwrap(),
            Sku::new("A").unwrap(),
            Quantity::new(1).unwrap(),
            kind,
        )
    }

    #[test]
    fn a_transfer_to_or_from_the_pools_own_location_is_refused() {
        let me = NodeId([1; 32]);
        let mut book = StockBook::new();
        let pool = req(EventKind::Receipt).pool;
        book.raise(me, &CounterKey::Minted(pool), 10).unwrap();
        let holds = Holds::new();
        let (s1, s2) = (
            LocationId::new("S1").unwrap(),
            LocationId::new("S2").unwrap(),
        );
        let transfer = TransferId::new("T1").unwrap();
        let same = [
            EventKind::TransferOut {
                to: s1.clone(),
                transfer: transfer.clone(),
            },
            EventKind::TransferIn {
                from: s1.clone(),
                transfer: transfer.clone(),
            },
        ];
        for kind in same {
            assert_eq!(
                plan(&book, &holds, &me, &req(kind)),
                Err(EventError::TransferToSameLocation {
                    transfer: transfer.clone(),
                    location: s1.clone(),
                })
            );
        }
        let other = [
            EventKind::TransferOut {
                to: s2.clone(),
                transfer: transfer.clone(),
            },
            EventKind::TransferIn { from: s2, transfer },
        ];
        for kind in other {
            assert!(plan(&book, &holds, &me, &req(kind)).is_ok());
        }
    }

    #[test]
    fn a_plan_may_raise_a_counter_to_max_counter_but_not_past_it() {
        let me = NodeId([1; 32]);
        let mut book = StockBook::new();
        let minted = CounterKey::Minted(req(EventKind::Receipt).pool);
        book.raise(me, &minted, MAX_COUNTER - 1).unwrap();
        let holds = Holds::new();
        let plan_of = |qty: u64| {
            let mut r = req(EventKind::Receipt);
            r.qty = Quantity::new(qty).unwrap();
            plan(&book, &holds, &me, &r)
        };
        assert_eq!(
            plan_of(1).map(|p| p.writes),
            Ok(vec![(minted, MAX_COUNTER)])
        );
        assert_eq!(plan_of(2), Err(EventError::Overflow));
    }
}
