//! The engine's side of forks (see [`super::fork`]): noticing that a verified
//! bundle disagrees with the head this replica holds, building the proof from
//! both sides, and spreading it so every node learns it.
//!
//! Once a fork of a writer is known, the writer is frozen from the fork's
//! position on: this replica neither applies nor pushes its changes at or
//! after that position, so no more of its spending is accepted on either
//! branch. Changes before it (the common part, which may still be missing
//! somewhere) keep flowing. The proof is persisted, sent to every peer on
//! connect and relayed on first sight.

use std::collections::BTreeMap;

use tracing::warn;

use super::engine::{newer, SyncEngine};
use super::fork::{self, committed, first_conflict, Fork, ForkProof};
use super::io::{Effect, RejectReason, SyncEvent};
use super::message::{Bundle, Message};
use crate::model::{NodeId, Position};
use crate::replica::Replica;
use crate::store::{ChangeRange, StoredChange};

/// Most forks a node keeps proofs of. A fork needs a member's key to sign two
/// histories; past this many, further forks are still refused on sight but
/// neither kept nor relayed.
pub const MAX_FORKS: usize = 1024;

/// Forks known to one engine, and bundles waiting for this replica's side of
/// a proof to be loaded.
#[derive(Default)]
pub(super) struct Forks {
    known: BTreeMap<NodeId, (Fork, ForkProof)>,
    /// Per writer: the peer and the bundle that disagreed with this replica's head.
    waiting: BTreeMap<NodeId, (NodeId, Bundle)>,
}

impl Forks {
    /// A digest of the forked writers (a wrapping sum of their ids' first 8
    /// bytes): two nodes with the same set show the same value.
    pub(super) fn digest(&self) -> u64 {
        self.known.keys().fold(0u64, |acc, w| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&w.0[..8]);
            acc.wrapping_add(u64::from_le_bytes(b))
        })
    }

    /// The fork position of `writer`, if it is known to have forked.
    pub(super) fn position(&self, writer: &NodeId) -> Option<Position> {
        self.known.get(writer).map(|(f, _)| f.position)
    }
}

impl SyncEngine {
    /// Every fork known, by writer.
    pub fn forks(&self) -> impl Iterator<Item = &Fork> {
        self.forks.known.values().map(|(f, _)| f)
    }

    /// Takes back the proofs a store kept (at start): each is checked again; one
    /// that no longer proves anything is dropped and logged.
    pub fn restore_forks(&mut self, proofs: impl IntoIterator<Item = ForkProof>) {
        for proof in proofs {
            match fork::check(&proof) {
                Ok(f) => {
                    if f.writer == self.me {
                        self.own_conflict = Some(f.position);
                    }
                    if self.forks.known.len() < MAX_FORKS {
                        self.forks.known.insert(f.writer, (f, proof));
                    }
                }
                Err(e) => warn!(error = %e, "a stored fork proof does not verify; dropped"),
            }
        }
    }

    /// True when `writer` forked at or before `position`: its change there is
    /// neither applied nor pushed.
    pub(super) fn frozen(&self, writer: &NodeId, position: Position) -> bool {
        self.forks
            .position(writer)
            .is_some_and(|at| !newer(at, position))
    }

    /// A bundle of `writer` whose chain and signature verified (`changes`
    /// restored): if it commits to a hash at this replica's head position that
    /// differs from the head's, it is half of a proof. Returns true then (the
    /// caller applies nothing of it) and asks storage for this replica's half.
    pub(super) fn check_against_head(
        &mut self,
        replica: &Replica,
        from: NodeId,
        bundle: &Bundle,
        changes: &[Vec<u8>],
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(head) = replica.heads().get(&bundle.writer).copied() else {
            return false;
        };
        if head.position.epoch != bundle.epoch || head.position.seq == 0 {
            return false;
        }
        let theirs = committed(changes, bundle.first_seq);
        let mine = [(head.position.seq, head.hash)];
        if first_conflict(&theirs, &mine).is_none() {
            return false;
        }
        let writer = bundle.writer;
        if self.forks.known.contains_key(&writer) || self.forks.waiting.contains_key(&writer) {
            return true;
        }
        self.forks.waiting.insert(writer, (from, bundle.clone()));
        // The load's answer comes back as `Loaded` for this node itself: the
        // changes from the head on, up to a signed one.
        out.push(Effect::Load {
            peer: self.me,
            range: ChangeRange {
                writer,
                epoch: head.position.epoch,
                after: head.position.seq - 1,
                max_changes: self.config.bundle_changes,
                max_bytes: self.config.bundle_bytes,
                end_signed: writer != self.me,
            },
        });
        true
    }

    /// This replica's changes of `writer` from its head on arrived: with the
    /// waiting bundle, they make a proof.
    pub(super) fn own_half_loaded(
        &mut self,
        writer: NodeId,
        changes: Vec<StoredChange>,
        out: &mut Vec<Effect>,
    ) {
        let Some((from, theirs)) = self.forks.waiting.remove(&writer) else {
            return;
        };
        let epoch = theirs.epoch;
        let Some((mine, _)) = self.make_bundle(writer, epoch, changes) else {
            warn!(%writer, "no signed change of this writer at its head: the fork is not provable from here");
            return;
        };
        let proof = ForkProof { a: mine, b: theirs };
        match fork::check(&proof) {
            // The peer that sent the other branch lacks the proof too.
            Ok(f) => self.learn_fork(from, None, f, proof, out),
            Err(e) => warn!(%writer, error = %e, "the two branches did not make a proof"),
        }
    }

    /// A proof from a peer: checked, then learnt (or refused).
    pub(super) fn receive_fork(
        &mut self,
        replica: &Replica,
        from: NodeId,
        proof: ForkProof,
        out: &mut Vec<Effect>,
    ) {
        let writer = proof.a.writer;
        if self.forks.known.contains_key(&writer) {
            return;
        }
        if let Err(e) = replica.admits_writer(&writer, Position::default()) {
            return self.reject(from, Some(writer), e.into(), out);
        }
        match fork::check(&proof) {
            Ok(f) => self.learn_fork(from, Some(from), f, proof, out),
            Err(e) => {
                let reason = RejectReason::BadForkProof(e.to_string());
                self.reject(from, Some(writer), reason, out)
            }
        }
    }

    /// Records a checked fork: persisted, reported, relayed to every peer but
    /// `except` (the one it came from), and the writer frozen from its position on.
    fn learn_fork(
        &mut self,
        from: NodeId,
        except: Option<NodeId>,
        fork: Fork,
        proof: ForkProof,
        out: &mut Vec<Effect>,
    ) {
        if self.forks.known.contains_key(&fork.writer) {
            return;
        }
        warn!(writer = %fork.writer, position = ?fork.position, %from, "fork: two signed histories of one writer");
        if fork.writer == self.me && self.own_conflict.is_none_or(|s| newer(fork.position, s)) {
            self.own_conflict = Some(fork.position);
        }
        out.push(Effect::Report(SyncEvent::Fork {
            from,
            writer: fork.writer,
            position: fork.position,
        }));
        if self.forks.known.len() >= MAX_FORKS {
            return;
        }
        out.push(Effect::PersistFork(proof.clone()));
        let message = Message::Fork(proof.clone());
        for peer in self.peer_ids() {
            if Some(peer) != except {
                self.send(peer, &message, out);
            }
        }
        self.forks.known.insert(fork.writer, (fork, proof));
    }

    /// A peer's digest shows other forks than this node's: sends it every
    /// proof held, at most once per `roster_resend_ms` (the same pace as
    /// rosters: a lost proof is repaired by the next probes, and a peer that
    /// holds a proof this node lacks sends it the same way).
    pub(super) fn resend_forks(&mut self, peer: NodeId, out: &mut Vec<Effect>) {
        let now = self.now_ms;
        let pace = self.config.roster_resend_ms;
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.forks_sent_ms.is_some_and(|at| now < at + pace) {
            return;
        }
        p.forks_sent_ms = Some(now);
        self.send_forks(peer, out);
    }

    /// Sends `peer` every fork proof held (on connect: a node that was away
    /// learns what the fleet found meanwhile).
    pub(super) fn send_forks(&mut self, peer: NodeId, out: &mut Vec<Effect>) {
        let messages: Vec<Message> = self
            .forks
            .known
            .values()
            .map(|(_, p)| Message::Fork(p.clone()))
            .collect();
        for m in messages {
            self.send(peer, &m, out);
        }
    }
}
