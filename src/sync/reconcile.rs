//! Finding what two replicas hold differently without listing every writer.
//!
//! A `Digest` carries the sum of every head (O(1) to build and compare). Where
//! digests differ, a side offers a range: the heads in it when there are at
//! most [`HEADS_PAGE`], else the summaries of its 16 sub-ranges, which the
//! other side compares and answers only for the sub-ranges that differ. So a
//! message costs O(its size), whatever the number of writers already equal,
//! and a difference of one writer among a million is found in at most
//! `MAX_DEPTH` rounds of 16 summaries.

use super::engine::{newer, SyncEngine};
use super::io::{Effect, RejectReason};
use super::message::Message;
use crate::model::{NodeId, Position};
use crate::replica::{RangeSummary, Replica, WriterRange};

/// Most heads one `Heads` message lists before a range is split instead.
pub const HEADS_PAGE: u32 = 128;
/// Most heads accepted in one `Heads` message (a range at the deepest level
/// may hold more than a page only when writer ids were ground to collide).
const MAX_HEADS: usize = 100_000;

/// This replica's digest: the sum of every head, and how many there are.
pub(super) fn digest(replica: &Replica) -> ([u8; 16], u32) {
    let s = replica.heads().summary(WriterRange::ALL);
    (s.sum.to_le_bytes(), s.count)
}

impl SyncEngine {
    /// Sends `peer` this replica's view of `range`: its heads, or its
    /// sub-range summaries when it holds more than a page.
    pub(super) fn offer(
        &mut self,
        replica: &Replica,
        peer: NodeId,
        range: WriterRange,
        reply: bool,
        out: &mut Vec<Effect>,
    ) {
        let index = replica.heads();
        let count = index.summary(range).count;
        let msg = match range.children() {
            Some(children) if count > HEADS_PAGE => Message::Summaries {
                range,
                children: children.map(|c| index.summary(c)).collect(),
            },
            _ => Message::Heads {
                range,
                heads: index
                    .in_range(range)
                    .map(|(w, h)| (*w, h.position, h.hash))
                    .collect(),
                reply,
            },
        };
        self.send(peer, &msg, out);
    }

    /// Answers the sub-ranges whose summaries differ from the peer's.
    pub(super) fn receive_summaries(
        &mut self,
        replica: &Replica,
        from: NodeId,
        range: WriterRange,
        children: Vec<RangeSummary>,
        out: &mut Vec<Effect>,
    ) {
        let Some(mine) = range.children().filter(|_| range.is_valid()) else {
            let why = format!("summaries of an invalid range {range:?}");
            return self.reject(from, None, RejectReason::Malformed(why), out);
        };
        if children.len() != 16 {
            let why = format!("{} summaries, not 16", children.len());
            return self.reject(from, None, RejectReason::Malformed(why), out);
        }
        let differing: Vec<WriterRange> = mine
            .zip(children)
            .filter(|(c, theirs)| replica.heads().summary(*c) != *theirs)
            .map(|(c, _)| c)
            .collect();
        for c in differing {
            self.offer(replica, from, c, false, out);
        }
    }

    /// Takes the peer's heads in `range` as what it holds there, pushes what
    /// it lacks, and answers with this replica's heads if it lacks something.
    pub(super) fn receive_heads(
        &mut self,
        replica: &Replica,
        from: NodeId,
        range: WriterRange,
        theirs: Vec<(NodeId, Position, [u8; 32])>,
        reply: bool,
        out: &mut Vec<Effect>,
    ) {
        let ordered = theirs.windows(2).all(|p| p[0].0 < p[1].0);
        if !range.is_valid()
            || theirs.len() > MAX_HEADS
            || !ordered
            || theirs.iter().any(|(w, ..)| !range.contains(w))
        {
            let why = format!("heads of range {range:?} malformed");
            return self.reject(from, None, RejectReason::Malformed(why), out);
        }
        let index = replica.heads();
        let they_have_more = theirs
            .iter()
            .any(|(w, pos, _)| index.get(w).is_none_or(|h| newer(*pos, h.position)));
        let Some(p) = self.peers.get_mut(&from) else {
            return;
        };
        let (lo, hi) = range.bounds();
        let stale: Vec<NodeId> = p.known.range(lo..=hi).map(|(w, _)| *w).collect();
        for w in stale {
            p.known.remove(&w);
        }
        p.known.extend(theirs.iter().map(|(w, pos, _)| (*w, *pos)));
        // A head at the same position with another hash: one side holds a
        // different change there. Take the peer to hold one change less, so
        // this replica's head change goes to it and it can compare (and build
        // the fork proof: see `check_against_head`).
        for (w, pos, hash) in &theirs {
            let differs = index
                .get(w)
                .is_some_and(|h| h.position == *pos && h.hash != *hash && pos.seq > 0);
            if differs {
                let one_less = Position {
                    epoch: pos.epoch,
                    seq: pos.seq - 1,
                };
                p.known.insert(*w, one_less);
            }
        }
        let lacking: Vec<NodeId> = index
            .in_range(range)
            .filter(|(w, h)| p.known.get(w).is_none_or(|k| newer(h.position, *k)))
            .map(|(w, _)| *w)
            .collect();
        p.pending.extend(lacking.iter().copied());
        for w in lacking {
            self.push(replica, from, w, out);
        }
        if !reply && they_have_more {
            self.offer(replica, from, range, true, out);
        }
    }
}
