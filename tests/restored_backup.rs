//! A till's data directory restored from an older copy: the till may still
//! sell before it meets a peer (those sales happened), but the first peer that
//! holds its later history shows it changes signed with its own key that it no
//! longer has; from then on it refuses every event instead of writing a second
//! history over the first, and reports why.

mod fleet;

use std::path::Path;

use fleet::{req, Fleet};
use stocksync::data_dir;
use stocksync::model::EventKind;
use stocksync::node::NodeOptions;
use stocksync::store::memory::MemoryStore;
use stocksync::sync::SyncEvent;
use stocksync::{NodeError, NodeSpec};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "lock" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A fleet of the hub (over `hub_store`) and, if `till` is given, the till in
/// that directory.
fn fleet(hub_store: &MemoryStore, till: Option<&Path>) -> (Fleet, usize, Option<usize>) {
    let mut f = Fleet::new();
    let hub = f.start(9, hub_store.clone(), NodeOptions::default());
    let till = till.map(|dir| {
        let node = data_dir::open(dir, NodeOptions::default(), f.clock()).unwrap();
        f.add(node)
    });
    (f, hub, till)
}

#[test]
fn a_restored_till_stops_once_a_peer_shows_it_its_later_history() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("till");
    let backup = tmp.path().join("backup");
    data_dir::init(&dir, &NodeSpec::parse("till-1", "S1", "till").unwrap()).unwrap();
    let hub_store = MemoryStore::new();

    // Monday: stock in, one sale, synced. The copy is taken that night.
    let (mut f, hub, till) = fleet(&hub_store, Some(&dir));
    let till = till.unwrap();
    f.connect(till, hub);
    f.event(till, req("rcv", 10, EventKind::Receipt));
    f.event(till, req("mon-1", 1, EventKind::Sale));
    f.settle();
    drop(f);
    copy_dir(&dir, &backup);

    // Tuesday: three more sales, synced to the hub.
    let (mut f, hub, till) = fleet(&hub_store, Some(&dir));
    let till = till.unwrap();
    f.connect(till, hub);
    for i in 0..3 {
        f.event(till, req(&format!("tue-{i}"), 1, EventKind::Sale));
    }
    f.settle();
    let tuesday_head = f.head(hub, f.nodes[till].id()).unwrap();
    drop(f);

    // Wednesday: the directory is restored from Monday night's copy.
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(&backup, &dir);
    let (mut f, hub, till) = fleet(&hub_store, Some(&dir));
    let till = till.unwrap();
    let me = f.nodes[till].id();
    let monday_head = f.head(till, me).unwrap();
    assert!(monday_head < tuesday_head);
    // Offline, it still sells: the customer walked out with the item.
    f.event(till, req("wed-offline", 1, EventKind::Sale));
    // It meets the hub, which holds Tuesday's changes signed with its key.
    f.connect(till, hub);
    f.settle();
    let seen = f.events[till].iter().find_map(|e| match e {
        SyncEvent::OwnHistoryConflict { held, seen, .. } => Some((*held, *seen)),
        _ => None,
    });
    let (held, seen) = seen.expect("the till reports the conflict");
    assert!(seen > held, "{held:?} {seen:?}");
    // From now on every event is refused, and the status says why.
    let refused = f.nodes[till].execute(req("wed-2", 1, EventKind::Sale));
    assert!(
        matches!(refused, Err(NodeError::OwnHistoryConflict { .. })),
        "{refused:?}"
    );
    let status = f.nodes[till].sync_status();
    assert!(status.own_history_conflict.is_some(), "{status:?}");
}
