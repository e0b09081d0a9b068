//! The runner (adapter): one worker thread per channel driving its publisher,
//! outbox, store and webhook client with the real clock.
//!
//! Observations go into a per-channel inbox (the newest value per pool, so it
//! never grows beyond the pools sold and never blocks the caller). The worker
//! publishes what is due, writes it to `channels.db` before anything is sent,
//! sends one request at a time and writes each result. On shutdown the request
//! in flight finishes (bounded by the request timeout) and its result is
//! written; what was not delivered is in the file for the next start.
//! A store failure stops the channel (shown in its status): its state in
//! memory would be ahead of the file, and sequences must never go back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::config::{ChannelConfig, ChannelId, ChannelsConfig, ConfigError, SecretSource};
use super::http::WebhookClient;
use super::outbox::{DeadLetter, Failure, Outbox, Redrive};
use super::publisher::Publisher;
use super::store::{OutboxStore, OutboxStoreError, PoolRow, CHANNELS_DB};
use super::AvailableSource;
use crate::model::{PoolKey, Sku};
use crate::node::Clock;

/// Most requests a worker sends before it looks at its inbox and writes the answers.
const SENDS_PER_STEP: usize = 16;

/// Longest a worker sleeps with nothing due.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// Why the channels cannot start, or a call names no channel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// A configuration value is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The secret file cannot be read, or is empty.
    #[error("channel {channel}: webhook secret {path}: {reason}")]
    Secret {
        /// The channel.
        channel: String,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The outbox file cannot be used.
    #[error(transparent)]
    Store(#[from] OutboxStoreError),
    /// A worker thread cannot be started.
    #[error("cannot start a channel worker: {0}")]
    Spawn(std::io::Error),
    /// No channel of that id runs here.
    #[error("no channel {0}")]
    UnknownChannel(String),
}

/// What the hub's status and dashboard show about a channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelStatus {
    /// When the last delivery succeeded, in Unix milliseconds.
    pub last_delivery_ms: Option<u64>,
    /// The SKU and sequence of the last delivery that succeeded.
    pub last_delivered: Option<(Sku, u64)>,
    /// Values queued or in flight.
    pub outbox_depth: usize,
    /// Dead letters waiting for a re-drive.
    pub dead_letters: usize,
    /// The last failed attempt's error, until a delivery succeeds.
    pub last_error: Option<String>,
    /// Deliveries that succeeded since start.
    pub delivered: u64,
    /// Attempts that failed since start.
    pub failed_attempts: u64,
    /// Set when the worker stopped on a store failure.
    pub stopped: Option<String>,
}

#[derive(Default)]
struct Inbox {
    observed: BTreeMap<PoolKey, (u64, u64)>,
    redrive: Vec<Redrive>,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    inbox: Mutex<Inbox>,
    wake: Condvar,
    status: Mutex<ChannelStatus>,
    dead: Mutex<Vec<(PoolKey, DeadLetter)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked left plain data behind; keep using it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Handle {
    config: ChannelConfig,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Every channel of a process, each on its own worker thread.
pub struct Runner {
    channels: BTreeMap<ChannelId, Handle>,
    clock: Clock,
}

impl Runner {
    /// Starts every channel of `config` on `data_dir/channels.db`; a relative
    /// secret file is read from `data_dir`.
    pub fn start(
        data_dir: &Path,
        config: &ChannelsConfig,
        clock: Clock,
    ) -> Result<Self, RunnerError> {
        config.validate()?;
        let path = data_dir.join(CHANNELS_DB);
        let mut workers = Vec::new();
        for cfg in &config.channel {
            let secret = load_secret(data_dir, cfg)?;
            let store = OutboxStore::open(&path)?;
            let loaded = store.load(&cfg.id)?;
            let outbox = Outbox::restore(cfg.retry(), loaded.slots);
            let publisher = Publisher::new(cfg.mode.clone(), loaded.publisher);
            workers.push(Worker {
                config: cfg.clone(),
                publisher,
                outbox,
                store,
                client: WebhookClient::new(cfg, secret),
                clock: clock.clone(),
                rng: seed(&clock),
                shared: Arc::new(Shared::default()),
            });
        }
        let mut runner = Self {
            channels: BTreeMap::new(),
            clock,
        };
        for w in workers {
            let shared = w.shared.clone();
            let config = w.config.clone();
            // On an error here, dropping `runner` stops the workers already started.
            let thread = std::thread::Builder::new()
                .name(format!("channel-{}", config.id))
                .spawn(move || w.run())
                .map_err(RunnerError::Spawn)?;
            runner.channels.insert(
                config.id.clone(),
                Handle {
                    config,
                    shared,
                    thread: Some(thread),
                },
            );
        }
        Ok(runner)
    }

    fn handle(&self, channel: &ChannelId) -> Result<&Handle, RunnerError> {
        self.channels
            .get(channel)
            .ok_or_else(|| RunnerError::UnknownChannel(channel.to_string()))
    }

    /// Records that `channel` holds `available` in `pool` now; `false` when the
    /// channel does not sell from that pool (nothing is recorded).
    pub fn observe(
        &self,
        channel: &ChannelId,
        pool: PoolKey,
        available: u64,
    ) -> Result<bool, RunnerError> {
        let h = self.handle(channel)?;
        if !h.config.sells_from(&pool) {
            return Ok(false);
        }
        let now = now_ms(&self.clock);
        lock(&h.shared.inbox)
            .observed
            .insert(pool, (available, now));
        h.shared.wake.notify_one();
        Ok(true)
    }

    /// Observes every pool `source` reports for `channel`.
    pub fn feed(
        &self,
        channel: &ChannelId,
        source: &impl AvailableSource,
    ) -> Result<(), RunnerError> {
        let pools = self.handle(channel)?.config.pools.clone();
        for (pool, available) in source.available(&pools) {
            self.observe(channel, pool, available)?;
        }
        Ok(())
    }

    /// Asks `channel`'s worker to re-drive dead letters.
    pub fn redrive(&self, channel: &ChannelId, which: Redrive) -> Result<(), RunnerError> {
        let h = self.handle(channel)?;
        lock(&h.shared.inbox).redrive.push(which);
        h.shared.wake.notify_one();
        Ok(())
    }

    /// `channel`'s status.
    pub fn status(&self, channel: &ChannelId) -> Result<ChannelStatus, RunnerError> {
        Ok(lock(&self.handle(channel)?.shared.status).clone())
    }

    /// `channel`'s dead letters, by pool.
    pub fn dead_letters(
        &self,
        channel: &ChannelId,
    ) -> Result<Vec<(PoolKey, DeadLetter)>, RunnerError> {
        Ok(lock(&self.handle(channel)?.shared.dead).clone())
    }

    /// Stops every worker: a request in flight finishes and its result is written.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for h in self.channels.values() {
            lock(&h.shared.inbox).stop = true;
            h.shared.wake.notify_one();
        }
        for h in self.channels.values_mut() {
            if let Some(t) = h.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn load_secret(data_dir: &Path, cfg: &ChannelConfig) -> Result<Vec<u8>, RunnerError> {
    match &cfg.secret {
        SecretSource::Inline(s) => Ok(s.as_bytes().to_vec()),
        SecretSource::File(p) => {
            let path: PathBuf = if p.is_absolute() {
                p.clone()
            } else {
                data_dir.join(p)
            };
            let err = |reason: String| RunnerError::Secret {
                channel: cfg.id.to_string(),
                path: path.display().to_string(),
                reason,
            };
            let mut bytes = std::fs::read(&path).map_err(|e| err(e.to_string()))?;
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            if bytes.is_empty() {
                return Err(err("empty".into()));
            }
            Ok(bytes)
        }
    }
}

fn now_ms(clock: &Clock) -> u64 {
    u64::try_from(clock()).unwrap_or(0)
}

fn seed(clock: &Clock) -> u64 {
    getrandom::u64().unwrap_or_else(|_| now_ms(clock) ^ 0x9e37_79b9_7f4a_7c15)
}

/// splitmix64: the jitter source of a worker.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Worker {
    config: ChannelConfig,
    publisher: Publisher,
    outbox: Outbox,
    store: OutboxStore,
    client: WebhookClient,
    clock: Clock,
    rng: u64,
    shared: Arc<Shared>,
}

impl Worker {
    fn run(mut self) {
        self.publish_status(true);
        while let Some((observed, redrives)) = self.wait() {
            if let Err(e) = self.step(observed, redrives) {
                tracing::error!(channel = %self.config.id, error = %e, "channel stopped");
                lock(&self.shared.status).stopped = Some(e.to_string());
                return;
            }
        }
    }

    /// Waits for an input or a due time; `None` on stop.
    #[allow(clippy::type_complexity)]
    fn wait(&self) -> Option<(BTreeMap<PoolKey, (u64, u64)>, Vec<Redrive>)> {
        let mut inbox = lock(&self.shared.inbox);
        loop {
            if inbox.stop {
                return None;
            }
            if !inbox.observed.is_empty() || !inbox.redrive.is_empty() {
                break;
            }
            let now = now_ms(&self.clock);
            let due = [self.publisher.poll_timeout(), self.outbox.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let wait = match due {
                Some(t) if t <= now => break,
                Some(t) => Duration::from_millis(t - now).min(IDLE_WAIT),
                None => IDLE_WAIT,
            };
            inbox = self
                .shared
                .wake
                .wait_timeout(inbox, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        Some((
            std::mem::take(&mut inbox.observed),
            std::mem::take(&mut inbox.redrive),
        ))
    }

    fn step(
        &mut self,
        observed: BTreeMap<PoolKey, (u64, u64)>,
        redrives: Vec<Redrive>,
    ) -> Result<(), OutboxStoreError> {
        for (pool, (available, at)) in observed {
            self.publisher.observe(at, pool, available);
        }
        let now = now_ms(&self.clock);
        let mut touched = BTreeSet::new();
        let mut seqs = BTreeMap::new();
        for u in self.publisher.due(now) {
            seqs.insert(u.sku.clone(), u.sequence);
            touched.insert(u.pool());
            let (pool, seq) = (u.pool(), u.sequence);
            if !self.outbox.enqueue(u) {
                // Only a store that lost sequences could do this: say so.
                tracing::warn!(channel = %self.config.id, %pool, seq, "update older than the outbox's: dropped");
            }
        }
        let mut dead_changed = !redrives.is_empty();
        for which in redrives {
            let selected = |p: &PoolKey| match &which {
                Redrive::All => true,
                Redrive::Sku(s) => *s == p.sku,
            };
            let pools = self.outbox.dead_letters().into_iter().map(|(p, _)| p);
            touched.extend(pools.filter(selected));
            self.outbox.redrive(&which, now);
        }
        self.persist(&touched, &seqs)?;
        let mut answered = BTreeSet::new();
        for d in self.outbox.poll(now, SENDS_PER_STEP) {
            if lock(&self.shared.inbox).stop {
                // Not sent: still in the file as undelivered; dropping it from
                // memory is fine, the worker ends here.
                break;
            }
            let pool = d.update.pool();
            let seq = d.update.sequence;
            let result = self.client.send(&d.update, now_ms(&self.clock));
            let done = now_ms(&self.clock);
            let dead_before = self.outbox.dead_count();
            self.note(&pool, seq, done, &result);
            dead_changed |= result.is_err();
            // The delivery is the one just polled: these cannot report NotInFlight.
            let _ = match result {
                Ok(()) => self.outbox.succeeded(&pool, seq, done),
                Err(f) => {
                    tracing::debug!(channel = %self.config.id, %pool, seq, ?f, "delivery failed");
                    let r = next_random(&mut self.rng);
                    self.outbox.failed(&pool, seq, done, f, r)
                }
            };
            dead_changed |= self.outbox.dead_count() != dead_before;
            answered.insert(pool);
        }
        // One write for the answers of this step; a crash before it re-sends
        // them with the same sequences, which receivers drop.
        self.persist(&answered, &BTreeMap::new())?;
        self.publish_status(dead_changed);
        Ok(())
    }

    fn persist(
        &mut self,
        pools: &BTreeSet<PoolKey>,
        seqs: &BTreeMap<Sku, u64>,
    ) -> Result<(), OutboxStoreError> {
        if pools.is_empty() && seqs.is_empty() {
            return Ok(());
        }
        let rows: Vec<PoolRow> = pools
            .iter()
            .map(|p| PoolRow {
                pool: p.clone(),
                published: self.publisher.published(p),
                slot: self.outbox.record(p),
            })
            .collect();
        let seqs: Vec<(Sku, u64)> = seqs.iter().map(|(s, n)| (s.clone(), *n)).collect();
        self.store.save(&self.config.id, &rows, &seqs)
    }

    /// Records a delivery's outcome in the shared status.
    fn note(&self, pool: &PoolKey, seq: u64, done: u64, result: &Result<(), Failure>) {
        let mut st = lock(&self.shared.status);
        match result {
            Ok(()) => {
                st.delivered += 1;
                st.last_delivery_ms = Some(done);
                st.last_delivered = Some((pool.sku.clone(), seq));
                st.last_error = None;
            }
            Err(Failure::Retry { error, .. } | Failure::Permanent { error }) => {
                st.failed_attempts += 1;
                st.last_error = Some(error.clone());
            }
        }
    }

    /// Refreshes the shared status; the dead-letter list only when it may have changed.
    /// The list goes first: a reader that sees the new counts then finds the new list.
    fn publish_status(&self, dead_changed: bool) {
        if dead_changed {
            *lock(&self.shared.dead) = self.outbox.dead_letters();
        }
        let mut st = lock(&self.shared.status);
        st.outbox_depth = self.outbox.depth();
        st.dead_letters = self.outbox.dead_count();
    }
}
