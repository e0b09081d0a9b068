//! The sync engine on its own: relay, back-pressure, streaming catch-up, loss
//! repair by timers, and refusal of forged or malformed messages.

use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeMeta, Quantity, Role, Sku,
};
use stocksync::sim::mesh::Mesh;
use stocksync::store::memory::MemoryStore;
use stocksync::sync::message::{self, Bundle, ChangeBytes, HeadSignature, Message};
use stocksync::sync::{RejectReason, SyncConfig};

/// A mesh of `n` tills at S1 with plain in-memory stores.
fn net(n: u8, config: SyncConfig) -> Mesh {
    let mut m = Mesh::new(config);
    for i in 0..n {
        m.add([i + 1; 32], MemoryStore::new(), |id| NodeMeta {
            id,
            name: format!("n{i}"),
            location: LocationId::new("S1").unwrap(),
            role: Role::Till,
        })
        .unwrap();
    }
    m
}

fn req(id: &str, qty: u64, kind: EventKind) -> EventRequest {
    EventRequest::new(
        EventId::new(id).unwrap(),
        LocationId::new("S1").unwrap(),
        Sku::new("A").unwrap(),
        Quantity::new(qty).unwrap(),
        kind,
    )
}

/// Commits an event that must succeed.
fn event(m: &mut Mesh, i: usize, id: &str, qty: u64, kind: EventKind) {
    m.event(i, req(id, qty, kind)).unwrap();
}

fn tick(m: &mut Mesh, at: u64) {
    m.tick(at);
}

#[test]
fn changes_relay_along_a_line_and_grants_come_back() {
    // 0 — 1 — 2: node 0 never talks to node 2.
    let mut net = net(3, SyncConfig::default());
    net.connect(0, 1);
    net.connect(1, 2);
    event(&mut net, 0, "r", 10, EventKind::Receipt);
    event(&mut net, 0, "s", 2, EventKind::Sale);
    net.settle();
    assert_eq!(net.head(2, 0), net.head(0, 0));
    let to = net.nodes[0].id;
    event(&mut net, 2, "r2", 5, EventKind::Receipt);
    event(&mut net, 2, "g", 3, EventKind::Grant { to });
    net.settle();
    let pool =
        stocksync::model::PoolKey::new(LocationId::new("S1").unwrap(), Sku::new("A").unwrap());
    assert_eq!(net.book(0).rights(&pool, &to), 8 + 3);
    assert!(net.nodes.iter().all(|n| n.rejected.is_empty()));
}

#[test]
fn a_slow_peer_bounds_what_is_in_flight_and_catch_up_streams() {
    let config = SyncConfig {
        window_bytes: 16 * 1024,
        bundle_changes: 64,
        ..SyncConfig::default()
    };
    let mut net = net(2, config.clone());
    event(&mut net, 0, "r", 100_000, EventKind::Receipt);
    for n in 0..3_000 {
        event(&mut net, 0, &format!("s{n}"), 1, EventKind::Sale);
    }
    net.connect(0, 1);
    // Node 1 never answers: everything it would send back is lost.
    net.cut.push((1, 0));
    net.settle();
    let bytes_from_0 = net.nodes[0].node.sync_status().bytes_sent;
    assert!(
        bytes_from_0 < (config.window_bytes + 64 * 1024) as u64,
        "{bytes_from_0} bytes sent without acks, window {}",
        config.window_bytes
    );
    assert!(
        net.head(1, 0) < net.head(0, 0),
        "a window-limited peer cannot be caught up without acks"
    );
    // Acks flow again: the rest streams in bundles until caught up.
    net.cut.clear();
    tick(&mut net, 10_000);
    net.settle();
    assert_eq!(net.head(1, 0), net.head(0, 0));
}

#[test]
fn a_lost_message_is_repaired_by_the_timers() {
    let mut net = net(2, SyncConfig::default());
    net.connect(0, 1);
    net.settle();
    event(&mut net, 0, "r", 10, EventKind::Receipt);
    // The push is lost.
    net.queue.clear();
    event(&mut net, 0, "s", 1, EventKind::Sale);
    net.settle();
    assert!(
        net.head(1, 0) < net.head(0, 0),
        "the second change cannot apply over a gap"
    );
    tick(&mut net, 2_000);
    net.settle();
    tick(&mut net, 4_000);
    net.settle();
    assert_eq!(net.head(1, 0), net.head(0, 0));
}

#[test]
fn forged_and_malformed_messages_are_refused_and_never_relayed() {
    let mut net = net(3, SyncConfig::default());
    net.connect(0, 1);
    net.connect(1, 2);
    event(&mut net, 0, "r", 10, EventKind::Receipt);
    net.settle();
    let before = net.head(2, 0);
    // Node 2 (an insider) builds a change of its own and claims it is node 0's,
    // or signs node 0's next change with its own key.
    let mut doc =
        automerge::Automerge::new().with_actor(automerge::ActorId::from(net.nodes[0].id.0));
    let mut tx = doc.transaction();
    automerge::transaction::Transactable::put(
        &mut tx,
        automerge::ROOT,
        "m|S1|A",
        automerge::ScalarValue::counter(999),
    )
    .unwrap();
    tx.commit_with(
        automerge::transaction::CommitOptions::default().with_message(r#"{"epoch":9,"events":[]}"#),
    );
    let forged = doc.get_last_local_change().unwrap();
    let bundle = Bundle {
        writer: net.nodes[0].id,
        epoch: 9,
        first_seq: 1,
        changes: vec![ChangeBytes(forged.raw_bytes().to_vec())],
        signature: HeadSignature(vec![7; 64]),
    };
    let from = net.nodes[2].id;
    net.receive(1, from, message::encode(&Message::Changes(bundle)));
    for garbage in [
        vec![],
        vec![9, 0, 1],
        vec![1, 0, 0xff, 0xff, 0xff],
        vec![1, 1, 1, 2, 3],
    ] {
        net.receive(1, from, garbage);
    }
    net.settle();
    assert_eq!(
        net.nodes[1].rejected.len(),
        5,
        "{:?}",
        net.nodes[1].rejected
    );
    assert_eq!(net.nodes[1].rejected[0], RejectReason::Forgery);
    assert_eq!(net.head(2, 0), before);
    assert_eq!(net.head(1, 0), net.head(0, 0));
    assert!(
        net.nodes[2].rejected.is_empty(),
        "nothing forged was relayed onwards"
    );
}

#[test]
fn equal_replicas_exchange_only_digests() {
    let mut net = net(2, SyncConfig::default());
    net.connect(0, 1);
    event(&mut net, 0, "r", 1_000, EventKind::Receipt);
    for n in 0..500 {
        event(&mut net, 0, &format!("s{n}"), 1, EventKind::Sale);
    }
    net.settle();
    let before: u64 = net
        .nodes
        .iter()
        .map(|n| n.node.sync_status().bytes_sent)
        .sum();
    tick(&mut net, 1_500);
    net.settle();
    let after: u64 = net
        .nodes
        .iter()
        .map(|n| n.node.sync_status().bytes_sent)
        .sum();
    assert!(after > before, "a probe was sent");
    assert!(
        after - before < 100,
        "{} bytes for one probe round",
        after - before
    );
}

#[test]
fn last_unit_two_channels_during_a_partition_exactly_one_sells() {
    // Scenario 2: one unit left; its right sits with the till. The web channel
    // (node 2) holds none, so during the partition only the till can sell it.
    let mut net = net(3, SyncConfig::default());
    net.connect(0, 1);
    net.connect(0, 2);
    event(&mut net, 0, "r", 1, EventKind::Receipt);
    let till = net.nodes[1].id;
    event(&mut net, 0, "g", 1, EventKind::Grant { to: till });
    net.settle();
    // Partition: whatever the two sales send is lost.
    let till_sale = net.event(1, req("till-sale", 1, EventKind::Sale));
    let web_order = net.event(2, req("web-order", 1, EventKind::OnlineOrder));
    net.queue.clear();
    assert!(till_sale.is_ok());
    assert!(web_order.unwrap_err().is_refusal());
    tick(&mut net, 2_000);
    net.settle();
    let pool =
        stocksync::model::PoolKey::new(LocationId::new("S1").unwrap(), Sku::new("A").unwrap());
    for i in 0..net.nodes.len() {
        let p = net.book(i).pool(&pool).cloned().unwrap();
        assert_eq!(p.on_hand(), 0);
    }
}

#[test]
fn a_transfer_is_in_transit_at_the_hub_until_received_then_sellable() {
    // Scenario 8: store A (node 0, S1) ships 5 to store B (node 2, S2) through
    // the hub (node 1).
    let mut m = Mesh::new(SyncConfig::default());
    for (i, loc) in ["S1", "HQ", "S2"].iter().enumerate() {
        m.add([i as u8 + 1; 32], MemoryStore::new(), |id| NodeMeta {
            id,
            name: loc.to_string(),
            location: LocationId::new(*loc).unwrap(),
            role: Role::Store,
        })
        .unwrap();
    }
    m.connect(0, 1);
    m.connect(1, 2);
    let at = |loc: &str, id: &str, kind| {
        EventRequest::new(
            EventId::new(id).unwrap(),
            LocationId::new(loc).unwrap(),
            Sku::new("A").unwrap(),
            Quantity::new(5).unwrap(),
            kind,
        )
    };
    let t = stocksync::model::TransferId::new("T1").unwrap();
    m.event(0, at("S1", "r", EventKind::Receipt)).unwrap();
    let out = EventKind::TransferOut {
        to: LocationId::new("S2").unwrap(),
        transfer: t.clone(),
    };
    m.event(0, at("S1", "out", out)).unwrap();
    m.settle();
    let in_transit =
        |m: &Mesh, i: usize| -> i64 { m.book(i).transits().map(|(_, s)| s.in_transit()).sum() };
    assert_eq!(in_transit(&m, 1), 5, "the hub sees the units in transit");
    // B cannot sell them before receiving.
    assert!(m.event(2, at("S2", "early", EventKind::Sale)).is_err());
    let inn = EventKind::TransferIn {
        from: LocationId::new("S1").unwrap(),
        transfer: t,
    };
    m.event(2, at("S2", "in", inn)).unwrap();
    m.settle();
    assert_eq!(in_transit(&m, 1), 0);
    let o = m.event(2, at("S2", "sale", EventKind::Sale)).unwrap();
    assert_eq!(o.on_hand_after, 0);
    m.settle();
    let pool = |loc: &str| {
        stocksync::model::PoolKey::new(LocationId::new(loc).unwrap(), Sku::new("A").unwrap())
    };
    let hub = m.book(1);
    assert_eq!(hub.pool(&pool("S1")).unwrap().on_hand(), 0);
    assert_eq!(hub.pool(&pool("S2")).unwrap().on_hand(), 0);
}
