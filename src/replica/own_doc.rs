//! The node's own Automerge document for the current epoch.
//!
//! Each writer has its own document: one actor, one linear history, so merging is
//! trivial and the author is the only one who can ever write it. A document holds
//! one root-level `Counter` per counter key, and every write `put`s the counter's
//! new absolute value. A new epoch starts with a snapshot change that puts every
//! non-zero counter, which bounds the history any peer or restart needs (see
//! docs/storage.md). Every change's message is a JSON object whose `epoch` field
//! binds the change to its epoch.
//!
//! The writer never needs to read its own document, only to append to it, so
//! instead of keeping an op set in memory it keeps what the next change needs
//! (sequence number, last op counter, last hash, each key's last put) and has
//! automerge encode each change from its expanded form. A transaction on an
//! in-memory document produces the same bytes (a unit test below checks it) but
//! also maintains an op set the writer never reads, on the sale's path. The
//! changes are ordinary automerge changes: `verify` and every peer load them into
//! automerge documents.

use std::collections::HashMap;
use std::num::NonZeroU64;

use automerge::legacy::{Key, ObjectId, Op, OpId, OpType, SortedVec};
use automerge::{ActorId, Change, ChangeHash, ExpandedChange, ScalarValue};

use crate::escrow::CounterKey;
use crate::model::{NodeId, Position};

/// Most counters one snapshot change of a new epoch puts: with keys of at most
/// about 200 bytes, a snapshot change stays under half a MiB, well within a
/// bundle and far below [`super::MAX_CHANGE_BYTES`].
pub const SNAPSHOT_COUNTERS: usize = 2_048;

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

/// The part of a change's message that validation reads.
#[derive(serde::Deserialize)]
pub struct MessageHeader {
    /// The epoch the change belongs to.
    pub epoch: u32,
}

/// One change appended to an own document by [`OwnDoc::append`].
pub struct Appended {
    /// The counter values it puts `(key text, value)`, in op order.
    pub puts: Vec<(String, i64)>,
    /// Its message (the epoch and the audit lines).
    pub message: Option<String>,
    /// Its Automerge hash.
    pub hash: [u8; 32],
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

/// The writer's own document for one epoch: what its next change must name.
#[derive(Clone)]
pub struct OwnDoc {
    actor: ActorId,
    epoch: u32,
    seq: u64,
    max_op: u64,
    last_hash: Option<ChangeHash>,
    /// Each key's last put, as the op counter the next put of it must succeed.
    last_put: HashMap<String, u64>,
}

impl OwnDoc {
    /// An empty document for `epoch`, authored by `me`.
    pub fn new(me: &NodeId, epoch: u32) -> Self {
        Self {
            actor: ActorId::from(me.0),
            epoch,
            seq: 0,
            max_op: 0,
            last_hash: None,
            last_put: HashMap::new(),
        }
    }

    /// Rebuilds the document of `epoch` from its stored changes, in order, and
    /// returns it with the counter values the changes put.
    pub fn load(
        me: &NodeId,
        epoch: u32,
        changes: &[Vec<u8>],
    ) -> Result<(Self, Vec<(CounterKey, i64)>), String> {
        let mut doc = Self::new(me, epoch);
        let mut values: HashMap<String, i64> = HashMap::new();
        for bytes in changes {
            for (name, v) in doc.append(bytes)?.puts {
                values.insert(name, v);
            }
        }
        let mut out = Vec::with_capacity(values.len());
        for (k, v) in values {
            out.push((CounterKey::parse(&k).map_err(|e| e.to_string())?, v));
        }
        Ok((doc, out))
    }

    /// Appends one stored change of this document's actor, checking that it
    /// follows the last one (sequence number, dependency, op counter), and
    /// returns what it holds. On error the document is unchanged.
    pub fn append(&mut self, bytes: &[u8]) -> Result<Appended, String> {
        let change = Change::try_from(bytes).map_err(|e| e.to_string())?;
        if change.actor_id() != &self.actor || !change.other_actor_ids().is_empty() {
            return Err("own document holds a change of another actor".into());
        }
        let follows = change.seq() == self.seq + 1
            && change.deps() == self.last_hash.as_slice()
            && change.start_op().get() == self.max_op + 1;
        if !follows {
            return Err("own document's changes do not form one chain".into());
        }
        let mut puts = Vec::new();
        for op in change.decode().operations.iter() {
            let (Key::Map(name), OpType::Put(ScalarValue::Counter(c))) = (&op.key, &op.action)
            else {
                return Err("own document holds something other than counter puts".into());
            };
            puts.push((name.to_string(), i64::from(c)));
        }
        for (i, (name, _)) in puts.iter().enumerate() {
            self.last_put
                .insert(name.clone(), change.start_op().get() + i as u64);
        }
        self.seq += 1;
        self.max_op = change.max_op();
        self.last_hash = Some(change.hash());
        Ok(Appended {
            puts,
            message: change.message().map(str::to_owned),
            hash: change.hash().0,
        })
    }

    /// The hash of the last change (`None` before the first).
    pub fn last_hash(&self) -> Option<[u8; 32]> {
        self.last_hash.map(|h| h.0)
    }

    /// The epoch this document belongs to.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Number of changes committed in this epoch.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Commits `writes` as one change; `None` when there is nothing to write.
    ///
    /// Its size is bounded by the caller: a group is at most `max_batch` events
    /// of bounded size, and a snapshot at most [`SNAPSHOT_COUNTERS`] counters.
    ///
    /// `events_json` is the JSON array of the audit lines of the change's events;
    /// the message becomes `{"epoch":E,"events":[...]}`.
    pub fn commit(
        &mut self,
        writes: &[CounterWrite],
        events_json: &str,
        time_ms: i64,
    ) -> Option<CommittedChange> {
        if writes.is_empty() {
            return None;
        }
        let start_op = self.max_op + 1;
        // Each key rendered once: for its op and for its last-put entry.
        let keys: Vec<String> = writes.iter().map(|w| w.key.to_string()).collect();
        let operations: Vec<Op> = writes
            .iter()
            .zip(&keys)
            .map(|(w, key)| {
                let pred: SortedVec<OpId> = self
                    .last_put
                    .get(key)
                    .map(|c| vec![OpId::new(*c, &self.actor)])
                    .unwrap_or_default()
                    .into();
                Op {
                    action: OpType::Put(ScalarValue::counter(w.new)),
                    obj: ObjectId::Root,
                    key: Key::Map(smol_str::SmolStr::new(key.as_str())),
                    pred,
                    insert: false,
                }
            })
            .collect();
        let change = Change::from(ExpandedChange {
            operations,
            actor_id: self.actor.clone(),
            hash: None,
            seq: self.seq + 1,
            // start_op = max_op + 1 is at least 1.
            start_op: NonZeroU64::new(start_op).expect("start op is positive"),
            time: time_ms,
            message: Some(format!(
                "{{\"epoch\":{},\"events\":{events_json}}}",
                self.epoch
            )),
            deps: self.last_hash.into_iter().collect(),
            extra_bytes: Vec::new(),
            author: None,
        });
        for (i, key) in keys.into_iter().enumerate() {
            self.last_put.insert(key, start_op + i as u64);
        }
        self.seq += 1;
        self.max_op = change.max_op();
        self.last_hash = Some(change.hash());
        Some(CommittedChange {
            position: Position {
                epoch: self.epoch,
                seq: self.seq,
            },
            hash: change.hash().0,
            bytes: change.raw_bytes().to_vec(),
        })
    }

    /// Starts a new document for `epoch` whose first changes put every counter
    /// in `snapshot`, at most [`SNAPSHOT_COUNTERS`] per change (so that no change
    /// of a node with many SKUs outgrows what receivers accept).
    pub fn start_epoch(
        me: &NodeId,
        epoch: u32,
        snapshot: impl Iterator<Item = (CounterKey, i64)>,
        time_ms: i64,
    ) -> (Self, Vec<CommittedChange>) {
        let mut doc = Self::new(me, epoch);
        let mut writes: Vec<CounterWrite> = snapshot
            .filter(|(_, v)| *v > 0)
            .map(|(key, new)| CounterWrite { key, old: 0, new })
            .collect();
        // Sorted, so the snapshot's bytes depend on the counters alone.
        writes.sort_by(|a, b| a.key.cmp(&b.key));
        let changes = writes
            .chunks(SNAPSHOT_COUNTERS)
            .filter_map(|chunk| doc.commit(chunk, "[]", time_ms))
            .collect();
        (doc, changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LocationId, PoolKey, Sku};
    use automerge::transaction::{CommitOptions, Transactable};
    use automerge::{Automerge, ReadDoc, ROOT};

    fn key(sku: &str) -> CounterKey {
        CounterKey::Minted(PoolKey::new(
            LocationId::new("S").unwrap(),
            Sku::new(sku).unwrap(),
        ))
    }

    #[test]
    fn changes_are_byte_identical_to_an_automerge_transaction() {
        let me = NodeId([9; 32]);
        let mut ours = OwnDoc::new(&me, 3);
        let mut theirs = Automerge::new().with_actor(ActorId::from(me.0));
        let steps: Vec<Vec<(&str, i64)>> = vec![
            vec![("A", 5), ("B", 2)],
            vec![("A", 8)],
            vec![("C", 1), ("B", 3), ("A", 9)],
        ];
        let mut loaded = Vec::new();
        for (t, step) in steps.iter().enumerate() {
            let writes: Vec<CounterWrite> = step
                .iter()
                .map(|(k, v)| CounterWrite {
                    key: key(k),
                    old: 0,
                    new: *v,
                })
                .collect();
            let c = ours.commit(&writes, "[]", t as i64).unwrap();
            let mut tx = theirs.transaction();
            for (k, v) in step {
                tx.put(ROOT, key(k).to_string(), ScalarValue::counter(*v))
                    .unwrap();
            }
            let message = r#"{"epoch":3,"events":[]}"#.to_string();
            tx.commit_with(
                CommitOptions::default()
                    .with_message(message)
                    .with_time(t as i64),
            );
            let expected = theirs.get_last_local_change().unwrap();
            assert_eq!(c.bytes, expected.raw_bytes(), "step {t}");
            assert_eq!(
                c.position,
                Position {
                    epoch: 3,
                    seq: t as u64 + 1
                }
            );
            loaded.push(c.bytes);
        }
        // Reloading gives the same next change and the values put.
        let (mut again, values) = OwnDoc::load(&me, 3, &loaded).unwrap();
        let mut values: Vec<_> = values
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        values.sort();
        assert_eq!(
            values,
            vec![
                ("m|S|A".into(), 9),
                ("m|S|B".into(), 3),
                ("m|S|C".into(), 1)
            ]
        );
        let w = [CounterWrite {
            key: key("B"),
            old: 3,
            new: 4,
        }];
        assert_eq!(
            again.commit(&w, "[]", 9).unwrap().bytes,
            ours.commit(&w, "[]", 9).unwrap().bytes
        );
        let doc = Automerge::load(&loaded.concat()).unwrap();
        let (v, _) = doc.get(ROOT, "m|S|A").unwrap().unwrap();
        assert_eq!(v.as_i64(), Some(9));
        assert!(ours.commit(&[], "[]", 3).is_none());
    }

    #[test]
    fn a_broken_chain_does_not_load() {
        let me = NodeId([9; 32]);
        let mut doc = OwnDoc::new(&me, 1);
        let w = |v| {
            [CounterWrite {
                key: key("A"),
                old: 0,
                new: v,
            }]
        };
        let c1 = doc.commit(&w(1), "[]", 0).unwrap();
        let _c2 = doc.commit(&w(2), "[]", 0).unwrap();
        let c3 = doc.commit(&w(3), "[]", 0).unwrap();
        assert!(OwnDoc::load(&me, 1, &[c1.bytes.clone(), c3.bytes]).is_err());
        assert!(OwnDoc::load(&NodeId([8; 32]), 1, &[c1.bytes]).is_err());
    }
}
