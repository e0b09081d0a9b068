//! The node's own Automerge document for the current epoch.
//!
//! Each writer has its own document: one actor, one linear history, so merging is
//! trivial and the author is the only one who can ever write it. A document holds
//! one root-level `Counter` per counter key; the first write of a key in an epoch
//! is a `put` of its absolute value, later writes are `increment`s. A new epoch
//! starts with a snapshot change that puts every non-zero counter, which bounds the
//! history any peer or restart needs (see docs/storage.md).

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ChangeHash, ScalarValue, ROOT};

use crate::escrow::CounterKey;
use crate::model::{NodeId, Position};

/// A change just committed to the own document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedChange {
    /// Where it sits in this writer's history.
    pub position: Position,
    /// Its Automerge hash.
    pub hash: [u8; 32],
    /// Its Automerge encoding (`Change::raw_bytes`).
    pub bytes: Vec<u8>,
}

/// A counter write: the key, its value before and after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterWrite {
    /// The counter.
    pub key: CounterKey,
    /// Value before (0 when the counter is new).
    pub old: i64,
    /// Value after (greater than `old`).
    pub new: i64,
}

/// The writer's own document for one epoch.
pub struct OwnDoc {
    doc: Automerge,
    epoch: u32,
    seq: u64,
}

impl OwnDoc {
    /// An empty document for `epoch`, authored by `me`.
    pub fn new(me: &NodeId, epoch: u32) -> Self {
        Self {
            doc: Automerge::new().with_actor(ActorId::from(me.0)),
            epoch,
            seq: 0,
        }
    }

    /// Rebuilds the document of `epoch` from its stored changes, in order.
    pub fn load(me: &NodeId, epoch: u32, changes: &[Vec<u8>]) -> Result<Self, String> {
        let mut doc = Automerge::new().with_actor(ActorId::from(me.0));
        let mut parsed = Vec::with_capacity(changes.len());
        for c in changes {
            let change = automerge::Change::try_from(&c[..]).map_err(|e| e.to_string())?;
            if change.actor_id().to_bytes() != me.0 {
                return Err("own document holds a change of another actor".into());
            }
            parsed.push(change);
        }
        let last = parsed.last().map(|c| c.hash());
        doc.apply_changes(parsed).map_err(|e| e.to_string())?;
        let seq = changes.len() as u64;
        if doc.get_heads() != last.into_iter().collect::<Vec<_>>() {
            return Err("own document's changes do not form one chain".into());
        }
        Ok(Self { doc, epoch, seq })
    }

    /// The epoch this document belongs to.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Number of changes committed in this epoch.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Commits `writes` as one change with `message`; `None` when there is nothing to write.
    ///
    /// A write whose `old` is 0 is a `put` (the key is new in this epoch, since every
    /// non-zero counter was put by the epoch's snapshot); others increment.
    pub fn commit(
        &mut self,
        writes: &[CounterWrite],
        message: &str,
        time_ms: i64,
    ) -> Option<CommittedChange> {
        if writes.is_empty() {
            return None;
        }
        let mut tx = self.doc.transaction();
        for w in writes {
            let key = w.key.to_string();
            let res = if w.old == 0 {
                tx.put(ROOT, key, ScalarValue::counter(w.new))
            } else {
                tx.increment(ROOT, key, w.new - w.old)
            };
            // Puts and increments on root-level keys of our own document cannot fail:
            // the root map always exists and every incremented key was put as a counter.
            res.expect("root counter write");
        }
        let (hash, _) = tx.commit_with(
            CommitOptions::default()
                .with_message(message.to_string())
                .with_time(time_ms),
        );
        let hash: ChangeHash = hash?;
        self.seq += 1;
        let change = self.doc.get_last_local_change()?;
        debug_assert_eq!(change.hash(), hash);
        Some(CommittedChange {
            position: Position {
                epoch: self.epoch,
                seq: self.seq,
            },
            hash: hash.0,
            bytes: change.raw_bytes().to_vec(),
        })
    }

    /// Starts a new document for `epoch` whose first change puts every counter in `snapshot`.
    pub fn start_epoch(
        me: &NodeId,
        epoch: u32,
        snapshot: impl Iterator<Item = (CounterKey, i64)>,
        time_ms: i64,
    ) -> (Self, Option<CommittedChange>) {
        let mut doc = Self::new(me, epoch);
        let writes: Vec<CounterWrite> = snapshot
            .filter(|(_, v)| *v > 0)
            .map(|(key, new)| CounterWrite { key, old: 0, new })
            .collect();
        let change = doc.commit(&writes, r#"{"snapshot":true}"#, time_ms);
        (doc, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LocationId, PoolKey, Sku};

    #[test]
    fn commits_chain_and_carry_values() {
        let me = NodeId([9; 32]);
        let pool = PoolKey::new(LocationId::new("S").unwrap(), Sku::new("A").unwrap());
        let k = CounterKey::Minted(pool);
        let (mut doc, first) = OwnDoc::start_epoch(&me, 3, [(k.clone(), 5)].into_iter(), 1);
        let first = first.unwrap();
        assert_eq!(first.position, Position { epoch: 3, seq: 1 });
        let c2 = doc
            .commit(
                &[CounterWrite {
                    key: k.clone(),
                    old: 5,
                    new: 8,
                }],
                "{}",
                2,
            )
            .unwrap();
        assert_eq!(c2.position.seq, 2);
        let loaded = Automerge::load(&[first.bytes, c2.bytes].concat()).unwrap();
        let (v, _) = automerge::ReadDoc::get(&loaded, ROOT, k.to_string())
            .unwrap()
            .unwrap();
        assert_eq!(v.as_i64(), Some(8));
        assert!(doc.commit(&[], "{}", 3).is_none());
    }
}
