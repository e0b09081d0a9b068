//! The sync protocol as a pure state machine: explicit inputs in, effects out.
//! No sockets, no clock, no disk: the caller passes `now`, performs the effects
//! (send, load from storage, persist) and feeds results back as inputs.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use tracing::debug;

use super::bundle::Span;
use super::equivocation::Forks;
pub use super::io::{Effect, Input, RejectReason, RightsMessage, SyncConfig, SyncEvent, SyncStats};
use super::message::{self, Message};
use super::parked::Parked;
use super::reconcile::digest;
use crate::identity::Identity;
use crate::model::{NodeId, Position};
use crate::replica::{Replica, WriterRange};
use crate::store::StoredChange;

#[derive(Default)]
pub(super) struct Peer {
    /// What the peer holds, as far as known (from its heads and what was sent).
    pub(super) known: BTreeMap<NodeId, Position>,
    /// Writers this replica holds newer than `known` says the peer does: what
    /// acks and timers push (never a walk over every writer).
    pub(super) pending: BTreeSet<NodeId>,
    pub(super) in_flight: usize,
    pub(super) last_progress_ms: u64,
    pub(super) next_probe_ms: u64,
    pub(super) loading: BTreeSet<NodeId>,
    /// The roster version last sent to the peer, and when.
    pub(super) roster_sent: Option<(u64, u64)>,
    /// When the fork proofs were last sent to the peer.
    pub(super) forks_sent_ms: Option<u64>,
    /// Per writer, the last position of changes the peer refused for good.
    pub(super) refused: BTreeMap<NodeId, Position>,
}

/// A bundle whose chain and signature were checked, restored to plain changes.
pub(super) struct Verified {
    pub(super) from: NodeId,
    pub(super) writer: NodeId,
    pub(super) span: Span,
    pub(super) changes: Vec<Vec<u8>>,
    pub(super) signature: Vec<u8>,
}

pub(super) struct Recent {
    pub(super) epoch: u32,
    pub(super) changes: VecDeque<StoredChange>,
}

/// One node's sync state.
pub struct SyncEngine {
    pub(super) identity: Identity,
    pub(super) me: NodeId,
    pub(super) config: SyncConfig,
    pub(super) peers: BTreeMap<NodeId, Peer>,
    pub(super) recent: HashMap<NodeId, Recent>,
    pub(super) parked: Parked,
    pub(super) own_signature: Option<(Position, Vec<u8>)>,
    pub(super) stats: SyncStats,
    pub(super) now_ms: u64,
    /// The newest own change a peer showed that this replica does not hold.
    pub(super) own_conflict: Option<Position>,
    /// The furthest own position a peer showed (heads or bundles); while it
    /// is beyond the own head, the node is recovering and takes no events.
    pub(super) own_seen: Option<Position>,
    /// Writers with changes not yet pushed (when coalescing).
    pub(super) dirty: BTreeSet<NodeId>,
    pub(super) flush_at: Option<u64>,
    /// Writers known to have signed two histories.
    pub(super) forks: Forks,
}

pub(super) fn newer(a: Position, b: Position) -> bool {
    (a.epoch, a.seq) > (b.epoch, b.seq)
}

impl SyncEngine {
    /// A node's engine, with no peers.
    pub fn new(identity: Identity, config: SyncConfig) -> Self {
        Self {
            me: identity.node_id(),
            identity,
            config,
            peers: BTreeMap::new(),
            recent: HashMap::new(),
            parked: Parked::default(),
            own_signature: None,
            stats: SyncStats::default(),
            now_ms: 0,
            own_conflict: None,
            own_seen: None,
            dirty: BTreeSet::new(),
            flush_at: None,
            forks: Forks::default(),
        }
    }

    /// Forgets the recent changes held in memory for `writers` (their persist
    /// failed: they must not be relayed from memory).
    pub(crate) fn forget_recent(&mut self, writers: impl Iterator<Item = NodeId>) {
        for w in writers {
            self.recent.remove(&w);
        }
    }

    /// The newest own change seen at a peer but not held here (see
    /// [`SyncEvent::OwnHistoryConflict`]); `Some` means stop writing.
    pub fn own_conflict(&self) -> Option<Position> {
        self.own_conflict
    }

    /// Work counters so far.
    pub fn stats(&self) -> SyncStats {
        SyncStats {
            parked_bundles: self.parked.len(),
            parked_bytes: self.parked.bytes(),
            ..self.stats
        }
    }

    /// The connected peers.
    pub fn peers(&self) -> impl Iterator<Item = &NodeId> {
        self.peers.keys()
    }

    /// When [`Input::Tick`] is next due, if any peer is connected.
    pub fn poll_timeout(&self) -> Option<u64> {
        let flush = if self.peers.is_empty() {
            None
        } else {
            self.flush_at
        };
        self.peers
            .values()
            .map(|p| {
                if p.in_flight > 0 {
                    p.next_probe_ms
                        .min(p.last_progress_ms + self.config.ack_timeout_ms)
                } else {
                    p.next_probe_ms
                }
            })
            .chain(flush)
            .min()
    }

    /// Handles one input at time `now_ms` against `replica`; returns the effects, in order.
    pub fn handle(&mut self, replica: &mut Replica, now_ms: u64, input: Input) -> Vec<Effect> {
        self.now_ms = now_ms;
        let mut out = Vec::new();
        match input {
            Input::PeerUp(peer) => {
                self.peers.insert(
                    peer,
                    Peer {
                        last_progress_ms: now_ms,
                        next_probe_ms: now_ms + self.config.probe_interval_ms,
                        ..Peer::default()
                    },
                );
                self.offer(replica, peer, WriterRange::ALL, false, &mut out);
                self.send_roster(replica, peer, true, &mut out);
                self.send_forks(peer, &mut out);
            }
            Input::PeerDown(peer) => {
                self.peers.remove(&peer);
            }
            Input::Received { from, message } => {
                self.receive(replica, now_ms, from, message, &mut out)
            }
            Input::LocalCommitted(change) => {
                let me = self.me;
                self.remember(
                    me,
                    change.position.epoch,
                    StoredChange {
                        position: change.position,
                        bytes: change.bytes,
                        signature: None,
                    },
                );
                self.announce(replica, me, &mut out);
            }
            Input::Loaded {
                peer,
                writer,
                changes,
            } if peer == self.me => self.own_half_loaded(writer, changes, &mut out),
            Input::Loaded {
                peer,
                writer,
                changes,
            } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.loading.remove(&writer);
                    let epoch = changes.first().map(|c| c.position.epoch).unwrap_or(0);
                    // Only a load that moved the peer forward asks for more; an
                    // empty or unsigned answer waits for the next probe.
                    if let Some((bundle, end)) = self.make_bundle(writer, epoch, changes) {
                        self.send_bundle(peer, bundle, end, &mut out);
                        self.push(replica, peer, writer, &mut out);
                    }
                }
            }
            Input::Tick => self.tick(replica, now_ms, &mut out),
            Input::RosterInstalled => {
                self.forget_refusals();
                self.spread_roster(replica, None, &mut out)
            }
        }
        out
    }

    pub(super) fn peer_ids(&self) -> Vec<NodeId> {
        self.peers.keys().copied().collect()
    }

    fn tick(&mut self, replica: &Replica, now_ms: u64, out: &mut Vec<Effect>) {
        self.parked.expire(now_ms, self.config.parked_ttl_ms);
        if self.flush_at.is_some_and(|t| t <= now_ms) {
            self.flush_at = None;
            for writer in std::mem::take(&mut self.dirty) {
                for peer in self.peer_ids() {
                    self.push(replica, peer, writer, out);
                }
            }
        }
        for peer in self.peer_ids() {
            let Some(p) = self.peers.get_mut(&peer) else {
                continue;
            };
            if p.in_flight > 0 && now_ms >= p.last_progress_ms + self.config.ack_timeout_ms {
                // Acks stopped: assume the in-flight messages were lost and repair
                // from the peer's real heads.
                debug!(%peer, in_flight = p.in_flight, "ack timeout; resyncing");
                p.in_flight = 0;
                p.last_progress_ms = now_ms;
                p.loading.clear();
                self.offer(replica, peer, WriterRange::ALL, false, out);
            } else if now_ms >= p.next_probe_ms {
                p.next_probe_ms = now_ms + self.config.probe_interval_ms;
                let (digest, writers) = digest(replica);
                let roster_version = replica.roster_version();
                let probe = Message::Digest {
                    digest,
                    writers,
                    roster_version,
                    forks: self.forks.digest(),
                };
                self.send(peer, &probe, out);
            }
        }
    }

    fn receive(
        &mut self,
        replica: &mut Replica,
        now_ms: u64,
        from: NodeId,
        bytes: Vec<u8>,
        out: &mut Vec<Effect>,
    ) {
        if !self.peers.contains_key(&from) {
            return;
        }
        self.stats.bytes_received += bytes.len() as u64;
        let msg = match message::decode(&bytes) {
            Ok(m) => m,
            Err(e) => return self.reject(from, None, RejectReason::Malformed(e.to_string()), out),
        };
        match msg {
            Message::Digest {
                digest: theirs,
                writers,
                roster_version,
                forks,
            } => {
                if roster_version < replica.roster_version() {
                    self.send_roster(replica, from, false, out);
                }
                if forks != self.forks.digest() {
                    self.resend_forks(from, out);
                }
                if (theirs, writers) != digest(replica) {
                    self.offer(replica, from, WriterRange::ALL, false, out);
                }
            }
            Message::Heads {
                range,
                heads: theirs,
                reply,
            } => {
                self.own_heads_seen(replica, range, &theirs, out);
                self.receive_heads(replica, from, range, theirs, reply, out)
            }
            Message::Summaries { range, children } => {
                self.receive_summaries(replica, from, range, children, out)
            }
            Message::Ack { bytes } => {
                let pending = match self.peers.get_mut(&from) {
                    Some(p) => {
                        p.in_flight = p.in_flight.saturating_sub(bytes as usize);
                        p.last_progress_ms = now_ms;
                        p.pending.iter().copied().collect::<Vec<_>>()
                    }
                    None => Vec::new(),
                };
                for w in pending {
                    self.push(replica, from, w, out);
                }
            }
            Message::Changes(bundle) => {
                let ack = Message::Ack {
                    bytes: bytes.len() as u32,
                };
                let (writer, last) = (bundle.writer, super::bundle::last_position(&bundle));
                let rejected_before = self.stats.rejected;
                self.ingest(replica, from, bundle, out);
                self.send(from, &ack, out);
                if let Some(last) = last {
                    self.answer_refusal(from, writer, last, rejected_before, out);
                }
            }
            Message::Refused {
                writer,
                position,
                reason,
            } => self.receive_refused(from, writer, position, reason, out),
            Message::Roster(signed) => self.receive_roster(replica, from, signed, out),
            Message::Fork(proof) => self.receive_fork(replica, from, proof, out),
            Message::RightsRequest(r) => out.push(Effect::Rights {
                from,
                message: RightsMessage::Request(r),
            }),
            Message::RightsAnswer(a) => out.push(Effect::Rights {
                from,
                message: RightsMessage::Answer(a),
            }),
        }
    }

    pub(super) fn reject(
        &mut self,
        from: NodeId,
        writer: Option<NodeId>,
        reason: RejectReason,
        out: &mut Vec<Effect>,
    ) {
        debug!(%from, ?writer, %reason, "rejected");
        self.stats.rejected += 1;
        out.push(Effect::Report(SyncEvent::Rejected {
            from,
            writer,
            reason,
        }));
    }
}
