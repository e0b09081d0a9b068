//! Telling a sender what was refused, so it stops offering it.
//!
//! When a node refuses a bundle for a reason that resending cannot cure (a bad
//! signature or chain, a forbidden write, a writer the roster does not admit),
//! it answers `Refused { writer, position, reason }`. The sender reports it
//! (`SyncEvent::RefusedByPeer`) and stops pushing that writer's changes up to
//! `position` to that peer, until the connection is made again or a newer
//! roster is installed (either may change the answer). A gap is not answered:
//! it heals once the missing changes arrive.

use super::engine::{newer, SyncEngine};
use super::io::{Effect, RejectReason, SyncEvent};
use super::message::Message;
use crate::model::{NodeId, Position};

/// Longest reason kept or sent, in bytes.
pub const MAX_REASON: usize = 256;
/// Most refused writers remembered per peer; past it, new refusals are
/// reported but not remembered (the sender then resends at the probe pace).
pub const MAX_REFUSED_PER_PEER: usize = 4096;

/// `reason` cut to at most [`MAX_REASON`] bytes, on a character boundary.
fn bounded(reason: &str) -> String {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

/// True for refusals that the same bytes sent again would meet again.
fn lasting(reason: &RejectReason) -> bool {
    !matches!(reason, RejectReason::Gap { .. })
}

impl SyncEngine {
    /// After a `Changes` message of `writer` ending at `last` was handled:
    /// if it was refused for a lasting reason, tells the sender.
    pub(super) fn answer_refusal(
        &mut self,
        to: NodeId,
        writer: NodeId,
        last: Position,
        rejected_before: u64,
        out: &mut Vec<Effect>,
    ) {
        if self.stats.rejected == rejected_before {
            return;
        }
        let reason = out.iter().rev().find_map(|e| match e {
            Effect::Report(SyncEvent::Rejected { from, reason, .. }) if *from == to => {
                Some(reason.clone())
            }
            _ => None,
        });
        let Some(reason) = reason.filter(lasting) else {
            return;
        };
        let msg = Message::Refused {
            writer,
            position: last,
            reason: bounded(&reason.to_string()),
        };
        self.send(to, &msg, out);
    }

    /// A peer refused `writer`'s changes up to `position`: stop offering them.
    pub(super) fn receive_refused(
        &mut self,
        from: NodeId,
        writer: NodeId,
        position: Position,
        reason: String,
        out: &mut Vec<Effect>,
    ) {
        let Some(p) = self.peers.get_mut(&from) else {
            return;
        };
        let known = p.refused.len() < MAX_REFUSED_PER_PEER || p.refused.contains_key(&writer);
        if known {
            let at = p.refused.entry(writer).or_default();
            if newer(position, *at) {
                *at = position;
            }
            p.pending.remove(&writer);
        }
        out.push(Effect::Report(SyncEvent::RefusedByPeer {
            peer: from,
            writer,
            position,
            reason: bounded(&reason),
        }));
    }

    /// True when `peer` refused `writer`'s change at `next` already.
    pub(super) fn refused_by(&self, peer: &NodeId, writer: &NodeId, next: Position) -> bool {
        self.peers
            .get(peer)
            .and_then(|p| p.refused.get(writer))
            .is_some_and(|at| !newer(next, *at))
    }

    /// A newer roster may admit what was refused: forget every refusal.
    pub(super) fn forget_refusals(&mut self) {
        for p in self.peers.values_mut() {
            p.refused.clear();
        }
    }
}
