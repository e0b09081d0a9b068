//! Verified bundles that arrived ahead of a gap, held until the gap is filled.
//!
//! Bounded three ways, so a peer cannot fill a node's memory with bundles that
//! never connect: a total byte budget, a cap per writer, and an expiry. A
//! bundle refused or dropped here is not lost: the sender's window and the
//! probes bring it again once the gap is filled.

use std::collections::{BTreeMap, HashMap};

use super::engine::Verified;
use crate::model::{NodeId, Position};

/// Where a parked bundle starts: writer, epoch, first sequence number.
type Key = (NodeId, u32, u64);

struct Entry {
    bundle: Verified,
    bytes: usize,
    parked_at_ms: u64,
}

/// Limits of the parking lot.
#[derive(Clone, Copy, Debug)]
pub(super) struct ParkLimits {
    pub(super) max_bundles: usize,
    pub(super) max_bytes: usize,
    pub(super) max_per_writer: usize,
}

/// The parked bundles and what they weigh.
#[derive(Default)]
pub(super) struct Parked {
    entries: BTreeMap<Key, Entry>,
    bytes: usize,
    per_writer: HashMap<NodeId, usize>,
}

impl Parked {
    /// Parks `bundle` unless a limit says no; returns whether it was parked.
    pub(super) fn insert(&mut self, bundle: Verified, now_ms: u64, limits: ParkLimits) -> bool {
        let key = (
            bundle.writer,
            bundle.span.first.epoch,
            bundle.span.first.seq,
        );
        let bytes: usize = bundle.changes.iter().map(Vec::len).sum();
        let of_writer = self.per_writer.get(&bundle.writer).copied().unwrap_or(0);
        if self.entries.contains_key(&key)
            || self.entries.len() >= limits.max_bundles
            || of_writer >= limits.max_per_writer
            || self.bytes.saturating_add(bytes) > limits.max_bytes
        {
            return false;
        }
        *self.per_writer.entry(bundle.writer).or_default() += 1;
        self.bytes += bytes;
        self.entries.insert(
            key,
            Entry {
                bundle,
                bytes,
                parked_at_ms: now_ms,
            },
        );
        true
    }

    fn remove(&mut self, key: &Key) -> Option<Verified> {
        let e = self.entries.remove(key)?;
        self.bytes -= e.bytes;
        if let Some(n) = self.per_writer.get_mut(&key.0) {
            *n -= 1;
            if *n == 0 {
                self.per_writer.remove(&key.0);
            }
        }
        Some(e.bundle)
    }

    /// Takes a parked bundle of `writer` that connects to `have`, if any;
    /// drops the ones of older epochs, which never can.
    pub(super) fn take_connecting(&mut self, writer: NodeId, have: Position) -> Option<Verified> {
        let range = (writer, 0, 0)..=(writer, u32::MAX, u64::MAX);
        let mut stale = Vec::new();
        let mut found = None;
        for (k, _) in self.entries.range(range) {
            let (_, e, s) = *k;
            if e < have.epoch {
                stale.push(*k);
            } else if (e == have.epoch && s <= have.seq + 1) || (e > have.epoch && s == 1) {
                found = Some(*k);
                break;
            }
        }
        for k in stale {
            self.remove(&k);
        }
        found.and_then(|k| self.remove(&k))
    }

    /// Drops what was parked before `now_ms - ttl_ms`.
    pub(super) fn expire(&mut self, now_ms: u64, ttl_ms: u64) {
        let old: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| now_ms.saturating_sub(e.parked_at_ms) >= ttl_ms)
            .map(|(k, _)| *k)
            .collect();
        for k in old {
            self.remove(&k);
        }
    }

    /// Number of parked bundles.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of parked changes.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::bundle::Span;

    fn bundle(writer: u8, epoch: u32, first: u64, bytes: usize) -> Verified {
        let pos = |seq| Position { epoch, seq };
        Verified {
            from: NodeId([0; 32]),
            writer: NodeId([writer; 32]),
            span: Span {
                first: pos(first),
                last: pos(first),
            },
            changes: vec![vec![0; bytes]],
            signature: Vec::new(),
        }
    }

    const LIMITS: ParkLimits = ParkLimits {
        max_bundles: 4,
        max_bytes: 100,
        max_per_writer: 2,
    };

    #[test]
    fn every_limit_holds_and_removal_gives_back_room() {
        let mut p = Parked::default();
        assert!(p.insert(bundle(1, 1, 5, 10), 0, LIMITS));
        assert!(p.insert(bundle(1, 1, 9, 10), 0, LIMITS));
        assert!(!p.insert(bundle(1, 1, 12, 10), 0, LIMITS), "per writer");
        assert!(p.insert(bundle(2, 1, 5, 70), 0, LIMITS));
        assert!(!p.insert(bundle(3, 1, 5, 20), 0, LIMITS), "bytes");
        assert!(p.insert(bundle(3, 1, 5, 10), 0, LIMITS));
        assert!(!p.insert(bundle(4, 1, 5, 0), 0, LIMITS), "count");
        assert_eq!((p.len(), p.bytes()), (4, 100));
        // Writer 1 holds 4: the bundle at 5 connects.
        let got = p.take_connecting(NodeId([1; 32]), Position { epoch: 1, seq: 4 });
        assert_eq!(got.map(|b| b.span.first.seq), Some(5));
        assert!(p.insert(bundle(1, 1, 12, 10), 0, LIMITS));
        // A newer epoch held: the older epoch's bundles are dropped.
        assert!(p
            .take_connecting(NodeId([1; 32]), Position { epoch: 2, seq: 3 })
            .is_none());
        assert_eq!(p.len(), 2);
        p.expire(999, 1_000);
        assert_eq!(p.len(), 2);
        p.expire(1_000, 1_000);
        assert_eq!((p.len(), p.bytes()), (0, 0));
    }
}
