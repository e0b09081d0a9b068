//! A store with 20,000 SKUs: its changes and epoch snapshots stay within what
//! receivers accept, and a peer that meets it late catches up with all of it.

use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeMeta, Quantity, Role, Sku,
};
use stocksync::node::NodeOptions;
use stocksync::sim::mesh::Mesh;
use stocksync::store::memory::MemoryStore;

const SKUS: usize = 20_000;

fn meta(name: &'static str, role: Role) -> impl FnOnce(stocksync::NodeId) -> NodeMeta {
    move |id| NodeMeta {
        id,
        name: name.into(),
        location: LocationId::new("S1").unwrap(),
        role,
    }
}

fn event(id: String, sku: usize, qty: u64, kind: EventKind) -> EventRequest {
    EventRequest::new(
        EventId::new(id).unwrap(),
        LocationId::new("S1").unwrap(),
        Sku::new(format!("SKU-{sku:05}")).unwrap(),
        Quantity::new(qty).unwrap(),
        kind,
    )
}

/// One unit of every SKU to each till, in groups of 1,000 SKUs; with `receipt`,
/// the SKUs are received first.
fn grant_round(
    m: &mut Mesh,
    store: usize,
    tills: &[stocksync::NodeId],
    receipt: bool,
    n: &mut u64,
) {
    for chunk in (0..SKUS).collect::<Vec<_>>().chunks(1_000) {
        let mut group = Vec::new();
        for &k in chunk {
            if receipt {
                *n += 1;
                group.push(event(format!("r{n}"), k, 10, EventKind::Receipt));
            }
            for to in tills {
                *n += 1;
                group.push(event(format!("g{n}"), k, 1, EventKind::Grant { to: *to }));
            }
        }
        for answer in m.group(store, group) {
            answer.unwrap();
        }
    }
}

#[test]
fn a_store_with_20000_skus_rolls_its_epoch_and_late_peers_catch_up() {
    let mut m = Mesh::with_options(NodeOptions {
        // The stock load takes 80 changes (groups of at most 1,024 events);
        // the roll-over comes after it, the second round fits in the new epoch.
        epoch_changes: 120,
        ..NodeOptions::default()
    });
    let store = m
        .add([1; 32], MemoryStore::new(), meta("store", Role::Store))
        .unwrap();
    let tills: Vec<usize> = (0..3u8)
        .map(|t| {
            m.add([10 + t; 32], MemoryStore::new(), meta("till", Role::Till))
                .unwrap()
        })
        .collect();
    let till_ids: Vec<_> = tills.iter().map(|&t| m.nodes[t].id).collect();
    let mut n = 0;
    grant_round(&mut m, store, &till_ids, true, &mut n);
    // Single sales up to the epoch length: the roll-over snapshots 80,000
    // counters (20,000 minted, 60,000 granted), over 6 MB in all.
    for i in 0..40 {
        m.event(store, event(format!("s{i}"), i, 1, EventKind::Sale))
            .unwrap();
    }
    let rolled = m.head(store, store).unwrap();
    assert_eq!(rolled.epoch, 2, "the epoch rolled over: {rolled:?}");
    // A second round in the new epoch: another 60 large changes (about 10 MB).
    grant_round(&mut m, store, &till_ids, false, &mut n);
    let head = m.head(store, store).unwrap();
    assert_eq!(head.epoch, 2);
    // The tills meet the store only now: the whole epoch streams to them.
    for &t in &tills {
        m.connect(store, t);
    }
    m.settle();
    for &t in &tills {
        assert_eq!(m.head(t, store), Some(head), "till {t} caught up");
        assert!(m.nodes[t].rejected.is_empty(), "{:?}", m.nodes[t].rejected);
    }
    let (a, b) = (m.book(store), m.book(tills[0]));
    for k in [0, 7_777, SKUS - 1] {
        let pool = stocksync::PoolKey::new(
            LocationId::new("S1").unwrap(),
            Sku::new(format!("SKU-{k:05}")).unwrap(),
        );
        assert_eq!(b.rights(&pool, &till_ids[0]), 2, "SKU {k}");
        assert_eq!(a.pool(&pool), b.pool(&pool), "SKU {k}");
    }
    // No message larger than the engine's bundle cap plus one change went out.
    assert!(
        m.max_message <= (1 << 20) + 256 * 1024,
        "largest message {} bytes",
        m.max_message
    );
}
