//! The outbox (pure): what is waiting to be delivered to one channel's
//! webhook, what is in flight, when to retry, and the dead letters.
//!
//! Per pool (location, SKU) it holds at most one pending value and one in
//! flight, and per SKU at most one delivery is in flight. A newer value
//! replaces an older undelivered one, never the reverse: while an older value
//! is in flight, a newer one waits and goes next; when the older one fails, the
//! newer one takes its place (the receiver only needs the newest). Retries
//! back off exponentially with full jitter (the random draw is an argument).
//! After `max_attempts` failures, or at once on a permanent failure, the
//! newest undelivered value becomes the pool's dead letter, visible with its
//! last error until re-driven or made moot by a newer delivered value.

use std::collections::{BTreeMap, BTreeSet};

use super::config::RetryPolicy;
use super::publisher::Update;
use crate::model::{PoolKey, Sku};

/// Why a delivery attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying (5xx, 408, 429, timeout, connection error).
    Retry {
        /// What happened, for the status and the dead letter.
        error: String,
        /// The receiver's `Retry-After`, in milliseconds, if it sent one.
        retry_after_ms: Option<u64>,
    },
    /// Not worth retrying (another 4xx): dead letter at once.
    Permanent {
        /// What happened (status and body excerpt).
        error: String,
    },
}

/// A delivery to attempt now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The value to send.
    pub update: Update,
    /// Which attempt this is for the pool's head, from 1.
    pub attempt: u32,
}

/// A delivery given up on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The newest undelivered value when it was given up.
    pub update: Update,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// When it was given up, in Unix milliseconds.
    pub failed_at_ms: u64,
}

/// What the store keeps per pool; enough to resume exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotRecord {
    /// The newest undelivered value (pending, or in flight at the crash).
    pub head: Option<Update>,
    /// Failed attempts of the head so far.
    pub attempts: u32,
    /// Not before this time, in Unix milliseconds.
    pub next_at_ms: u64,
    /// The last failure, until a delivery succeeds.
    pub last_error: Option<String>,
    /// The pool's dead letter.
    pub dead: Option<DeadLetter>,
    /// The highest sequence delivered for this pool (0: none).
    pub delivered_seq: u64,
}

/// Which dead letters to re-drive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redrive {
    /// Every dead letter of the channel.
    All,
    /// The dead letters of one SKU (at every location).
    Sku(Sku),
}

/// What a re-drive did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedriveReport {
    /// Dead letters put back with fresh attempts.
    pub redriven: usize,
    /// Dead letters dropped because a newer value was delivered or is queued.
    pub superseded: usize,
}

/// A report about a delivery the outbox does not have in flight.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no delivery of {pool} with sequence {sequence} is in flight")]
pub struct NotInFlight {
    /// The pool reported.
    pub pool: PoolKey,
    /// The sequence reported.
    pub sequence: u64,
}

#[derive(Clone, Debug, Default)]
struct Slot {
    pending: Option<Update>,
    in_flight: Option<Update>,
    attempts: u32,
    next_at_ms: u64,
    last_error: Option<String>,
    dead: Option<DeadLetter>,
    delivered_seq: u64,
}

impl Slot {
    /// The highest sequence this slot knows of, delivered or not.
    fn newest_seq(&self) -> u64 {
        let p = self.pending.as_ref().map_or(0, |u| u.sequence);
        let f = self.in_flight.as_ref().map_or(0, |u| u.sequence);
        self.delivered_seq.max(p).max(f)
    }

    fn queued(&self) -> usize {
        usize::from(self.pending.is_some()) + usize::from(self.in_flight.is_some())
    }
}

/// One channel's outbox (see the module doc).
#[derive(Debug)]
pub struct Outbox {
    policy: RetryPolicy,
    slots: BTreeMap<PoolKey, Slot>,
    /// Slots with a pending value and nothing in flight, by not-before time.
    ready: BTreeSet<(u64, PoolKey)>,
    /// SKUs with a delivery in flight.
    busy: BTreeSet<Sku>,
    depth: usize,
    dead: usize,
}

impl Outbox {
    /// An empty outbox.
    pub fn new(policy: RetryPolicy) -> Self {
        Self::restore(policy, [])
    }

    /// An outbox resuming from the store's records; a value in flight at the
    /// crash is pending again, with the same sequence.
    pub fn restore(
        policy: RetryPolicy,
        records: impl IntoIterator<Item = (PoolKey, SlotRecord)>,
    ) -> Self {
        let mut out = Self {
            policy,
            slots: BTreeMap::new(),
            ready: BTreeSet::new(),
            busy: BTreeSet::new(),
            depth: 0,
            dead: 0,
        };
        for (pool, r) in records {
            out.edit(&pool, |s| {
                *s = Slot {
                    pending: r.head,
                    in_flight: None,
                    attempts: r.attempts,
                    next_at_ms: r.next_at_ms,
                    last_error: r.last_error,
                    dead: r.dead,
                    delivered_seq: r.delivered_seq,
                }
            });
        }
        out
    }

    /// Runs `f` on `pool`'s slot and keeps the indexes and counts in step.
    fn edit<R>(&mut self, pool: &PoolKey, f: impl FnOnce(&mut Slot) -> R) -> R {
        let slot = self.slots.entry(pool.clone()).or_default();
        self.ready.remove(&(slot.next_at_ms, pool.clone()));
        if slot.in_flight.is_some() {
            self.busy.remove(&pool.sku);
        }
        let (q0, d0) = (slot.queued(), usize::from(slot.dead.is_some()));
        let r = f(slot);
        self.depth = self.depth + slot.queued() - q0;
        self.dead = self.dead + usize::from(slot.dead.is_some()) - d0;
        if slot.in_flight.is_some() {
            self.busy.insert(pool.sku.clone());
        } else if slot.pending.is_some() {
            self.ready.insert((slot.next_at_ms, pool.clone()));
        }
        r
    }

    /// Queues `update` as its pool's newest value; `false` (and nothing
    /// changes) when the pool already has this sequence or a later one.
    pub fn enqueue(&mut self, update: Update) -> bool {
        let pool = update.pool();
        if self
            .slots
            .get(&pool)
            .is_some_and(|s| s.newest_seq() >= update.sequence)
        {
            return false;
        }
        self.edit(&pool, |s| s.pending = Some(update));
        true
    }

    /// When [`Outbox::poll`] may have something to start, in Unix milliseconds.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.ready.first().map(|(t, _)| *t)
    }

    /// Starts the deliveries due at `now_ms`, at most `max` of them, at most one per SKU in flight.
    pub fn poll(&mut self, now_ms: u64, max: usize) -> Vec<Delivery> {
        let mut due: Vec<PoolKey> = Vec::new();
        let mut skus = BTreeSet::new();
        for (t, p) in &self.ready {
            if *t > now_ms || due.len() >= max {
                break;
            }
            if !self.busy.contains(&p.sku) && skus.insert(&p.sku) {
                due.push(p.clone());
            }
        }
        let mut out = Vec::new();
        for pool in due {
            let started = self.edit(&pool, |s| {
                let u = s.pending.take()?;
                s.in_flight = Some(u.clone());
                Some(Delivery {
                    update: u,
                    attempt: s.attempts.saturating_add(1),
                })
            });
            out.extend(started);
        }
        out
    }

    fn check_in_flight(&self, pool: &PoolKey, sequence: u64) -> Result<(), NotInFlight> {
        let ok = self
            .slots
            .get(pool)
            .and_then(|s| s.in_flight.as_ref())
            .is_some_and(|u| u.sequence == sequence);
        if ok {
            Ok(())
        } else {
            Err(NotInFlight {
                pool: pool.clone(),
                sequence,
            })
        }
    }

    /// Records that the delivery of `pool` with `sequence` reached the receiver.
    pub fn succeeded(
        &mut self,
        pool: &PoolKey,
        sequence: u64,
        now_ms: u64,
    ) -> Result<(), NotInFlight> {
        self.check_in_flight(pool, sequence)?;
        self.edit(pool, |s| {
            s.in_flight = None;
            s.delivered_seq = s.delivered_seq.max(sequence);
            s.attempts = 0;
            s.next_at_ms = now_ms;
            s.last_error = None;
            if s.dead
                .as_ref()
                .is_some_and(|d| d.update.sequence < sequence)
            {
                s.dead = None; // the receiver has a newer value: nothing left to re-drive
            }
        });
        Ok(())
    }

    /// Records that the delivery of `pool` with `sequence` failed at `now_ms`;
    /// `random` is a uniform draw for the backoff's jitter.
    pub fn failed(
        &mut self,
        pool: &PoolKey,
        sequence: u64,
        now_ms: u64,
        failure: Failure,
        random: u64,
    ) -> Result<(), NotInFlight> {
        self.check_in_flight(pool, sequence)?;
        let policy = self.policy;
        self.edit(pool, |s| {
            let Some(flight) = s.in_flight.take() else {
                return; // checked above
            };
            let (error, retry_after_ms, permanent) = match failure {
                Failure::Retry {
                    error,
                    retry_after_ms,
                } => (error, retry_after_ms, false),
                Failure::Permanent { error } => (error, None, true),
            };
            s.attempts = s.attempts.saturating_add(1);
            s.last_error = Some(error.clone());
            if permanent || s.attempts >= policy.max_attempts {
                // A permanent failure is about this payload: a newer pending value
                // still gets its own try. After max attempts the newest is given up.
                let dead = if permanent {
                    flight
                } else {
                    s.pending.take().unwrap_or(flight)
                };
                s.dead = Some(DeadLetter {
                    update: dead,
                    attempts: s.attempts,
                    error,
                    failed_at_ms: now_ms,
                });
                s.attempts = 0;
                s.next_at_ms = now_ms;
            } else {
                if s.pending.is_none() {
                    s.pending = Some(flight); // the same sequence again
                } // else: superseded by the newer pending value
                let mut delay = backoff_ms(&policy, s.attempts, random);
                if let Some(ra) = retry_after_ms {
                    delay = delay.max(ra.min(policy.backoff_max_ms));
                }
                s.next_at_ms = now_ms.saturating_add(delay);
            }
        });
        Ok(())
    }

    /// Puts the selected dead letters back with fresh attempts, due at `now_ms`;
    /// one with a newer value delivered or queued for its pool is dropped instead.
    pub fn redrive(&mut self, which: &Redrive, now_ms: u64) -> RedriveReport {
        let pools: Vec<PoolKey> = self
            .slots
            .iter()
            .filter(|(p, s)| {
                s.dead.is_some()
                    && match which {
                        Redrive::All => true,
                        Redrive::Sku(sku) => p.sku == *sku,
                    }
            })
            .map(|(p, _)| p.clone())
            .collect();
        let mut report = RedriveReport::default();
        for pool in pools {
            self.edit(&pool, |s| {
                let Some(d) = s.dead.take() else { return };
                if s.newest_seq() >= d.update.sequence {
                    report.superseded += 1;
                } else {
                    s.pending = Some(d.update);
                    s.attempts = 0;
                    s.next_at_ms = now_ms;
                    report.redriven += 1;
                }
            });
        }
        report
    }

    /// What the store keeps for `pool`.
    pub fn record(&self, pool: &PoolKey) -> SlotRecord {
        let Some(s) = self.slots.get(pool) else {
            return SlotRecord::default();
        };
        SlotRecord {
            head: s.pending.clone().or_else(|| s.in_flight.clone()),
            attempts: s.attempts,
            next_at_ms: s.next_at_ms,
            last_error: s.last_error.clone(),
            dead: s.dead.clone(),
            delivered_seq: s.delivered_seq,
        }
    }

    /// Values queued or in flight, over all pools.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Number of dead letters.
    pub fn dead_count(&self) -> usize {
        self.dead
    }

    /// The dead letters, by pool.
    pub fn dead_letters(&self) -> Vec<(PoolKey, DeadLetter)> {
        self.slots
            .iter()
            .filter_map(|(p, s)| s.dead.clone().map(|d| (p.clone(), d)))
            .collect()
    }

    /// The highest sequence delivered for `pool` (0: none).
    pub fn delivered_seq(&self, pool: &PoolKey) -> u64 {
        self.slots.get(pool).map_or(0, |s| s.delivered_seq)
    }
}

/// Full jitter: uniform in `[0, min(max, base * 2^(attempts-1))]`, drawn from `random`.
pub fn backoff_ms(policy: &RetryPolicy, attempts: u32, random: u64) -> u64 {
    let factor = 1u64
        .checked_shl(attempts.saturating_sub(1))
        .unwrap_or(u64::MAX);
    let ceiling = policy
        .backoff_base_ms
        .saturating_mul(factor)
        .min(policy.backoff_max_ms);
    random % ceiling.saturating_add(1)
}
