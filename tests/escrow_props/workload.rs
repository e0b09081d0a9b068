//! The workload: random events and delivery steps, their strategies, and how a
//! node of the simulation turns an event into a request.

use proptest::collection::vec;
use proptest::prelude::*;

use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeId, Policy, PoolKey, Quantity, ReasonCode,
    ReservationId, Sku,
};

use crate::model::Class;
use crate::sim::Sim;

const POOLS: [(&str, &str); 3] = [("S1", "A"), ("S1", "B"), ("S2", "A")];
const MAX_NODES: usize = 6;
const SLOTS: u8 = 3;

pub(crate) fn pool(i: usize) -> PoolKey {
    let (l, s) = POOLS[i % POOLS.len()];
    PoolKey::new(LocationId::new(l).unwrap(), Sku::new(s).unwrap())
}

pub(crate) fn node_id(i: usize) -> NodeId {
    NodeId([i as u8 + 1; 32])
}

pub(crate) fn reservation(slot: u8) -> ReservationId {
    ReservationId::new(format!("R{slot}")).unwrap()
}

/// One event a node is asked to perform.
#[derive(Clone, Debug)]
pub(crate) enum Ev {
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
pub(crate) enum Order {
    Forward,
    Reversed,
    Shuffled(u64),
}

/// One step of a run. Node indices are taken modulo the number of nodes.
#[derive(Clone, Debug)]
pub(crate) enum Op {
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

pub(crate) fn ev_strategy() -> impl Strategy<Value = Ev> {
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

pub(crate) fn op_strategy() -> impl Strategy<Value = Op> {
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

pub(crate) fn run_strategy() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (3usize..=MAX_NODES, vec(op_strategy(), 1..120))
}

impl Sim {
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
    pub(crate) fn build(&mut self, node: usize, ev: &Ev) -> (EventRequest, Class) {
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
}
