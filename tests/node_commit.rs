//! The node's writer over the in-memory store: group commit, idempotency, and a
//! failed commit that must change nothing.

use std::sync::Arc;

use stocksync::error::{NodeError, StoreError};
use stocksync::identity::Identity;
use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeMeta, Policy, Quantity, Role, Sku,
};
use stocksync::node::{Node, NodeOptions};
use stocksync::store::memory::MemoryStore;

fn meta() -> NodeMeta {
    NodeMeta {
        id: Identity::from_seed([1; 32]).node_id(),
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
    Node::start(meta(), store.clone(), options, Arc::new(|| 0)).unwrap()
}

#[test]
fn concurrent_callers_never_oversell_and_every_ack_is_durable() {
    let store = MemoryStore::new();
    let node = start(
        &store,
        NodeOptions {
            epoch_changes: 50,
            max_batch: 16,
        },
    );
    node.execute(req("r", 500, EventKind::Receipt)).unwrap();
    let acked: Vec<Vec<String>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|t| {
                let node = &node;
                s.spawn(move || {
                    let mut ok = Vec::new();
                    for i in 0..100 {
                        let id = format!("s-{t}-{i}");
                        match node.execute(req(&id, 1, EventKind::Sale)) {
                            Ok(_) => ok.push(id),
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
    let again = node.execute(req("s-0-0", 1, EventKind::Sale));
    match again {
        Ok(o) => assert!(o.replayed),
        Err(e) => assert!(
            e.is_refusal(),
            "s-0-0 may have been refused the first time: {e}"
        ),
    }
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
