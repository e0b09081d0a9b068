//! Property tests of the pure outbox: for any interleaving of observations,
//! polls, successes, failures, re-drives, restarts and time, the values a
//! receiver gets per pool come in strictly increasing sequence order, at most
//! one delivery per SKU is in flight, memory stays at one pending plus one in
//! flight per pool, and once everything succeeds the last value delivered per
//! pool is the last one observed.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::config::RetryPolicy;
use super::outbox::{Delivery, Failure, Outbox, Redrive};
use super::publisher::Update;
use crate::model::{LocationId, PoolKey, Sku};

const SKUS: [&str; 2] = ["A", "B"];
const LOCATIONS: [&str; 2] = ["WH", "S1"];

#[derive(Clone, Debug)]
enum Op {
    Observe {
        pool: usize,
        value: u64,
    },
    Poll {
        max: usize,
    },
    Succeed(usize),
    Fail {
        which: usize,
        permanent: bool,
        random: u64,
        retry_after: Option<u64>,
    },
    Redrive(Option<usize>),
    Advance(u64),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 0..50u64).prop_map(|(pool, value)| Op::Observe { pool, value }),
        3 => (1..4usize).prop_map(|max| Op::Poll { max }),
        3 => any::<usize>().prop_map(Op::Succeed),
        3 => (any::<usize>(), prop::bool::weighted(0.2), any::<u64>(), prop::option::of(0..500u64))
            .prop_map(|(which, permanent, random, retry_after)| Op::Fail { which, permanent, random, retry_after }),
        1 => prop::option::of(0..2usize).prop_map(Op::Redrive),
        2 => (0..400u64).prop_map(Op::Advance),
        1 => Just(Op::Restart),
    ]
}

fn pool(i: usize) -> PoolKey {
    PoolKey::new(
        LocationId::new(LOCATIONS[i / 2]).unwrap(),
        Sku::new(SKUS[i % 2]).unwrap(),
    )
}

struct Harness {
    outbox: Outbox,
    policy: RetryPolicy,
    now: u64,
    seqs: BTreeMap<Sku, u64>,
    observed: BTreeMap<PoolKey, (u64, u64)>,
    values: BTreeMap<(Sku, u64), u64>,
    in_flight: Vec<Delivery>,
    delivered: BTreeMap<PoolKey, Vec<(u64, u64)>>,
}

impl Harness {
    fn new() -> Self {
        let policy = RetryPolicy {
            max_attempts: 3,
            backoff_base_ms: 10,
            backoff_max_ms: 200,
        };
        Self {
            outbox: Outbox::new(policy),
            policy,
            now: 1_000,
            seqs: BTreeMap::new(),
            observed: BTreeMap::new(),
            values: BTreeMap::new(),
            in_flight: Vec::new(),
            delivered: BTreeMap::new(),
        }
    }

    fn poll(&mut self, max: usize) {
        for d in self.outbox.poll(self.now, max) {
            assert!(
                !self.in_flight.iter().any(|f| f.update.sku == d.update.sku),
                "two deliveries of one SKU in flight"
            );
            self.in_flight.push(d);
        }
    }

    fn succeed(&mut self, i: usize) {
        let d = self.in_flight.remove(i);
        let p = d.update.pool();
        self.outbox
            .succeeded(&p, d.update.sequence, self.now)
            .unwrap();
        assert_eq!(
            self.values[&(p.sku.clone(), d.update.sequence)],
            d.update.available
        );
        self.delivered
            .entry(p)
            .or_default()
            .push((d.update.sequence, d.update.available));
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Observe { pool: i, value } => {
                let p = pool(i);
                let seq = self.seqs.entry(p.sku.clone()).or_insert(0);
                *seq += 1;
                let u = Update {
                    location: p.location.clone(),
                    sku: p.sku.clone(),
                    available: value,
                    updated_at_ms: self.now,
                    sequence: *seq,
                };
                self.values.insert((p.sku.clone(), *seq), value);
                self.observed.insert(p, (*seq, value));
                assert!(self.outbox.enqueue(u));
            }
            Op::Poll { max } => self.poll(max),
            Op::Succeed(i) if !self.in_flight.is_empty() => {
                let i = i % self.in_flight.len();
                self.succeed(i);
            }
            Op::Fail {
                which,
                permanent,
                random,
                retry_after,
            } if !self.in_flight.is_empty() => {
                let d = self.in_flight.remove(which % self.in_flight.len());
                let failure = if permanent {
                    Failure::Permanent {
                        error: "HTTP 400".into(),
                    }
                } else {
                    Failure::Retry {
                        error: "HTTP 503".into(),
                        retry_after_ms: retry_after,
                    }
                };
                let p = d.update.pool();
                self.outbox
                    .failed(&p, d.update.sequence, self.now, failure, random)
                    .unwrap();
            }
            Op::Redrive(sku) => {
                let which = match sku {
                    None => Redrive::All,
                    Some(i) => Redrive::Sku(Sku::new(SKUS[i]).unwrap()),
                };
                self.outbox.redrive(&which, self.now);
            }
            Op::Advance(ms) => self.now += ms,
            Op::Restart => {
                // A crash: what was in flight is lost, the records are what the store kept.
                self.in_flight.clear();
                let records: Vec<_> = (0..4)
                    .map(pool)
                    .map(|p| {
                        let r = self.outbox.record(&p);
                        (p, r)
                    })
                    .collect();
                self.outbox = Outbox::restore(self.policy, records);
            }
            _ => {}
        }
        assert!(
            self.outbox.depth() <= 2 * 4,
            "more than one pending and one in flight per pool"
        );
        for (p, got) in &self.delivered {
            assert!(
                got.windows(2).all(|w| w[0].0 < w[1].0),
                "{p}: sequences delivered out of order: {got:?}"
            );
        }
    }

    /// Everything succeeds from now on: re-drive the dead letters and deliver until quiet.
    fn drain(&mut self) {
        self.in_flight.clear(); // their answers are lost: they are retried below
        self.outbox = Outbox::restore(
            self.policy,
            (0..4).map(pool).map(|p| {
                let r = self.outbox.record(&p);
                (p, r)
            }),
        );
        self.outbox.redrive(&Redrive::All, self.now);
        for _ in 0..100 {
            if let Some(t) = self.outbox.poll_timeout() {
                self.now = self.now.max(t);
            }
            self.poll(usize::MAX);
            if self.in_flight.is_empty() {
                break;
            }
            while !self.in_flight.is_empty() {
                self.succeed(0);
            }
        }
        assert_eq!(self.outbox.depth(), 0);
        assert_eq!(self.outbox.dead_count(), 0);
        for (p, (seq, value)) in &self.observed {
            let last = self.delivered.get(p).and_then(|v| v.last());
            assert_eq!(
                last,
                Some(&(*seq, *value)),
                "{p}: the last observed value was not delivered last"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn ordered_bounded_and_eventually_newest(ops in prop::collection::vec(op(), 0..120)) {
        let mut h = Harness::new();
        for op in ops {
            h.apply(op);
        }
        h.drain();
    }
}

#[test]
fn a_failed_older_value_never_overwrites_a_newer_pending_one() {
    let mut h = Harness::new();
    h.apply(Op::Observe { pool: 0, value: 5 });
    h.apply(Op::Poll { max: 1 });
    h.apply(Op::Observe { pool: 0, value: 7 });
    h.apply(Op::Fail {
        which: 0,
        permanent: false,
        random: 0,
        retry_after: None,
    });
    h.apply(Op::Poll { max: 1 });
    assert_eq!(h.in_flight[0].update.available, 7);
    assert_eq!(
        h.in_flight[0].attempt, 2,
        "the newer value inherits the backoff"
    );
    h.drain();
}

#[test]
fn a_redrive_after_a_newer_delivery_sends_nothing_old() {
    let mut h = Harness::new();
    h.apply(Op::Observe { pool: 0, value: 5 });
    h.apply(Op::Poll { max: 1 });
    h.apply(Op::Fail {
        which: 0,
        permanent: true,
        random: 0,
        retry_after: None,
    });
    assert_eq!(h.outbox.dead_count(), 1);
    h.apply(Op::Observe { pool: 0, value: 3 });
    h.apply(Op::Poll { max: 1 });
    h.apply(Op::Succeed(0));
    // The newer delivery made the dead letter moot.
    assert_eq!(h.outbox.dead_count(), 0);
    let r = h.outbox.redrive(&Redrive::All, h.now);
    assert_eq!((r.redriven, r.superseded), (0, 0));
    h.drain();
}

#[test]
fn max_attempts_dead_letters_the_newest_and_redrive_delivers_it() {
    let mut h = Harness::new();
    h.apply(Op::Observe { pool: 1, value: 9 });
    for _ in 0..3 {
        h.apply(Op::Advance(1_000));
        h.apply(Op::Poll { max: 1 });
        h.apply(Op::Fail {
            which: 0,
            permanent: false,
            random: 7,
            retry_after: None,
        });
    }
    assert_eq!(h.outbox.dead_count(), 1);
    assert_eq!(h.outbox.depth(), 0);
    let dead = h.outbox.dead_letters();
    assert_eq!(
        (dead[0].1.attempts, dead[0].1.error.as_str()),
        (3, "HTTP 503")
    );
    let r = h
        .outbox
        .redrive(&Redrive::Sku(Sku::new("B").unwrap()), h.now);
    assert_eq!(r.redriven, 1);
    h.apply(Op::Poll { max: 1 });
    assert_eq!(
        h.in_flight[0].attempt, 1,
        "a re-drive starts with fresh attempts"
    );
    h.drain();
}

#[test]
fn backoff_is_full_jitter_and_capped() {
    let p = RetryPolicy {
        max_attempts: 12,
        backoff_base_ms: 1_000,
        backoff_max_ms: 300_000,
    };
    assert_eq!(super::outbox::backoff_ms(&p, 1, 999), 999);
    assert_eq!(super::outbox::backoff_ms(&p, 1, 1_001), 0);
    assert_eq!(super::outbox::backoff_ms(&p, 3, 3_999), 3_999);
    assert_eq!(super::outbox::backoff_ms(&p, 3, 4_001), 0);
    assert!(super::outbox::backoff_ms(&p, 200, u64::MAX) <= 300_000);
    assert_eq!(super::outbox::backoff_ms(&p, 200, 300_000), 300_000);
}
