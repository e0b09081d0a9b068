//! The sync engine on its own: relay, back-pressure, streaming catch-up, loss
//! repair by timers, and refusal of forged or malformed messages.

use stocksync::escrow::CounterKey;
use stocksync::identity::Identity;
use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeId, NodeMeta, Position, Quantity, Role, Sku,
};
use stocksync::sim::mesh::Mesh;
use stocksync::store::memory::MemoryStore;
use stocksync::sync::message::{self, Bundle, ChangeBytes, HeadSignature, Message};
use stocksync::sync::signing::sign_head;
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

/// A change by `actor` at `(epoch, 1)` minting 999 units of A at S1.
fn minting_change(actor: NodeId, epoch: u32) -> automerge::Change {
    let mut doc = automerge::Automerge::new().with_actor(automerge::ActorId::from(actor.0));
    let mut tx = doc.transaction();
    automerge::transaction::Transactable::put(
        &mut tx,
        automerge::ROOT,
        "m|S1|A",
        automerge::ScalarValue::counter(999),
    )
    .unwrap();
    tx.commit_with(
        automerge::transaction::CommitOptions::default()
            .with_message(format!(r#"{{"epoch":{epoch},"events":[]}}"#)),
    );
    doc.get_last_local_change().unwrap().clone()
}

/// A one-change bundle filed under `writer`, its head signed by `signer`.
fn signed_bundle(
    writer: NodeId,
    epoch: u32,
    change: &automerge::Change,
    signer: &Identity,
) -> Vec<u8> {
    let position = Position { epoch, seq: 1 };
    let bundle = Bundle {
        writer,
        epoch,
        first_seq: 1,
        changes: vec![ChangeBytes(change.raw_bytes().to_vec())],
        signature: HeadSignature(sign_head(signer, position, &change.hash().0)),
    };
    message::encode(&Message::Changes(bundle))
}

#[test]
fn forged_and_malformed_messages_are_refused_and_never_relayed() {
    let mut net = net(3, SyncConfig::default());
    net.connect(0, 1);
    net.connect(1, 2);
    event(&mut net, 0, "r", 10, EventKind::Receipt);
    net.settle();
    let (victim, insider_id) = (net.nodes[0].id, net.nodes[2].id);
    // Node 2 is a fleet member with its own real key (the mesh made it from seed 3).
    let insider = Identity::from_seed([3; 32]);
    assert_eq!(insider.node_id(), insider_id);
    let heads_before: Vec<_> = (0..3).map(|i| (net.head(i, 0), net.head(i, 2))).collect();
    let book_before: Vec<_> = (0..3)
        .map(|i| net.book(i).counter(&victim, &minted()))
        .collect();
    let epoch = 9;
    let as_victim = minting_change(victim, epoch);
    let as_insider = minting_change(insider_id, epoch);
    let forgeries = [
        // Node 0's change, filed under node 0, head signed with the insider's key.
        (
            signed_bundle(victim, epoch, &as_victim, &insider),
            RejectReason::Forgery,
        ),
        // The insider's own change filed under node 0, signed with the insider's
        // key: refused on its raw author before the signature is even checked.
        (
            signed_bundle(victim, epoch, &as_insider, &insider),
            RejectReason::WrongAuthor("change 0 is not by the bundle's writer".into()),
        ),
    ];
    for (bytes, want) in forgeries {
        net.receive(1, insider_id, bytes);
        assert_eq!(net.nodes[1].rejected.pop(), Some(want));
        assert!(net.nodes[1].rejected.is_empty());
        assert_no_changes_sent(&net);
    }
    // Node 0's change under the insider's own name, correctly signed by the
    // insider: the signature holds, the author does not.
    net.receive(
        1,
        insider_id,
        signed_bundle(insider_id, epoch, &as_victim, &insider),
    );
    assert!(
        matches!(
            net.nodes[1].rejected.pop(),
            Some(RejectReason::WrongAuthor(_))
        ),
        "{:?}",
        net.nodes[1].rejected
    );
    assert_no_changes_sent(&net);
    for garbage in [
        vec![],
        vec![9, 0, 1],
        vec![1, 0, 0xff, 0xff, 0xff],
        vec![1, 1, 1, 2, 3],
    ] {
        net.receive(1, insider_id, garbage);
        assert!(
            matches!(
                net.nodes[1].rejected.pop(),
                Some(RejectReason::Malformed(_))
            ),
            "{:?}",
            net.nodes[1].rejected
        );
    }
    assert_no_changes_sent(&net);
    net.settle();
    tick(&mut net, 2_000);
    net.settle();
    assert_eq!(net.nodes[1].node.sync_status().rejected, 7);
    let heads_after: Vec<_> = (0..3).map(|i| (net.head(i, 0), net.head(i, 2))).collect();
    assert_eq!(heads_after, heads_before, "no forged change was applied");
    let book_after: Vec<_> = (0..3)
        .map(|i| net.book(i).counter(&victim, &minted()))
        .collect();
    assert_eq!(book_after, book_before);
    assert_eq!(book_after, vec![10; 3]);
    assert!(
        net.nodes[0].rejected.is_empty() && net.nodes[2].rejected.is_empty(),
        "nothing forged was relayed onwards"
    );
}

fn minted() -> CounterKey {
    CounterKey::Minted(stocksync::model::PoolKey::new(
        LocationId::new("S1").unwrap(),
        Sku::new("A").unwrap(),
    ))
}

/// Node 1 queued no `Changes` message: it relayed nothing.
fn assert_no_changes_sent(net: &Mesh) {
    for (from, _, bytes) in &net.queue {
        if *from == 1 {
            let m = message::decode(bytes).unwrap();
            assert!(!matches!(m, Message::Changes(_)), "node 1 sent {m:?}");
        }
    }
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
