//! The publisher (pure): from observed available quantities per pool to
//! updates worth sending, coalesced by the channel's [`PublishMode`], each
//! with the next sequence number of its (channel, SKU).
//!
//! Time enters as an argument: [`Publisher::observe`] and [`Publisher::due`]
//! take `now_ms`, [`Publisher::poll_timeout`] says when to call `due` next.

use std::collections::{BTreeMap, BTreeSet};

use super::config::PublishMode;
use crate::model::{LocationId, PoolKey, Sku};

/// One value to deliver: the channel's available quantity of a pool at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// The pool's location.
    pub location: LocationId,
    /// The pool's SKU.
    pub sku: Sku,
    /// What the channel holds there (its rights), published as available.
    pub available: u64,
    /// When this value was observed, in Unix milliseconds.
    pub updated_at_ms: u64,
    /// Strictly increasing per (channel, SKU); receivers drop anything not above the last seen.
    pub sequence: u64,
}

impl Update {
    /// The pool this update is about.
    pub fn pool(&self) -> PoolKey {
        PoolKey::new(self.location.clone(), self.sku.clone())
    }
}

/// What a publisher restarts from (kept by the store).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublisherState {
    /// The last value enqueued per pool.
    pub published: BTreeMap<PoolKey, u64>,
    /// The last sequence number assigned per SKU.
    pub sequences: BTreeMap<Sku, u64>,
}

#[derive(Clone, Debug)]
struct PoolState {
    observed: u64,
    observed_at_ms: u64,
    /// Due time of the pending publication, when one is scheduled.
    due_at: Option<u64>,
}

/// Turns observations into updates (see the module doc).
#[derive(Debug)]
pub struct Publisher {
    mode: PublishMode,
    pools: BTreeMap<PoolKey, PoolState>,
    timers: BTreeSet<(u64, PoolKey)>,
    state: PublisherState,
}

impl Publisher {
    /// A publisher in `mode`, resuming from `state`.
    pub fn new(mode: PublishMode, state: PublisherState) -> Self {
        Self {
            mode,
            pools: BTreeMap::new(),
            timers: BTreeSet::new(),
            state,
        }
    }

    /// Records that the channel's available quantity in `pool` is `available` at `now_ms`.
    pub fn observe(&mut self, now_ms: u64, pool: PoolKey, available: u64) {
        let published = self.state.published.get(&pool).copied();
        let st = self.pools.entry(pool.clone()).or_insert(PoolState {
            observed: available,
            observed_at_ms: now_ms,
            due_at: None,
        });
        if st.observed != available {
            st.observed = available;
            st.observed_at_ms = now_ms;
        }
        if published != Some(available) && st.due_at.is_none() {
            let due = self.mode.due_after_change(now_ms);
            st.due_at = Some(due);
            self.timers.insert((due, pool));
        }
    }

    /// When [`Publisher::due`] has something to look at next, in Unix milliseconds.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// The updates due at `now_ms`: one per pool whose value differs from the
    /// last one enqueued, each with its SKU's next sequence number.
    pub fn due(&mut self, now_ms: u64) -> Vec<Update> {
        let mut out = Vec::new();
        while let Some((t, _)) = self.timers.first() {
            if *t > now_ms {
                break;
            }
            let Some((_, pool)) = self.timers.pop_first() else {
                break;
            };
            let Some(st) = self.pools.get_mut(&pool) else {
                continue;
            };
            st.due_at = None;
            if self.state.published.get(&pool) == Some(&st.observed) {
                continue; // the burst came back to the value already published
            }
            let seq = self.state.sequences.entry(pool.sku.clone()).or_insert(0);
            *seq += 1;
            self.state.published.insert(pool.clone(), st.observed);
            out.push(Update {
                location: pool.location,
                sku: pool.sku,
                available: st.observed,
                updated_at_ms: st.observed_at_ms,
                sequence: *seq,
            });
        }
        out
    }

    /// The last value enqueued for `pool`.
    pub fn published(&self, pool: &PoolKey) -> Option<u64> {
        self.state.published.get(pool).copied()
    }

    /// The last sequence number assigned to `sku` (0: none yet).
    pub fn sequence(&self, sku: &Sku) -> u64 {
        self.state.sequences.get(sku).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(sku: &str) -> PoolKey {
        PoolKey::new(LocationId::new("WH").unwrap(), Sku::new(sku).unwrap())
    }

    #[test]
    fn realtime_coalesces_a_burst() {
        let mut p = Publisher::new(
            PublishMode::Realtime { coalesce_ms: 100 },
            PublisherState::default(),
        );
        for i in 0..50 {
            p.observe(1_000 + i, pool("A"), 100 - i);
        }
        assert_eq!(p.poll_timeout(), Some(1_100));
        assert!(p.due(1_099).is_empty());
        let u = p.due(1_100);
        assert_eq!(u.len(), 1);
        assert_eq!(
            (u[0].available, u[0].sequence, u[0].updated_at_ms),
            (51, 1, 1_049)
        );
        // The same value again publishes nothing; a change publishes with the next sequence.
        p.observe(2_000, pool("A"), 51);
        assert!(p.due(3_000).is_empty());
        p.observe(3_000, pool("A"), 50);
        assert_eq!(p.due(3_100)[0].sequence, 2);
    }

    #[test]
    fn a_burst_back_to_the_published_value_sends_nothing() {
        let mut p = Publisher::new(
            PublishMode::Realtime { coalesce_ms: 100 },
            PublisherState::default(),
        );
        p.observe(0, pool("A"), 5);
        assert_eq!(p.due(100).len(), 1);
        p.observe(200, pool("A"), 4);
        p.observe(250, pool("A"), 5);
        assert!(p.due(300).is_empty());
        assert_eq!(p.sequence(&Sku::new("A").unwrap()), 1);
    }

    #[test]
    fn sequences_resume_and_are_per_sku() {
        let mut state = PublisherState::default();
        state.sequences.insert(Sku::new("A").unwrap(), 41);
        state.published.insert(pool("A"), 7);
        let mut p = Publisher::new(PublishMode::Realtime { coalesce_ms: 0 }, state);
        p.observe(0, pool("A"), 7); // unchanged since before the restart
        p.observe(0, pool("B"), 7);
        let u = p.due(0);
        assert_eq!(u.len(), 1);
        assert_eq!((u[0].sku.as_str(), u[0].sequence), ("B", 1));
        p.observe(1, pool("A"), 8);
        assert_eq!(p.due(1)[0].sequence, 42);
    }

    #[test]
    fn interval_publishes_once_per_interval() {
        let mut p = Publisher::new(
            PublishMode::Interval { every_s: 1 },
            PublisherState::default(),
        );
        let mut sent = Vec::new();
        for t in (0..3_000).step_by(10) {
            p.observe(t, pool("A"), t);
            sent.extend(p.due(t));
        }
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert_eq!(sent[0].available, 1_000);
        assert_eq!(sent[1].available, 2_000);
    }
}
