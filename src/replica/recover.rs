//! Recovery of the node's own history from peers: changes signed with its own
//! key, on its own chain, beyond the head it holds (its data directory was
//! restored from an older copy). See docs/escrow.md, "Own history seen ahead".

use std::collections::{BTreeMap, BTreeSet};

use super::audit::{self, AuditRecord};
use super::own_doc::{Appended, MessageHeader};
use super::{CommittedChange, Replica, WriterHead};
use crate::escrow::{CounterKey, Hold, MAX_COUNTER};
use crate::model::{
    EventId, EventKind, EventOutcome, EventRequest, LocationId, PoolKey, Position, Quantity,
    ReservationId, Sku,
};

/// Why own changes received from a peer were not recovered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoverError {
    /// The changes start after the own head: the ones between are missing
    /// (they may still come). Nothing is wrong with them.
    #[error("own changes from {first:?} do not reach the own head {held:?}: a gap")]
    Gap {
        /// The own head held.
        held: Position,
        /// The first change received.
        first: Position,
    },
    /// The changes do not continue the own chain from its head: another
    /// history (a fork, proven elsewhere). Never recovered.
    #[error("own changes from {first:?} do not chain onto the own head {held:?}")]
    NotChained {
        /// The own head held.
        held: Position,
        /// The first change received.
        first: Position,
    },
    /// The changes are of a later epoch than the own head's: a new epoch's
    /// snapshot does not commit to the change before it, so adopting it could
    /// merge another history unseen. Not recovered (not built yet).
    #[error("own changes of a later epoch ({first:?}) than the own head {held:?}: recovery across an epoch roll is not built")]
    Epoch {
        /// The own head held.
        held: Position,
        /// The first change received.
        first: Position,
    },
    /// A change that is not a well-formed own change.
    #[error("malformed own change at {at:?}: {why}")]
    Malformed {
        /// Its position.
        at: Position,
        /// What is wrong.
        why: String,
    },
}

/// One journal row rebuilt from an own change's audit line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredEvent {
    /// The request as first made (its policy unknown on lines without an answer).
    pub request: EventRequest,
    /// The first answer (see `answered`).
    pub outcome: EventOutcome,
    /// Its place in its change's batch.
    pub idx: usize,
    /// False when the line predates recorded answers: `rights_after` and
    /// `on_hand_after` are then the values right after the change as rebuilt.
    pub answered: bool,
}

/// Own changes recovered from a peer, ready to make durable in one transaction.
#[derive(Debug, Default)]
pub struct RecoveredBatch {
    /// The own changes, in order.
    pub changes: Vec<CommittedChange>,
    /// Their events, in order.
    pub events: Vec<RecoveredEvent>,
    /// Holds the events changed (`outstanding == 0` means closed).
    pub holds: Vec<(ReservationId, Hold)>,
    /// Pools whose sums changed.
    pub pools: BTreeSet<PoolKey>,
}

/// An own change checked, not yet applied.
struct Checked {
    at: Position,
    hash: [u8; 32],
    bytes: Vec<u8>,
    puts: Vec<(CounterKey, i64)>,
    lines: Vec<AuditRecord>,
}

impl Replica {
    /// Appends own changes `changes` of `epoch`, the first at `first_seq`,
    /// received from a peer (their signature checked by the caller), as this
    /// node's own history: they must continue the own chain from its head
    /// (overlapping ones are skipped once the one at the head has its hash).
    /// Returns `None` when nothing is beyond the head. All or nothing: on
    /// error the replica is unchanged.
    pub fn recover_own(
        &mut self,
        epoch: u32,
        first_seq: u64,
        changes: &[Vec<u8>],
    ) -> Result<Option<RecoveredBatch>, RecoverError> {
        let held = self.own_position();
        let first = Position {
            epoch,
            seq: first_seq,
        };
        let (mut doc, skip) = if epoch == held.epoch {
            if first_seq == 0 || first_seq > held.seq + 1 {
                return Err(RecoverError::Gap { held, first });
            }
            let skip = (held.seq + 1 - first_seq) as usize;
            if skip >= changes.len() {
                return Ok(None);
            }
            if skip > 0 {
                // The change at the head must be the head: then the chain
                // (each change names the hash of the one before) makes the
                // rest of the overlap the same too.
                let at_head =
                    crate::replica::raw_change::inspect(&changes[skip - 1]).map_err(|e| {
                        RecoverError::Malformed {
                            at: held,
                            why: e.to_string(),
                        }
                    })?;
                if Some(at_head.hash) != self.doc.last_hash() {
                    return Err(RecoverError::NotChained { held, first });
                }
            }
            (self.doc.clone(), skip)
        } else if epoch > held.epoch {
            // A later epoch's snapshot does not name the hash of the change
            // before it: adopting it could merge another history unseen.
            return Err(RecoverError::Epoch { held, first });
        } else {
            return Ok(None);
        };
        let mut checked = Vec::new();
        for bytes in &changes[skip..] {
            let at = Position {
                epoch,
                seq: doc.seq() + 1,
            };
            let bad = |why: String| RecoverError::Malformed { at, why };
            let Appended {
                puts,
                message,
                hash,
            } = doc.append(bytes).map_err(|why| {
                if checked.is_empty() && why.contains("chain") {
                    RecoverError::NotChained { held, first }
                } else {
                    bad(why)
                }
            })?;
            let message = message.unwrap_or_default();
            let header: MessageHeader =
                serde_json::from_str(&message).map_err(|e| bad(e.to_string()))?;
            if header.epoch != epoch {
                return Err(bad(format!("message names epoch {}", header.epoch)));
            }
            let mut keys = Vec::with_capacity(puts.len());
            for (k, v) in puts {
                let key = CounterKey::parse(&k).map_err(|e| bad(e.to_string()))?;
                if !(0..=MAX_COUNTER).contains(&v) {
                    return Err(bad(format!("{k} = {v} is out of range")));
                }
                keys.push((key, v));
            }
            let lines = audit::parse(&message).map_err(bad)?;
            checked.push(Checked {
                at,
                hash,
                bytes: bytes.clone(),
                puts: keys,
                lines,
            });
        }
        // Every line must rebuild a request before anything changes.
        let mut requests = Vec::new();
        for c in &checked {
            for (idx, l) in c.lines.iter().enumerate() {
                let req = request_of(l).map_err(|why| RecoverError::Malformed { at: c.at, why })?;
                requests.push((c.at, idx, req));
            }
        }
        // Checked: from here on nothing fails.
        self.doc = doc;
        let mut batch = RecoveredBatch::default();
        let mut holds: BTreeMap<ReservationId, Hold> = BTreeMap::new();
        let mut requests = requests.into_iter().peekable();
        for c in checked {
            for (k, v) in &c.puts {
                // In range (checked above): `raise` cannot fail.
                let _ = self.book.raise(self.me, k, *v);
                if let Some(p) = k.pool() {
                    batch.pools.insert(p.clone());
                }
            }
            while let Some((_, idx, req)) = requests.next_if(|(at, ..)| *at == c.at) {
                let line = &c.lines[idx];
                self.recover_hold(&req, &mut holds);
                let pool = self.book.pool(&req.pool);
                let answered = line.rights.is_some() && line.on_hand.is_some();
                let outcome = EventOutcome {
                    id: req.id.clone(),
                    kind: req.kind.label().to_string(),
                    pool: req.pool.clone(),
                    qty: req.qty.get(),
                    deficit_created: line.deficit,
                    rights_after: line
                        .rights
                        .unwrap_or_else(|| self.book.rights(&req.pool, &self.me)),
                    on_hand_after: line
                        .on_hand
                        .unwrap_or_else(|| pool.map(|p| p.on_hand()).unwrap_or(0)),
                    position: c.at,
                    replayed: false,
                };
                batch.events.push(RecoveredEvent {
                    request: req,
                    outcome,
                    idx,
                    answered,
                });
            }
            self.heads.insert(
                self.me,
                WriterHead {
                    position: c.at,
                    hash: c.hash,
                },
            );
            batch.changes.push(CommittedChange {
                position: c.at,
                hash: c.hash,
                bytes: c.bytes,
            });
        }
        batch.holds = holds.into_iter().collect();
        Ok(Some(batch))
    }

    /// Applies the hold change of a recovered event to the open holds.
    fn recover_hold(&mut self, req: &EventRequest, changed: &mut BTreeMap<ReservationId, Hold>) {
        let q = req.qty.get() as i64;
        let (id, outstanding) = match &req.kind {
            EventKind::Reserve { reservation } => (reservation, q),
            EventKind::Release { reservation } | EventKind::Fulfil { reservation } => {
                let before = self.holds.get(reservation).map(|h| h.outstanding);
                (reservation, before.unwrap_or(0).saturating_sub(q).max(0))
            }
            _ => return,
        };
        let hold = Hold {
            pool: req.pool.clone(),
            outstanding,
        };
        if outstanding == 0 {
            self.holds.remove(id);
        } else {
            self.holds.insert(id.clone(), hold.clone());
        }
        changed.insert(id.clone(), hold);
    }
}

/// The request an audit line records.
fn request_of(l: &AuditRecord) -> Result<EventRequest, String> {
    let s = |e: crate::error::InputError| e.to_string();
    Ok(EventRequest {
        id: l.id.parse::<EventId>().map_err(s)?,
        pool: PoolKey::new(
            LocationId::new(l.loc.as_str()).map_err(s)?,
            Sku::new(l.sku.as_str()).map_err(s)?,
        ),
        qty: Quantity::new(l.qty).map_err(s)?,
        kind: l.kind.clone(),
        policy: l.policy,
        reference: l.r#ref.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::{CounterWrite, OwnDoc, Snapshot};

    fn key() -> CounterKey {
        CounterKey::Consumed(PoolKey::new(
            LocationId::new("S").unwrap(),
            Sku::new("A").unwrap(),
        ))
    }

    /// `n` changes of `me`'s own document, each consuming one more unit, with
    /// `events` as the audit lines of each (`{i}` is replaced by its number).
    fn history(me: &crate::model::NodeId, n: i64, events: &str) -> Vec<CommittedChange> {
        let mut doc = OwnDoc::new(me, 1);
        (1..=n)
            .map(|v| {
                let w = CounterWrite {
                    key: key(),
                    old: v - 1,
                    new: v,
                };
                doc.commit(&[w], &events.replace("{i}", &v.to_string()), 0)
                    .unwrap()
            })
            .collect()
    }

    fn replica_at(me: crate::model::NodeId, held: &[CommittedChange]) -> Replica {
        let mut r = Replica::open(me, Snapshot::default(), 100).unwrap();
        if !held.is_empty() {
            let bytes: Vec<Vec<u8>> = held.iter().map(|c| c.bytes.clone()).collect();
            r.recover_own(1, 1, &bytes).unwrap();
        }
        r
    }

    #[test]
    fn lines_without_answers_are_recovered_and_marked() {
        let me = crate::model::NodeId([3; 32]);
        let old = r#"[{"id":"s{i}","kind":"sale","loc":"S","sku":"A","qty":1}]"#;
        let h = history(&me, 3, old);
        let mut r = replica_at(me, &h[..1]);
        let bytes: Vec<Vec<u8>> = h.iter().map(|c| c.bytes.clone()).collect();
        // Overlapping the head with the same hash: only what is beyond it.
        let b = r.recover_own(1, 1, &bytes).unwrap().unwrap();
        assert_eq!(b.changes.len(), 2);
        assert_eq!(b.events.len(), 2);
        assert!(b.events.iter().all(|e| !e.answered));
        assert_eq!(b.events[0].request.id.as_str(), "s2");
        assert_eq!(b.events[1].outcome.position, Position { epoch: 1, seq: 3 });
        assert_eq!(r.own_position(), Position { epoch: 1, seq: 3 });
        assert_eq!(r.book().counter(&me, &key()), 3);
        // Nothing beyond the head now.
        assert!(r.recover_own(1, 2, &bytes[1..]).unwrap().is_none());
    }

    #[test]
    fn another_history_is_not_recovered_and_changes_nothing() {
        let me = crate::model::NodeId([4; 32]);
        let line =
            r#"[{"id":"a{i}","kind":"sale","loc":"S","sku":"A","qty":1,"rights":0,"on_hand":0}]"#;
        let ours = history(&me, 2, line);
        let theirs = history(&me, 4, &line.replace("a{i}", "b{i}"));
        let mut r = replica_at(me, &ours);
        let bytes: Vec<Vec<u8>> = theirs.iter().map(|c| c.bytes.clone()).collect();
        // Overlapping at the head with another hash.
        let e = r.recover_own(1, 1, &bytes).unwrap_err();
        assert!(matches!(e, RecoverError::NotChained { .. }), "{e}");
        // Starting right after the head, naming another dependency.
        let e = r.recover_own(1, 3, &bytes[2..]).unwrap_err();
        assert!(matches!(e, RecoverError::NotChained { .. }), "{e}");
        // Ahead of a gap; of a later epoch.
        assert!(matches!(
            r.recover_own(1, 4, &bytes[3..]),
            Err(RecoverError::Gap { .. })
        ));
        assert!(matches!(
            r.recover_own(2, 1, &bytes[..1]),
            Err(RecoverError::Epoch { .. })
        ));
        assert_eq!(r.own_position(), Position { epoch: 1, seq: 2 });
        assert_eq!(r.book().counter(&me, &key()), 2);
    }
}
