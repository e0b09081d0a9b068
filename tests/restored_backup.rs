//! A till's data directory restored from an older copy. Its later history
//! (signed with its key, durable before it was sent) lives on at the peers:
//! - met before it sells again, the till recovers that history as its own
//!   (changes, counters, holds, journal) and sells on at the next position;
//! - if it sold offline first, its new sales are a second history: a fork,
//!   reported, and it refuses every event (tests/forks.rs has the proofs).

mod fleet;

use std::path::Path;

use fleet::{copy_dir, counters, req, Fleet};
use stocksync::data_dir::{self, Reader};
use stocksync::model::{EventKind, EventOutcome, Position, ReservationId};
use stocksync::node::{Node, NodeOptions};
use stocksync::sim::faults::{CommitKind, Fault, FaultKind, FaultyStore};
use stocksync::store::memory::MemoryStore;
use stocksync::store::sqlite::{Durability, DB_FILE};
use stocksync::sync::SyncConfig;
use stocksync::sync::SyncEvent;
use stocksync::{NodeError, NodeSpec};

/// A fleet of the hub (over `hub_store`) and, if `till` is given, the till in
/// that directory.
fn fleet(
    hub_store: &MemoryStore,
    till: Option<&Path>,
    options: &NodeOptions,
) -> (Fleet, usize, Option<usize>) {
    let mut f = Fleet::new();
    let hub = f.start(9, hub_store.clone(), options.clone());
    let till = till.map(|dir| {
        let node = data_dir::open(dir, options.clone(), f.clock()).unwrap();
        f.add(node)
    });
    (f, hub, till)
}

/// What happened before the restore: Monday (receipt and one sale, then the
/// copy is taken), Tuesday (`tuesday` sales, with their answers, and a
/// reservation of two, synced to the hub). Returns the till's directory, the copy, and Tuesday's answers.
struct Week {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    tuesday: Vec<EventOutcome>,
    tuesday_head: Position,
    hub_store: MemoryStore,
}

fn week(options: &NodeOptions, tuesday: usize) -> Week {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("till");
    let backup = tmp.path().join("backup");
    data_dir::init(&dir, &NodeSpec::parse("till-1", "S1", "till").unwrap()).unwrap();
    let hub_store = MemoryStore::new();

    let (mut f, hub, till) = fleet(&hub_store, Some(&dir), options);
    let till = till.unwrap();
    f.connect(till, hub);
    f.event(till, req("rcv", 10, EventKind::Receipt));
    f.event(till, req("mon-1", 1, EventKind::Sale));
    f.settle();
    drop(f);
    copy_dir(&dir, &backup);

    let (mut f, hub, till) = fleet(&hub_store, Some(&dir), options);
    let till = till.unwrap();
    f.connect(till, hub);
    let answers = (0..tuesday)
        .map(|i| f.event(till, req(&format!("tue-{i}"), 1, EventKind::Sale)))
        .collect();
    // And a reservation of two units, still open.
    f.event(till, req("tue-r", 2, reserve()));
    f.settle();
    let tuesday_head = f.head(hub, f.nodes[till].id()).unwrap();
    drop(f);

    // Wednesday morning: the directory is restored from Monday night's copy.
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(&backup, &dir);
    Week {
        _tmp: tmp,
        dir,
        tuesday: answers,
        tuesday_head,
        hub_store,
    }
}

fn reserve() -> EventKind {
    EventKind::Reserve {
        reservation: ReservationId::new("R1").unwrap(),
    }
}

fn on_hand(node: &Node) -> i64 {
    let pool = req("x", 1, EventKind::Sale).pool;
    node.query(|r| r.book().pool(&pool).map(|p| p.on_hand()).unwrap_or(0))
        .unwrap()
}

fn reported_conflict_or_fork(f: &Fleet, i: usize) -> bool {
    f.events[i].iter().any(|e| {
        matches!(
            e,
            SyncEvent::OwnHistoryConflict { .. } | SyncEvent::Fork { .. }
        )
    })
}

#[test]
fn a_restored_till_recovers_its_history_from_the_hub_and_sells_on() {
    let options = NodeOptions::default();
    let w = week(&options, 3);
    let (mut f, hub, till) = fleet(&w.hub_store, Some(&w.dir), &options);
    let till = till.unwrap();
    let me = f.nodes[till].id();
    let monday_head = f.head(till, me).unwrap();
    assert!(monday_head < w.tuesday_head);

    // It meets the hub before selling: it recovers Tuesday as its own history.
    f.connect(till, hub);
    f.settle();
    assert_eq!(f.head(till, me), Some(w.tuesday_head));
    assert!(f.events[till].iter().any(
        |e| matches!(e, SyncEvent::OwnHistoryRecovered { held, .. } if *held == w.tuesday_head)
    ));
    assert!(!reported_conflict_or_fork(&f, till), "{:?}", f.events[till]);
    assert!(!reported_conflict_or_fork(&f, hub), "{:?}", f.events[hub]);
    // Its counters and stock are the hub's view of it.
    assert_eq!(counters(&f.nodes[till], me), counters(&f.nodes[hub], me));
    assert_eq!(on_hand(&f.nodes[till]), on_hand(&f.nodes[hub]));
    assert_eq!(on_hand(&f.nodes[till]), 10 - 1 - 3);

    // Its journal has Tuesday's sales: a retry is answered with the first
    // answer, replayed, and applies nothing.
    let before = counters(&f.nodes[till], me);
    for first in &w.tuesday {
        let again = f.nodes[till]
            .execute(req(first.id.as_str(), 1, EventKind::Sale))
            .unwrap();
        assert!(again.replayed, "{again:?}");
        assert_eq!(
            EventOutcome {
                replayed: false,
                ..again
            },
            *first
        );
    }
    assert_eq!(counters(&f.nodes[till], me), before);
    // Its hold is back: the reservation can be fulfilled.
    let holds = f.nodes[till].query(|r| r.holds().len()).unwrap();
    assert_eq!(holds, 1);
    // What it recovered is on disk, and the directory verifies.
    let report = Reader::open(&w.dir).unwrap().verify().unwrap();
    assert!(report.ok, "{report:?}");
    // Its journal rows say they were recovered with their first answers.
    let db = rusqlite::Connection::open(w.dir.join(DB_FILE)).unwrap();
    let origins: Vec<(String, i64)> = db
        .prepare("SELECT event_id, origin FROM events ORDER BY epoch, seq, idx")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected: Vec<(String, i64)> = [
        ("rcv", 0),
        ("mon-1", 0),
        ("tue-0", 1),
        ("tue-1", 1),
        ("tue-2", 1),
        ("tue-r", 1),
    ]
    .into_iter()
    .map(|(id, o)| (id.to_string(), o))
    .collect();
    assert_eq!(origins, expected);
    drop(db);

    // A new sale takes the next position; the hub accepts it.
    let wed = f.event(till, req("wed-1", 1, EventKind::Sale));
    let next = Position {
        epoch: w.tuesday_head.epoch,
        seq: w.tuesday_head.seq + 1,
    };
    assert_eq!(wed.position, next);
    f.settle();
    assert_eq!(f.head(hub, me), Some(next));
    assert!(!reported_conflict_or_fork(&f, hub), "{:?}", f.events[hub]);
    assert!(
        !f.events[hub]
            .iter()
            .any(|e| matches!(e, SyncEvent::Rejected { .. })),
        "{:?}",
        f.events[hub]
    );
    assert_eq!(on_hand(&f.nodes[hub]), 10 - 1 - 3 - 1);
    let fulfil = EventKind::Fulfil {
        reservation: ReservationId::new("R1").unwrap(),
    };
    let fulfilled = f.event(till, req("wed-f", 2, fulfil));
    f.settle();
    assert_eq!(f.head(hub, me), Some(fulfilled.position));
    assert_eq!(f.nodes[till].query(|r| r.holds().len()).unwrap(), 0);

    // The directory verifies: journal, changes and stock rows agree.
    let report = Reader::open(&w.dir).unwrap().verify().unwrap();
    assert!(report.ok, "{report:?}");
    let journal = Reader::open(&w.dir).unwrap().history("A").unwrap();
    assert_eq!(journal.len(), 1 + 1 + 3 + 1 + 1 + 1, "{journal:?}");

    // A restart keeps everything.
    drop(f);
    let (mut f, hub, till) = fleet(&w.hub_store, Some(&w.dir), &options);
    let till = till.unwrap();
    assert_eq!(f.head(till, me), Some(fulfilled.position));
    assert_eq!(f.nodes[till].query(|r| r.holds().len()).unwrap(), 0);
    let again = f.nodes[till]
        .execute(req("tue-1", 1, EventKind::Sale))
        .unwrap();
    assert!(again.replayed && again.position == w.tuesday[1].position);
    f.connect(till, hub);
    f.settle();
    let thu = f.event(till, req("thu-1", 1, EventKind::Sale));
    assert_eq!(thu.position.seq, next.seq + 2);
    f.settle();
    assert_eq!(f.head(hub, me), Some(thu.position));
    assert!(!reported_conflict_or_fork(&f, till));
}

#[test]
fn a_restored_till_that_sold_offline_first_is_a_fork_and_stops() {
    let options = NodeOptions::default();
    let w = week(&options, 3);
    let (mut f, hub, till) = fleet(&w.hub_store, Some(&w.dir), &options);
    let till = till.unwrap();
    // Offline, it sells: the customer walked out with the item.
    let offline = f.event(till, req("wed-offline", 1, EventKind::Sale));
    // It meets the hub, which holds Tuesday's changes signed with its key.
    f.connect(till, hub);
    f.settle();
    let seen = f.events[till].iter().find_map(|e| match e {
        SyncEvent::OwnHistoryConflict { held, seen, .. } => Some((*held, *seen)),
        _ => None,
    });
    let (held, seen) = seen.expect("the till reports the conflict");
    assert!(seen > held, "{held:?} {seen:?}");
    assert!(!f.events[till]
        .iter()
        .any(|e| matches!(e, SyncEvent::OwnHistoryRecovered { .. })));
    // Nothing of the other history was taken in.
    let me = f.nodes[till].id();
    assert_eq!(f.head(till, me), Some(offline.position));
    // From now on every event is refused, and the status says why.
    let refused = f.nodes[till].execute(req("wed-2", 1, EventKind::Sale));
    assert!(
        matches!(refused, Err(NodeError::OwnHistoryConflict { .. })),
        "{refused:?}"
    );
    let status = f.nodes[till].sync_status();
    assert!(status.own_history_conflict.is_some(), "{status:?}");
}

#[test]
fn a_restored_till_does_not_recover_across_an_epoch_roll_and_says_so() {
    // Three changes per epoch: Monday is (1,1) (1,2); Tuesday's three sales
    // take (1,3), then the roll-over's snapshot (2,1), then (2,2) (2,3)...
    let options = NodeOptions {
        epoch_changes: 3,
        ..NodeOptions::default()
    };
    let w = week(&options, 3);
    assert!(w.tuesday_head.epoch > 1, "{:?}", w.tuesday_head);
    let (mut f, hub, till) = fleet(&w.hub_store, Some(&w.dir), &options);
    let till = till.unwrap();
    let me = f.nodes[till].id();
    let monday_head = f.head(till, me).unwrap();
    f.connect(till, hub);
    f.settle();
    // Peers send only a writer's newest epoch, whose snapshot does not name
    // the change before it: the till cannot check it continues its chain.
    assert_eq!(f.head(till, me), Some(monday_head));
    let refused = f.nodes[till].execute(req("wed-1", 1, EventKind::Sale));
    assert!(
        matches!(refused, Err(NodeError::OwnHistoryInLaterEpoch { held, seen })
            if held == monday_head && seen == w.tuesday_head),
        "{refused:?}"
    );
    assert!(!reported_conflict_or_fork(&f, hub));
    // Also after a restart, before meeting any peer.
    drop(f);
    let (f, _hub, till) = fleet(&w.hub_store, Some(&w.dir), &options);
    let refused = f.nodes[till.unwrap()].execute(req("wed-1", 1, EventKind::Sale));
    assert!(
        matches!(refused, Err(NodeError::OwnHistoryInLaterEpoch { .. })),
        "{refused:?}"
    );
}

/// The till over a store that crashes the node after its `skip + 1`-th
/// commit of synced data (the data of that commit is on disk).
fn crashing_till(
    f: &mut Fleet,
    dir: &Path,
    skip: u32,
) -> (usize, FaultyStore<stocksync::store::sqlite::SqliteStore>) {
    let (store, identity) = data_dir::open_store(dir, Durability::Full).unwrap();
    let meta = store.meta().clone();
    let store = FaultyStore::new(store);
    store.arm(Fault {
        on: CommitKind::Remote,
        skip,
        kind: FaultKind::CrashAfter,
    });
    let node = Node::start(
        identity,
        meta,
        store.clone(),
        NodeOptions::default(),
        f.clock(),
    )
    .unwrap();
    (f.add(node), store)
}

#[test]
fn a_till_that_crashes_mid_recovery_completes_it_after_a_restart() {
    let w = week(&NodeOptions::default(), 3);
    // The hub pushes one change per bundle: three recovery transactions.
    let hub_options = NodeOptions {
        sync: SyncConfig {
            bundle_changes: 1,
            ..SyncConfig::default()
        },
        ..NodeOptions::default()
    };
    let mut f = Fleet::new();
    let hub = f.start(9, w.hub_store.clone(), hub_options.clone());
    // Commits of synced data: the own position seen, then one per bundle;
    // the crash comes right after the first bundle is durable.
    let (till, store) = crashing_till(&mut f, &w.dir, 1);
    let me = f.nodes[till].id();
    let monday_head = f.head(till, me).unwrap();
    f.connect(till, hub);
    f.settle();
    assert!(store.crashed(), "the crash fired");
    drop(f);
    drop(store);

    // Restarted: part of Tuesday is back, the rest is known to exist; it
    // does not write at its stale head.
    let mut f = Fleet::new();
    let hub = f.start(9, w.hub_store.clone(), hub_options);
    let till = f.add(data_dir::open(&w.dir, NodeOptions::default(), f.clock()).unwrap());
    let held = f.head(till, me).unwrap();
    assert!(held > monday_head && held < w.tuesday_head, "{held:?}");
    let refused = f.nodes[till].execute(req("wed-1", 1, EventKind::Sale));
    assert!(
        matches!(refused, Err(NodeError::Recovering { seen, .. }) if seen == w.tuesday_head),
        "{refused:?}"
    );
    let status = f.nodes[till].sync_status();
    assert!(status.own_history_recovering.is_some(), "{status:?}");
    // It meets the hub again: recovery completes, nothing twice.
    f.connect(till, hub);
    f.settle();
    assert_eq!(f.head(till, me), Some(w.tuesday_head));
    assert_eq!(f.nodes[till].sync_status().own_history_recovering, None);
    assert_eq!(counters(&f.nodes[till], me), counters(&f.nodes[hub], me));
    let journal = Reader::open(&w.dir).unwrap().history("A").unwrap();
    assert_eq!(journal.len(), 1 + 1 + 3 + 1, "{journal:?}");
    let report = Reader::open(&w.dir).unwrap().verify().unwrap();
    assert!(report.ok, "{report:?}");
    let wed = f.event(till, req("wed-1", 1, EventKind::Sale));
    assert_eq!(wed.position.seq, w.tuesday_head.seq + 1);
    f.settle();
    assert_eq!(f.head(hub, me), Some(wed.position));
    assert!(!reported_conflict_or_fork(&f, hub));
}
