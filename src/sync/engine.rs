//! The sync protocol as a pure state machine: explicit inputs in, effects out.
//! No sockets, no clock, no disk: the caller passes `now`, performs the effects
//! (send, load from storage, persist) and feeds results back as inputs.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use sha2::{Digest as _, Sha256};
use tracing::debug;

use super::bundle::{self, Span};
use super::message::{self, Bundle, Message};
use super::signing::sign_head;
use crate::identity::Identity;
use crate::model::{NodeId, Position};
use crate::replica::{CommittedChange, Replica};
use crate::store::{RemoteChange, StockRow, StoredChange};

/// Tunables of the protocol.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Anti-entropy period per peer.
    pub probe_interval_ms: u64,
    /// Unacknowledged bytes after which the window to a peer is reset and repaired.
    pub ack_timeout_ms: u64,
    /// Most unacknowledged bytes in flight to one peer (back-pressure).
    pub window_bytes: usize,
    /// Most changes in one bundle.
    pub bundle_changes: usize,
    /// Most out-of-order bundles held back until their gap is filled.
    pub max_parked: usize,
    /// Recent changes per writer kept in memory for eager push and relay.
    pub recent_per_writer: usize,
    /// Coalescing delay of eager pushes: 0 pushes each change at once; more
    /// gathers the changes of that many milliseconds into one signed bundle.
    pub push_delay_ms: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            probe_interval_ms: 1_000,
            ack_timeout_ms: 3_000,
            window_bytes: 1 << 20,
            bundle_changes: 512,
            max_parked: 256,
            recent_per_writer: 256,
            push_delay_ms: 0,
        }
    }
}

/// What happened, from the outside.
#[derive(Debug)]
pub enum Input {
    /// A connection to an authenticated peer is up.
    PeerUp(NodeId),
    /// The connection to a peer is gone.
    PeerDown(NodeId),
    /// A message arrived from a peer.
    Received {
        /// Sender.
        from: NodeId,
        /// Encoded message (see [`message::encode`]).
        message: Vec<u8>,
    },
    /// An own change was made durable.
    LocalCommitted(CommittedChange),
    /// The answer to an [`Effect::Load`].
    Loaded {
        /// The peer the load was for.
        peer: NodeId,
        /// Whose changes.
        writer: NodeId,
        /// The stored changes, in order.
        changes: Vec<StoredChange>,
    },
    /// Time passed; run what is due (see [`SyncEngine::poll_timeout`]).
    Tick,
}

/// Something the protocol reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent {
    /// A change of `writer` was applied.
    Applied {
        /// The peer it came from.
        from: NodeId,
        /// Its writer.
        writer: NodeId,
        /// Its position.
        position: Position,
    },
    /// A message or change from `from` was refused; nothing of it was applied or relayed.
    Rejected {
        /// The peer it came from.
        from: NodeId,
        /// The writer it claimed, if it got that far.
        writer: Option<NodeId>,
        /// Why.
        reason: String,
    },
}

/// What the caller must do.
#[derive(Debug)]
pub enum Effect {
    /// Send an encoded message to a peer.
    Send {
        /// Receiver.
        to: NodeId,
        /// Encoded message.
        message: Vec<u8>,
    },
    /// Read at most `limit` stored changes of `writer` in `epoch` after `after`,
    /// and answer with [`Input::Loaded`].
    Load {
        /// The peer they are for.
        peer: NodeId,
        /// Whose changes.
        writer: NodeId,
        /// Which epoch.
        epoch: u32,
        /// Sequence number already held by the peer in that epoch.
        after: u64,
        /// Most changes to read.
        limit: usize,
    },
    /// Make a remote change durable (store's `commit_remote`; consecutive
    /// persists of one `handle` call may share a transaction).
    Persist(RemoteChange),
    /// Report an event (log it, count it).
    Report(SyncEvent),
}

/// Counters of the protocol's work, for benches and the hub.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Bytes of messages sent.
    pub bytes_sent: u64,
    /// Messages sent.
    pub messages_sent: u64,
    /// Bytes of messages received.
    pub bytes_received: u64,
    /// Remote changes applied.
    pub changes_applied: u64,
    /// Messages or changes refused.
    pub rejected: u64,
}

#[derive(Default)]
struct Peer {
    /// What the peer holds, as far as known (from its heads and what was sent).
    known: HashMap<NodeId, Position>,
    in_flight: usize,
    last_progress_ms: u64,
    next_probe_ms: u64,
    loading: BTreeSet<NodeId>,
}

/// A bundle whose chain and signature were checked, restored to plain changes.
struct Verified {
    from: NodeId,
    writer: NodeId,
    span: Span,
    changes: Vec<Vec<u8>>,
    signature: Vec<u8>,
}

struct Recent {
    epoch: u32,
    changes: VecDeque<StoredChange>,
}

/// One node's sync state.
pub struct SyncEngine {
    identity: Identity,
    me: NodeId,
    config: SyncConfig,
    peers: BTreeMap<NodeId, Peer>,
    recent: HashMap<NodeId, Recent>,
    parked: BTreeMap<(NodeId, u32, u64), Verified>,
    own_signature: Option<(Position, Vec<u8>)>,
    stats: SyncStats,
    now_ms: u64,
    /// Writers with changes not yet pushed (when coalescing).
    dirty: BTreeSet<NodeId>,
    flush_at: Option<u64>,
}

fn newer(a: Position, b: Position) -> bool {
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
            parked: BTreeMap::new(),
            own_signature: None,
            stats: SyncStats::default(),
            now_ms: 0,
            dirty: BTreeSet::new(),
            flush_at: None,
        }
    }

    /// Work counters so far.
    pub fn stats(&self) -> SyncStats {
        self.stats
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
                self.send(
                    peer,
                    &Message::Heads {
                        heads: heads(replica),
                        reply: false,
                    },
                    &mut out,
                );
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
        }
        out
    }

    fn peer_ids(&self) -> Vec<NodeId> {
        self.peers.keys().copied().collect()
    }

    fn tick(&mut self, replica: &Replica, now_ms: u64, out: &mut Vec<Effect>) {
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
                self.send(
                    peer,
                    &Message::Heads {
                        heads: heads(replica),
                        reply: false,
                    },
                    out,
                );
            } else if now_ms >= p.next_probe_ms {
                p.next_probe_ms = now_ms + self.config.probe_interval_ms;
                let (digest, writers) = digest(replica);
                self.send(peer, &Message::Digest { digest, writers }, out);
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
            Err(e) => return self.reject(from, None, e.to_string(), out),
        };
        match msg {
            Message::Digest {
                digest: theirs,
                writers,
            } => {
                if (theirs, writers) != digest(replica) {
                    self.send(
                        from,
                        &Message::Heads {
                            heads: heads(replica),
                            reply: false,
                        },
                        out,
                    );
                }
            }
            Message::Heads {
                heads: theirs,
                reply,
            } => {
                let mine = replica.heads();
                let they_have_more = theirs
                    .iter()
                    .any(|(w, pos)| mine.get(w).is_none_or(|h| newer(*pos, h.position)));
                if let Some(p) = self.peers.get_mut(&from) {
                    p.known = theirs.into_iter().collect();
                }
                for (w, _) in heads(replica) {
                    self.push(replica, from, w, out);
                }
                if !reply && they_have_more {
                    self.send(
                        from,
                        &Message::Heads {
                            heads: heads(replica),
                            reply: true,
                        },
                        out,
                    );
                }
            }
            Message::Ack { bytes } => {
                if let Some(p) = self.peers.get_mut(&from) {
                    p.in_flight = p.in_flight.saturating_sub(bytes as usize);
                    p.last_progress_ms = now_ms;
                }
                for (w, _) in heads(replica) {
                    self.push(replica, from, w, out);
                }
            }
            Message::Changes(bundle) => {
                let ack = Message::Ack {
                    bytes: bytes.len() as u32,
                };
                self.ingest(replica, from, bundle, out);
                self.send(from, &ack, out);
            }
        }
    }

    fn reject(
        &mut self,
        from: NodeId,
        writer: Option<NodeId>,
        reason: String,
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

    /// Verifies and applies a bundle, parks it if it arrived ahead of a gap.
    fn ingest(
        &mut self,
        replica: &mut Replica,
        from: NodeId,
        bundle: Bundle,
        out: &mut Vec<Effect>,
    ) {
        let writer = bundle.writer;
        if writer == self.me {
            return;
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
        let (span, changes) = match bundle::verify(&bundle) {
            Ok(v) => v,
            Err(e) => return self.reject(from, Some(writer), e.to_string(), out),
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
            if self.parked.len() < self.config.max_parked {
                self.parked
                    .insert((writer, span.first.epoch, span.first.seq), verified);
            }
            return;
        }
        if self.apply(replica, verified, out) {
            self.unpark(replica, writer, out);
            self.announce(replica, writer, out);
        }
    }

    /// New changes of `writer`: push them now, or at the next flush when coalescing.
    fn announce(&mut self, replica: &Replica, writer: NodeId, out: &mut Vec<Effect>) {
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

    fn apply(&mut self, replica: &mut Replica, v: Verified, out: &mut Vec<Effect>) -> bool {
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
                    self.reject(from, Some(writer), e.to_string(), out);
                    break;
                }
            }
        }
        debug_assert!(
            !applied || replica.heads().get(&writer).map(|h| h.position) <= Some(span.last)
        );
        applied
    }

    fn unpark(&mut self, replica: &mut Replica, writer: NodeId, out: &mut Vec<Effect>) {
        loop {
            let have = replica
                .heads()
                .get(&writer)
                .map(|h| h.position)
                .unwrap_or_default();
            let key = self
                .parked
                .range((writer, 0, 0)..=(writer, u32::MAX, u64::MAX))
                .map(|(k, _)| *k)
                .find(|(_, e, s)| {
                    if *e == have.epoch {
                        *s <= have.seq + 1
                    } else {
                        *e > have.epoch && *s == 1
                    }
                });
            let Some(key) = key else {
                // Drop what can never connect any more.
                self.parked
                    .retain(|(w, e, _), _| *w != writer || *e >= have.epoch);
                return;
            };
            let Some(verified) = self.parked.remove(&key) else {
                return;
            };
            if newer(verified.span.last, have) {
                self.apply(replica, verified, out);
            }
        }
    }

    fn remember(&mut self, writer: NodeId, epoch: u32, change: StoredChange) {
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
    fn push(&mut self, replica: &Replica, peer: NodeId, writer: NodeId, out: &mut Vec<Effect>) {
        let Some(head) = replica.heads().get(&writer).map(|h| h.position) else {
            return;
        };
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let known = p.known.get(&writer).copied().unwrap_or_default();
        if !newer(head, known)
            || p.in_flight >= self.config.window_bytes
            || p.loading.contains(&writer)
        {
            return;
        }
        let after = if known.epoch == head.epoch {
            known.seq
        } else {
            0
        };
        let limit = self.config.bundle_changes;
        let from_memory = self.recent.get(&writer).and_then(|r| {
            let first = r.changes.front()?.position.seq;
            (r.epoch == head.epoch && first <= after + 1).then(|| {
                r.changes
                    .iter()
                    .filter(|c| c.position.seq > after)
                    .take(limit)
                    .cloned()
                    .collect::<Vec<_>>()
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
                out.push(Effect::Load {
                    peer,
                    writer,
                    epoch: head.epoch,
                    after,
                    limit,
                });
            }
        }
    }

    /// Cuts `changes` at the last signed one (signing own heads) and bundles them.
    fn make_bundle(
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

    fn send_bundle(&mut self, peer: NodeId, bundle: Bundle, end: Position, out: &mut Vec<Effect>) {
        let writer = bundle.writer;
        let bytes = self.send(peer, &Message::Changes(bundle), out);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.in_flight += bytes;
            p.known.insert(writer, end);
        }
    }

    fn send(&mut self, to: NodeId, msg: &Message, out: &mut Vec<Effect>) -> usize {
        let message = message::encode(msg);
        let n = message.len();
        self.stats.bytes_sent += n as u64;
        self.stats.messages_sent += 1;
        out.push(Effect::Send { to, message });
        n
    }
}

/// Every writer head of `replica`, sorted by writer.
fn heads(replica: &Replica) -> Vec<(NodeId, Position)> {
    let mut v: Vec<_> = replica
        .heads()
        .iter()
        .map(|(w, h)| (*w, h.position))
        .collect();
    v.sort();
    v
}

/// 16 bytes of SHA-256 over the sorted heads, and their number.
fn digest(replica: &Replica) -> ([u8; 16], u32) {
    let hs = heads(replica);
    let mut h = Sha256::new();
    for (w, p) in &hs {
        h.update(w.0);
        h.update(p.epoch.to_le_bytes());
        h.update(p.seq.to_le_bytes());
    }
    let full = h.finalize();
    let mut d = [0u8; 16];
    d.copy_from_slice(&full[..16]);
    (d, hs.len() as u32)
}
