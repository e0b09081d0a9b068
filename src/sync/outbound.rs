//! The sending side of the engine: announcing new changes, pushing what a peer
//! lacks (from memory or by asking storage), signing own heads, and the window.

use std::collections::VecDeque;

use super::bundle;
use super::engine::{newer, Recent, SyncEngine};
use super::io::Effect;
use super::message::{self, Bundle, Message};
use super::signing::sign_head;
use crate::model::{NodeId, Position};
use crate::replica::Replica;
use crate::store::{ChangeRange, StoredChange};

impl SyncEngine {
    /// New changes of `writer`: push them now, or at the next flush when coalescing.
    pub(super) fn announce(&mut self, replica: &Replica, writer: NodeId, out: &mut Vec<Effect>) {
        if self.config.push_delay_ms == 0 {
            for peer in self.peer_ids() {
                self.push(replica, peer, writer, out);
            }
        } else {
            self.dirty.insert(writer);
            self.flush_at
                .get_or_insert(self.now_ms + self.config.push_delay_ms);
        }
    }

    pub(super) fn remember(&mut self, writer: NodeId, epoch: u32, change: StoredChange) {
        let r = self.recent.entry(writer).or_insert_with(|| Recent {
            epoch,
            changes: VecDeque::new(),
        });
        let follows = r
            .changes
            .back()
            .is_none_or(|b| b.position.seq + 1 == change.position.seq);
        if r.epoch != epoch || !follows {
            r.epoch = epoch;
            r.changes.clear();
        }
        r.changes.push_back(change);
        while r.changes.len() > self.config.recent_per_writer {
            r.changes.pop_front();
        }
    }

    /// Sends `peer` what it lacks of `writer`, within the window: from memory
    /// when the recent changes cover it, else by asking storage.
    pub(super) fn push(
        &mut self,
        replica: &Replica,
        peer: NodeId,
        writer: NodeId,
        out: &mut Vec<Effect>,
    ) {
        let Some(head) = replica.heads().get(&writer).map(|h| h.position) else {
            return;
        };
        // A forked writer's changes from the fork on go nowhere.
        let fork = self.forks.position(&writer);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let known = p.known.get(&writer).copied().unwrap_or_default();
        if !newer(head, known) {
            p.pending.remove(&writer);
            return;
        }
        // Until the peer is known to hold the head, acks retry this writer.
        p.pending.insert(writer);
        if p.in_flight >= self.config.window_bytes || p.loading.contains(&writer) {
            return;
        }
        let after = if known.epoch == head.epoch {
            known.seq
        } else {
            0
        };
        // Nothing the roster refuses: a writer that is not a member, or whose
        // next change comes after its revocation (applied here before the
        // roster that revoked it arrived).
        let next = Position {
            epoch: head.epoch,
            seq: after + 1,
        };
        if replica.admits_writer(&writer, next).is_err() || self.refused_by(&peer, &writer, next) {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.pending.remove(&writer);
            }
            return;
        }
        let mut max_changes = self.config.bundle_changes;
        if let Some(at) = fork {
            if !newer(at, next) {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.pending.remove(&writer);
                }
                return;
            }
            if at.epoch == head.epoch {
                max_changes = max_changes.min((at.seq - next.seq) as usize);
            }
        }
        let range = ChangeRange {
            writer,
            epoch: head.epoch,
            after,
            max_changes,
            max_bytes: self.config.bundle_bytes,
            end_signed: writer != self.me,
        };
        let from_memory = self.recent.get(&writer).and_then(|r| {
            let first = r.changes.front()?.position.seq;
            (r.epoch == head.epoch && first <= after + 1).then(|| {
                let mut taken = Vec::new();
                let mut bytes = 0;
                for c in r.changes.iter().filter(|c| c.position.seq > after) {
                    bytes += c.bytes.len();
                    taken.push(c.clone());
                    if !range.admits(taken.len(), bytes, c.signature.is_some()) {
                        break;
                    }
                }
                taken
            })
        });
        match from_memory {
            Some(changes) if !changes.is_empty() => {
                if let Some((bundle, end)) = self.make_bundle(writer, head.epoch, changes) {
                    self.send_bundle(peer, bundle, end, out);
                }
            }
            _ => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.loading.insert(writer);
                }
                out.push(Effect::Load { peer, range });
            }
        }
    }

    /// Cuts `changes` at the last signed one (signing own heads) and bundles them.
    pub(super) fn make_bundle(
        &mut self,
        writer: NodeId,
        epoch: u32,
        mut changes: Vec<StoredChange>,
    ) -> Option<(Bundle, Position)> {
        let signature = if writer == self.me {
            let last = changes.last()?;
            let position = last.position;
            match &self.own_signature {
                Some((p, s)) if *p == position => s.clone(),
                _ => {
                    let hash = automerge::Change::try_from(&last.bytes[..]).ok()?.hash().0;
                    let s = sign_head(&self.identity, position, &hash);
                    self.own_signature = Some((position, s.clone()));
                    s
                }
            }
        } else {
            let end = changes.iter().rposition(|c| c.signature.is_some())?;
            changes.truncate(end + 1);
            changes.last()?.signature.clone()?
        };
        let end = changes.last()?.position;
        let first_seq = changes.first()?.position.seq;
        let bytes = changes.into_iter().map(|c| c.bytes).collect();
        Some((
            bundle::pack(writer, epoch, bytes, first_seq, signature),
            end,
        ))
    }

    pub(super) fn send_bundle(
        &mut self,
        peer: NodeId,
        bundle: Bundle,
        end: Position,
        out: &mut Vec<Effect>,
    ) {
        let writer = bundle.writer;
        let bytes = self.send(peer, &Message::Changes(bundle), out);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.in_flight += bytes;
            p.known.insert(writer, end);
        }
    }

    pub(super) fn send(&mut self, to: NodeId, msg: &Message, out: &mut Vec<Effect>) -> usize {
        let message = message::encode(msg);
        let n = message.len();
        self.stats.bytes_sent += n as u64;
        self.stats.messages_sent += 1;
        out.push(Effect::Send { to, message });
        n
    }
}
