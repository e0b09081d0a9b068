//! The receiving side of the engine: verifying bundles, parking the ones that
//! arrive ahead of a gap, and applying changes to the replica.

use std::collections::BTreeSet;

use super::bundle;
use super::engine::{newer, SyncEngine, Verified};
use super::io::{Effect, SyncEvent};
use super::message::Bundle;
use super::parked::ParkLimits;
use crate::model::{NodeId, Position};
use crate::replica::{CommittedChange, Replica};
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
        // the same changes) and need no signature check.
        let have = replica
            .heads()
            .get(&writer)
            .map(|h| h.position)
            .unwrap_or_default();
        if let Some(last) = bundle::last_position(&bundle) {
            if !newer(last, have) {
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
            return self.reject(from, Some(writer), e.into(), out);
        }
        let (span, changes) = match bundle::verify(&bundle) {
            Ok(v) => v,
            Err(e) => return self.reject(from, Some(writer), e.into(), out),
        };
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
    /// or signed evidence that its history goes further (or elsewhere) than
    /// what it holds.
    fn check_own(
        &mut self,
        replica: &Replica,
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
        let (span, changes) = match bundle::verify(bundle) {
            Ok(v) => v,
            Err(e) => return self.reject(from, Some(self.me), e.into(), out),
        };
        let last_hash = changes
            .last()
            .and_then(|c| crate::replica::raw_change::inspect(c).ok())
            .map(|c| c.hash);
        if span.last == mine.position && last_hash == Some(mine.hash) {
            return;
        }
        if self.own_conflict.is_none_or(|seen| newer(span.last, seen)) {
            self.own_conflict = Some(span.last);
        }
        out.push(Effect::Report(SyncEvent::OwnHistoryConflict {
            from,
            held: mine.position,
            seen: span.last,
        }));
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
        for (i, bytes) in changes.into_iter().enumerate() {
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

    fn park_limits(&self) -> ParkLimits {
        ParkLimits {
            max_bundles: self.config.max_parked,
            max_bytes: self.config.max_parked_bytes,
            max_per_writer: self.config.max_parked_per_writer,
        }
    }
}
