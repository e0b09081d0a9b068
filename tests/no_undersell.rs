//! Scenario 13, no undersell: real nodes linked in memory — a hub, two
//! stores and a web channel whose only peer is the hub. While the fleet is
//! connected, a web order for units the fleet holds beyond the channel's
//! safety stock, the hub's reserve and the stores' floors succeeds (at most
//! 1% refused), because rights flow to the channel: the hub's allocation on
//! receipt, the channel's automatic pull from the hub and its borrow on a
//! short order, and the hub pulling from the stores what it cannot give.
//! Meanwhile no grant to the channel ever leaves the hub with less than its
//! reserve plus the channel's safety stock, and no grant from the hub goes
//! below its reserve (checked on every counter raise the hub applies, in
//! order). The test keeps its own ground truth of on hand.

mod fleet;

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use stocksync::escrow::CounterKey;
use stocksync::identity::Identity;
use stocksync::model::{EventKind, LocationId, NodeId, NodeMeta, PoolKey, Role, Sku};
use stocksync::node::{system_clock, DeltaSink, Node, NodeOptions};
use stocksync::rebalance::{
    AllocationRule, NodeRef, PoolScope, RebalanceSettings, Reserve, SafetyStock,
};
use stocksync::replica::{Deltas, Replica};
use stocksync::store::memory::MemoryStore;

use fleet::{req, Fleet, Pumped};

/// The hub's reserve.
const RESERVE: i64 = 10;
/// The channel's safety stock.
const SAFETY: i64 = 8;
/// Each store's floor.
const STORE_FLOOR: i64 = 3;

fn pool() -> PoolKey {
    PoolKey::new(LocationId::new("S1").unwrap(), Sku::new("A").unwrap())
}

fn scope() -> PoolScope {
    PoolScope {
        location: LocationId::new("S1").unwrap(),
        sku: None,
    }
}

fn node(seed: u8, role: Role, rebalance: RebalanceSettings) -> Node {
    let identity = Identity::from_seed([seed; 32]);
    let meta = NodeMeta {
        id: identity.node_id(),
        name: format!("n{seed}"),
        location: LocationId::new("S1").unwrap(),
        role,
    };
    let options = NodeOptions {
        rebalance,
        ..NodeOptions::default()
    };
    Node::start(identity, meta, MemoryStore::new(), options, system_clock()).unwrap()
}

fn rights(n: &Node) -> i64 {
    n.query(|r| r.book().rights(&pool(), r.me())).unwrap()
}

fn on_hand(n: &Node) -> i64 {
    n.query(|r| r.book().pool(&pool()).map(|p| p.on_hand()).unwrap_or(0))
        .unwrap()
}

/// Follows the hub's own rights through every raise it applies, in order,
/// and records each grant that broke the reserve or the safety stock.
struct Watch {
    hub: NodeId,
    channel: NodeId,
    /// The hub's rights, what broke, grants to the channel, the least the
    /// hub kept after one.
    state: Mutex<(i64, Vec<String>, u64, i64)>,
}

impl DeltaSink for Watch {
    fn apply(&self, deltas: Deltas, replica: &Replica) {
        let mut g = self.state.lock().unwrap();
        if deltas.reset {
            g.0 = replica.book().rights(&pool(), &self.hub);
            return;
        }
        for r in &deltas.raises {
            let d = r.new - r.old;
            match &r.key {
                CounterKey::Minted(p) if *p == pool() && r.writer == self.hub => g.0 += d,
                CounterKey::Consumed(p) if *p == pool() && r.writer == self.hub => g.0 -= d,
                CounterKey::Granted(p, to) if *p == pool() && r.writer == self.hub => {
                    g.0 -= d;
                    if g.0 < RESERVE {
                        let m = format!("a grant of {d} left the hub at {} < reserve", g.0);
                        g.1.push(m);
                    }
                    if *to == self.channel {
                        g.2 += 1;
                        g.3 = g.3.min(g.0);
                        if g.0 < RESERVE + SAFETY {
                            let m = format!(
                                "a grant of {d} to the channel left the hub at {} < reserve + safety stock",
                                g.0
                            );
                            g.1.push(m);
                        }
                    }
                }
                CounterKey::Granted(p, to) if *p == pool() && *to == self.hub => g.0 += d,
                _ => {}
            }
        }
    }
}

/// A small deterministic generator (the test needs no crate for it).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn web_orders_for_units_the_fleet_holds_succeed_and_the_channel_never_holds_its_safety_stock() {
    let channel_id = Identity::from_seed([4; 32]).node_id();
    let (a_id, b_id) = (
        Identity::from_seed([2; 32]).node_id(),
        Identity::from_seed([3; 32]).node_id(),
    );
    let base = RebalanceSettings {
        cool_down_ms: 30_000,
        borrow_deadline_ms: 500,
        ..RebalanceSettings::lan()
    };
    let hub = node(
        1,
        Role::Hub,
        RebalanceSettings {
            low_water: Some(1),
            floor: Some(0),
            reserves: vec![Reserve {
                scope: scope(),
                units: RESERVE as u64,
            }],
            safety_stocks: vec![SafetyStock {
                channel: NodeRef::Id(channel_id),
                scope: scope(),
                units: SAFETY as u64,
            }],
            allocation: vec![
                AllocationRule {
                    node: NodeRef::Id(channel_id),
                    scope: scope(),
                    share: 1,
                    target: Some(12),
                },
                AllocationRule {
                    node: NodeRef::Id(a_id),
                    scope: scope(),
                    share: 1,
                    target: None,
                },
                AllocationRule {
                    node: NodeRef::Id(b_id),
                    scope: scope(),
                    share: 1,
                    target: None,
                },
            ],
            ..base.clone()
        },
    );
    // Stores sell what they hold (no pulls of their own) and give above their floor.
    let store = |seed| {
        node(
            seed,
            Role::Store,
            RebalanceSettings {
                auto_pull: false,
                borrow_deadline_ms: 0,
                low_water: Some(STORE_FLOOR as u64),
                floor: Some(STORE_FLOOR as u64),
                ..base.clone()
            },
        )
    };
    let (a, b) = (store(2), store(3));
    // The channel pulls below 4 and never gives.
    let web = node(
        4,
        Role::Channel,
        RebalanceSettings {
            low_water: Some(4),
            floor: Some(1_000_000),
            ..base.clone()
        },
    );
    assert_eq!(web.id(), channel_id);
    let watch = Arc::new(Watch {
        hub: hub.id(),
        channel: channel_id,
        state: Mutex::new((0, Vec::new(), 0, i64::MAX)),
    });
    hub.attach_delta_sink(watch.clone()).unwrap();
    // The channel's only peer is the hub; the stores see the hub and each other.
    let net = Pumped::start(vec![hub, a, b, web], &[(0, 1), (0, 2), (1, 2), (0, 3)]);
    let [hub, a, b, web] = [0, 1, 2, 3].map(|i| net.nodes[i].clone());

    let mut truth = 0i64;
    a.execute(req("ra", 40, EventKind::Receipt)).unwrap();
    b.execute(req("rb", 40, EventKind::Receipt)).unwrap();
    truth += 80;
    // The hub's receipt is allocated at once: the channel up to its target
    // of 12, the rest above the reserve to the stores.
    hub.execute(req("rh0", 60, EventKind::Receipt)).unwrap();
    truth += 60;
    net.wait_for("the first allocation", || rights(&web) == 12);
    assert_eq!(rights(&hub), RESERVE);

    let mut rng = Lcg(13);
    let (mut available_orders, mut refused_available, mut refused_short) = (0u32, 0u32, 0u32);
    let mut refusals = Vec::new();
    for i in 0..300u32 {
        if i % 40 == 39 {
            hub.execute(req(&format!("rh{i}"), 30, EventKind::Receipt))
                .unwrap();
            truth += 30;
        }
        // A store sale now and then (refused when the store is out).
        if rng.below(3) == 0 {
            let s = if rng.below(2) == 0 { &a } else { &b };
            if s.execute(req(&format!("s{i}"), 1, EventKind::Sale)).is_ok() {
                truth -= 1;
            }
        }
        let qty = 1 + rng.below(2);
        let fleet_has = rights(&web)
            + (rights(&hub) - RESERVE - SAFETY).max(0)
            + (rights(&a) - STORE_FLOOR).max(0)
            + (rights(&b) - STORE_FLOOR).max(0);
        let available = fleet_has >= qty as i64;
        match web.execute(req(&format!("w{i}"), qty, EventKind::OnlineOrder)) {
            Ok(_) => truth -= qty as i64,
            Err(e) if available => {
                refused_available += 1;
                refusals.push(format!("order {i} of {qty} with {fleet_has} held: {e}"));
            }
            Err(_) => refused_short += 1,
        }
        available_orders += u32::from(available);
        // Orders arrive a few milliseconds apart.
        thread::sleep(Duration::from_millis(3));
    }
    let ids: Vec<NodeId> = net.nodes.iter().map(Node::id).collect();
    let view = |n: &Node| -> Vec<i64> {
        n.query(|r| ids.iter().map(|id| r.book().rights(&pool(), id)).collect())
            .unwrap()
    };
    net.wait_for(
        "every replica at the truth, agreeing on every holder's rights",
        || {
            let first = view(&net.nodes[0]);
            net.nodes
                .iter()
                .all(|n| on_hand(n) == truth && view(n) == first)
        },
    );
    let (hub_rights_watched, broken, grants_to_channel, least_kept) = {
        let g = watch.state.lock().unwrap();
        (g.0, g.1.clone(), g.2, g.3)
    };
    println!(
        "orders for available units: {available_orders}, refused: {refused_available}; \
         orders beyond what the fleet held: {}, grants to the channel: {grants_to_channel} (the hub kept at least {least_kept} after one), on hand at the end: {truth}",
        300 - available_orders,
    );
    for r in &refusals {
        println!("  refused: {r}");
    }
    assert!(broken.is_empty(), "{broken:#?}");
    assert_eq!(hub_rights_watched, rights(&hub));
    assert!(grants_to_channel > 5, "rights flowed to the channel");
    assert!(available_orders >= 150, "the scenario tested availability");
    assert!(
        refused_available * 100 <= available_orders,
        "{refused_available} of {available_orders} orders for available units refused: {refusals:#?}"
    );
    assert!(refused_short > 0, "the scenario also ran out of stock");
    // No oversell: every unit on hand is someone's right, and nobody is negative.
    let all = view(&hub);
    assert_eq!(all.iter().sum::<i64>(), truth);
    assert!(all.iter().all(|r| *r >= 0), "{all:?}");
    assert!(truth >= 0);
}

#[test]
fn a_channel_asking_the_hub_gets_nothing_of_the_reserve_or_its_safety_stock_and_the_hub_pulls_the_rest_from_a_store(
) {
    let mut f = Fleet::new();
    let web_id = Identity::from_seed([4; 32]).node_id();
    let quiet = RebalanceSettings {
        low_water: Some(1),
        floor: Some(0),
        ..RebalanceSettings::lan()
    };
    let hub = f.start(
        1,
        MemoryStore::new(),
        NodeOptions {
            rebalance: RebalanceSettings {
                reserves: vec![Reserve {
                    scope: scope(),
                    units: RESERVE as u64,
                }],
                safety_stocks: vec![SafetyStock {
                    channel: NodeRef::Id(web_id),
                    scope: scope(),
                    units: SAFETY as u64,
                }],
                ..quiet.clone()
            },
            ..NodeOptions::default()
        },
    );
    let store = f.start(
        2,
        MemoryStore::new(),
        NodeOptions {
            rebalance: RebalanceSettings {
                auto_pull: false,
                floor: Some(STORE_FLOOR as u64),
                ..quiet.clone()
            },
            ..NodeOptions::default()
        },
    );
    let web = f.start(
        4,
        MemoryStore::new(),
        NodeOptions {
            rebalance: RebalanceSettings {
                low_water: Some(4),
                floor: Some(1_000_000),
                ..RebalanceSettings::lan()
            },
            ..NodeOptions::default()
        },
    );
    assert_eq!(f.nodes[web].id(), web_id);
    f.connect(hub, store);
    f.connect(hub, web);
    f.event(store, req("rs", 20, EventKind::Receipt));
    f.event(hub, req("rh", 23, EventKind::Receipt));
    f.event(hub, req("g", 2, EventKind::Grant { to: web_id }));
    f.settle();
    // The channel sells 1: 1 left, below its mark of 4, it asks the hub for
    // 8 − 1 = 7. The hub holds 21 and keeps 10 (reserve) + 8 (safety
    // stock): it grants 3, and pulls the 4 it lacked from the store.
    f.event(web, req("w1", 1, EventKind::OnlineOrder));
    f.settle();
    let nodes = f.nodes.clone();
    let of = |i: usize| rights(&nodes[i]);
    assert_eq!(
        of(web),
        4,
        "the channel got only what lies above reserve + safety stock"
    );
    assert_eq!(
        of(hub),
        RESERVE + SAFETY + 4,
        "the hub pulled what it lacked from the store"
    );
    assert_eq!(of(store), 16);
    // The next sale takes the channel to 3: it asks for 5, the hub gives
    // the 4 it has above 18 and pulls the 1 it lacked.
    f.advance(f.now() + 1_000);
    f.event(web, req("w2", 1, EventKind::OnlineOrder));
    f.settle();
    assert_eq!(of(web), 7);
    assert_eq!(of(hub), RESERVE + SAFETY + 1);
    assert_eq!(of(store), 15);
}
