//! Nodes on real SQLite data directories syncing through the `Node` API: what
//! they received from other writers survives a restart, `verify` agrees, and
//! `verify` notices a tampered counter of another writer.

mod fleet;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fleet::{counters, req, Fleet};
use stocksync::data_dir::{self, Reader};
use stocksync::model::{EventKind, NodeId};
use stocksync::node::NodeOptions;
use stocksync::store::sqlite::DB_FILE;
use stocksync::NodeSpec;

/// `n` tills at S1, each in its own data directory.
fn dirs(tmp: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let dir = tmp.join(format!("till-{i}"));
            let spec = NodeSpec::parse(&format!("till-{i}"), "S1", "till").unwrap();
            data_dir::init(&dir, &spec).unwrap();
            dir
        })
        .collect()
}

/// Opens every directory as a node of a new fleet.
fn open_all(dirs: &[PathBuf]) -> Fleet {
    let mut f = Fleet::new();
    for dir in dirs {
        let node = data_dir::open(dir, NodeOptions::default(), f.clock()).unwrap();
        f.add(node);
    }
    f
}

/// Every writer's counters as node `i` holds them.
fn all_counters(f: &Fleet, i: usize, ids: &[NodeId]) -> BTreeMap<NodeId, BTreeMap<String, i64>> {
    ids.iter()
        .map(|w| (*w, counters(&f.nodes[i], *w)))
        .collect()
}

/// The pool columns every replica agrees on (rights are per node).
fn shared_stock(dir: &Path) -> Vec<(String, String, i64, i64, i64)> {
    Reader::open(dir)
        .unwrap()
        .stock(None)
        .unwrap()
        .into_iter()
        .map(|r| (r.location, r.sku, r.on_hand, r.held, r.deficit))
        .collect()
}

fn assert_verifies(dir: &Path) {
    let report = Reader::open(dir).unwrap().verify().unwrap();
    assert!(report.ok, "{}: {:#?}", dir.display(), report.checks);
}

/// Three tills on a line (0 — 1 — 2), each selling, 0 granting to 1, synced.
fn synced_line(tmp: &Path) -> (Vec<PathBuf>, Vec<NodeId>, Fleet) {
    let dirs = dirs(tmp, 3);
    let mut f = open_all(&dirs);
    let ids: Vec<NodeId> = f.nodes.iter().map(|n| n.id()).collect();
    f.connect(0, 1);
    f.connect(1, 2);
    f.settle();
    for (i, units) in [(0, 20), (1, 10), (2, 5)] {
        f.event(i, req(&format!("r{i}"), units, EventKind::Receipt));
        f.event(i, req(&format!("s{i}"), 2, EventKind::Sale));
    }
    f.event(0, req("g", 4, EventKind::Grant { to: ids[1] }));
    f.settle();
    // Only the granted rights make this sale possible.
    f.event(1, req("s1b", 12, EventKind::Sale));
    f.settle();
    for i in 0..3 {
        for (j, w) in ids.iter().enumerate() {
            assert_eq!(f.head(i, *w), f.head(j, *w), "node {i} on writer {j}");
        }
    }
    (dirs, ids, f)
}

#[test]
fn remote_counters_survive_a_restart_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let (dirs, ids, mut f) = synced_line(tmp.path());
    // What each writer holds of itself is the truth the others must have kept.
    let truth: BTreeMap<NodeId, BTreeMap<String, i64>> = ids
        .iter()
        .enumerate()
        .map(|(i, w)| (*w, counters(&f.nodes[i], *w)))
        .collect();
    assert!(truth.values().all(|c| !c.is_empty()));
    for i in 0..3 {
        assert_eq!(all_counters(&f, i, &ids), truth, "node {i} before restart");
    }
    f.nodes.clear();

    // Restart every node from its directory.
    let mut f = open_all(&dirs);
    for (i, dir) in dirs.iter().enumerate() {
        assert_eq!(all_counters(&f, i, &ids), truth, "node {i} after restart");
        assert_verifies(dir);
    }
    let stock = shared_stock(&dirs[0]);
    assert_eq!(stock.len(), 1);
    assert_eq!(stock[0].2, 20 + 10 + 5 - 2 - 2 - 2 - 12);
    for dir in &dirs[1..] {
        assert_eq!(shared_stock(dir), stock, "{}", dir.display());
    }
    // Rights each node was granted or received stay its own.
    let rights: Vec<i64> = dirs
        .iter()
        .map(|d| Reader::open(d).unwrap().stock(None).unwrap()[0].rights)
        .collect();
    assert_eq!(rights, vec![20 - 2 - 4, 10 - 2 + 4 - 12, 5 - 2]);

    // Sync resumes from the restored heads: a sale on the far end reaches node 0.
    f.connect(0, 1);
    f.connect(1, 2);
    f.settle();
    f.event(2, req("s2b", 3, EventKind::Sale));
    f.settle();
    assert_eq!(f.head(0, ids[2]), f.head(2, ids[2]));
    assert_eq!(counters(&f.nodes[0], ids[2]), counters(&f.nodes[2], ids[2]));
    f.nodes.clear();
    for dir in &dirs {
        assert_verifies(dir);
    }
}

#[test]
fn verify_finds_a_tampered_counter_of_another_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let (dirs, ids, mut f) = synced_line(tmp.path());
    f.nodes.clear();
    // Node 1's copy of node 0's counters.
    let dir = &dirs[1];
    assert_verifies(dir);
    let db = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    let writer = &ids[0].0[..];
    let key: String = db
        .query_row(
            "SELECT key FROM counters WHERE writer = ?1 ORDER BY key LIMIT 1",
            [writer],
            |r| r.get(0),
        )
        .unwrap();
    let failed = || -> Vec<String> {
        let report = Reader::open(dir).unwrap().verify().unwrap();
        report
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.to_string())
            .collect()
    };
    let tamper = |sql: &str| {
        let n = db
            .execute(sql, rusqlite::params![writer, key.as_str()])
            .unwrap();
        assert_eq!(n, 1, "{sql}");
    };
    for (sql, undo) in [
        (
            "UPDATE counters SET value = value + 1 WHERE writer = ?1 AND key = ?2",
            "UPDATE counters SET value = value - 1 WHERE writer = ?1 AND key = ?2",
        ),
        (
            "UPDATE counters SET value = value - 1 WHERE writer = ?1 AND key = ?2",
            "UPDATE counters SET value = value + 1 WHERE writer = ?1 AND key = ?2",
        ),
    ] {
        tamper(sql);
        assert_eq!(failed(), vec!["counters_match_changes"], "{sql}");
        tamper(undo);
        assert!(failed().is_empty(), "{undo}");
    }
    tamper("DELETE FROM counters WHERE writer = ?1 AND key = ?2");
    assert_eq!(failed(), vec!["counters_match_changes"], "a deleted row");
}
