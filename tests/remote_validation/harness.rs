//! Building changes the way a peer (honest or not) could, and observing a replica.
#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeMap;

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{ActorId, Automerge, AutomergeError, ScalarValue, ROOT};

use stocksync::error::ChangeError;
use stocksync::escrow::{CounterKey, PoolState};
use stocksync::model::{LocationId, NodeId, PoolKey, Position, Sku};
use stocksync::replica::{Replica, WriterHead};
use stocksync::store::Snapshot;

pub const ME: NodeId = NodeId([1; 32]);
pub const WRITER: NodeId = NodeId([2; 32]);
pub const OTHER: NodeId = NodeId([3; 32]);

pub fn pool() -> PoolKey {
    PoolKey::new(LocationId::new("S1").unwrap(), Sku::new("SKU-1").unwrap())
}

pub fn minted() -> CounterKey {
    CounterKey::Minted(pool())
}

pub const MINTED: &str = "m|S1|SKU-1";
pub const CONSUMED: &str = "c|S1|SKU-1";

pub fn replica(me: NodeId) -> Replica {
    Replica::open(me, Snapshot::default(), 1_000).unwrap()
}

pub fn doc(actor: &NodeId) -> Automerge {
    Automerge::new().with_actor(ActorId::from(actor.0))
}

thread_local! {
    /// The epoch written into the message of the changes `commit` builds.
    static EPOCH: Cell<u32> = const { Cell::new(1) };
}

/// Runs `f` with the changes it builds stamped as changes of `epoch`.
pub fn in_epoch<T>(epoch: u32, f: impl FnOnce() -> T) -> T {
    let old = EPOCH.replace(epoch);
    let out = f();
    EPOCH.set(old);
    out
}

/// Commits one change made by `f` and returns its bytes. Its message carries
/// the epoch, as every stocksync writer's does.
pub fn commit(
    doc: &mut Automerge,
    f: impl FnOnce(&mut Transaction<'_>) -> Result<(), AutomergeError>,
) -> Vec<u8> {
    let mut tx = doc.transaction();
    f(&mut tx).unwrap();
    let message = format!("{{\"epoch\":{},\"events\":[]}}", EPOCH.get());
    tx.commit_with(CommitOptions::default().with_time(0).with_message(message));
    doc.get_last_local_change().unwrap().raw_bytes().to_vec()
}

pub fn put_counter(doc: &mut Automerge, key: &str, v: i64) -> Vec<u8> {
    let key = key.to_string();
    commit(doc, move |tx| tx.put(ROOT, key, ScalarValue::counter(v)))
}

/// A raw automerge increment: writers never send these, validation refuses them.
pub fn raw_increment(doc: &mut Automerge, key: &str, by: i64) -> Vec<u8> {
    let key = key.to_string();
    commit(doc, move |tx| tx.increment(ROOT, key, by))
}

/// Raises a counter by `by` the way writers do: a put of the new absolute value.
pub fn bump(doc: &mut Automerge, key: &str, by: i64) -> Vec<u8> {
    use automerge::ReadDoc;
    let current = doc
        .get(ROOT, key)
        .unwrap()
        .and_then(|(v, _)| v.as_i64())
        .unwrap_or(0);
    put_counter(doc, key, current + by)
}

/// Everything observable of a replica.
#[derive(Debug, PartialEq)]
pub struct Fingerprint {
    pub counters: BTreeMap<(NodeId, CounterKey), i64>,
    pub pools: Vec<(PoolKey, PoolState)>,
    pub heads: BTreeMap<NodeId, WriterHead>,
}

pub fn fingerprint(r: &Replica) -> Fingerprint {
    let book = r.book();
    let mut counters = BTreeMap::new();
    for w in book.writers() {
        for (k, v) in book.counters_of(w) {
            counters.insert((*w, k.clone()), v);
        }
    }
    Fingerprint {
        counters,
        pools: book.pools().map(|(k, v)| (k.clone(), v.clone())).collect(),
        heads: r.heads().iter().map(|(k, v)| (*k, *v)).collect(),
    }
}

/// Applies `bytes` as change of `WRITER` in `epoch`, expects an error, and checks
/// that the replica did not change.
pub fn rejected(r: &mut Replica, epoch: u32, bytes: &[u8]) -> ChangeError {
    let before = fingerprint(r);
    let err = match r.apply_remote(&WRITER, epoch, bytes) {
        Err(e) => e,
        Ok(v) => panic!("change was accepted: {v:?}"),
    };
    assert_eq!(
        fingerprint(r),
        before,
        "a rejected change ({err}) changed the replica"
    );
    err
}

pub fn applied(r: &mut Replica, epoch: u32, bytes: &[u8]) {
    let got = r.apply_remote(&WRITER, epoch, bytes).unwrap();
    assert!(got.is_some(), "change was ignored");
}

pub fn head(r: &Replica) -> Option<Position> {
    r.heads().get(&WRITER).map(|h| h.position)
}

pub fn is_forbidden(e: &ChangeError) -> bool {
    matches!(e, ChangeError::Forbidden(_))
}
