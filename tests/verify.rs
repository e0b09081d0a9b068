//! `verify` must notice when the tables stop agreeing with the changes and the journal.

use std::path::Path;

mod common;

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    common::run(dir, args)
}

fn node() -> (tempfile::TempDir, std::path::PathBuf) {
    common::node_with(&[
        &["receive", "A", "10"],
        &["sell", "A", "3"],
        &["reserve", "A", "2", "--reservation", "R1"],
        &["adjust", "A", "-1", "--reason", "damage"],
    ])
}

#[test]
fn a_sound_node_verifies() {
    let (_t, dir) = node();
    let out = run(&dir, &["verify", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
}

#[test]
fn tampering_is_found() {
    let cases = [
        (
            "UPDATE stock SET on_hand = on_hand + 1",
            "stock_rows_and_invariant",
        ),
        (
            "INSERT INTO stock VALUES ('S9', 'Z', 1, 0, 1, 0)",
            "stock_rows_and_invariant",
        ),
        (
            "DELETE FROM events WHERE kind = 'sale'",
            "journal_matches_counters",
        ),
        (
            "UPDATE events SET qty = qty + 1 WHERE kind = 'receipt'",
            "journal_matches_counters",
        ),
        ("DELETE FROM holds", "holds_match"),
    ];
    for (sql, check) in cases {
        let (_t, dir) = node();
        let c = rusqlite::Connection::open(dir.join("stocksync.db")).unwrap();
        c.execute_batch(sql).unwrap();
        drop(c);
        let out = run(&dir, &["verify", "--json"]);
        assert_eq!(out.status.code(), Some(1), "{sql}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let failed: Vec<&str> = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["ok"] == false)
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert!(failed.contains(&check), "{sql}: failed {failed:?}");
    }
}
