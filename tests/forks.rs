//! Forks: one key signing two histories (a till's directory copied to a
//! second device, or restored from an older copy and used again). Whichever
//! node first holds both sides builds a proof; every node it reaches checks
//! it, stores it, reports it and relays it; the forked writer's changes from
//! the fork on are applied and pushed nowhere; the forked node itself refuses
//! events, also after a restart.

mod fleet;

use std::path::Path;

use fleet::{copy_dir, req, Fleet};
use stocksync::data_dir;
use stocksync::model::{EventKind, NodeId, Position};
use stocksync::node::{Node, NodeOptions};
use stocksync::store::memory::MemoryStore;
use stocksync::sync::message::{self, Message};
use stocksync::sync::{ForkProof, RejectReason, SyncEvent};
use stocksync::{NodeError, NodeSpec};

fn open(f: &Fleet, dir: &Path) -> Node {
    data_dir::open(dir, NodeOptions::default(), f.clock()).unwrap()
}

/// The forks node `i` reported, as `(writer, position)`.
fn reported(f: &Fleet, i: usize) -> Vec<(NodeId, Position)> {
    f.events[i]
        .iter()
        .filter_map(|e| match e {
            SyncEvent::Fork {
                writer, position, ..
            } => Some((*writer, *position)),
            _ => None,
        })
        .collect()
}

/// A till's directory after a receipt of 10, synced to the hub (over
/// `hub_store`), and a byte-for-byte copy of it: the clone.
fn till_and_clone(tmp: &Path, hub_store: &MemoryStore) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = tmp.join("till");
    let clone = tmp.join("clone");
    data_dir::init(&dir, &NodeSpec::parse("till-1", "S1", "till").unwrap()).unwrap();
    let mut f = Fleet::new();
    let hub = f.start(9, hub_store.clone(), NodeOptions::default());
    let till = f.add(open(&f, &dir));
    f.connect(till, hub);
    f.event(till, req("rcv", 10, EventKind::Receipt));
    f.settle();
    drop(f);
    copy_dir(&dir, &clone);
    (dir, clone)
}

#[test]
fn a_cloned_till_is_reported_by_every_node_and_frozen_from_the_fork_on() {
    for (first_sales, clone_sales) in [(2, 1), (1, 1), (1, 3)] {
        let tmp = tempfile::tempdir().unwrap();
        let hub_store = MemoryStore::new();
        let observer_store = MemoryStore::new();
        let (dir, clone) = till_and_clone(tmp.path(), &hub_store);

        // The original sells and syncs with the hub.
        let mut f = Fleet::new();
        let hub = f.start(9, hub_store.clone(), NodeOptions::default());
        let till = f.add(open(&f, &dir));
        let writer = f.nodes[till].id();
        f.connect(till, hub);
        for i in 0..first_sales {
            f.event(till, req(&format!("a-{i}"), 1, EventKind::Sale));
        }
        f.settle();
        let hub_head = f.head(hub, writer).unwrap();
        drop(f);

        // The clone, offline meanwhile, sold too: the same positions, other changes.
        let mut f = Fleet::new();
        let hub = f.start(9, hub_store.clone(), NodeOptions::default());
        let observer = f.start(8, observer_store.clone(), NodeOptions::default());
        let twin = f.add(open(&f, &clone));
        for i in 0..clone_sales {
            f.event(twin, req(&format!("b-{i}"), 1, EventKind::Sale));
        }
        f.connect(hub, observer);
        f.settle();
        f.connect(twin, hub);
        f.settle();
        for at in [1_000, 2_000, 3_000] {
            f.advance(at);
        }
        let case = format!("original sold {first_sales}, clone {clone_sales}");
        for (name, i) in [("hub", hub), ("observer", observer), ("clone", twin)] {
            let forks = f.nodes[i].forks();
            assert_eq!(forks.len(), 1, "{case}: {name} knows the fork: {forks:?}");
            assert_eq!(forks[0].writer, writer, "{case}");
            assert!(
                reported(&f, i).iter().any(|(w, _)| *w == writer),
                "{case}: {name} reported it"
            );
            let status = f.nodes[i].sync_status();
            assert_eq!(status.forks.len(), 1, "{case}: {name} status {status:?}");
        }
        // The receipt is change 1 of both; the first sale after the copy, 2,
        // is where the histories part, whichever side compared first.
        let at = f.nodes[hub].forks()[0].position;
        assert_eq!(at, Position { epoch: 1, seq: 2 }, "{case}");
        // The hub applied none of the clone's changes from the fork on.
        let hub_now = f.head(hub, writer).unwrap();
        assert_eq!(hub_now, hub_head, "{case}: the hub kept the first branch");
        // The clone refuses every event now.
        let refused = f.nodes[twin].execute(req("b-late", 1, EventKind::Sale));
        assert!(
            matches!(refused, Err(NodeError::OwnHistoryConflict { .. })),
            "{case}: {refused:?}"
        );
        drop(f);

        // The original, not knowing yet, sells once more offline, then meets
        // the hub again: the hub takes none of it (the writer is frozen from
        // the fork on), and the original learns the fork and refuses events.
        let mut f = Fleet::new();
        let hub = f.start(9, hub_store.clone(), NodeOptions::default());
        let till = f.add(open(&f, &dir));
        f.event(till, req("a-offline", 1, EventKind::Sale));
        f.connect(till, hub);
        f.settle();
        f.advance(1_000);
        assert_eq!(
            f.head(hub, writer),
            Some(hub_head),
            "{case}: frozen at the hub"
        );
        assert_eq!(f.nodes[till].forks().len(), 1, "{case}");
        let refused = f.nodes[till].execute(req("a-late", 1, EventKind::Sale));
        assert!(
            matches!(refused, Err(NodeError::OwnHistoryConflict { .. })),
            "{case}: {refused:?}"
        );
        drop(f);

        // A restart remembers: the observer's store kept the proof, and the
        // original still refuses after reopening its directory.
        let mut f = Fleet::new();
        let observer = f.start(8, observer_store.clone(), NodeOptions::default());
        assert_eq!(f.nodes[observer].forks().len(), 1, "{case}");
        let till = f.add(open(&f, &dir));
        let refused = f.nodes[till].execute(req("a-later", 1, EventKind::Sale));
        assert!(
            matches!(refused, Err(NodeError::OwnHistoryConflict { .. })),
            "{case}: {refused:?}"
        );
    }
}

#[test]
fn a_restored_backup_that_sold_offline_is_a_fork_the_hub_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let hub_store = MemoryStore::new();
    let (dir, backup) = till_and_clone(tmp.path(), &hub_store);
    // Tuesday: three sales reach the hub. Wednesday the directory is restored
    // from the copy and sells one offline before it meets the hub.
    let mut f = Fleet::new();
    let hub = f.start(9, hub_store.clone(), NodeOptions::default());
    let till = f.add(open(&f, &dir));
    f.connect(till, hub);
    for i in 0..3 {
        f.event(till, req(&format!("tue-{i}"), 1, EventKind::Sale));
    }
    f.settle();
    drop(f);
    let mut f = Fleet::new();
    let hub = f.start(9, hub_store.clone(), NodeOptions::default());
    let restored = f.add(open(&f, &backup));
    let writer = f.nodes[restored].id();
    f.event(restored, req("wed-offline", 1, EventKind::Sale));
    f.connect(restored, hub);
    f.settle();
    assert!(reported(&f, hub).iter().any(|(w, _)| *w == writer));
    assert!(reported(&f, restored).iter().any(|(w, _)| *w == writer));
}

/// The clone's first change and the original's, each a signed one-change bundle.
fn two_branches() -> (ForkProof, NodeId) {
    let tmp = tempfile::tempdir().unwrap();
    let hub_store = MemoryStore::new();
    let (dir, clone) = till_and_clone(tmp.path(), &hub_store);
    let mut bundles = Vec::new();
    let mut writer = None;
    for (d, id) in [(&dir, "a"), (&clone, "b")] {
        let mut f = Fleet::new();
        let peer = f.start(7, MemoryStore::new(), NodeOptions::default());
        let till = f.add(open(&f, d));
        writer = Some(f.nodes[till].id());
        f.connect(till, peer);
        f.settle();
        f.nodes[till]
            .execute(req(&format!("{id}-1"), 1, EventKind::Sale))
            .unwrap();
        let b = f.nodes[till].take_sends().into_iter().find_map(|o| {
            match message::decode(&o.message).unwrap() {
                Message::Changes(b) => Some(b),
                _ => None,
            }
        });
        bundles.push(b.expect("the sale is pushed"));
    }
    let b = bundles.pop().unwrap();
    let a = bundles.pop().unwrap();
    (ForkProof { a, b }, writer.unwrap())
}

#[test]
fn a_proof_is_checked_before_it_is_believed() {
    let (proof, writer) = two_branches();
    let mut f = Fleet::new();
    let judge = f.start(3, MemoryStore::new(), NodeOptions::default());
    let sender = f.start(4, MemoryStore::new(), NodeOptions::default());
    f.connect(judge, sender);
    f.settle();
    let from = f.nodes[sender].id();
    let send = |f: &mut Fleet, p: ForkProof| {
        f.nodes[judge].receive(from, message::encode(&Message::Fork(p)));
        f.collect(judge);
    };
    // The same branch twice proves nothing.
    let same = ForkProof {
        a: proof.a.clone(),
        b: proof.a.clone(),
    };
    send(&mut f, same);
    // A branch whose signature is broken proves nothing either.
    let mut forged = proof.clone();
    forged.b.signature.0[0] ^= 1;
    send(&mut f, forged);
    assert!(f.nodes[judge].forks().is_empty());
    let refusals = f.events[judge]
        .iter()
        .filter(|e| {
            matches!(
                e,
                SyncEvent::Rejected {
                    reason: RejectReason::BadForkProof(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(refusals, 2, "{:?}", f.events[judge]);
    // The real proof is believed, stored, and relayed to the other peer.
    send(&mut f, proof);
    let forks = f.nodes[judge].forks();
    assert_eq!(forks.len(), 1);
    assert_eq!(forks[0].writer, writer);
    assert_eq!(forks[0].position.seq, 2, "the sale after the receipt");
}

#[test]
fn two_nodes_holding_different_branches_at_one_position_find_the_fork_between_them() {
    let tmp = tempfile::tempdir().unwrap();
    let hub_store = MemoryStore::new();
    let other_store = MemoryStore::new();
    let (dir, clone) = till_and_clone(tmp.path(), &hub_store);
    // The original's sale reaches the hub; the clone's reaches another store
    // node (which has the receipt from the hub first). Neither device is
    // around when the two nodes meet.
    let mut f = Fleet::new();
    let hub = f.start(9, hub_store.clone(), NodeOptions::default());
    let other = f.start(8, other_store.clone(), NodeOptions::default());
    f.connect(hub, other);
    f.settle();
    drop(f);
    for (d, store, seed, id) in [(&dir, &hub_store, 9, "a"), (&clone, &other_store, 8, "b")] {
        let mut f = Fleet::new();
        let node = f.start(seed, store.clone(), NodeOptions::default());
        let till = f.add(open(&f, d));
        f.connect(till, node);
        f.event(till, req(&format!("{id}-1"), 1, EventKind::Sale));
        f.settle();
    }
    let mut f = Fleet::new();
    let hub = f.start(9, hub_store.clone(), NodeOptions::default());
    let other = f.start(8, other_store.clone(), NodeOptions::default());
    let heads: Vec<_> = [hub, other]
        .iter()
        .map(|&i| {
            f.nodes[i]
                .query(|r| r.heads().iter().map(|(w, h)| (*w, *h)).collect::<Vec<_>>())
                .unwrap()
        })
        .collect();
    assert_ne!(
        heads[0], heads[1],
        "the two hold different changes at one position"
    );
    f.connect(hub, other);
    f.settle();
    f.advance(1_000);
    for i in [hub, other] {
        assert_eq!(f.nodes[i].forks().len(), 1, "{:?}", f.events[i]);
    }
}
