//! Losses and failures only the protocol's timers repair, and a bundle whose
//! signed head does not cover the change it carries. Real nodes over memory
//! stores, pumped by hand on one test clock.

mod fleet;

use fleet::{counters, decode, head, member, req, Fleet};
use stocksync::model::{EventKind, Position};
use stocksync::node::{Node, NodeOptions};
use stocksync::store::memory::MemoryStore;
use stocksync::store::Store;
use stocksync::sync::message::{self, ChangeBytes, Message};
use stocksync::sync::{RejectReason, SyncConfig, SyncEvent};

const PROBE: u64 = 1_000;

fn options() -> NodeOptions {
    NodeOptions {
        sync: SyncConfig {
            probe_interval_ms: PROBE,
            ack_timeout_ms: 3 * PROBE,
            ..SyncConfig::default()
        },
        ..NodeOptions::default()
    }
}

fn pos(seq: u64) -> Option<Position> {
    Some(Position { epoch: 1, seq })
}

#[test]
fn a_push_lost_after_the_ack_came_back_is_repaired_by_the_probe_only() {
    let mut f = Fleet::new();
    let a = f.start(1, MemoryStore::new(), options());
    let b = f.start(2, MemoryStore::new(), options());
    let id = f.nodes[a].id();
    f.connect(a, b);
    f.settle();
    f.event(a, req("r", 10, EventKind::Receipt));
    f.settle();
    // The push arrived and its ack came back: the link is idle.
    assert_eq!(f.head(b, id), pos(1));
    assert!(f.queue.is_empty());
    // The next push is lost on the wire.
    f.event(a, req("s", 1, EventKind::Sale));
    assert_eq!(f.lose_all(), 1, "one push, nothing else in flight");
    // The probe is the first timer due on either side, well before the ack timeout.
    assert_eq!(f.nodes[a].poll_timeout(), Some(PROBE));
    assert_eq!(f.nodes[b].poll_timeout(), Some(PROBE));
    for t in [1, PROBE / 2, PROBE - 1] {
        f.advance(t);
        assert_eq!(f.head(b, id), pos(1), "repaired at {t}, before any probe");
    }
    f.advance(PROBE);
    assert_eq!(f.head(b, id), pos(2), "the probe at {PROBE} repairs it");
    assert_eq!(counters(&f.nodes[b], id), counters(&f.nodes[a], id));
}

#[test]
fn a_signed_head_with_another_change_at_its_position_is_a_forgery() {
    let mut f = Fleet::new();
    let a = f.start(1, MemoryStore::new(), options());
    let b = f.start(2, MemoryStore::new(), options());
    let c = f.start(3, MemoryStore::new(), options());
    let id = f.nodes[a].id();
    f.connect(a, b);
    f.connect(b, c);
    f.settle();
    // A's real change (1, 1), pushed with A's genuine signature over it.
    f.nodes[a]
        .execute(req("r", 10, EventKind::Receipt))
        .unwrap();
    let sends = f.nodes[a].take_sends();
    let [genuine] = &sends[..] else {
        panic!("one push expected: {sends:?}")
    };
    let Message::Changes(bundle) = decode(genuine) else {
        panic!("not a push")
    };
    // Another valid change of A at the same position: A's key on a second replica.
    let twin_store = MemoryStore::new();
    let (identity, meta) = member(1);
    let twin = Node::start(identity, meta, twin_store.clone(), options(), f.clock()).unwrap();
    twin.execute(req("r", 99, EventKind::Receipt)).unwrap();
    let other = twin_store
        .clone()
        .changes(&stocksync::store::ChangeRange {
            max_changes: 10,
            ..stocksync::store::ChangeRange::whole_epoch(id, 1)
        })
        .unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!((bundle.epoch, bundle.first_seq), (1, 1));
    assert_eq!(other[0].position, Position { epoch: 1, seq: 1 });
    assert_ne!(bundle.changes[0].0, other[0].bytes);

    let mut swapped = bundle.clone();
    swapped.changes = vec![ChangeBytes(other[0].bytes.clone())];
    f.nodes[b].receive(id, message::encode(&Message::Changes(swapped)));
    let events = f.nodes[b].take_events();
    assert_eq!(
        events,
        vec![SyncEvent::Rejected {
            from: id,
            writer: Some(id),
            reason: RejectReason::Forgery
        }]
    );
    assert_eq!(f.head(b, id), None, "nothing applied");
    assert!(counters(&f.nodes[b], id).is_empty());
    let relayed: Vec<_> = f.nodes[b]
        .take_sends()
        .iter()
        .filter(|o| matches!(decode(o), Message::Changes(_)))
        .map(|o| o.to)
        .collect();
    assert!(relayed.is_empty(), "relayed to {relayed:?}");

    // The genuine bundle still applies and travels on.
    f.route(a, sends);
    f.settle();
    for n in [b, c] {
        assert_eq!(f.head(n, id), pos(1));
        assert_eq!(counters(&f.nodes[n], id), counters(&f.nodes[a], id));
    }
    assert_eq!(counters(&f.nodes[c], id).get("m|S1|A"), Some(&10));
}

#[test]
fn a_failed_persist_sends_no_ack_nor_relay_and_the_timers_repair_it() {
    let mut f = Fleet::new();
    let store_b = MemoryStore::new();
    let a = f.start(1, MemoryStore::new(), options());
    let b = f.start(2, store_b.clone(), options());
    let c = f.start(3, MemoryStore::new(), options());
    let (id_a, id_c) = (f.nodes[a].id(), f.nodes[c].id());
    f.connect(a, b);
    f.connect(b, c);
    f.settle();
    f.event(a, req("r", 10, EventKind::Receipt));
    let Some((from, to, push)) = f.queue.pop_front() else {
        panic!("no push")
    };
    assert_eq!((from, to, f.queue.len()), (a, b, 0));

    store_b.fail_next_commits(1);
    f.nodes[b].receive(id_a, push);
    let sends = f.nodes[b].take_sends();
    let kinds: Vec<_> = sends.iter().map(|o| (o.to, decode(o))).collect();
    assert!(
        !kinds
            .iter()
            .any(|(to, m)| *to == id_a && matches!(m, Message::Ack { .. })),
        "acked what was not persisted: {kinds:?}"
    );
    assert!(
        !kinds
            .iter()
            .any(|(to, m)| *to == id_c && matches!(m, Message::Changes(_))),
        "relayed what was not persisted: {kinds:?}"
    );
    let events = f.nodes[b].take_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SyncEvent::PersistFailed { changes: 1, .. })),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, SyncEvent::Applied { .. })),
        "{events:?}"
    );
    assert_eq!(f.nodes[b].sync_status().persist_failures, 1);
    // The replica agrees with the store: it does not hold the change either.
    assert_eq!(f.head(b, id_a), None);
    assert!(counters(&f.nodes[b], id_a).is_empty());
    assert_eq!(store_b.commits(), 0);
    f.route(b, sends);
    f.settle();
    assert_eq!(f.head(b, id_a), None);
    assert_eq!(f.head(c, id_a), None);

    // The timers (probes, ack timeout) bring it back, to B and on to C.
    for t in 1..=4 {
        f.advance(t * PROBE);
    }
    let want = counters(&f.nodes[a], id_a);
    for n in [b, c] {
        assert_eq!(f.head(n, id_a), pos(1), "node {n}");
        assert_eq!(counters(&f.nodes[n], id_a), want, "node {n}");
    }
    // And it is durable on B: a restart from its store holds it.
    f.nodes.clear();
    let (identity, meta) = member(2);
    let restarted = Node::start(identity, meta, store_b, options(), f.clock()).unwrap();
    assert_eq!(head(&restarted, id_a), pos(1));
    assert_eq!(counters(&restarted, id_a), want);
}

#[test]
fn a_peer_that_stops_acknowledging_shows_its_lag() {
    let mut f = Fleet::new();
    let a = f.start(1, MemoryStore::new(), NodeOptions::default());
    let b = f.start(2, MemoryStore::new(), NodeOptions::default());
    f.connect(a, b);
    f.settle();
    let b_id = f.nodes[b].id();
    let lag = |f: &Fleet| {
        f.nodes[a]
            .peer_lags()
            .into_iter()
            .find(|l| l.peer == b_id)
            .unwrap()
    };
    assert_eq!(lag(&f).writers_behind, 0);
    // A sale is pushed; the push is lost, so it is neither held nor acknowledged.
    f.event(a, req("s1", 5, EventKind::Receipt));
    f.lose_all();
    f.tick(400);
    let l = lag(&f);
    assert_eq!(l.writers_behind, 1, "{l:?}");
    assert!(l.unacknowledged_bytes > 0, "{l:?}");
    assert_eq!(l.since_progress_ms, 400, "{l:?}");
    // Repaired by the probe: nothing behind any more.
    for t in [1_000, 2_000, 3_000, 4_000] {
        f.advance(t);
    }
    assert_eq!(lag(&f).writers_behind, 0, "{:?}", lag(&f));
}
