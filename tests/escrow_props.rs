//! Property tests of the escrow rule across several replicas exchanging changes.
//!
//! A simulation runs 3–6 nodes, each with its own [`Replica`]. Random workloads
//! (receipts, sales, returns, negative adjustments, grants, reservations) are
//! staged and sealed on random nodes, interleaved with random deliveries of
//! changes between replicas: in order, reversed, shuffled, with duplicates and
//! drops (a dropped change is re-sent by a later sync, since the receiver's head
//! did not move), plus replays of arbitrary old changes, and epoch roll-overs.
//!
//! After every step the simulation checks the escrow invariants against the
//! "true" state (the book built from every writer's own latest counters), checks
//! every `stage` result against an oracle of the rule, and checks every
//! `apply_remote` result against a model of per-writer delivery. At the end it
//! delivers everything and checks convergence.
//!
//! The last tests run a deliberately broken planner through the same checker to
//! show that the checker can fail.

use std::collections::BTreeMap;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use stocksync::error::{ChangeError, EventError};
use stocksync::escrow::{self, CounterKey, Hold, Holds, Plan, PoolState, StockBook};
use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeId, Policy, PoolKey, Position, Quantity,
    ReasonCode, ReservationId, Sku,
};
use stocksync::replica::{Batch, Replica, WriterHead};
use stocksync::store::Snapshot;

// ---------------------------------------------------------------------------
// Workload vocabulary
// ---------------------------------------------------------------------------

const POOLS: [(&str, &str); 3] = [("S1", "A"), ("S1", "B"), ("S2", "A")];
const MAX_NODES: usize = 6;
const SLOTS: u8 = 3;

fn pool(i: usize) -> PoolKey {
    let (l, s) = POOLS[i % POOLS.len()];
    PoolKey::new(LocationId::new(l).unwrap(), Sku::new(s).unwrap())
}

fn node_id(i: usize) -> NodeId {
    NodeId([i as u8 + 1; 32])
}

fn reservation(slot: u8) -> ReservationId {
    ReservationId::new(format!("R{slot}")).unwrap()
}

/// One event a node is asked to perform.
#[derive(Clone, Debug)]
enum Ev {
    Receipt { pool: usize, qty: u64 },
    Sale { pool: usize, qty: u64, record: bool },
    Return { pool: usize, qty: u64 },
    AdjustDown { pool: usize, qty: u64, record: bool },
    Grant { pool: usize, qty: u64, to: usize },
    Reserve { pool: usize, qty: u64, slot: u8 },
    Release { slot: u8, qty: u64 },
    Fulfil { slot: u8, qty: u64 },
}

/// How a sync response is delivered.
#[derive(Clone, Copy, Debug)]
enum Order {
    Forward,
    Reversed,
    Shuffled(u64),
}

/// One step of a run. Node indices are taken modulo the number of nodes.
#[derive(Clone, Debug)]
enum Op {
    /// Stage the events on `node` as one batch and seal it.
    Local { node: usize, events: Vec<Ev> },
    /// `to` asks `from` for its changes after `to`'s head; the answer is
    /// reordered, some changes dropped (bit i of `drop`), some duplicated.
    Sync {
        to: usize,
        from: usize,
        order: Order,
        drop: u16,
        dup: u16,
    },
    /// `to` receives an arbitrary old change of `from` (stale, duplicate or gap).
    Replay { to: usize, from: usize, pick: usize },
    /// `node` starts a new epoch.
    Roll { node: usize },
}

fn ev_strategy() -> impl Strategy<Value = Ev> {
    let p = 0..POOLS.len();
    let q = 1u64..=6;
    let small = 1u64..=3;
    prop_oneof![
        3 => (p.clone(), 1u64..=12).prop_map(|(pool, qty)| Ev::Receipt { pool, qty }),
        3 => (p.clone(), q.clone(), any::<bool>())
            .prop_map(|(pool, qty, record)| Ev::Sale { pool, qty, record }),
        1 => (p.clone(), q.clone()).prop_map(|(pool, qty)| Ev::Return { pool, qty }),
        1 => (p.clone(), q, any::<bool>())
            .prop_map(|(pool, qty, record)| Ev::AdjustDown { pool, qty, record }),
        3 => (p.clone(), small.clone(), 0..MAX_NODES)
            .prop_map(|(pool, qty, to)| Ev::Grant { pool, qty, to }),
        2 => (p, small.clone(), 0..SLOTS)
            .prop_map(|(pool, qty, slot)| Ev::Reserve { pool, qty, slot }),
        2 => (0..SLOTS, small.clone()).prop_map(|(slot, qty)| Ev::Release { slot, qty }),
        2 => (0..SLOTS, small).prop_map(|(slot, qty)| Ev::Fulfil { slot, qty }),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let order = prop_oneof![
        Just(Order::Forward),
        Just(Order::Reversed),
        any::<u64>().prop_map(Order::Shuffled),
    ];
    let mask = prop_oneof![Just(0u16), any::<u16>()];
    prop_oneof![
        4 => (0..MAX_NODES, vec(ev_strategy(), 1..=3))
            .prop_map(|(node, events)| Op::Local { node, events }),
        4 => (0..MAX_NODES, 0..MAX_NODES, order, mask.clone(), mask)
            .prop_map(|(to, from, order, drop, dup)| Op::Sync { to, from, order, drop, dup }),
        1 => (0..MAX_NODES, 0..MAX_NODES, 0usize..64)
            .prop_map(|(to, from, pick)| Op::Replay { to, from, pick }),
        1 => (0..MAX_NODES).prop_map(|node| Op::Roll { node }),
    ]
}

fn run_strategy() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (3usize..=MAX_NODES, vec(op_strategy(), 1..120))
}

// ---------------------------------------------------------------------------
// Shared checks
// ---------------------------------------------------------------------------

/// The invariant that must hold in the true state when every consumption is strict:
/// no pool's on-hand count is negative, no node's rights are negative, nothing
/// is held negatively. Shared by the replica simulation and the bad-planner tests.
fn check_strict_state(truth: &StockBook) -> Result<(), String> {
    for (p, st) in truth.pools() {
        if st.on_hand() < 0 {
            return Err(format!("pool {p}: on_hand {} < 0", st.on_hand()));
        }
        for (n, s) in &st.shares {
            if s.rights() < 0 {
                return Err(format!("pool {p}: node {n} has rights {} < 0", s.rights()));
            }
            if s.held() < 0 {
                return Err(format!("pool {p}: node {n} holds {} < 0", s.held()));
            }
        }
    }
    Ok(())
}

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

fn own_counters(book: &StockBook, w: &NodeId) -> BTreeMap<CounterKey, i64> {
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

// ---------------------------------------------------------------------------
// The replica simulation
// ---------------------------------------------------------------------------

/// One committed change of a writer, with the writer's counters right after it.
struct Entry {
    pos: Position,
    bytes: Vec<u8>,
    counters: BTreeMap<CounterKey, i64>,
}

/// What `apply_remote` must answer, per the delivery model.
#[derive(Debug, PartialEq, Clone, Copy)]
enum Expect {
    Applied,
    Ignored,
    OutOfOrder,
}

/// Counts of what a run exercised (to show the properties are not vacuous).
#[derive(Default, Debug, Clone, Copy)]
struct Stats {
    applied: usize,
    ignored: usize,
    out_of_order: usize,
    rolls: usize,
    refused_rights: usize,
    deficits: usize,
    grants: usize,
    reserves: usize,
    releases: usize,
    fulfils: usize,
    sales: usize,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
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

struct Sim {
    ids: Vec<NodeId>,
    replicas: Vec<Replica>,
    /// Every change each writer ever committed, in commit order (all epochs).
    logs: Vec<Vec<Entry>>,
    /// Each node's own document position: (epoch, last seq), as the model expects it.
    own_pos: Vec<Position>,
    /// Node made a Record consumption beyond its own view of its rights.
    recorded_deficit: Vec<bool>,
    strict_only: bool,
    clock: i64,
    next_event: u64,
    stats: Stats,
}

impl Sim {
    fn new(n: usize, strict_only: bool) -> Self {
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

    fn n(&self) -> usize {
        self.ids.len()
    }

    fn tick(&mut self) -> i64 {
        self.clock += 1;
        self.clock
    }

    fn run(&mut self, ops: &[Op]) -> Result<(), TestCaseError> {
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

    fn request(
        &mut self,
        node: usize,
        pool: PoolKey,
        qty: u64,
        kind: EventKind,
        policy: Option<Policy>,
    ) -> EventRequest {
        self.next_event += 1;
        let id = EventId::new(format!("e{node}-{}", self.next_event)).unwrap();
        let mut r = EventRequest::new(
            id,
            pool.location,
            pool.sku,
            Quantity::new(qty).unwrap(),
            kind,
        );
        r.policy = policy;
        r
    }

    fn policy(&self, record: bool) -> Option<Policy> {
        if self.strict_only {
            Some(Policy::Strict)
        } else if record {
            Some(Policy::Record)
        } else {
            // Sales default to strict, negative adjustments to record.
            None
        }
    }

    /// Stages `events` on `node`, checking each result against an oracle of the rule.
    fn local(&mut self, node: usize, events: &[Ev]) -> Result<(), TestCaseError> {
        let me = self.ids[node];
        let mut batch = Batch::default();
        let mut staged = 0;
        for ev in events {
            let (req, class) = self.build(node, ev);
            let before = fingerprint(&self.replicas[node]);
            let expected = self.oracle(node, &req, class);
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
        match sealed.change {
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

    fn build(&mut self, node: usize, ev: &Ev) -> (EventRequest, Class) {
        let n = self.n();
        match *ev {
            Ev::Receipt { pool: p, qty } => (
                self.request(node, pool(p), qty, EventKind::Receipt, None),
                Class::Mint,
            ),
            Ev::Return { pool: p, qty } => (
                self.request(node, pool(p), qty, EventKind::Return, None),
                Class::Mint,
            ),
            Ev::Sale {
                pool: p,
                qty,
                record,
            } => {
                let pol = self.policy(record);
                (
                    self.request(node, pool(p), qty, EventKind::Sale, pol),
                    Class::Consume,
                )
            }
            Ev::AdjustDown {
                pool: p,
                qty,
                record,
            } => {
                let pol = self.policy(record);
                let kind = EventKind::Adjustment {
                    increase: false,
                    reason: ReasonCode::new("damage").unwrap(),
                };
                (self.request(node, pool(p), qty, kind, pol), Class::Consume)
            }
            Ev::Grant { pool: p, qty, to } => {
                let kind = EventKind::Grant {
                    to: self.ids[to % n],
                };
                (self.request(node, pool(p), qty, kind, None), Class::Grant)
            }
            Ev::Reserve { pool: p, qty, slot } => {
                let kind = EventKind::Reserve {
                    reservation: reservation(slot),
                };
                (self.request(node, pool(p), qty, kind, None), Class::Reserve)
            }
            Ev::Release { slot, qty } | Ev::Fulfil { slot, qty } => {
                // Aim at one of the node's open holds (in its own pool) when it has
                // any, so most requests are valid; otherwise at an unknown one.
                let mut open: Vec<(ReservationId, PoolKey)> = self.replicas[node]
                    .holds()
                    .iter()
                    .map(|(id, h)| (id.clone(), h.pool.clone()))
                    .collect();
                open.sort();
                let (id, p) = if open.is_empty() {
                    (reservation(slot), pool(0))
                } else {
                    open.swap_remove(slot as usize % open.len())
                };
                if matches!(ev, Ev::Release { .. }) {
                    let kind = EventKind::Release { reservation: id };
                    (self.request(node, p, qty, kind, None), Class::Release)
                } else {
                    let kind = EventKind::Fulfil { reservation: id };
                    (self.request(node, p, qty, kind, None), Class::Fulfil)
                }
            }
        }
    }

    /// What the escrow rule must answer: `Ok(deficit_created)` or the refusal.
    fn oracle(&self, node: usize, req: &EventRequest, class: Class) -> Result<u64, EventError> {
        let me = self.ids[node];
        let r = &self.replicas[node];
        let book = r.book();
        let q = req.qty.as_i64();
        let rights = book.rights(&req.pool, &me);
        let known = book.knows_sku(&req.pool.sku);
        let consume = |policy: Policy| -> Result<u64, EventError> {
            if !known {
                return Err(EventError::UnknownSku(req.pool.sku.clone()));
            }
            if q <= rights {
                Ok(0)
            } else if policy == Policy::Strict {
                Err(EventError::InsufficientRights {
                    pool: req.pool.clone(),
                    available: rights.max(0),
                    requested: req.qty.get(),
                })
            } else {
                Ok((q - rights.max(0)) as u64)
            }
        };
        match (&req.kind, class) {
            (_, Class::Mint) => {
                if matches!(req.kind, EventKind::Return) && !known {
                    Err(EventError::UnknownSku(req.pool.sku.clone()))
                } else {
                    Ok(0)
                }
            }
            (_, Class::Consume) => consume(req.effective_policy()),
            (EventKind::Grant { to }, _) => {
                if *to == me {
                    Err(EventError::SelfGrant)
                } else {
                    consume(Policy::Strict)
                }
            }
            (EventKind::Reserve { reservation }, _) => {
                if r.holds().contains_key(reservation) {
                    Err(EventError::ReservationExists(reservation.clone()))
                } else {
                    consume(Policy::Strict)
                }
            }
            (EventKind::Release { reservation }, _) | (EventKind::Fulfil { reservation }, _) => {
                match r.holds().get(reservation) {
                    None => Err(EventError::UnknownReservation(reservation.clone())),
                    Some(h) if h.pool != req.pool => {
                        Err(EventError::ReservationPoolMismatch(reservation.clone()))
                    }
                    Some(h) if q > h.outstanding => Err(EventError::ReservationExceeded {
                        reservation: reservation.clone(),
                        outstanding: h.outstanding,
                        requested: req.qty.get(),
                    }),
                    Some(_) => Ok(0),
                }
            }
            _ => unreachable!("class and kind agree"),
        }
    }

    fn roll(&mut self, node: usize) -> Result<(), TestCaseError> {
        let me = self.ids[node];
        let t = self.tick();
        let counters = own_counters(self.replicas[node].book(), &me);
        let epoch = self.own_pos[node].epoch + 1;
        self.own_pos[node] = Position { epoch, seq: 0 };
        match self.replicas[node].roll_epoch(t) {
            Some(c) => {
                prop_assert_eq!(c.position, Position { epoch, seq: 1 });
                self.own_pos[node] = c.position;
                self.stats.rolls += 1;
                self.logs[node].push(Entry {
                    pos: c.position,
                    bytes: c.bytes,
                    counters,
                });
            }
            // Nothing to snapshot: the node never wrote a counter, so it has no
            // change yet either; its next change opens the new epoch at seq 1.
            None => {
                prop_assert!(counters.is_empty());
                prop_assert!(self.logs[node].is_empty());
            }
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

    fn head(&self, to: usize, from: usize) -> Position {
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
        let expect = if to == from || entry.pos <= head {
            Expect::Ignored
        } else if entry.pos.seq == 1
            || (entry.pos.epoch == head.epoch && entry.pos.seq == head.seq + 1)
        {
            Expect::Applied
        } else {
            Expect::OutOfOrder
        };
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

    /// The true state: every writer's counters at their latest values.
    fn truth(&self) -> StockBook {
        let mut b = StockBook::new();
        for (i, r) in self.replicas.iter().enumerate() {
            for (k, v) in r.book().counters_of(&self.ids[i]) {
                b.raise(self.ids[i], k, v).unwrap();
            }
        }
        b
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let truth = self.truth();
        if self.strict_only {
            check_strict_state(&truth).map_err(TestCaseError::fail)?;
        }
        for (p, st) in truth.pools() {
            for (n, s) in &st.shares {
                let i = self.ids.iter().position(|id| id == n).unwrap();
                // A true deficit only after a Record consumption beyond rights.
                if s.deficit() > 0 {
                    prop_assert!(
                        self.recorded_deficit[i],
                        "{} has deficit {} in {} without a recorded one",
                        n,
                        s.deficit(),
                        p
                    );
                }
                prop_assert!(s.held() >= 0);
                // Own view of own rights never above the truth (and never negative
                // unless the node recorded a deficit).
                let own = self.replicas[i].book().rights(p, n);
                prop_assert!(
                    own <= s.rights(),
                    "{} sees rights {} in {} but has {}",
                    n,
                    own,
                    p,
                    s.rights()
                );
                if !self.recorded_deficit[i] {
                    prop_assert!(own >= 0);
                }
            }
        }
        // No replica knows a counter value its writer never reached.
        for r in &self.replicas {
            let b = r.book();
            for w in b.writers() {
                for (k, v) in b.counters_of(w) {
                    prop_assert!(
                        v <= truth.counter(w, k),
                        "{:?} invented {:?} of {:?}",
                        r.me(),
                        k,
                        w
                    );
                }
            }
        }
        Ok(())
    }

    fn check_converged(&self) -> Result<(), TestCaseError> {
        let truth = self.truth();
        let true_pools: Vec<(PoolKey, PoolState)> =
            truth.pools().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (i, r) in self.replicas.iter().enumerate() {
            let pools: Vec<(PoolKey, PoolState)> = r
                .book()
                .pools()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            prop_assert_eq!(&pools, &true_pools, "replica {} differs from the truth", i);
            for (j, w) in self.ids.iter().enumerate() {
                prop_assert_eq!(own_counters(r.book(), w), own_counters(&truth, w));
                let latest = self.logs[j].last().map(|e| e.pos).unwrap_or_default();
                if i != j {
                    prop_assert_eq!(self.head(i, j), latest);
                }
            }
            for (p, st) in &true_pools {
                let mine = r.book().pool(p).unwrap();
                prop_assert_eq!(mine.on_hand(), st.on_hand());
                prop_assert_eq!(mine.deficit(), st.deficit());
            }
        }
        Ok(())
    }
}

/// What an accepted event does to the node's rights and the pool's on-hand count.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Class {
    Mint,
    Consume,
    Grant,
    Reserve,
    Release,
    Fulfil,
}

impl Class {
    /// `(Δ own rights, Δ on_hand)` for quantity `q`.
    fn deltas(self, q: i64) -> (i64, i64) {
        match self {
            Class::Mint => (q, q),
            Class::Consume => (-q, -q),
            Class::Grant => (-q, 0),
            Class::Reserve => (-q, 0),
            Class::Release => (q, 0),
            Class::Fulfil => (0, -q),
        }
    }
}

fn run(n: usize, ops: &[Op], strict_only: bool) -> Result<Stats, TestCaseError> {
    let mut sim = Sim::new(n, strict_only);
    sim.run(ops)?;
    Ok(sim.stats)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Property 1 (strict) and 2: under strict-only workloads no true on_hand or
    /// rights goes negative, no deficit appears, views never exceed the truth,
    /// every stage and delivery matches the models, and everything converges.
    #[test]
    fn strict_workloads_keep_the_invariant_and_converge((n, ops) in run_strategy()) {
        run(n, &ops, true)?;
    }

    /// Property 1 (mixed) and 2: with Record consumptions, a true deficit appears
    /// only on a node that recorded one; views never exceed the truth; convergence.
    #[test]
    fn recorded_deficits_are_the_only_deficits_and_replicas_converge((n, ops) in run_strategy()) {
        run(n, &ops, false)?;
    }
}

/// Guards against vacuous properties: a batch of runs reaches every path the
/// properties talk about (applied, stale, out-of-order deliveries, epoch rolls,
/// refusals, deficits, grants, holds).
#[test]
fn runs_exercise_every_path() {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = run_strategy();
    let mut total = Stats::default();
    for i in 0..24 {
        let (n, ops) = strategy.new_tree(&mut runner).unwrap().current();
        let stats = run(n, &ops, i % 2 == 0).unwrap();
        total.add(&stats);
    }
    let s = total;
    for (name, v) in [
        ("applied", s.applied),
        ("ignored", s.ignored),
        ("out_of_order", s.out_of_order),
        ("rolls", s.rolls),
        ("refused_rights", s.refused_rights),
        ("deficits", s.deficits),
        ("grants", s.grants),
        ("reserves", s.reserves),
        ("releases", s.releases),
        ("fulfils", s.fulfils),
        ("sales", s.sales),
    ] {
        assert!(v >= 3, "only {v} {name} in {s:?}");
    }
}

/// A hand-written scenario: a grant, a strict sale on the grantee, an epoch roll,
/// drops and a late snapshot; converges to the expected numbers.
#[test]
fn grant_sale_roll_and_late_snapshot_converge() {
    use Ev::*;
    let ops = vec![
        Op::Local {
            node: 0,
            events: vec![Receipt { pool: 0, qty: 10 }],
        },
        Op::Local {
            node: 0,
            events: vec![Grant {
                pool: 0,
                qty: 4,
                to: 1,
            }],
        },
        // Reversed: the grant arrives first and is refused as a gap, the receipt
        // is applied, its duplicate ignored.
        Op::Sync {
            to: 1,
            from: 0,
            order: Order::Reversed,
            drop: 0,
            dup: 0b11,
        },
        // Asking again after the new head re-sends the grant.
        Op::Sync {
            to: 1,
            from: 0,
            order: Order::Forward,
            drop: 0,
            dup: 0,
        },
        Op::Local {
            node: 1,
            events: vec![
                Sale {
                    pool: 0,
                    qty: 4,
                    record: false,
                },
                Sale {
                    pool: 0,
                    qty: 1,
                    record: false,
                },
            ],
        },
        Op::Roll { node: 0 },
        Op::Local {
            node: 0,
            events: vec![Sale {
                pool: 0,
                qty: 6,
                record: false,
            }],
        },
        // Node 2 hears of node 0's new epoch only, never of epoch 1.
        Op::Sync {
            to: 2,
            from: 0,
            order: Order::Shuffled(7),
            drop: 0,
            dup: 0,
        },
        Op::Replay {
            to: 2,
            from: 0,
            pick: 0,
        },
    ];
    let mut sim = Sim::new(3, true);
    sim.run(&ops).unwrap();
    let truth = sim.truth();
    let st = truth.pool(&pool(0)).unwrap();
    assert_eq!(st.on_hand(), 0);
    assert_eq!(st.share(&node_id(0)).rights(), 0);
    assert_eq!(st.share(&node_id(1)).rights(), 0);
    assert_eq!(sim.stats.out_of_order, 2);
    assert!(
        sim.stats.refused_rights >= 1,
        "the 5th unit on node 1 is refused"
    );
}

// ---------------------------------------------------------------------------
// Property 3: the checker catches a broken rule
// ---------------------------------------------------------------------------

type Planner = fn(&StockBook, &Holds, &NodeId, &EventRequest) -> Result<Plan, EventError>;

/// A broken rule: a node may sell whatever its view of the pool's on-hand count
/// allows, ignoring whose rights the units are.
fn bad_plan(
    book: &StockBook,
    holds: &Holds,
    me: &NodeId,
    req: &EventRequest,
) -> Result<Plan, EventError> {
    if matches!(req.kind, EventKind::Sale) {
        let on_hand = book.pool(&req.pool).map(PoolState::on_hand).unwrap_or(0);
        let q = req.qty.as_i64();
        if q > on_hand {
            return Err(EventError::InsufficientRights {
                pool: req.pool.clone(),
                available: on_hand.max(0),
                requested: req.qty.get(),
            });
        }
        let key = CounterKey::Consumed(req.pool.clone());
        let v = book.counter(me, &key) + q;
        return Ok(Plan {
            writes: vec![(key, v)],
            deficit_created: 0,
            hold: None,
        });
    }
    escrow::plan(book, holds, me, req)
}

/// A step of the book-level simulation (one pool).
#[derive(Clone, Debug)]
enum BookOp {
    Receipt { node: usize, qty: u64 },
    Sale { node: usize, qty: u64 },
    Grant { node: usize, to: usize, qty: u64 },
    Sync { to: usize, from: usize },
}

fn book_op_strategy() -> impl Strategy<Value = BookOp> {
    prop_oneof![
        (0..3usize, 1u64..=8).prop_map(|(node, qty)| BookOp::Receipt { node, qty }),
        (0..3usize, 1u64..=8).prop_map(|(node, qty)| BookOp::Sale { node, qty }),
        (0..3usize, 0..3usize, 1u64..=4).prop_map(|(node, to, qty)| BookOp::Grant {
            node,
            to,
            qty
        }),
        (0..3usize, 0..3usize).prop_map(|(to, from)| BookOp::Sync { to, from }),
    ]
}

/// Runs `ops` on three nodes, each with its own view, using `planner`; checks
/// the strict invariant on the true state after every step with the same
/// checker as the replica simulation.
fn run_books(planner: Planner, ops: &[BookOp]) -> Result<(), String> {
    let ids: Vec<NodeId> = (0..3).map(node_id).collect();
    let mut books: Vec<StockBook> = (0..3).map(|_| StockBook::new()).collect();
    let mut holds: Vec<Holds> = (0..3).map(|_| Holds::new()).collect();
    let p = pool(0);
    for (step, op) in ops.iter().enumerate() {
        let id = EventId::new(format!("b{step}")).unwrap();
        let mk = |kind: EventKind, qty: u64| {
            let mut r = EventRequest::new(
                id.clone(),
                p.location.clone(),
                p.sku.clone(),
                Quantity::new(qty).unwrap(),
                kind,
            );
            r.policy = Some(Policy::Strict);
            r
        };
        let (node, req) = match op {
            BookOp::Receipt { node, qty } => (*node, mk(EventKind::Receipt, *qty)),
            BookOp::Sale { node, qty } => (*node, mk(EventKind::Sale, *qty)),
            BookOp::Grant { node, to, qty } => (*node, mk(EventKind::Grant { to: ids[*to] }, *qty)),
            BookOp::Sync { to, from } => {
                let w = ids[*from];
                let copy: Vec<(CounterKey, i64)> = books[*from]
                    .counters_of(&w)
                    .map(|(k, v)| (k.clone(), v))
                    .collect();
                for (k, v) in copy {
                    books[*to].raise(w, &k, v).unwrap();
                }
                continue;
            }
        };
        if let Ok(plan) = planner(&books[node], &holds[node], &ids[node], &req) {
            escrow::apply(&mut books[node], &mut holds[node], &ids[node], &plan).unwrap();
        }
        let mut truth = StockBook::new();
        for (i, b) in books.iter().enumerate() {
            for (k, v) in b.counters_of(&ids[i]) {
                truth.raise(ids[i], k, v).unwrap();
            }
        }
        check_strict_state(&truth).map_err(|e| format!("after step {step} ({op:?}): {e}"))?;
    }
    Ok(())
}

/// The counter-example: A receives 5, B learns of it, both sell 5.
fn counter_example() -> Vec<BookOp> {
    vec![
        BookOp::Receipt { node: 0, qty: 5 },
        BookOp::Sync { to: 1, from: 0 },
        BookOp::Sale { node: 0, qty: 5 },
        BookOp::Sale { node: 1, qty: 5 },
    ]
}

#[test]
fn broken_rule_is_caught_on_a_fixed_counter_example() {
    // The real rule refuses B's sale (B holds no rights) and passes.
    run_books(escrow::plan, &counter_example()).unwrap();
    // The broken rule lets both sell and the checker reports on_hand -5.
    let err = run_books(bad_plan, &counter_example()).unwrap_err();
    assert!(err.contains("on_hand -5"), "{err}");
}

#[test]
fn broken_rule_is_caught_by_random_search() {
    let config = Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    };
    let strategy = vec(book_op_strategy(), 1..30);
    // The real rule passes the same search.
    let mut good = TestRunner::new_with_rng(
        config.clone(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    good.run(&strategy, |ops| {
        run_books(escrow::plan, &ops).map_err(TestCaseError::fail)
    })
    .unwrap();
    // The broken rule is caught, and the shrunk case still fails.
    let mut bad =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    match bad.run(&strategy, |ops| {
        run_books(bad_plan, &ops).map_err(TestCaseError::fail)
    }) {
        Err(TestError::Fail(_, minimal)) => {
            assert!(run_books(bad_plan, &minimal).is_err());
            assert!(minimal.len() <= 6, "shrunk to {minimal:?}");
        }
        other => panic!("the broken rule was not caught: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The real planner passes the book-level checker under random workloads.
    #[test]
    fn real_rule_passes_the_book_level_checker(ops in vec(book_op_strategy(), 1..40)) {
        run_books(escrow::plan, &ops).map_err(TestCaseError::fail)?;
    }
}
