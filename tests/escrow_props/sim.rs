//! The multi-replica harness: every node's replica, every change each writer
//! committed, and deliveries between replicas (in order, reversed, shuffled, with
//! drops, duplicates and replays of old changes), each checked against the model.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use stocksync::error::{ChangeError, EventError};
use stocksync::escrow::{CounterKey, Hold, PoolState, StockBook};
use stocksync::model::{NodeId, Policy, PoolKey, Position, ReservationId};
use stocksync::replica::{Batch, Replica, WriterHead};
use stocksync::store::Snapshot;

use crate::model::{self, Class, Expect};
use crate::workload::{node_id, Ev, Op, Order};

/// Everything observable of a replica, to show that an operation changed nothing.
#[derive(Debug, PartialEq)]
struct Fingerprint {
    counters: BTreeMap<(NodeId, CounterKey), i64>,
    pools: Vec<(PoolKey, PoolState)>,
    heads: BTreeMap<NodeId, WriterHead>,
    holds: BTreeMap<ReservationId, Hold>,
}

fn fingerprint(r: &Replica) -> Fingerprint {
    let book = r.book();
    let mut counters = BTreeMap::new();
    for w in book.writers() {
        for (k, v) in book.counters_of(w) {
            counters.insert((*w, k.clone()), v);
        }
    }
    Fingerprint {
        counters,
        pools: book.pools().map(|(k, v)| (k.clone(), v.clone())).collect(),
        heads: r.heads().iter().map(|(k, v)| (*k, *v)).collect(),
        holds: r
            .holds()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

pub(crate) fn own_counters(book: &StockBook, w: &NodeId) -> BTreeMap<CounterKey, i64> {
    book.counters_of(w).map(|(k, v)| (k.clone(), v)).collect()
}

/// A small deterministic generator for shuffles (so proptest only has to shrink a seed).
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    seed |= 1;
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

/// One committed change of a writer, with the writer's counters right after it.
pub(crate) struct Entry {
    pub(crate) pos: Position,
    bytes: Vec<u8>,
    counters: BTreeMap<CounterKey, i64>,
}

/// Counts of what a run exercised (to show the properties are not vacuous).
#[derive(Default, Debug, Clone, Copy)]
pub(crate) struct Stats {
    pub(crate) applied: usize,
    pub(crate) ignored: usize,
    pub(crate) out_of_order: usize,
    pub(crate) rolls: usize,
    pub(crate) refused_rights: usize,
    pub(crate) deficits: usize,
    pub(crate) grants: usize,
    pub(crate) reserves: usize,
    pub(crate) releases: usize,
    pub(crate) fulfils: usize,
    pub(crate) sales: usize,
}

impl Stats {
    pub(crate) fn add(&mut self, o: &Stats) {
        self.applied += o.applied;
        self.ignored += o.ignored;
        self.out_of_order += o.out_of_order;
        self.rolls += o.rolls;
        self.refused_rights += o.refused_rights;
        self.deficits += o.deficits;
        self.grants += o.grants;
        self.reserves += o.reserves;
        self.releases += o.releases;
        self.fulfils += o.fulfils;
        self.sales += o.sales;
    }
}

pub(crate) struct Sim {
    pub(crate) ids: Vec<NodeId>,
    pub(crate) replicas: Vec<Replica>,
    /// Every change each writer ever committed, in commit order (all epochs).
    pub(crate) logs: Vec<Vec<Entry>>,
    /// Each node's own document position: (epoch, last seq), as the model expects it.
    own_pos: Vec<Position>,
    /// Node made a Record consumption beyond its own view of its rights.
    pub(crate) recorded_deficit: Vec<bool>,
    pub(crate) strict_only: bool,
    clock: i64,
    pub(crate) next_event: u64,
    pub(crate) stats: Stats,
}

impl Sim {
    pub(crate) fn new(n: usize, strict_only: bool) -> Self {
        let ids: Vec<NodeId> = (0..n).map(node_id).collect();
        let replicas = ids
            .iter()
            .map(|id| Replica::open(*id, Snapshot::default(), 1_000).unwrap())
            .collect();
        Self {
            replicas,
            logs: (0..n).map(|_| Vec::new()).collect(),
            own_pos: vec![Position { epoch: 1, seq: 0 }; n],
            recorded_deficit: vec![false; n],
            ids,
            strict_only,
            clock: 0,
            next_event: 0,
            stats: Stats::default(),
        }
    }

    pub(crate) fn n(&self) -> usize {
        self.ids.len()
    }

    fn tick(&mut self) -> i64 {
        self.clock += 1;
        self.clock
    }

    pub(crate) fn run(&mut self, ops: &[Op]) -> Result<(), TestCaseError> {
        for op in ops {
            self.step(op)?;
            self.check()?;
        }
        self.deliver_all()?;
        self.check()?;
        self.check_converged()
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let n = self.n();
        match op {
            Op::Local { node, events } => self.local(node % n, events),
            Op::Sync {
                to,
                from,
                order,
                drop,
                dup,
            } => self.sync(to % n, from % n, *order, *drop, *dup),
            Op::Replay { to, from, pick } => {
                let (to, from) = (to % n, from % n);
                if self.logs[from].is_empty() {
                    return Ok(());
                }
                let idx = pick % self.logs[from].len();
                self.deliver(to, from, idx)
            }
            Op::Roll { node } => self.roll(node % n),
        }
    }

    fn local(&mut self, node: usize, events: &[Ev]) -> Result<(), TestCaseError> {
        let me = self.ids[node];
        let mut batch = Batch::default();
        let mut staged = 0;
        for ev in events {
            let (req, class) = self.build(node, ev);
            let before = fingerprint(&self.replicas[node]);
            let expected = model::oracle(&self.replicas[node], me, &req, class);
            let pool = req.pool.clone();
            let rights_before = self.replicas[node].book().rights(&pool, &me);
            let on_hand_before = self.replicas[node]
                .book()
                .pool(&pool)
                .map(PoolState::on_hand)
                .unwrap_or(0);
            let policy = req.effective_policy();
            let got = self.replicas[node].stage(&mut batch, req);
            match (&expected, got) {
                (Ok(deficit), Ok(out)) => {
                    staged += 1;
                    prop_assert_eq!(out.deficit_created, *deficit, "deficit of {:?}", ev);
                    if out.deficit_created > 0 {
                        prop_assert_eq!(policy, Policy::Record);
                        prop_assert!(!self.strict_only);
                        self.recorded_deficit[node] = true;
                        self.stats.deficits += 1;
                    }
                    let (dr, doh) = class.deltas(out.qty as i64);
                    prop_assert_eq!(
                        out.rights_after,
                        rights_before + dr,
                        "rights after {:?}",
                        ev
                    );
                    prop_assert_eq!(
                        out.on_hand_after,
                        on_hand_before + doh,
                        "on_hand after {:?}",
                        ev
                    );
                    let book = self.replicas[node].book();
                    prop_assert_eq!(book.rights(&pool, &me), out.rights_after);
                    match class {
                        Class::Grant => self.stats.grants += 1,
                        Class::Reserve => self.stats.reserves += 1,
                        Class::Release => self.stats.releases += 1,
                        Class::Fulfil => self.stats.fulfils += 1,
                        Class::Consume => self.stats.sales += 1,
                        Class::Mint => {}
                    }
                }
                (Err(want), Err(e)) => {
                    prop_assert_eq!(want, &e, "refusal of {:?}", ev);
                    if matches!(e, EventError::InsufficientRights { .. }) {
                        self.stats.refused_rights += 1;
                    }
                    prop_assert_eq!(
                        &fingerprint(&self.replicas[node]),
                        &before,
                        "a refusal changed the replica"
                    );
                }
                (want, got) => {
                    return Err(TestCaseError::fail(format!(
                        "{ev:?} on node {node}: expected {want:?}, got {got:?}"
                    )))
                }
            }
        }
        let expected_pos = self.next_position(node);
        let sealed = self.replicas[node].seal(batch, self.clock + 1);
        self.tick();
        prop_assert!(sealed.changes.len() <= 1);
        match sealed.changes.into_iter().next() {
            Some(c) => {
                prop_assert!(staged > 0);
                prop_assert_eq!(c.position, expected_pos);
                self.own_pos[node] = c.position;
                let counters = own_counters(self.replicas[node].book(), &me);
                self.logs[node].push(Entry {
                    pos: c.position,
                    bytes: c.bytes,
                    counters,
                });
            }
            None => prop_assert_eq!(staged, 0),
        }
        Ok(())
    }

    /// The position the next own change of `node` must get.
    fn next_position(&self, node: usize) -> Position {
        let p = self.own_pos[node];
        Position {
            epoch: p.epoch,
            seq: p.seq + 1,
        }
    }

    fn roll(&mut self, node: usize) -> Result<(), TestCaseError> {
        let me = self.ids[node];
        let t = self.tick();
        let counters = own_counters(self.replicas[node].book(), &me);
        let epoch = self.own_pos[node].epoch + 1;
        self.own_pos[node] = Position { epoch, seq: 0 };
        let changes = self.replicas[node].roll_epoch(t);
        if changes.is_empty() {
            // Nothing to snapshot: the node never wrote a counter, so it has no
            // change yet either; its next change opens the new epoch at seq 1.
            prop_assert!(counters.is_empty());
            prop_assert!(self.logs[node].is_empty());
        }
        for (i, c) in changes.into_iter().enumerate() {
            prop_assert_eq!(
                c.position,
                Position {
                    epoch,
                    seq: i as u64 + 1
                }
            );
            self.own_pos[node] = c.position;
            self.stats.rolls += 1;
            // A receiver's book keeps the older epoch's values of counters a
            // later snapshot change puts: its view is the whole snapshot.
            self.logs[node].push(Entry {
                pos: c.position,
                bytes: c.bytes,
                counters: counters.clone(),
            });
        }
        Ok(())
    }

    /// The indices of `from`'s changes after `to`'s head, in commit order.
    fn after_head(&self, to: usize, from: usize) -> Vec<usize> {
        let head = self.head(to, from);
        (0..self.logs[from].len())
            .filter(|&i| self.logs[from][i].pos > head)
            .collect()
    }

    pub(crate) fn head(&self, to: usize, from: usize) -> Position {
        self.replicas[to]
            .heads()
            .get(&self.ids[from])
            .map(|h| h.position)
            .unwrap_or_default()
    }

    fn sync(
        &mut self,
        to: usize,
        from: usize,
        order: Order,
        drop: u16,
        dup: u16,
    ) -> Result<(), TestCaseError> {
        let mut list = self.after_head(to, from);
        match order {
            Order::Forward => {}
            Order::Reversed => list.reverse(),
            Order::Shuffled(seed) => shuffle(&mut list, seed),
        }
        for (i, idx) in list.into_iter().enumerate() {
            let bit = 1u16 << (i % 16);
            if drop & bit != 0 {
                continue;
            }
            self.deliver(to, from, idx)?;
            if dup & bit != 0 {
                self.deliver(to, from, idx)?;
            }
        }
        Ok(())
    }

    /// Delivers change `idx` of writer `from` to `to` and checks the answer against the model.
    fn deliver(&mut self, to: usize, from: usize, idx: usize) -> Result<(), TestCaseError> {
        let writer = self.ids[from];
        let head = self.head(to, from);
        let entry = &self.logs[from][idx];
        let expect = model::delivery(to == from, entry.pos, head);
        let before = fingerprint(&self.replicas[to]);
        let got = self.replicas[to].apply_remote(&writer, entry.pos.epoch, &entry.bytes);
        match (expect, got) {
            (Expect::Applied, Ok(Some(valid))) => {
                self.stats.applied += 1;
                prop_assert_eq!(valid.head.position, entry.pos);
                prop_assert_eq!(self.head(to, from), entry.pos);
                // The receiver now holds exactly the writer's counters as of that change.
                let now = own_counters(self.replicas[to].book(), &writer);
                prop_assert_eq!(&now, &entry.counters, "receiver's copy of {:?} after {:?}", writer, entry.pos);
                // Nothing else moved.
                let after = fingerprint(&self.replicas[to]);
                for ((w, k), v) in &after.counters {
                    if *w != writer {
                        prop_assert_eq!(before.counters.get(&(*w, k.clone())), Some(v));
                    }
                }
                prop_assert_eq!(&after.holds, &before.holds);
            }
            (Expect::Ignored, Ok(None)) => {
                self.stats.ignored += 1;
                prop_assert_eq!(&fingerprint(&self.replicas[to]), &before, "a stale change changed the replica");
            }
            (Expect::OutOfOrder, Err(ChangeError::OutOfOrder { have, got })) => {
                self.stats.out_of_order += 1;
                prop_assert_eq!(have, head);
                prop_assert_eq!(got, entry.pos);
                prop_assert_eq!(&fingerprint(&self.replicas[to]), &before, "a rejected change changed the replica");
            }
            (want, got) => {
                return Err(TestCaseError::fail(format!(
                    "delivering {:?} of node {from} to node {to} (head {head:?}): expected {want:?}, got {got:?}",
                    entry.pos
                )))
            }
        }
        Ok(())
    }

    /// Delivers everything, in order, between every pair.
    fn deliver_all(&mut self) -> Result<(), TestCaseError> {
        let n = self.n();
        for to in 0..n {
            for from in 0..n {
                if to != from {
                    self.sync(to, from, Order::Forward, 0, 0)?;
                    prop_assert!(self.after_head(to, from).is_empty());
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn run(n: usize, ops: &[Op], strict_only: bool) -> Result<Stats, TestCaseError> {
    let mut sim = Sim::new(n, strict_only);
    sim.run(ops)?;
    Ok(sim.stats)
}
