//! Bad input to every command: a clear error, the documented exit code, and no change.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{run, BIN};

fn node() -> (tempfile::TempDir, PathBuf) {
    common::node_with(&[&["receive", "A", "10", "--id", "r1"]])
}

fn state(dir: &Path) -> (String, String) {
    let s = run(dir, ["stock", "--json"]);
    let h = run(dir, ["history", "A", "--json"]);
    (
        String::from_utf8_lossy(&s.stdout).into(),
        String::from_utf8_lossy(&h.stdout).into(),
    )
}

fn expect(dir: &Path, args: &[&str], code: i32, needle: &str) {
    let before = state(dir);
    let out = run(dir, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: stderr {err}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "{args:?}: {err:?} lacks {needle:?}"
    );
    assert_eq!(state(dir), before, "{args:?} changed the state");
}

#[test]
fn bad_quantities_are_refused_with_exit_2() {
    let (_t, dir) = node();
    for cmd in ["sell", "receive", "return", "order"] {
        expect(&dir, &[cmd, "A", "0"], 2, "at least 1");
        expect(&dir, &[cmd, "A", "-1"], 2, "negative");
        expect(&dir, &[cmd, "A", "abc"], 2, "not a whole number");
        expect(&dir, &[cmd, "A", "1.5"], 2, "not a whole number");
        expect(
            &dir,
            &[cmd, "A", "99999999999999999999999"],
            2,
            "larger than the maximum",
        );
        expect(
            &dir,
            &[cmd, "A", "1000000001"],
            2,
            "larger than the maximum",
        );
    }
    expect(
        &dir,
        &["adjust", "A", "0", "--reason", "count"],
        2,
        "at least 1",
    );
    expect(
        &dir,
        &["adjust", "A", "--3", "--reason", "count"],
        2,
        "not a whole number",
    );
    expect(&dir, &["adjust", "A", "-3"], 2, "--reason");
    expect(
        &dir,
        &["reserve", "A", "-2", "--reservation", "R1"],
        2,
        "negative",
    );
    expect(
        &dir,
        &["transfer-out", "A", "0", "--to", "S2", "--transfer", "T1"],
        2,
        "at least 1",
    );
}

#[test]
fn bad_names_are_refused_with_exit_2() {
    let (_t, dir) = node();
    let huge = "X".repeat(65);
    expect(&dir, &["sell", "", "1"], 2, "must not be empty");
    expect(&dir, &["sell", &huge, "1"], 2, "bytes long");
    expect(&dir, &["sell", "a|b", "1"], 2, "contains");
    expect(&dir, &["sell", "é", "1"], 2, "contains");
    expect(&dir, &["stock", "a b"], 2, "contains");
    expect(&dir, &["history", ""], 2, "must not be empty");
    expect(&dir, &["sell", "A", "1", "--id", &huge], 2, "bytes long");
    expect(&dir, &["sell", "A", "1", "--policy", "maybe"], 2, "policy");
    expect(
        &dir,
        &["adjust", "A", "-1", "--reason", "no way"],
        2,
        "contains",
    );
    expect(
        &dir,
        &["grant", "A", "1", "--to", "nothex"],
        2,
        "64 hex digits",
    );
    // A SKU that is not valid UTF-8.
    let before = state(&dir);
    let out = run(
        &dir,
        [
            OsStr::new("sell"),
            OsStr::from_bytes(b"\xff\xfe"),
            OsStr::new("1"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(state(&dir), before);
}

#[test]
fn unknown_things_and_refusals() {
    let (_t, dir) = node();
    expect(&dir, &["sell", "NOPE", "1"], 2, "unknown SKU");
    expect(&dir, &["return", "NOPE", "1"], 2, "unknown SKU");
    expect(
        &dir,
        &["release", "A", "1", "--reservation", "R9"],
        2,
        "no open reservation",
    );
    expect(
        &dir,
        &["fulfil", "A", "1", "--reservation", "R9"],
        2,
        "no open reservation",
    );
    expect(&dir, &["sell", "A", "11"], 3, "insufficient rights");
    expect(
        &dir,
        &["order", "A", "1", "--policy", "record"],
        2,
        "not allowed",
    );
    expect(
        &dir,
        &[
            "reserve",
            "A",
            "1",
            "--reservation",
            "R1",
            "--location",
            "a b",
        ],
        2,
        "contains",
    );
    expect(&dir, &["order", "A", "11"], 3, "insufficient rights");
    // The same id for a different event is refused; for the same event it replays.
    assert!(run(&dir, ["sell", "A", "2", "--id", "s1"]).status.success());
    expect(&dir, &["sell", "A", "3", "--id", "s1"], 2, "already used");
    expect(&dir, &["sell", "A", "2", "--id", "s1"], 0, "");
    let out = run(&dir, ["sell", "A", "2", "--id", "s1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["replayed"], true);
    assert_eq!(v["on_hand_after"], 8);
}

#[test]
fn usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN).args(["sell", "A", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data"));
    let out = run(&tmp.path().join("none"), ["sell", "A", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stocksync init"));
    let (_t, dir) = node();
    let out = Command::new(BIN)
        .arg("init")
        .arg("--data")
        .arg(&dir)
        .args(["--node", "x", "--location", "S1", "--role", "till"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .arg("init")
        .arg("--data")
        .arg(tmp.path().join("r"))
        .args(["--node", "x", "--location", "S1", "--role", "king"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("role"));
    let out = Command::new(BIN).args(["frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn corrupt_and_truncated_databases_are_refused_untouched() {
    for damage in ["garbage", "truncate", "zero_header"] {
        let (_t, dir) = node();
        let db = dir.join("stocksync.db");
        // Fold the WAL into the file first so the damage hits real data.
        let c = rusqlite::Connection::open(&db).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        drop(c);
        let mut bytes = std::fs::read(&db).unwrap();
        match damage {
            "garbage" => bytes = b"this is not a database at all, just text".repeat(200),
            "truncate" => bytes.truncate(bytes.len() / 3),
            _ => bytes[..100].fill(0),
        }
        std::fs::write(&db, &bytes).unwrap();
        for args in [vec!["sell", "A", "1"], vec!["stock"], vec!["verify"]] {
            let out = run(&dir, &args);
            let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
            assert_eq!(out.status.code(), Some(1), "{damage} {args:?}: {err}");
            assert!(
                err.contains("corrupt") || err.contains("malformed"),
                "{damage} {args:?}: {err}"
            );
            assert_eq!(
                std::fs::read(&db).unwrap(),
                bytes,
                "{damage}: {args:?} wrote to the file"
            );
        }
    }
}

#[test]
fn a_second_writer_is_refused_while_the_directory_is_locked() {
    let (_t, dir) = node();
    let store = stocksync::store::sqlite::SqliteStore::open(&dir, Default::default()).unwrap();
    let out = run(&dir, ["sell", "A", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    // Readers still work while a node holds the directory.
    assert!(run(&dir, ["stock"]).status.success());
    drop(store);
    assert!(run(&dir, ["sell", "A", "1"]).status.success());
}

#[test]
fn a_foreign_sqlite_file_is_refused_untouched() {
    let (_t, dir) = node();
    let db = dir.join("stocksync.db");
    std::fs::remove_file(&db).unwrap();
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE other(x); PRAGMA user_version = 1;")
        .unwrap();
    drop(c);
    let bytes = std::fs::read(&db).unwrap();
    for args in [vec!["sell", "A", "1"], vec!["stock"]] {
        let out = run(&dir, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a stocksync database"));
        assert_eq!(
            std::fs::read(&db).unwrap(),
            bytes,
            "{args:?} wrote to the file"
        );
    }
}

#[test]
fn init_after_an_init_that_stopped_half_way_makes_a_fresh_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    std::fs::create_dir_all(&dir).unwrap();
    // A key left behind with no database.
    std::fs::write(dir.join("node.key"), [7u8; 32]).unwrap();
    let out = Command::new(BIN)
        .arg("init")
        .arg("--data")
        .arg(&dir)
        .args([
            "--node",
            "t",
            "--location",
            "S1",
            "--role",
            "till",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(std::fs::read(dir.join("node.key")).unwrap(), vec![7u8; 32]);
    assert!(run(&dir, ["receive", "A", "1"]).status.success());
}

#[test]
fn a_repeated_id_returns_the_first_result_unchanged() {
    let (_t, dir) = node();
    let first = run(
        &dir,
        ["sell", "A", "3", "--id", "s9", "--ref", "R-1", "--json"],
    );
    assert!(first.status.success());
    // Something else happens in between: the replay must still show the first result.
    assert!(run(&dir, ["sell", "A", "1"]).status.success());
    let again = run(
        &dir,
        ["sell", "A", "3", "--id", "s9", "--ref", "R-1", "--json"],
    );
    let mut a: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(a["replayed"], false);
    assert_eq!(b["replayed"], true);
    a["replayed"] = true.into();
    assert_eq!(a, b);
}

#[test]
fn a_transfer_to_or_from_the_nodes_own_location_is_refused() {
    let (_t, dir) = node();
    let own = "own location";
    expect(
        &dir,
        &["transfer-out", "A", "1", "--to", "S1", "--transfer", "t1"],
        2,
        own,
    );
    expect(
        &dir,
        &["transfer-in", "A", "1", "--from", "S1", "--transfer", "t2"],
        2,
        own,
    );
    // The pool's location decides, whichever location that is.
    expect(
        &dir,
        &[
            "transfer-out",
            "A",
            "1",
            "--to",
            "S2",
            "--transfer",
            "t3",
            "--location",
            "S2",
        ],
        2,
        own,
    );
    // A real transfer still goes through.
    let out = run(
        &dir,
        ["transfer-in", "A", "1", "--from", "S2", "--transfer", "t4"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
