//! The node's writer over the in-memory store: group commit, idempotency, and a
//! failed commit that must change nothing.

use std::sync::Arc;

use stocksync::error::{EventError, NodeError, StoreError};
use stocksync::identity::Identity;
use stocksync::model::{
    EventId, EventKind, EventOutcome, EventRequest, LocationId, NodeMeta, Policy, Quantity, Role,
    Sku,
};
use stocksync::node::{Node, NodeOptions};
use stocksync::store::memory::MemoryStore;

fn identity() -> Identity {
    Identity::from_seed([1; 32])
}

fn meta() -> NodeMeta {
    NodeMeta {
        id: identity().node_id(),
        name: "till-1".into(),
        location: LocationId::new("S1").unwrap(),
        role: Role::Till,
    }
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

fn start(store: &MemoryStore, options: NodeOptions) -> Node {
    Node::start(identity(), meta(), store.clone(), options, Arc::new(|| 0)).unwrap()
}

#[test]
fn concurrent_callers_never_oversell_and_every_ack_is_durable() {
    let store = MemoryStore::new();
    let node = start(
        &store,
        NodeOptions {
            epoch_changes: 50,
            max_batch: 16,
            ..NodeOptions::default()
        },
    );
    node.execute(req("r", 500, EventKind::Receipt)).unwrap();
    let acked: Vec<Vec<(String, EventOutcome)>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|t| {
                let node = &node;
                s.spawn(move || {
                    let mut ok = Vec::new();
                    for i in 0..100 {
                        let id = format!("s-{t}-{i}");
                        match node.execute(req(&id, 1, EventKind::Sale)) {
                            Ok(o) => ok.push((id, o)),
                            Err(e) => assert!(e.is_refusal(), "{e}"),
                        }
                    }
                    ok
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sold: usize = acked.iter().map(Vec::len).sum();
    assert_eq!(sold, 500, "exactly the received units are sold, no more");
    drop(node);
    // Reopen from what was committed (several epochs rolled over meanwhile).
    let node = start(&store, NodeOptions::default());
    let (on_hand, rights) = node
        .query(|r| {
            let p = r.book().pools().next().unwrap().1;
            (p.on_hand(), p.share(r.me()).rights())
        })
        .unwrap();
    assert_eq!((on_hand, rights), (0, 0));
    assert_eq!(store.event_count(), 501);
    // Every acknowledged sale, retried after the restart, is replayed with its
    // first answer (never refused, never applied again).
    for (id, first) in acked.iter().flatten() {
        let again = node
            .execute(req(id, 1, EventKind::Sale))
            .unwrap_or_else(|e| panic!("retry of acknowledged {id} failed: {e}"));
        assert!(again.replayed, "{id}");
        assert_eq!(
            EventOutcome {
                replayed: false,
                ..again
            },
            *first,
            "{id}"
        );
    }
    assert_eq!(store.event_count(), 501);
}

#[test]
fn a_failed_commit_changes_nothing_and_the_node_recovers() {
    let store = MemoryStore::new();
    let node = start(&store, NodeOptions::default());
    node.execute(req("r", 5, EventKind::Receipt)).unwrap();
    store.fail_next_commits(1);
    let err = node.execute(req("s1", 5, EventKind::Sale)).unwrap_err();
    assert!(
        matches!(err, NodeError::Store(StoreError::DiskFull)),
        "{err}"
    );
    // The failed sale did not spend the rights: the same 5 units can still be sold.
    let o = node.execute(req("s2", 5, EventKind::Sale)).unwrap();
    assert_eq!(o.rights_after, 0);
    assert_eq!(o.on_hand_after, 0);
    // And the failed id is free: nothing of it was recorded.
    let err = node.execute(req("s1", 1, EventKind::Sale)).unwrap_err();
    assert!(err.is_refusal(), "{err}");
    assert_eq!(store.event_count(), 2);
}

#[test]
fn deficits_only_under_record_and_always_reported() {
    let store = MemoryStore::new();
    let node = start(&store, NodeOptions::default());
    node.execute(req("r", 2, EventKind::Receipt)).unwrap();
    let mut strict = req("s1", 3, EventKind::Sale);
    strict.policy = Some(Policy::Strict);
    assert!(node.execute(strict).unwrap_err().is_refusal());
    let mut record = req("s2", 3, EventKind::Sale);
    record.policy = Some(Policy::Record);
    let o = node.execute(record).unwrap();
    assert_eq!(
        (o.deficit_created, o.rights_after, o.on_hand_after),
        (1, -1, -1)
    );
    let rows = store.stock_rows();
    assert_eq!(rows[0].deficit, 1);
    // A return covers the deficit.
    node.execute(req("ret", 1, EventKind::Return)).unwrap();
    assert_eq!(store.stock_rows()[0].deficit, 0);
}

/// A store whose `commit_local` panics once, to exercise the leader's recovery.
struct PanicOnce {
    inner: MemoryStore,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl stocksync::store::Store for PanicOnce {
    fn load(
        &mut self,
        me: &stocksync::model::NodeId,
    ) -> Result<stocksync::store::Snapshot, StoreError> {
        self.inner.load(me)
    }
    fn find_event(
        &mut self,
        id: &EventId,
    ) -> Result<Option<(EventRequest, stocksync::model::EventOutcome)>, StoreError> {
        self.inner.find_event(id)
    }
    fn commit_local(
        &mut self,
        me: &stocksync::model::NodeId,
        batch: &stocksync::replica::SealedBatch,
        stock: &[stocksync::store::StockRow],
    ) -> Result<(), StoreError> {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("simulated bug inside a group commit");
        }
        self.inner.commit_local(me, batch, stock)
    }
    fn commit_remote(
        &mut self,
        changes: &[stocksync::store::RemoteChange],
    ) -> Result<(), StoreError> {
        self.inner.commit_remote(changes)
    }
    fn changes(
        &mut self,
        range: &stocksync::store::ChangeRange,
    ) -> Result<Vec<stocksync::store::StoredChange>, StoreError> {
        self.inner.changes(range)
    }
}

#[test]
fn a_panic_inside_a_group_fails_that_group_and_the_node_carries_on() {
    use stocksync::store::Store as _;
    let inner = MemoryStore::new();
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store = PanicOnce {
        inner: inner.clone(),
        armed: armed.clone(),
    };
    let node = Node::start(
        identity(),
        meta(),
        store,
        NodeOptions::default(),
        Arc::new(|| 0),
    )
    .unwrap();
    node.execute(req("r", 5, EventKind::Receipt)).unwrap();
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        node.execute(req("s1", 2, EventKind::Sale))
    }))
    .expect("the caller does not see the panic")
    .unwrap_err();
    assert!(matches!(err, NodeError::Stopped), "{err}");
    // The panicked group left nothing behind: all 5 units can still be sold.
    let o = node.execute(req("s2", 5, EventKind::Sale)).unwrap();
    assert_eq!((o.rights_after, o.on_hand_after), (0, 0));
    assert_eq!(
        inner
            .clone()
            .find_event(&EventId::new("s1").unwrap())
            .unwrap(),
        None
    );
}

#[test]
fn a_repeated_id_inside_one_group_is_applied_once() {
    let store = MemoryStore::new();
    let node = start(&store, NodeOptions::default());
    node.execute(req("r", 10, EventKind::Receipt)).unwrap();
    let commits_before = store.commits();
    // Queued before anyone waits: the first wait leads all three as one group.
    let first = node.submit(req("s", 3, EventKind::Sale));
    let retry = node.submit(req("s", 3, EventKind::Sale));
    let other = node.submit(req("s", 4, EventKind::Sale));
    let next = node.submit(req("x", 1, EventKind::Sale));
    let (first, retry, other, next) = (first.wait(), retry.wait(), other.wait(), next.wait());
    let first = first.unwrap();
    assert_eq!(
        (store.commits(), next.unwrap().position),
        (commits_before + 1, first.position),
        "the four submissions were one group commit"
    );
    let retry = retry.unwrap();
    assert!(!first.replayed);
    assert!(retry.replayed, "the repeat is answered as a replay");
    assert_eq!(
        EventOutcome {
            replayed: false,
            ..retry
        },
        first
    );
    assert!(
        matches!(
            other,
            Err(NodeError::Event(EventError::DuplicateEvent { .. }))
        ),
        "same id, other request: {other:?}"
    );
    // The counters moved once: 3 units sold (and 1 by `x`), not 6.
    assert_eq!((first.rights_after, first.on_hand_after), (7, 7));
    let (on_hand, rights) = node
        .query(|r| {
            let p = r.book().pools().next().unwrap().1;
            (p.on_hand(), p.share(r.me()).rights())
        })
        .unwrap();
    assert_eq!((on_hand, rights), (6, 6));
    assert_eq!(store.event_count(), 3);
    // And so after a restart.
    drop(node);
    let node = start(&store, NodeOptions::default());
    let o = node.execute(req("s2", 6, EventKind::Sale)).unwrap();
    assert_eq!((o.rights_after, o.on_hand_after), (0, 0));
}

/// A memory store whose local commits take a while, as a disk's do.
struct Slow(MemoryStore);

impl stocksync::store::Store for Slow {
    fn load(
        &mut self,
        me: &stocksync::model::NodeId,
    ) -> Result<stocksync::store::Snapshot, StoreError> {
        self.0.load(me)
    }
    fn find_event(
        &mut self,
        id: &EventId,
    ) -> Result<Option<(EventRequest, EventOutcome)>, StoreError> {
        self.0.find_event(id)
    }
    fn commit_local(
        &mut self,
        me: &stocksync::model::NodeId,
        batch: &stocksync::replica::SealedBatch,
        stock: &[stocksync::store::StockRow],
    ) -> Result<(), StoreError> {
        std::thread::sleep(std::time::Duration::from_millis(2));
        self.0.commit_local(me, batch, stock)
    }
    fn commit_remote(
        &mut self,
        changes: &[stocksync::store::RemoteChange],
    ) -> Result<(), StoreError> {
        self.0.commit_remote(changes)
    }
    fn changes(
        &mut self,
        range: &stocksync::store::ChangeRange,
    ) -> Result<Vec<stocksync::store::StoredChange>, StoreError> {
        self.0.changes(range)
    }
}

#[test]
fn concurrent_callers_share_group_commits() {
    let store = MemoryStore::new();
    let node = Node::start(
        identity(),
        meta(),
        Slow(store.clone()),
        NodeOptions::default(),
        Arc::new(|| 0),
    )
    .unwrap();
    node.execute(req("r", 1_000, EventKind::Receipt)).unwrap();
    let before = store.commits();
    const THREADS: usize = 8;
    const PER_THREAD: usize = 25;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let node = &node;
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    node.execute(req(&format!("s-{t}-{i}"), 1, EventKind::Sale))
                        .unwrap();
                }
            });
        }
    });
    let events = THREADS * PER_THREAD;
    let commits = (store.commits() - before) as usize;
    assert_eq!(store.event_count(), events + 1);
    assert!(
        commits < events,
        "{THREADS} concurrent callers made {commits} commits for {events} events: no grouping"
    );
}

#[test]
fn a_reference_over_the_limit_is_refused_and_changes_nothing() {
    let store = MemoryStore::new();
    let node = start(&store, NodeOptions::default());
    let mut r = req("r", 5, EventKind::Receipt);
    r.reference = Some("x".repeat(stocksync::model::MAX_REFERENCE + 1));
    let e = node.execute(r).unwrap_err();
    assert!(
        matches!(
            e,
            NodeError::Event(stocksync::EventError::Input(
                stocksync::InputError::TooLong {
                    what: "reference",
                    ..
                }
            ))
        ),
        "{e}"
    );
    assert_eq!(store.event_count(), 0);
    let mut r = req("r", 5, EventKind::Receipt);
    r.reference = Some("x".repeat(stocksync::model::MAX_REFERENCE));
    node.execute(r).unwrap();
    assert_eq!(store.event_count(), 1);
}
