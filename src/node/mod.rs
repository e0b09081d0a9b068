//! A running node: one thread-safe handle over the replica, its store and its
//! sync engine.
//!
//! Callers submit events ([`Node::submit`], [`Node::execute`]); group commit
//! makes them durable in batches and hands every committed change to the sync
//! engine. A transport feeds the same handle what happens on the wire
//! ([`Node::peer_up`], [`Node::peer_down`], [`Node::receive`], [`Node::tick`] when
//! [`Node::poll_timeout`] is due) and drains what the engine sends
//! ([`Node::take_sends`], [`Node::wait_sends`]). The simulator, the examples, the
//! benches and the command line all run this one type.

mod allocation;
mod counters;
mod exchange;
mod grant;
mod group;
mod manager;
mod outbox;
mod rights;
mod status;
mod writer;

pub use allocation::{AllocationCommand, AllocationReport, GrantRow, PoolAllocation};
pub use counters::EventCount;
pub use grant::{CommittedGrant, GrantSource};
pub use group::Ticket;
pub use manager::{HolderRow, MoveRow, PoolRebalance, RebalanceCommand, RebalanceReport};
pub use outbox::Outgoing;
pub use rights::RightsStats;
pub use status::{ForkStatus, RetiredStatus, SyncStatus};
pub(crate) use writer::Writer;

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tracing::{debug, error, warn};

use group::Queue;
use outbox::Outbox;
use status::StatusLog;

use crate::error::{EventError, NodeError, StoreError};
use crate::fleet::{FleetId, Roster, SignedRoster};
use crate::identity::Identity;
use crate::model::{EventOutcome, EventRequest, NodeId, NodeMeta, Policy};
use crate::rebalance::RebalanceSettings;
use crate::replica::Replica;
use crate::store::Store;
use crate::sync::{Effect, Input, RightsMessage, SyncConfig, SyncEngine, SyncEvent};
use rights::RightsDesk;

/// Milliseconds since the Unix epoch, supplied by the caller (a fixed clock in tests).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    })
}

/// Tunables of a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Changes per epoch of the own document before it rolls over (bounds restart cost).
    pub epoch_changes: u64,
    /// Most events committed in one transaction.
    pub max_batch: usize,
    /// The sync protocol's tunables.
    pub sync: SyncConfig,
    /// Most bytes queued for one peer before further messages to it are dropped
    /// (the protocol repairs them); only reached when a transport stops draining.
    pub outbox_bytes_per_peer: usize,
    /// The fleet the node belongs to: its authority's public key. With `Some`,
    /// the node accepts only changes its fleet roster admits and refuses own
    /// events the roster forbids (before any roster is installed: all of them).
    /// `None` is open mode: no membership check at all, for a node on its own
    /// and for tests; such a node must not sync with untrusted peers.
    pub fleet: Option<FleetId>,
    /// Automatic pull and borrowing of rights from connected peers (off by
    /// default; [`RebalanceSettings::lan`] is what the daemon runs).
    pub rebalance: RebalanceSettings,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            epoch_changes: 10_000,
            max_batch: 1024,
            sync: SyncConfig::default(),
            outbox_bytes_per_peer: 8 << 20,
            fleet: None,
            rebalance: RebalanceSettings::default(),
        }
    }
}

/// Receives what the replica applied (own and remote counter raises), under the
/// node's lock, right after it is durable (see [`Node::attach_delta_sink`]).
pub trait DeltaSink: Send + Sync {
    /// `deltas` were applied; with `deltas.reset`, catch up from `replica`'s whole book.
    fn apply(&self, deltas: crate::replica::Deltas, replica: &Replica);
}

/// The replica's writer and the sync engine, used under one lock.
pub(crate) struct Core {
    pub(crate) writer: Writer,
    engine: SyncEngine,
    status: StatusLog,
    rights: RightsDesk,
    /// Where the delta log goes, if anyone listens.
    sink: Option<Arc<dyn DeltaSink>>,
}

impl Core {
    /// Hands the delta log to the sink, if one is attached.
    pub(crate) fn flush_deltas(&mut self) {
        let Some(sink) = &self.sink else {
            return;
        };
        let Some(deltas) = self.writer.take_deltas() else {
            return;
        };
        if deltas.raises.is_empty() && deltas.heard.is_empty() && !deltas.reset {
            return;
        }
        if let Some(replica) = self.writer.replica() {
            sink.apply(deltas, replica);
        }
    }
}

impl Core {
    /// Why every event is refused now, if it is: the node's own history
    /// conflicts (a fork of its key), or peers showed it own history beyond
    /// its head that it is still recovering.
    fn history_refusal(&self) -> Option<HistoryRefusal> {
        let held = self
            .writer
            .replica()
            .map(|r| r.own_position())
            .unwrap_or_default();
        if let Some(seen) = self.engine.own_conflict() {
            return Some(HistoryRefusal::Conflict { held, seen });
        }
        let seen = self.engine.own_seen()?;
        if seen.epoch > held.epoch {
            return Some(HistoryRefusal::LaterEpoch { held, seen });
        }
        (seen > held).then_some(HistoryRefusal::Recovering { held, seen })
    }
}

/// Why the node refuses every event now (see [`Core::history_refusal`]).
#[derive(Clone, Copy)]
enum HistoryRefusal {
    /// Another history of the own key: [`NodeError::OwnHistoryConflict`].
    Conflict {
        held: crate::model::Position,
        seen: crate::model::Position,
    },
    /// Own history seen in a later epoch: [`NodeError::OwnHistoryInLaterEpoch`].
    LaterEpoch {
        held: crate::model::Position,
        seen: crate::model::Position,
    },
    /// Own history seen ahead, being recovered: [`NodeError::Recovering`].
    Recovering {
        held: crate::model::Position,
        seen: crate::model::Position,
    },
}

impl HistoryRefusal {
    /// The error every event gets.
    fn error(self) -> NodeError {
        match self {
            HistoryRefusal::Conflict { held, seen } => NodeError::OwnHistoryConflict { held, seen },
            HistoryRefusal::Recovering { held, seen } => NodeError::Recovering { held, seen },
            HistoryRefusal::LaterEpoch { held, seen } => {
                NodeError::OwnHistoryInLaterEpoch { held, seen }
            }
        }
    }
}

pub(crate) struct Shared {
    meta: NodeMeta,
    queue: Mutex<Queue>,
    core: Mutex<Core>,
    outbox: Outbox,
    /// Signalled when rights may have arrived (changes applied, answers in).
    rights_changed: Condvar,
    max_batch: usize,
    clock: Clock,
    /// Answers by event kind and outcome (for metrics).
    counters: counters::EventCounters,
    /// Grants committed on the node's own initiative, while recording is on
    /// ([`Node::record_grants`]); `None`: off.
    grant_log: Mutex<Option<Vec<CommittedGrant>>>,
}

impl Shared {
    fn core(&self) -> MutexGuard<'_, Core> {
        match self.core.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                // A leader panicked mid-group: the in-memory state may be half
                // applied, so rebuild it from what the store committed.
                let mut g = poisoned.into_inner();
                g.writer.reload();
                self.core.clear_poison();
                g
            }
        }
    }

    fn now(&self) -> u64 {
        (self.clock)().max(0) as u64
    }

    /// Runs one input through the engine and routes its sends and reports.
    fn run(&self, core: &mut Core, input: Input) {
        let now = self.now();
        let Core {
            writer,
            engine,
            status,
            rights,
            ..
        } = core;
        let mut woke = false;
        for effect in writer.sync(engine, now, input) {
            match effect {
                Effect::Send { to, message } => self.outbox.push(to, message),
                Effect::Rights { from, message } => {
                    let Some(replica) = writer.replica() else {
                        continue;
                    };
                    match message {
                        RightsMessage::Request(req) => {
                            if let Some(a) = rights.on_request(from, req, replica, now) {
                                self.send_answer(from, a);
                            }
                            for (pool, need, channel) in rights.take_relays() {
                                let peers: Vec<NodeId> =
                                    engine.peers().copied().filter(|p| *p != channel).collect();
                                let asks = rights.pull(&pool, need, replica, &peers, now);
                                self.send_requests(asks);
                            }
                        }
                        RightsMessage::Answer(a) => {
                            let more = rights.on_answer(from, &a, now);
                            self.send_requests(more);
                            let peers: Vec<NodeId> = engine.peers().copied().collect();
                            let again = rights.after_answer(&a.pool, replica, &peers, now);
                            self.send_requests(again);
                            woke = true;
                        }
                    }
                }
                Effect::Report(event) => {
                    match &event {
                        SyncEvent::Rejected {
                            from,
                            writer,
                            reason,
                        } => warn!(node = %self.meta.id, peer = %from, ?writer, %reason, "refused"),
                        SyncEvent::PersistFailed { changes, error } => {
                            warn!(node = %self.meta.id, changes, %error, "remote changes not persisted")
                        }
                        SyncEvent::Fork {
                            from,
                            writer,
                            position,
                        } => {
                            error!(node = %self.meta.id, peer = %from, %writer, ?position, "fork: a writer signed two histories; frozen from there")
                        }
                        SyncEvent::RefusedByPeer {
                            peer,
                            writer,
                            position,
                            reason,
                        } => {
                            warn!(node = %self.meta.id, %peer, %writer, ?position, %reason, "a peer refused these changes; not offered to it again")
                        }
                        SyncEvent::OwnHistoryConflict { from, held, seen } => {
                            error!(node = %self.meta.id, peer = %from, ?held, ?seen, "own history seen ahead: refusing events (restored backup or cloned key)")
                        }
                        SyncEvent::OwnHistoryRecovered { from, held, seen } => {
                            warn!(node = %self.meta.id, peer = %from, ?held, ?seen, "own history recovered from a peer (restored backup)")
                        }
                        SyncEvent::RetiredNodeWrote {
                            from,
                            writer,
                            after,
                            last,
                            spent,
                            ..
                        } => {
                            error!(node = %self.meta.id, peer = %from, %writer, ?after, ?last, ?spent, "a revoked node wrote after its revocation point: refused; its spending is a deficit to reconcile")
                        }
                        SyncEvent::Applied {
                            from,
                            writer,
                            position,
                        } => {
                            woke = true;
                            debug!(node = %self.meta.id, peer = %from, %writer, ?position, "applied")
                        }
                    }
                    status.record(event);
                }
                // `Writer::sync` performs loads and persists itself.
                Effect::Load { .. }
                | Effect::Persist(_)
                | Effect::PersistRoster(_)
                | Effect::PersistFork(_)
                | Effect::RecoverOwn { .. }
                | Effect::PersistOwnSeen(_) => {}
            }
        }
        let home = self.meta.location.clone();
        for (from, counters) in writer.take_applied() {
            rights.observe(from, &counters, &home, now);
        }
        core.flush_deltas();
        if woke {
            self.rights_changed.notify_all();
        }
    }
}

/// A handle on a running node; clones share the node.
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
}

impl Node {
    /// Loads the replica of `meta` from `store` and makes the node ready.
    ///
    /// `identity` signs what the node sends; it must be `meta.id`'s key.
    pub fn start<S: Store + 'static>(
        identity: Identity,
        meta: NodeMeta,
        store: S,
        options: NodeOptions,
        clock: Clock,
    ) -> Result<Self, StoreError> {
        if identity.node_id() != meta.id {
            return Err(StoreError::Corrupt(
                "the node key does not belong to this node".into(),
            ));
        }
        let mut writer = Writer::new(meta.clone(), Box::new(store), &options, clock.clone())?;
        let mut engine = SyncEngine::new(identity, options.sync.clone());
        engine.restore_forks(writer.stored_forks()?);
        engine.restore_own_seen(writer.stored_own_seen()?);
        Ok(Self {
            shared: Arc::new(Shared {
                meta,
                queue: Mutex::new(Queue::default()),
                core: Mutex::new(Core {
                    writer,
                    engine,
                    status: StatusLog::default(),
                    rights: RightsDesk::new(options.rebalance.clone()),
                    sink: None,
                }),
                outbox: Outbox::new(options.outbox_bytes_per_peer),
                rights_changed: Condvar::new(),
                max_batch: options.max_batch.max(1),
                clock,
                counters: counters::EventCounters::default(),
                grant_log: Mutex::new(None),
            }),
        })
    }

    /// The node's identity and place.
    pub fn meta(&self) -> &NodeMeta {
        &self.shared.meta
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.shared.meta.id
    }

    /// Queues an event; the ticket resolves once it is durable (or refused).
    pub fn submit(&self, req: EventRequest) -> Ticket {
        let counted = Some(counters::kind_slot(&req.kind));
        let (id, wake) = self
            .shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(req);
        Ticket {
            shared: self.shared.clone(),
            id,
            wake,
            done: false,
            counted,
        }
    }

    /// Like [`Node::submit`], but the answer is not counted (the caller counts it).
    fn submit_uncounted(&self, req: EventRequest) -> Ticket {
        let mut t = self.submit(req);
        t.counted = None;
        t
    }

    /// Answers so far by event kind and outcome, zeros included.
    pub fn event_counts(&self) -> Vec<EventCount> {
        self.shared.counters.snapshot()
    }

    /// Submits an event and waits until it is durable (or refused).
    ///
    /// With [`RebalanceSettings::borrow_deadline_ms`] set and peers connected,
    /// a `strict` consumption short of rights first borrows from them, waiting
    /// up to that deadline; if it is still short, the error
    /// ([`EventError::InsufficientAfterBorrow`]) says what it had, what it
    /// asked and who answered what.
    pub fn execute(&self, req: EventRequest) -> Result<EventOutcome, NodeError> {
        let kind = counters::kind_slot(&req.kind);
        let first = self.submit_uncounted(req.clone()).wait();
        let answer = match &first {
            Err(NodeError::Event(EventError::InsufficientRights {
                available,
                requested,
                ..
            })) if req.effective_policy() == Policy::Strict => {
                let need = requested.saturating_sub((*available).max(0) as u64);
                self.borrow(req, need).unwrap_or(first)
            }
            Ok(outcome) => {
                self.allocate_receipt(&req, outcome);
                first
            }
            _ => first,
        };
        self.shared.counters.record(kind, &answer);
        answer
    }

    /// Runs `f` on the replica between group commits (it never sees staged state).
    pub fn query<R>(&self, f: impl FnOnce(&Replica) -> R) -> Result<R, NodeError> {
        let core = self.shared.core();
        core.writer.replica().map(f).ok_or(NodeError::Stopped)
    }

    /// Attaches `sink` and turns the delta log on: `sink` first gets a reset
    /// (catch up from the whole book), then every raise as it becomes durable.
    pub fn attach_delta_sink(&self, sink: Arc<dyn DeltaSink>) -> Result<(), NodeError> {
        let mut core = self.shared.core();
        core.writer.log_deltas();
        let mut first = core.writer.take_deltas().unwrap_or_default();
        first.reset = true;
        let replica = core.writer.replica().ok_or(NodeError::Stopped)?;
        sink.apply(first, replica);
        core.sink = Some(sink);
        Ok(())
    }

    /// A transport connected to `peer`, whose identity it authenticated.
    ///
    /// Refused with [`NodeError::NotDurable`] on a store that may lose
    /// acknowledged commits: nothing of such a node may leave it.
    pub fn peer_up(&self, peer: NodeId) -> Result<(), NodeError> {
        let mut core = self.shared.core();
        if !core.writer.durable() {
            return Err(NodeError::NotDurable);
        }
        core.status.peers.insert(peer);
        self.shared.run(&mut core, Input::PeerUp(peer));
        let now = self.shared.now();
        let peers = Shared::peers(&core);
        let Core { writer, rights, .. } = &mut *core;
        if let Some(replica) = writer.replica() {
            let asks = rights.pull_all(replica, &peers, now);
            self.shared.send_requests(asks);
        }
        Ok(())
    }

    /// The connection to `peer` is gone; messages still queued for it are dropped.
    pub fn peer_down(&self, peer: NodeId) {
        let mut core = self.shared.core();
        core.status.peers.remove(&peer);
        self.shared.run(&mut core, Input::PeerDown(peer));
        self.shared.outbox.purge(&peer);
        let more = core.rights.peer_down(peer, self.shared.now());
        self.shared.send_requests(more);
        self.shared.rights_changed.notify_all();
    }

    /// A message arrived from the authenticated peer `from`.
    ///
    /// A rights request the node grants is committed here, as a `grant` event,
    /// before its answer is queued (the caller's thread waits for that commit).
    pub fn receive(&self, from: NodeId, message: Vec<u8>) {
        let grants = {
            let mut core = self.shared.core();
            self.shared
                .run(&mut core, Input::Received { from, message });
            core.rights.take_pending()
        };
        for g in grants {
            let result = match g.event() {
                Some(req) => {
                    let result = self.submit(req.clone()).wait();
                    self.shared.log_grant(g.source(), g.asker, req, &result);
                    result
                }
                None => Err(NodeError::Stopped),
            };
            let answer = self.shared.core().rights.grant_done(&g, &result);
            self.shared.send_answer(g.asker, answer);
        }
    }

    /// Runs the engine's timers (probes, coalesced pushes, ack timeouts) if due.
    pub fn tick(&self) {
        let mut core = self.shared.core();
        let now = self.shared.now();
        if core.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.shared.run(&mut core, Input::Tick);
        }
        if core.rights.next_due().is_some_and(|t| t <= now) {
            let more = core.rights.tick(now);
            self.shared.send_requests(more);
            self.shared.rights_changed.notify_all();
        }
    }

    /// When [`Node::tick`] is next due, in the node clock's milliseconds.
    pub fn poll_timeout(&self) -> Option<u64> {
        let core = self.shared.core();
        match (core.engine.poll_timeout(), core.rights.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes every message waiting to be sent, oldest first.
    pub fn take_sends(&self) -> Vec<Outgoing> {
        self.shared.outbox.take()
    }

    /// Like [`Node::take_sends`], but waits up to `timeout` for a first message.
    pub fn wait_sends(&self, timeout: Duration) -> Vec<Outgoing> {
        self.shared.outbox.wait(timeout)
    }

    /// Takes the sync events (applied, refused, persist failures) reported since the last call.
    pub fn take_events(&self) -> Vec<SyncEvent> {
        self.shared.core().status.take()
    }

    /// The node's sync state.
    pub fn sync_status(&self) -> SyncStatus {
        let core = self.shared.core();
        let mut s = core.status.status(core.engine.stats());
        s.roster_version = core
            .writer
            .replica()
            .map(Replica::roster_version)
            .unwrap_or(0);
        s.forks = core
            .engine
            .forks()
            .map(|f| status::ForkStatus {
                writer: f.writer.to_hex(),
                position: format!("{}/{}", f.position.epoch, f.position.seq),
            })
            .collect();
        s.own_history_recovering = match core.history_refusal() {
            Some(r @ (HistoryRefusal::Recovering { .. } | HistoryRefusal::LaterEpoch { .. })) => {
                Some(r.error().to_string())
            }
            _ => None,
        };
        s.outbox_bytes = self.shared.outbox.queued_bytes();
        s.outbox_dropped = self.shared.outbox.dropped();
        s
    }

    /// Installs a fleet roster (what an enrolment calls): verified under
    /// [`NodeOptions::fleet`], newer than the one held, stored, then sent to
    /// every connected peer. Returns its version. Changes applied before stay;
    /// the new roster decides every later change and event.
    pub fn install_roster(&self, roster: SignedRoster) -> Result<u64, NodeError> {
        let mut core = self.shared.core();
        let version = core.writer.install_roster(roster)?;
        self.shared.run(&mut core, Input::RosterInstalled);
        Ok(version)
    }

    /// The version of the fleet roster the node holds (0: none, or open mode).
    pub fn roster_version(&self) -> u64 {
        self.shared
            .core()
            .writer
            .replica()
            .map(Replica::roster_version)
            .unwrap_or(0)
    }

    /// How far behind each connected peer is, as far as this node knows.
    pub fn peer_lags(&self) -> Vec<crate::sync::PeerLag> {
        let now = self.shared.now();
        self.shared.core().engine.peer_lags(now)
    }

    /// Every fork this node knows of (found, received, or stored before a restart).
    pub fn forks(&self) -> Vec<crate::sync::Fork> {
        self.shared.core().engine.forks().copied().collect()
    }

    /// The fleet roster the node holds, if any.
    pub fn roster(&self) -> Option<Roster> {
        let core = self.shared.core();
        let replica = core.writer.replica()?;
        replica.signed_roster()?;
        replica.roster().cloned()
    }

    /// Releases this handle (the store closes when the last handle goes).
    pub fn shutdown(self) {}
}
