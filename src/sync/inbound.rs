//! The receiving side of the engine: verifying bundles, parking the ones that
//! arrive ahead of a gap, and applying changes to the replica.

use std::collections::BTreeSet;

use super::bundle;
use super::engine::{newer, SyncEngine, Verified};
use super::io::{Effect, SyncEvent};
use super::message::Bundle;
use super::parked::ParkLimits;
use crate::model::{NodeId, Position};
use crate::replica::{CommittedChange, RecoverError, Replica, WriterHead, WriterRange};
use crate::store::{RemoteChange, StockRow, StoredChange};

impl SyncEngine {
    /// Verifies and applies a bundle, parks it if it arrived ahead of a gap.
    pub(super) fn ingest(
        &mut self,
        replica: &mut Replica,
        from: NodeId,
        bundle: Bundle,
        out: &mut Vec<Effect>,
    ) {
        let writer = bundle.writer;
        if writer == self.me {
            return self.check_own(replica, from, &bundle, out);
        }
        // Cheap staleness test first: duplicates are common (several peers relay
        // the same changes) and need no signature check. One change at the
        // head's own position is checked by hash: it is how a peer shows a
        // different change there (see `receive_heads`).
        let head = replica.heads().get(&writer).copied();
        let have = head.map(|h| h.position).unwrap_or_default();
        if let Some(last) = bundle::last_position(&bundle) {
            if !newer(last, have) && !self.differs_at_head(&bundle, head) {
                return;
            }
            if self.frozen(&writer, next_after(have)) {
                return;
            }
        }
        // The roster next, on the bundle's stated start: a writer that is not
        // a member (or revoked before it) costs no signature check, no parking
        // and no relay. A false claim only gets a bundle refused.
        let first = Position {
            epoch: bundle.epoch,
            seq: bundle.first_seq,
        };
        if let Err(e) = replica.admits_writer(&writer, first) {
            if let crate::error::ChangeError::Revoked { after, .. } = e {
                self.report_revoked_bundle(replica, from, &bundle, after, out);
            }
            return self.reject(from, Some(writer), e.into(), out);
        }
        let (span, changes) = match bundle::verify(&bundle) {
            Ok(v) => v,
            Err(e) => return self.reject(from, Some(writer), e.into(), out),
        };
        if self.check_against_head(replica, from, &bundle, &changes, out) {
            return;
        }
        let verified = Verified {
            from,
            writer,
            span,
            changes,
            signature: bundle.signature.0,
        };
        if let Some(p) = self.peers.get_mut(&from) {
            let k = p.known.entry(writer).or_default();
            if newer(span.last, *k) {
                *k = span.last;
            }
        }
        if !newer(span.last, have) {
            return;
        }
        let connects = if span.first.epoch == have.epoch {
            span.first.seq <= have.seq + 1
        } else {
            span.first.seq == 1
        };
        if !connects {
            let limits = self.park_limits();
            self.parked.insert(verified, self.now_ms, limits);
            return;
        }
        if self.apply(replica, verified, out) {
            self.unpark(replica, writer, out);
            self.announce(replica, writer, out);
        }
    }

    /// A bundle of this node's own writer came back: an echo of what it holds,
    /// its own history beyond its head (recovered: see docs/escrow.md, "Own
    /// history seen ahead"), or another history (a fork: proven, never merged).
    fn check_own(
        &mut self,
        replica: &mut Replica,
        from: NodeId,
        bundle: &Bundle,
        out: &mut Vec<Effect>,
    ) {
        let mine = replica.heads().get(&self.me).copied().unwrap_or_default();
        let Some(last) = bundle::last_position(bundle) else {
            return;
        };
        // Behind the own head: an echo (older positions are not compared).
        if !newer(last, mine.position) && last != mine.position {
            return;
        }
        if self.forks.position(&self.me).is_some() {
            return;
        }
        let (span, changes) = match bundle::verify(bundle) {
            Ok(v) => v,
            Err(e) => return self.reject(from, Some(self.me), e.into(), out),
        };
        // A different change at the own head's position: a fork of this
        // node's own key, provable to the whole fleet. Nothing is recovered.
        if self.check_against_head(replica, from, bundle, &changes, out) {
            return self.own_conflict_seen(from, mine.position, span.last, out);
        }
        let last_hash = changes
            .last()
            .and_then(|c| crate::replica::raw_change::inspect(c).ok())
            .map(|c| c.hash);
        if span.last == mine.position {
            if last_hash != Some(mine.hash) {
                self.own_conflict_seen(from, mine.position, span.last, out);
            }
            return;
        }
        self.note_own_seen(span.last, out);
        let _span = tracing::debug_span!("recover", node = %self.me, peer = %from).entered();
        match replica.recover_own(span.first.epoch, span.first.seq, &changes) {
            Ok(Some(batch)) => {
                let stock = batch
                    .pools
                    .iter()
                    .map(|p| StockRow::of(replica.book(), &self.me, p))
                    .collect();
                let held = replica.own_position();
                tracing::info!(
                    ?held,
                    changes = batch.changes.len(),
                    events = batch.events.len(),
                    "own history recovered from a peer"
                );
                out.push(Effect::RecoverOwn { batch, stock });
                out.push(Effect::Report(SyncEvent::OwnHistoryRecovered {
                    from,
                    held,
                    seen: self.own_seen.unwrap_or(held),
                }));
                let me = self.me;
                self.announce(replica, me, out);
            }
            Ok(None) => {}
            // The changes between may still come (the next offer asks for them).
            Err(e @ RecoverError::Gap { .. }) => {
                tracing::debug!(error = %e, "own changes ahead of a gap")
            }
            Err(e @ RecoverError::NotChained { .. }) => {
                tracing::warn!(error = %e, "own changes of another history: not recovered");
                self.own_conflict_seen(from, mine.position, span.last, out);
            }
            Err(e) => tracing::warn!(error = %e, "own changes not recovered; still recovering"),
        }
    }

    /// A peer's heads name this node's own writer beyond the own head: the
    /// node is behind its own history until it recovers that far.
    pub(super) fn own_heads_seen(
        &mut self,
        replica: &Replica,
        range: WriterRange,
        theirs: &[(NodeId, Position, [u8; 32])],
        out: &mut Vec<Effect>,
    ) {
        // A malformed message is refused whole (`receive_heads`): nothing of it is noted.
        let ordered = theirs.windows(2).all(|p| p[0].0 < p[1].0);
        if !range.is_valid()
            || !range.contains(&self.me)
            || !ordered
            || theirs.iter().any(|(w, ..)| !range.contains(w))
        {
            return;
        }
        let held = replica.own_position();
        if let Some((_, at, _)) = theirs.iter().find(|(w, ..)| *w == self.me) {
            if newer(*at, held) {
                self.note_own_seen(*at, out);
            }
        }
    }

    /// Raises the furthest own position seen to `at` (stored, so a restart
    /// keeps recovering instead of writing at the stale head).
    fn note_own_seen(&mut self, at: Position, out: &mut Vec<Effect>) {
        if self.own_seen.is_none_or(|s| newer(at, s)) {
            self.own_seen = Some(at);
            out.push(Effect::PersistOwnSeen(at));
        }
    }

    /// Another history of this node's own key: it stops taking events.
    fn own_conflict_seen(
        &mut self,
        from: NodeId,
        held: Position,
        seen: Position,
        out: &mut Vec<Effect>,
    ) {
        if self.own_conflict.is_none_or(|s| newer(seen, s)) {
            self.own_conflict = Some(seen);
        }
        out.push(Effect::Report(SyncEvent::OwnHistoryConflict {
            from,
            held,
            seen,
        }));
    }

    /// The furthest own position a peer showed, if any (see
    /// [`SyncEngine::restore_own_seen`]); beyond the own head, the node is
    /// recovering its own history and takes no events.
    pub fn own_seen(&self) -> Option<Position> {
        self.own_seen
    }

    /// Takes back the furthest own position seen that a store kept (at start).
    pub fn restore_own_seen(&mut self, seen: Option<Position>) {
        if let Some(at) = seen {
            if self.own_seen.is_none_or(|s| newer(at, s)) {
                self.own_seen = Some(at);
            }
        }
    }

    pub(super) fn apply(
        &mut self,
        replica: &mut Replica,
        v: Verified,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Verified {
            from,
            writer,
            span,
            changes,
            signature: head_signature,
        } = v;
        let epoch = span.first.epoch;
        let n = changes.len();
        let mut applied = false;
        let mut changes = changes.into_iter().enumerate();
        while let Some((i, bytes)) = changes.next() {
            let at = Position {
                epoch,
                seq: span.first.seq + i as u64,
            };
            if self.frozen(&writer, at) {
                break;
            }
            let signature = (i + 1 == n).then(|| head_signature.clone());
            match replica.apply_remote(&writer, epoch, &bytes) {
                Ok(Some(valid)) => {
                    applied = true;
                    self.stats.changes_applied += 1;
                    let pools: BTreeSet<_> = valid
                        .writes
                        .iter()
                        .filter_map(|(k, _)| k.pool().cloned())
                        .collect();
                    let stock = pools
                        .iter()
                        .map(|p| StockRow::of(replica.book(), &self.me, p))
                        .collect();
                    let change = CommittedChange {
                        position: valid.head.position,
                        hash: valid.head.hash,
                        bytes: bytes.clone(),
                    };
                    self.remember(
                        writer,
                        epoch,
                        StoredChange {
                            position: change.position,
                            bytes,
                            signature: signature.clone(),
                        },
                    );
                    out.push(Effect::Persist(RemoteChange {
                        writer,
                        change,
                        signature,
                        counters: valid.writes,
                        stock,
                    }));
                    out.push(Effect::Report(SyncEvent::Applied {
                        from,
                        writer,
                        position: valid.head.position,
                    }));
                }
                Ok(None) => {}
                Err(e) => {
                    if let crate::error::ChangeError::Revoked { after, got } = e {
                        let rest: Vec<Vec<u8>> = std::iter::once(bytes)
                            .chain(changes.by_ref().map(|(_, b)| b))
                            .collect();
                        self.report_revoked_changes(replica, from, writer, after, got, &rest, out);
                    }
                    self.reject(from, Some(writer), e.into(), out);
                    break;
                }
            }
        }
        debug_assert!(
            !applied || replica.heads().get(&writer).map(|h| h.position) <= Some(span.last)
        );
        applied
    }

    pub(super) fn unpark(&mut self, replica: &mut Replica, writer: NodeId, out: &mut Vec<Effect>) {
        loop {
            let have = replica
                .heads()
                .get(&writer)
                .map(|h| h.position)
                .unwrap_or_default();
            let Some(verified) = self.parked.take_connecting(writer, have) else {
                return;
            };
            if newer(verified.span.last, have) && !self.apply(replica, verified, out) {
                return;
            }
        }
    }

    /// True when `bundle` is one change at the position of `head` with
    /// another hash (O(n) to hash it; any other bundle is false at once).
    fn differs_at_head(&self, bundle: &Bundle, head: Option<WriterHead>) -> bool {
        let (Some(head), [only]) = (head, bundle.changes.as_slice()) else {
            return false;
        };
        let at = Position {
            epoch: bundle.epoch,
            seq: bundle.first_seq,
        };
        at == head.position
            && crate::replica::raw_change::inspect(&only.0).is_ok_and(|c| c.hash != head.hash)
    }

    fn park_limits(&self) -> ParkLimits {
        ParkLimits {
            max_bundles: self.config.max_parked,
            max_bytes: self.config.max_parked_bytes,
            max_per_writer: self.config.max_parked_per_writer,
        }
    }
}

/// The position after `p` in its epoch.
fn next_after(p: Position) -> Position {
    Position {
        epoch: p.epoch,
        seq: p.seq + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escrow::CounterKey;
    use crate::identity::Identity;
    use crate::model::{LocationId, PoolKey, Position, Sku};
    use crate::replica::{CounterWrite, OwnDoc};
    use crate::store::Snapshot;
    use crate::sync::signing::sign_head;
    use crate::sync::SyncConfig;

    /// The first `n` changes of `id`, each in a signed bundle of its own.
    fn one_change_bundles(id: &Identity, n: i64) -> Vec<Bundle> {
        let mut doc = OwnDoc::new(&id.node_id(), 1);
        let key = minted();
        (1..=n)
            .map(|v| {
                let w = CounterWrite {
                    key: key.clone(),
                    old: v - 1,
                    new: v,
                };
                let c = doc.commit(&[w], "[]", 0).unwrap();
                let signature = sign_head(id, c.position, &c.hash);
                bundle::pack(id.node_id(), 1, vec![c.bytes], c.position.seq, signature)
            })
            .collect()
    }

    #[test]
    fn bundles_parked_ahead_of_a_gap_apply_as_soon_as_it_is_filled() {
        let writer = Identity::from_seed([1; 32]);
        let w = writer.node_id();
        let me = Identity::from_seed([2; 32]);
        let mut replica = Replica::open(me.node_id(), Snapshot::default(), 1_000).unwrap();
        let mut engine = SyncEngine::new(me, SyncConfig::default());
        let mut out = Vec::new();
        let mut bundles = one_change_bundles(&writer, 3);
        let (b3, b2, b1) = (
            bundles.pop().unwrap(),
            bundles.pop().unwrap(),
            bundles.pop().unwrap(),
        );
        let head = |r: &Replica| r.heads().get(&w).map(|h| h.position);
        // The last two arrive first, the last one first: both wait for the gap.
        engine.ingest(&mut replica, w, b3, &mut out);
        engine.ingest(&mut replica, w, b2, &mut out);
        assert_eq!(engine.parked.len(), 2);
        assert_eq!(head(&replica), None);
        // The first fills it: all three apply now, in order, before any timer.
        engine.ingest(&mut replica, w, b1, &mut out);
        assert_eq!(head(&replica), Some(Position { epoch: 1, seq: 3 }));
        assert_eq!(engine.parked.len(), 0);
        assert_eq!(engine.stats().changes_applied, 3);
        let applied: Vec<u64> = out
            .iter()
            .filter_map(|e| match e {
                Effect::Report(SyncEvent::Applied { position, .. }) => Some(position.seq),
                _ => None,
            })
            .collect();
        assert_eq!(applied, [1, 2, 3]);
        assert_eq!(replica.book().counter(&w, &minted()), 3);
    }

    fn minted() -> CounterKey {
        CounterKey::Minted(PoolKey::new(
            LocationId::new("S").unwrap(),
            Sku::new("A").unwrap(),
        ))
    }
}
