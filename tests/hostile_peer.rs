//! A peer that floods a node with valid bundles that never connect (their
//! first change is withheld): the node holds at most its stated budget of
//! them, drops them on expiry, and keeps working.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeMeta, Quantity, Role, Sku,
};
use stocksync::node::{Node, NodeOptions};
use stocksync::store::memory::MemoryStore;
use stocksync::sync::message::{self, Message};
use stocksync::{Identity, NodeId, SyncConfig};

fn node(seed: [u8; 32], sync: SyncConfig, clock: Arc<AtomicI64>) -> Node {
    let identity = Identity::from_seed(seed);
    let meta = NodeMeta {
        id: identity.node_id(),
        name: "n".into(),
        location: LocationId::new("S1").unwrap(),
        role: Role::Till,
    };
    let options = NodeOptions {
        sync,
        ..NodeOptions::default()
    };
    Node::start(
        identity,
        meta,
        MemoryStore::new(),
        options,
        Arc::new(move || clock.load(Ordering::Relaxed)),
    )
    .unwrap()
}

fn event(id: &str, qty: u64, kind: EventKind) -> EventRequest {
    EventRequest::new(
        EventId::new(id).unwrap(),
        LocationId::new("S1").unwrap(),
        Sku::new("A").unwrap(),
        Quantity::new(qty).unwrap(),
        kind,
    )
}

/// Signed one-change bundles of a fresh writer at positions 2..=n (the first
/// change is kept back, so none of them connects at a receiver).
fn gapped_bundles(seed: u8, n: usize, to: NodeId) -> Vec<Vec<u8>> {
    let clock = Arc::new(AtomicI64::new(0));
    let w = node([seed; 32], SyncConfig::default(), clock);
    w.peer_up(to).unwrap();
    w.execute(event("r", 100, EventKind::Receipt)).unwrap();
    w.take_sends();
    let mut out = Vec::new();
    for i in 0..n - 1 {
        w.execute(event(&format!("s{i}"), 1, EventKind::Sale))
            .unwrap();
        for o in w.take_sends() {
            if let Ok(Message::Changes(b)) = message::decode(&o.message) {
                assert!(b.first_seq >= 2);
                out.push(o.message);
            }
        }
    }
    out
}

#[test]
fn parked_bundles_stay_within_budget_and_expire() {
    let config = SyncConfig {
        max_parked: 20,
        max_parked_per_writer: 3,
        max_parked_bytes: 64 * 1024,
        parked_ttl_ms: 10_000,
        ..SyncConfig::default()
    };
    let clock = Arc::new(AtomicI64::new(0));
    let victim = node([1; 32], config.clone(), clock.clone());
    let attacker = Identity::from_seed([2; 32]).node_id();
    victim.peer_up(attacker).unwrap();
    let mut sent = 0;
    for w in 0..12u8 {
        for m in gapped_bundles(100 + w, 8, victim.id()) {
            victim.receive(attacker, m);
            sent += 1;
            let s = victim.sync_status();
            assert!(s.parked_bundles <= config.max_parked);
            assert!(s.parked_bytes <= config.max_parked_bytes);
        }
    }
    assert_eq!(sent, 12 * 7);
    let s = victim.sync_status();
    // 3 per writer would be 36: the count cap of 20 binds first.
    assert_eq!(s.parked_bundles, 20, "{s:?}");
    // Honest work goes on meanwhile.
    victim.execute(event("v-r", 5, EventKind::Receipt)).unwrap();
    victim.execute(event("v-s", 1, EventKind::Sale)).unwrap();
    // Past the expiry, a tick drops them all.
    clock.store(10_001, Ordering::Relaxed);
    victim.tick();
    let s = victim.sync_status();
    assert_eq!((s.parked_bundles, s.parked_bytes), (0, 0), "{s:?}");
}
