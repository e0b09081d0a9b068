//! Every writer head a replica holds, sorted by writer and summarised by
//! ranges of writer ids, so that two replicas find where they differ without
//! listing every writer.
//!
//! A range is the set of writer ids that start with the same `depth` hex digits
//! (nibbles). Its summary is the number of heads in it and the wrapping sum of a
//! 128-bit hash of each `(writer, epoch, seq, hash)`: equal sets give equal
//! summaries, and adding or changing one head updates a summary in O(1). The
//! summaries of the whole set and of the ranges of depth 1 to [`INDEXED_DEPTH`]
//! are kept up to date on every change (4,368 buckets); deeper ranges, which
//! hold few writers, are summed on demand from the sorted map.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::remote::WriterHead;
use crate::model::NodeId;

/// Depths whose summaries are kept up to date (16 + 256 + 4,096 buckets).
pub const INDEXED_DEPTH: u8 = 3;
/// Deepest range: 8 nibbles (32 bits of the writer id).
pub const MAX_DEPTH: u8 = 8;

/// The writer ids that start with `depth` given nibbles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WriterRange {
    /// Number of leading nibbles fixed (0 = every writer; at most [`MAX_DEPTH`]).
    pub depth: u8,
    /// Those nibbles, as a number below `16^depth`.
    pub prefix: u32,
}

impl WriterRange {
    /// Every writer.
    pub const ALL: WriterRange = WriterRange {
        depth: 0,
        prefix: 0,
    };

    /// True when `depth` and `prefix` describe a range.
    pub fn is_valid(&self) -> bool {
        self.depth <= MAX_DEPTH && u64::from(self.prefix) < 1u64 << (4 * u32::from(self.depth))
    }

    /// True when `writer` lies in the range.
    pub fn contains(&self, writer: &NodeId) -> bool {
        prefix_of(writer, self.depth) == self.prefix
    }

    /// The 16 ranges one nibble deeper (`None` at [`MAX_DEPTH`]).
    pub fn children(&self) -> Option<impl Iterator<Item = WriterRange>> {
        let base = *self;
        (base.depth < MAX_DEPTH).then(|| {
            (0..16u32).map(move |n| WriterRange {
                depth: base.depth + 1,
                prefix: (base.prefix << 4) | n,
            })
        })
    }

    /// The first and last writer ids of the range.
    pub fn bounds(&self) -> (NodeId, NodeId) {
        let mut lo = [0u8; 32];
        let mut hi = [0xffu8; 32];
        let bits = 4 * u32::from(self.depth);
        if bits > 0 {
            let p = (u64::from(self.prefix) << (32 - bits)) as u32;
            let mask = (u64::from(u32::MAX) << (32 - bits)) as u32;
            lo[..4].copy_from_slice(&p.to_be_bytes());
            hi[..4].copy_from_slice(&(p | !mask).to_be_bytes());
        }
        (NodeId(lo), NodeId(hi))
    }
}

/// The first `depth` nibbles of `writer`, as a number.
fn prefix_of(writer: &NodeId, depth: u8) -> u32 {
    if depth == 0 {
        return 0;
    }
    let first = u32::from_be_bytes([writer.0[0], writer.0[1], writer.0[2], writer.0[3]]);
    first >> (32 - 4 * u32::from(depth.min(MAX_DEPTH)))
}

/// How many heads a range holds and what they sum to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeSummary {
    /// Wrapping sum of the heads' 128-bit hashes.
    pub sum: u128,
    /// Number of heads.
    pub count: u32,
}

impl RangeSummary {
    fn add(&mut self, h: u128) {
        self.sum = self.sum.wrapping_add(h);
        self.count = self.count.wrapping_add(1);
    }

    fn remove(&mut self, h: u128) {
        self.sum = self.sum.wrapping_sub(h);
        self.count = self.count.wrapping_sub(1);
    }
}

/// The 128-bit hash one head adds to its ranges' sums.
fn head_hash(writer: &NodeId, head: &WriterHead) -> u128 {
    let d = Sha256::new()
        .chain_update(writer.0)
        .chain_update(head.position.epoch.to_le_bytes())
        .chain_update(head.position.seq.to_le_bytes())
        .chain_update(head.hash)
        .finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_le_bytes(b)
}

/// The heads, sorted, with their range summaries.
#[derive(Clone, Debug)]
pub struct HeadIndex {
    heads: BTreeMap<NodeId, WriterHead>,
    total: RangeSummary,
    /// `levels[d - 1][prefix]` for depths 1..=INDEXED_DEPTH.
    levels: Vec<Vec<RangeSummary>>,
}

impl Default for HeadIndex {
    fn default() -> Self {
        Self {
            heads: BTreeMap::new(),
            total: RangeSummary::default(),
            levels: (1..=INDEXED_DEPTH)
                .map(|d| vec![RangeSummary::default(); 1 << (4 * d)])
                .collect(),
        }
    }
}

impl HeadIndex {
    /// An index of `heads`.
    pub fn from_heads(heads: impl IntoIterator<Item = (NodeId, WriterHead)>) -> Self {
        let mut index = Self::default();
        for (w, h) in heads {
            index.insert(w, h);
        }
        index
    }

    /// Sets `writer`'s head.
    pub fn insert(&mut self, writer: NodeId, head: WriterHead) {
        let new = head_hash(&writer, &head);
        let old = self
            .heads
            .insert(writer, head)
            .map(|h| head_hash(&writer, &h));
        if let Some(o) = old {
            self.total.remove(o);
        }
        self.total.add(new);
        for (d, level) in self.levels.iter_mut().enumerate() {
            let bucket = &mut level[prefix_of(&writer, d as u8 + 1) as usize];
            if let Some(o) = old {
                bucket.remove(o);
            }
            bucket.add(new);
        }
    }

    /// `writer`'s head, if held.
    pub fn get(&self, writer: &NodeId) -> Option<&WriterHead> {
        self.heads.get(writer)
    }

    /// True when a head of `writer` is held.
    pub fn contains_key(&self, writer: &NodeId) -> bool {
        self.heads.contains_key(writer)
    }

    /// Every head, in writer order.
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &WriterHead)> {
        self.heads.iter()
    }

    /// Number of writers held.
    pub fn len(&self) -> usize {
        self.heads.len()
    }

    /// True when no head is held.
    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    /// The heads in `range`, in writer order.
    pub fn in_range(&self, range: WriterRange) -> impl Iterator<Item = (&NodeId, &WriterHead)> {
        let (lo, hi) = range.bounds();
        self.heads.range(lo..=hi)
    }

    /// The summary of `range`: O(1) down to depth 3, O(heads in it) below.
    pub fn summary(&self, range: WriterRange) -> RangeSummary {
        match range.depth {
            0 => self.total,
            d if d <= INDEXED_DEPTH => self.levels[usize::from(d) - 1]
                .get(range.prefix as usize)
                .copied()
                .unwrap_or_default(),
            _ => {
                let mut s = RangeSummary::default();
                for (w, h) in self.in_range(range) {
                    s.add(head_hash(w, h));
                }
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Position;

    fn id(first: [u8; 4], rest: u8) -> NodeId {
        let mut b = [rest; 32];
        b[..4].copy_from_slice(&first);
        NodeId(b)
    }

    fn head(seq: u64) -> WriterHead {
        WriterHead {
            position: Position { epoch: 1, seq },
            hash: [seq as u8; 32],
        }
    }

    #[test]
    fn summaries_match_a_recount_at_every_depth_and_order_does_not_matter() {
        let writers: Vec<NodeId> = (0..300u32)
            .map(|i| id((i.wrapping_mul(2_654_435_761)).to_be_bytes(), i as u8))
            .collect();
        let mut a = HeadIndex::default();
        let mut b = HeadIndex::default();
        for (i, w) in writers.iter().enumerate() {
            a.insert(*w, head(1));
            a.insert(*w, head(i as u64 + 2));
        }
        for (i, w) in writers.iter().enumerate().rev() {
            b.insert(*w, head(i as u64 + 2));
        }
        for depth in 0..=MAX_DEPTH {
            for w in writers.iter().take(20) {
                let r = WriterRange {
                    depth,
                    prefix: prefix_of(w, depth),
                };
                let mut recount = RangeSummary::default();
                for x in writers.iter().filter(|x| r.contains(x)) {
                    recount.add(head_hash(x, a.get(x).unwrap()));
                }
                assert_eq!(a.summary(r), recount, "depth {depth}");
                assert_eq!(b.summary(r), recount, "depth {depth}");
                assert_eq!(a.in_range(r).count() as u32, recount.count);
            }
        }
        b.insert(writers[7], head(99));
        assert_ne!(a.summary(WriterRange::ALL), b.summary(WriterRange::ALL));
    }

    #[test]
    fn ranges_cover_exactly_their_writers() {
        let r = WriterRange {
            depth: 3,
            prefix: 0xabc,
        };
        assert!(r.is_valid());
        assert!(r.contains(&id([0xab, 0xc0, 0, 0], 0)));
        assert!(r.contains(&id([0xab, 0xcf, 0xff, 0xff], 0xff)));
        assert!(!r.contains(&id([0xab, 0xd0, 0, 0], 0)));
        let kids: Vec<_> = r.children().unwrap().collect();
        assert_eq!(kids.len(), 16);
        assert_eq!(kids[5].prefix, 0xabc5);
        assert!(!WriterRange {
            depth: 2,
            prefix: 0x100
        }
        .is_valid());
        assert!(!WriterRange {
            depth: 9,
            prefix: 0
        }
        .is_valid());
        let deepest = WriterRange {
            depth: MAX_DEPTH,
            prefix: 0xdead_beef,
        };
        assert!(deepest.is_valid() && deepest.children().is_none());
        assert!(deepest.contains(&id([0xde, 0xad, 0xbe, 0xef], 3)));
    }
}
