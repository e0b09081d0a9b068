//! The hub's aggregate: equal to a recount from a `StockBook` fed the same raises
//! (duplicates and reordered raises included), equal after a restart from its
//! SQLite store, and fed by a hub node from the changes it applies.

use proptest::prelude::*;

use stocksync::escrow::{CounterKey, StockBook, TransferLeg};
use stocksync::hub::{Aggregate, AggregateStore, Hub, SqliteAggregateStore};
use stocksync::identity::Identity;
use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeId, NodeMeta, PoolKey, Quantity, Role, Sku,
    TransferId,
};
use stocksync::sim::mesh::Mesh;
use stocksync::store::memory::MemoryStore;
use stocksync::sync::SyncConfig;

const SKUS: [&str; 2] = ["A", "B"];
const LOCS: [&str; 3] = ["S1", "S2", "W"];

fn node(i: u8) -> NodeId {
    NodeId([i + 1; 32])
}

fn pool(s: usize, l: usize) -> PoolKey {
    PoolKey::new(
        LocationId::new(LOCS[l]).unwrap(),
        Sku::new(SKUS[s]).unwrap(),
    )
}

/// One raise: writer, key, absolute value.
fn raise() -> impl Strategy<Value = (u8, CounterKey, i64)> {
    let key = (0..7u8, 0..2usize, 0..3usize, 0..3usize, 0..2u8).prop_map(|(k, s, l, m, t)| {
        let p = pool(s, l);
        let leg = TransferLeg {
            transfer: TransferId::new(format!("T{t}")).unwrap(),
            from: LocationId::new(LOCS[l]).unwrap(),
            to: LocationId::new(LOCS[(l + 1) % 3]).unwrap(),
            sku: Sku::new(SKUS[s]).unwrap(),
        };
        match k {
            0 => CounterKey::Minted(p),
            1 => CounterKey::Consumed(p),
            2 => CounterKey::Reserved(p),
            3 => CounterKey::Released(p),
            4 => CounterKey::Granted(p, node(m as u8)),
            5 => CounterKey::Shipped(leg),
            _ => CounterKey::Received(leg),
        }
    });
    (0..3u8, key, 0..40i64)
}

/// Checks every figure of `agg` against a recount from `book`.
fn assert_recount(agg: &Aggregate, book: &StockBook) {
    let writers: Vec<NodeId> = (0..3).map(node).collect();
    // The kept pool count equals a walk of every SKU's rows.
    let walked: u64 = agg
        .sku_names()
        .filter_map(|k| agg.sku_summary(k))
        .map(|v| v.locations)
        .sum();
    assert_eq!(agg.pool_count(), walked);
    for (s, sku) in SKUS.iter().enumerate() {
        let sku_id = Sku::new(*sku).unwrap();
        let view = agg.sku(&sku_id);
        let mut total = 0;
        let mut total_transit = 0;
        for (l, loc) in LOCS.iter().enumerate() {
            let p = pool(s, l);
            let (on_hand, held, deficit) = book
                .pool(&p)
                .map(|st| (st.on_hand(), st.held(), st.deficit()))
                .unwrap_or((0, 0, 0));
            total += on_hand;
            let (mut tin, mut tout) = (0, 0);
            for (leg, st) in book.transits() {
                if leg.sku == sku_id && leg.to.as_str() == *loc {
                    tin += st.in_transit();
                }
                if leg.sku == sku_id && leg.from.as_str() == *loc {
                    tout += st.in_transit();
                }
            }
            let got = view
                .as_ref()
                .and_then(|v| v.per_location.iter().find(|x| x.location.as_str() == *loc));
            let got = got
                .map(|x| {
                    (
                        x.on_hand,
                        x.held,
                        x.deficit,
                        x.in_transit_in,
                        x.in_transit_out,
                    )
                })
                .unwrap_or((0, 0, 0, 0, 0));
            assert_eq!(got, (on_hand, held, deficit, tin, tout), "{sku} at {loc}");
            for w in &writers {
                let want = book.rights(&p, w);
                let got = view
                    .as_ref()
                    .and_then(|v| {
                        v.rights
                            .iter()
                            .find(|r| r.location.as_str() == *loc && r.node == *w)
                    })
                    .map(|r| r.rights)
                    .unwrap_or(0);
                assert_eq!(got, want, "rights of {w:?} in {sku} at {loc}");
            }
        }
        for (leg, st) in book.transits() {
            if leg.sku == sku_id {
                total_transit += st.in_transit();
                let v = view.as_ref().expect("a leg makes the SKU known");
                let got = v
                    .transfers
                    .iter()
                    .find(|x| x.transfer == leg.transfer && x.from == leg.from && x.to == leg.to)
                    .map(|x| (x.shipped, x.received, x.in_transit));
                assert_eq!(got, Some((st.shipped, st.received, st.in_transit())));
            }
        }
        if let Some(v) = &view {
            assert_eq!(v.total_on_hand, total, "total on hand of {sku}");
            assert_eq!(v.total_in_transit, total_transit, "in transit of {sku}");
        } else {
            assert_eq!(total, 0);
        }
    }
    for w in &writers {
        let (mut rights, mut deficit, mut held) = (0, 0, 0);
        for (_, st) in book.pools() {
            let sh = st.share(w);
            rights += sh.rights();
            deficit += sh.deficit();
            held += u64::from(sh.rights() > 0);
        }
        let got = agg
            .node(w)
            .map(|v| (v.rights_total, v.deficit_total, v.pools_held))
            .unwrap_or((0, 0, 0));
        assert_eq!(got, (rights, deficit, held), "totals of {w:?}");
    }
    let mut want: Vec<(String, String, NodeId, i64)> = Vec::new();
    for (p, st) in book.pools() {
        for (n, sh) in &st.shares {
            if sh.deficit() > 0 {
                want.push((p.sku.to_string(), p.location.to_string(), *n, sh.deficit()));
            }
        }
    }
    let mut got: Vec<(String, String, NodeId, i64)> = agg
        .deficits()
        .into_iter()
        .map(|d| (d.sku.to_string(), d.location.to_string(), d.node, d.deficit))
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "deficits");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any sequence of raises (repeats and stale values included) gives the
    /// figures a recount from a book fed the same raises gives.
    #[test]
    fn aggregate_equals_a_recount(raises in prop::collection::vec(raise(), 1..120)) {
        let mut book = StockBook::new();
        let mut agg = Aggregate::new();
        for (w, key, v) in &raises {
            book.raise(node(*w), key, *v).unwrap();
            agg.raise(&node(*w), key, *v).unwrap();
        }
        assert_recount(&agg, &book);
        // The same raises again, in reverse: nothing changes.
        for (w, key, v) in raises.iter().rev() {
            agg.raise(&node(*w), key, *v).unwrap();
        }
        assert_recount(&agg, &book);
    }

    /// Restarting from the SQLite store, after the changes were written in
    /// several batches, gives the same aggregate.
    #[test]
    fn sqlite_store_round_trips(
        raises in prop::collection::vec(raise(), 1..80),
        cut in 0usize..80,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let mut book = StockBook::new();
        let mut agg = Aggregate::new();
        {
            let mut store = SqliteAggregateStore::open(&path).unwrap();
            for (i, (w, key, v)) in raises.iter().enumerate() {
                book.raise(node(*w), key, *v).unwrap();
                agg.raise(&node(*w), key, *v).unwrap();
                if i == cut {
                    store.apply(&agg.take_changes()).unwrap();
                }
            }
            agg.heard(&node(1), stocksync::model::Position { epoch: 1, seq: 9 }, 1234).unwrap();
            agg.set_role(&node(2), Role::Channel).unwrap();
            store.apply(&agg.take_changes()).unwrap();
        }
        let mut store = SqliteAggregateStore::open(&path).unwrap();
        let back = Aggregate::restore(store.load().unwrap()).unwrap();
        assert_recount(&back, &book);
        for s in SKUS {
            let s = Sku::new(s).unwrap();
            prop_assert_eq!(back.sku(&s), agg.sku(&s));
        }
        prop_assert_eq!(back.nodes(), agg.nodes());
        prop_assert_eq!(back.deficits(), agg.deficits());
    }
}

#[test]
fn a_bad_value_is_refused_and_changes_nothing() {
    let mut agg = Aggregate::new();
    let k = CounterKey::Minted(pool(0, 0));
    agg.raise(&node(0), &k, 5).unwrap();
    assert!(agg.raise(&node(0), &k, -1).is_err());
    assert!(agg.raise(&node(0), &k, i64::MAX).is_err());
    assert_eq!(agg.sku(&Sku::new("A").unwrap()).unwrap().total_on_hand, 5);
}

fn meta(role: Role, loc: &'static str) -> impl FnOnce(NodeId) -> NodeMeta {
    move |id| NodeMeta {
        id,
        name: role.as_str().into(),
        location: LocationId::new(loc).unwrap(),
        role,
    }
}

fn event(m: &mut Mesh, i: usize, id: &str, sku: &str, qty: u64, kind: EventKind) {
    let loc = m.nodes[i].node.meta().location.clone();
    let req = EventRequest::new(
        EventId::new(id).unwrap(),
        loc,
        Sku::new(sku).unwrap(),
        Quantity::new(qty).unwrap(),
        kind,
    );
    m.event(i, req).unwrap();
}

/// A hub node feeds its aggregate from the changes it applies, own and remote;
/// a restart from the store gives the same figures, and they equal the hub's book.
#[test]
fn a_hub_node_feeds_its_aggregate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let mut m = Mesh::new(SyncConfig::default());
    let hub_i = m
        .add([9; 32], MemoryStore::new(), meta(Role::Hub, "HQ"))
        .unwrap();
    let s1 = m
        .add([1; 32], MemoryStore::new(), meta(Role::Store, "S1"))
        .unwrap();
    let s2 = m
        .add([2; 32], MemoryStore::new(), meta(Role::Store, "S2"))
        .unwrap();
    let hub_node = m.nodes[hub_i].node.clone();
    // Something before the hub attaches: it catches up from the book.
    event(&mut m, s1, "r0", "A", 4, EventKind::Receipt);
    m.connect(hub_i, s1);
    m.settle();
    let hub = Hub::start(hub_node.clone(), SqliteAggregateStore::open(&path).unwrap()).unwrap();
    m.connect(hub_i, s2);
    event(&mut m, s1, "r1", "A", 10, EventKind::Receipt);
    event(&mut m, s1, "x1", "A", 3, EventKind::Sale);
    event(&mut m, s2, "r2", "A", 5, EventKind::Receipt);
    event(&mut m, hub_i, "r3", "A", 7, EventKind::Receipt);
    m.settle();
    let v = hub.sku(&Sku::new("A").unwrap()).unwrap();
    assert_eq!(v.total_on_hand, 4 + 10 - 3 + 5 + 7);
    let at = |l: &str| {
        v.per_location
            .iter()
            .find(|x| x.location.as_str() == l)
            .map(|x| x.on_hand)
    };
    assert_eq!((at("S1"), at("S2"), at("HQ")), (Some(11), Some(5), Some(7)));
    let s1_id = m.nodes[s1].id;
    let st = hub.node(&s1_id, 0).unwrap();
    assert!(st.view.last_heard_ms.is_some());
    assert!(st.connected);
    assert_eq!(st.view.rights_total, 11);
    let book = hub_node.query(|r| r.book().clone()).unwrap();
    let before = (hub.sku(&Sku::new("A").unwrap()), hub.read(Aggregate::nodes));
    assert_eq!(
        before.0.as_ref().map(|v| v.total_on_hand),
        book.pools()
            .map(|(_, p)| Some(p.on_hand()))
            .sum::<Option<i64>>()
    );
    drop(hub);
    // Restart from the store: the same figures, without a recount.
    let hub = Hub::start(hub_node, SqliteAggregateStore::open(&path).unwrap()).unwrap();
    let after = (hub.sku(&Sku::new("A").unwrap()), hub.read(Aggregate::nodes));
    assert_eq!(after, before);
    assert!(hub.store_error().is_none());
}

#[test]
fn only_a_hub_node_gets_a_hub() {
    let dir = tempfile::tempdir().unwrap();
    let id = Identity::from_seed([3; 32]);
    let meta = NodeMeta {
        id: id.node_id(),
        name: "s".into(),
        location: LocationId::new("S1").unwrap(),
        role: Role::Store,
    };
    let node = stocksync::node::Node::start(
        id,
        meta,
        MemoryStore::new(),
        Default::default(),
        stocksync::node::system_clock(),
    )
    .unwrap();
    let store = SqliteAggregateStore::open(&dir.path().join("h.db")).unwrap();
    assert!(Hub::start(node, store).is_err());
}
