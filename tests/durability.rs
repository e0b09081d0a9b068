//! What a crash test cannot see: the SQLite settings a commit relies on, a
//! database from a newer program, and an epoch roll-over whose commit fails.

mod fleet;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use fleet::{counters, head, member, req, Fleet};
use stocksync::data_dir::{self, Reader};
use stocksync::error::StoreError;
use stocksync::model::{EventId, EventKind, EventOutcome, EventRequest, NodeId, Position};
use stocksync::node::{Node, NodeOptions};
use stocksync::replica::SealedBatch;
use stocksync::store::memory::MemoryStore;
use stocksync::store::sqlite::{Durability, SqliteStore, DB_FILE, SCHEMA_VERSION};
use stocksync::store::{RemoteChange, Snapshot, StockRow, Store, StoredChange};
use stocksync::{NodeSpec, SetupError};

#[test]
fn sqlite_settings_are_what_the_durability_asks_for() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let (_, meta) = member(1);
    // PRAGMA synchronous reads 2 for FULL, 1 for NORMAL (0 would be OFF).
    let store = SqliteStore::create(&dir, &meta, Durability::Full).unwrap();
    assert_eq!(store.synchronous().unwrap(), 2, "created with Full");
    assert_eq!(store.journal_mode().unwrap(), "wal");
    drop(store);
    let store = SqliteStore::open(&dir, Durability::Normal).unwrap();
    assert_eq!(store.synchronous().unwrap(), 1, "opened with Normal");
    assert_eq!(store.journal_mode().unwrap(), "wal");
    drop(store);
    let store = SqliteStore::open(&dir, Durability::Full).unwrap();
    assert_eq!(store.synchronous().unwrap(), 2, "opened with Full");
    assert_eq!(store.journal_mode().unwrap(), "wal");
    assert_eq!(Durability::default(), Durability::Full);
}

#[test]
fn a_node_whose_store_may_lose_commits_refuses_to_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let spec = NodeSpec::parse("till-1", "S1", "till").unwrap();
    data_dir::init(&dir, &spec).unwrap();
    let clock: stocksync::Clock = Arc::new(|| 0);
    let node = data_dir::open_with_durability(
        &dir,
        NodeOptions::default(),
        Durability::Normal,
        clock.clone(),
    )
    .unwrap();
    // It still sells (a bulk load may want that), but nothing of it leaves.
    node.execute(req("r", 5, EventKind::Receipt)).unwrap();
    let peer = member(2).1.id;
    assert!(matches!(
        node.peer_up(peer),
        Err(stocksync::NodeError::NotDurable)
    ));
    node.receive(peer, vec![1, 0]);
    assert!(node.take_sends().is_empty());
    assert!(node.sync_status().peers.is_empty());
    drop(node);
    let node = data_dir::open(&dir, NodeOptions::default(), clock).unwrap();
    node.peer_up(peer).unwrap();
    assert!(
        !node.take_sends().is_empty(),
        "a durable node greets its peer"
    );
}

#[test]
fn a_database_from_a_newer_schema_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    data_dir::init(&dir, &NodeSpec::parse("till-1", "S1", "till").unwrap()).unwrap();
    let node = data_dir::open(&dir, NodeOptions::default(), Arc::new(|| 0)).unwrap();
    node.execute(req("r", 5, EventKind::Receipt)).unwrap();
    drop(node);
    let newer = SCHEMA_VERSION + 1;
    let db = dir.join(DB_FILE);
    let c = rusqlite::Connection::open(&db).unwrap();
    c.pragma_update(None, "user_version", newer).unwrap();
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    drop(c);
    let bytes = std::fs::read(&db).unwrap();

    match data_dir::open(&dir, NodeOptions::default(), Arc::new(|| 0)) {
        Err(SetupError::Store(StoreError::SchemaTooNew { found, supported })) => {
            assert_eq!((found, supported), (newer, SCHEMA_VERSION));
        }
        Err(e) => panic!("open: wrong error {e}"),
        Ok(_) => panic!("open accepted a newer schema"),
    }
    match Reader::open(&dir) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (newer, SCHEMA_VERSION));
        }
        Err(e) => panic!("reader: wrong error {e}"),
        Ok(_) => panic!("the reader accepted a newer schema"),
    }
    assert_eq!(std::fs::read(&db).unwrap(), bytes, "the file was changed");
    let wal = dir.join(format!("{DB_FILE}-wal"));
    assert!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0,
        "something was written to the WAL"
    );
}

/// A memory store that, once armed, makes the commit after the next successful
/// local commit fail: the group commit succeeds, the roll-over right after it fails.
struct FailAfterNext {
    inner: MemoryStore,
    armed: Arc<AtomicBool>,
}

impl Store for FailAfterNext {
    fn load(&mut self, me: &NodeId) -> Result<Snapshot, StoreError> {
        self.inner.load(me)
    }
    fn find_event(
        &mut self,
        id: &EventId,
    ) -> Result<Option<(EventRequest, EventOutcome)>, StoreError> {
        self.inner.find_event(id)
    }
    fn commit_local(
        &mut self,
        me: &NodeId,
        batch: &SealedBatch,
        stock: &[StockRow],
    ) -> Result<(), StoreError> {
        self.inner.commit_local(me, batch, stock)?;
        if self.armed.swap(false, Ordering::SeqCst) {
            self.inner.fail_next_commits(1);
        }
        Ok(())
    }
    fn commit_remote(&mut self, changes: &[RemoteChange]) -> Result<(), StoreError> {
        self.inner.commit_remote(changes)
    }
    fn changes(
        &mut self,
        range: &stocksync::store::ChangeRange,
    ) -> Result<Vec<StoredChange>, StoreError> {
        self.inner.changes(range)
    }
}

fn own_position(node: &Node) -> Position {
    node.query(|r| r.own_position()).unwrap()
}

#[test]
fn a_failed_epoch_roll_over_keeps_the_events_and_rolls_later() {
    let options = NodeOptions {
        epoch_changes: 3,
        ..NodeOptions::default()
    };
    let store = MemoryStore::new();
    let armed = Arc::new(AtomicBool::new(false));
    let mut f = Fleet::new();
    let a = f.start(
        1,
        FailAfterNext {
            inner: store.clone(),
            armed: armed.clone(),
        },
        options.clone(),
    );
    let b = f.start(2, MemoryStore::new(), options.clone());
    f.connect(a, b);
    f.settle();
    f.event(a, req("r", 10, EventKind::Receipt));
    f.event(a, req("s1", 1, EventKind::Sale));
    assert_eq!(own_position(&f.nodes[a]), Position { epoch: 1, seq: 2 });
    // The third change fills the epoch; its group commit succeeds, the roll-over fails.
    armed.store(true, Ordering::SeqCst);
    let s2 = f.event(a, req("s2", 2, EventKind::Sale));
    assert!(!armed.load(Ordering::SeqCst));
    assert_eq!((s2.rights_after, s2.on_hand_after), (7, 7));
    assert_eq!(s2.position, Position { epoch: 1, seq: 3 });
    assert_eq!(
        own_position(&f.nodes[a]),
        Position { epoch: 1, seq: 3 },
        "the failed roll-over left the old epoch in force"
    );
    assert_eq!(store.event_count(), 3, "the acknowledged events stay");
    f.settle();

    // The node keeps working, and the next commit rolls the epoch over.
    let s3 = f.event(a, req("s3", 3, EventKind::Sale));
    assert_eq!((s3.rights_after, s3.on_hand_after), (4, 4));
    assert_eq!(s3.position, Position { epoch: 1, seq: 4 });
    assert_eq!(own_position(&f.nodes[a]), Position { epoch: 2, seq: 1 });
    let s4 = f.event(a, req("s4", 1, EventKind::Sale));
    assert_eq!(s4.position, Position { epoch: 2, seq: 2 });
    f.settle();

    // The peer followed across both epochs.
    let id = f.nodes[a].id();
    let mine = counters(&f.nodes[a], id);
    assert_eq!(f.head(b, id), Some(Position { epoch: 2, seq: 2 }));
    assert_eq!(counters(&f.nodes[b], id), mine);

    // A restart from the store gives the same node.
    f.nodes.clear();
    let (identity, meta) = member(1);
    let node = Node::start(identity, meta, store.clone(), options, f.clock()).unwrap();
    assert_eq!(own_position(&node), Position { epoch: 2, seq: 2 });
    assert_eq!(head(&node, id), Some(Position { epoch: 2, seq: 2 }));
    assert_eq!(counters(&node, id), mine);
    let again = node.execute(req("s2", 2, EventKind::Sale)).unwrap();
    assert!(again.replayed);
    assert_eq!(
        EventOutcome {
            replayed: false,
            ..again
        },
        s2
    );
    let last = node.execute(req("s5", 3, EventKind::Sale)).unwrap();
    assert_eq!((last.rights_after, last.on_hand_after), (0, 0));
}
