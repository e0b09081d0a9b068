//! `stocksync import`: JSON lines and CSV files of mixed events, repeats, bad
//! lines, dry runs and standard input, through the real binary.

#[path = "../common/mod.rs"]
mod common;
mod files;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use common::{run, BIN};
use files::{csv, expected, jsonl, MIXED};

fn stock(dir: &Path) -> BTreeMap<(String, String), (i64, i64, i64, i64)> {
    let out = run(dir, ["stock", "--json"]);
    assert!(out.status.success());
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let n = |r: &Value, f: &str| r[f].as_i64().unwrap();
    rows.iter()
        .map(|r| {
            let key = (
                r["location"].as_str().unwrap().into(),
                r["sku"].as_str().unwrap().into(),
            );
            (
                key,
                (
                    n(r, "on_hand"),
                    n(r, "held"),
                    n(r, "rights"),
                    n(r, "deficit"),
                ),
            )
        })
        .collect()
}

fn import(dir: &Path, file: &Path, extra: &[&str]) -> (Output, Value) {
    let out = Command::new(BIN)
        .arg("--data")
        .arg(dir)
        .arg("import")
        .arg(file)
        .args(extra)
        .arg("--json")
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, report)
}

fn counts(r: &Value) -> [u64; 4] {
    ["lines_read", "applied", "replayed", "failed"].map(|k| r[k].as_u64().unwrap())
}

fn imports_twice(file_name: &str, text: &str) {
    let (tmp, dir) = common::node_with(&[]);
    let file = tmp.path().join(file_name);
    std::fs::write(&file, text).unwrap();
    let n = MIXED.len() as u64;
    let (out, r) = import(&dir, &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{r}");
    assert_eq!(counts(&r), [n, n, 0, 0], "{r}");
    let want = expected(MIXED);
    assert_eq!(stock(&dir), want);
    // The same file again: every line is a replay and nothing changes.
    let (out, r) = import(&dir, &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{r}");
    assert_eq!(counts(&r), [n, 0, n, 0], "{r}");
    assert_eq!(stock(&dir), want);
    let history = run(&dir, ["history", "A", "--json"]);
    let rows: Vec<Value> = serde_json::from_slice(&history.stdout).unwrap();
    let a_events = MIXED.iter().filter(|e| e.sku == "A").count();
    assert_eq!(rows.len(), a_events, "each event recorded once");
    // Submitted together, the lines share one group commit.
    let changes: std::collections::BTreeSet<String> =
        rows.iter().map(|r| r["position"].to_string()).collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
}

#[test]
fn a_jsonl_file_of_mixed_kinds_imports_once() {
    imports_twice("day1.jsonl", &jsonl(MIXED));
}

#[test]
fn a_csv_file_of_mixed_kinds_imports_once() {
    imports_twice("day1.csv", &csv(MIXED));
}

#[test]
fn bad_lines_are_reported_by_number_and_the_good_ones_go_in() {
    let (tmp, dir) = common::node_with(&[]);
    let long = format!(
        r#"{{"kind":"receive","sku":"A","qty":1,"id":"big","ref":"{}"}}"#,
        "x".repeat(70_000)
    );
    let lines = [
        r#"{"kind":"receive","sku":"A","qty":10,"id":"g1"}"#,
        r#"{"kind":"sell","sku":"A","qty":"abc","id":"b1"}"#,
        r#"{"kind":"frobnicate","sku":"A","qty":1,"id":"b2"}"#,
        r#"{"kind":"sell","sku":"NOPE","qty":1,"id":"b3"}"#,
        r#"{"kind":"sell","sku":"A","qty":1}"#,
        r#"{"kind":"sell","sku":"A","#,
        "",
        &long,
        r#"{"kind":"sell","sku":"A","qty":3,"id":"g2"}"#,
        r#"{"kind":"sell","sku":"A","qty":1,"id":"b4","colour":"red"}"#,
        r#"{"kind":"sell","sku":"A","qty":100,"id":"b5"}"#,
        r#"{"kind":"sell","sku":"A","qty":2,"id":"g2"}"#,
        r#"{"kind":"transfer-out","sku":"A","qty":1,"to":"S1","transfer":"T9","id":"b6"}"#,
        r#"{"kind":"sell","sku":"A","qty":0,"id":"b7"}"#,
        r#"{"kind":"reserve","sku":"A","qty":1,"id":"b8"}"#,
        r#"{"kind":"sell","sku":"A","qty":1,"id":"b9","reason":"count"}"#,
        r#"{"kind":"receive","sku":"A","qty":2,"id":"g3"}"#,
    ];
    let file = tmp.path().join("bad.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let (out, r) = import(&dir, &file, &[]);
    assert_eq!(out.status.code(), Some(2), "{r}");
    assert_eq!(counts(&r), [16, 3, 0, 13], "{r}");
    let want: &[(u64, Option<&str>, &str)] = &[
        (2, Some("b1"), "not a whole number"),
        (3, Some("b2"), "unknown kind"),
        (4, Some("b3"), "unknown SKU"),
        (5, None, "missing field id"),
        (6, None, "malformed JSON"),
        (8, None, "bytes long"),
        (10, Some("b4"), "unknown field \"colour\""),
        (11, Some("b5"), "insufficient rights"),
        (12, Some("g2"), "already used"),
        (13, Some("b6"), "own location"),
        (14, Some("b7"), "at least 1"),
        (15, Some("b8"), "missing field reservation"),
        (16, Some("b9"), "field reason does not apply to sell"),
    ];
    let failures = r["failures"].as_array().unwrap();
    assert_eq!(failures.len(), want.len(), "{r}");
    for (f, (line, id, reason)) in failures.iter().zip(want) {
        assert_eq!(f["line"], *line, "{f}");
        assert_eq!(f["id"].as_str(), *id, "{f}");
        let got = f["reason"].as_str().unwrap();
        assert!(
            got.contains(reason),
            "line {line}: {got:?} lacks {reason:?}"
        );
    }
    let mut want = BTreeMap::new();
    want.insert(("S1".to_string(), "A".to_string()), (9, 0, 9, 0));
    assert_eq!(stock(&dir), want);
    // The text report names the lines too, and stderr says why the exit code is 2.
    let out = run(&dir, [Path::new("import"), &file]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("line 4 (id b3): unknown SKU"), "{text}");
    assert!(text.contains("3 replayed"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("13 of 16 lines failed"));
}

#[test]
fn a_dry_run_decides_like_the_import_and_changes_nothing() {
    let (tmp, dir) = common::node_with(&[&["receive", "A", "10", "--id", "r1"]]);
    let lines = [
        r#"{"kind":"sell","sku":"A","qty":4,"id":"d1"}"#,
        r#"{"kind":"sell","sku":"A","qty":4,"id":"d2"}"#,
        // Only 2 left once d1 and d2 are counted: refused under strict.
        r#"{"kind":"sell","sku":"A","qty":4,"id":"d3"}"#,
        r#"{"kind":"receive","sku":"NEW","qty":5,"id":"d4"}"#,
        // Known only because d4 comes first.
        r#"{"kind":"sell","sku":"NEW","qty":2,"id":"d5"}"#,
        r#"{"kind":"receive","sku":"A","qty":10,"id":"r1"}"#,
        r#"{"kind":"sell","sku":"A","qty":1,"id":"r1"}"#,
        r#"{"kind":"sell","sku":"A","qty":4,"id":"d1"}"#,
        r#"{"kind":"sell","sku":"A","qty":5,"id":"d2"}"#,
    ];
    let file = tmp.path().join("day.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let state = |dir: &Path| {
        let h = run(dir, ["history", "A", "--json"]);
        (stock(dir), h.stdout)
    };
    let before = state(&dir);
    let (out, dry) = import(&dir, &file, &["--dry-run"]);
    assert_eq!(out.status.code(), Some(2), "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(counts(&dry), [9, 4, 2, 3], "{dry}");
    let lines_of = |r: &Value| -> Vec<u64> {
        r["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["line"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(lines_of(&dry), [3, 7, 9], "{dry}");
    assert_eq!(state(&dir), before, "the dry run changed the node");
    // The real import then does exactly what the dry run said.
    let (out, real) = import(&dir, &file, &[]);
    assert_eq!(out.status.code(), Some(2), "{real}");
    assert_eq!(real["dry_run"], false);
    assert_eq!(counts(&real), counts(&dry), "{real}");
    assert_eq!(lines_of(&real), lines_of(&dry));
    let s = stock(&dir);
    assert_eq!(s[&("S1".into(), "A".into())].0, 2);
    assert_eq!(s[&("S1".into(), "NEW".into())].0, 3);
}

fn import_stdin(dir: &Path, input: &str, extra: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(dir)
        .args(["import", "-", "--json"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn standard_input_in_either_format() {
    let (_t, dir) = common::node_with(&[]);
    let (first, second) = MIXED.split_at(7);
    // JSON lines, recognised by their first character.
    let out = import_stdin(&dir, &jsonl(first), &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counts(&r), [7, 7, 0, 0], "{r}");
    // CSV, recognised by its header; then named with --format.
    let out = import_stdin(&dir, &csv(second), &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = import_stdin(&dir, &csv(MIXED), &["--format", "csv"]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = MIXED.len() as u64;
    assert_eq!(counts(&r), [n, 0, n, 0], "{r}");
    assert_eq!(stock(&dir), expected(MIXED));
    // --format overrides what the first line suggests.
    let out = import_stdin(&dir, &jsonl(first), &["--format", "csv"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_bad_csv_header_imports_nothing() {
    let (tmp, dir) = common::node_with(&[&["receive", "A", "10", "--id", "r1"]]);
    let before = stock(&dir);
    for (header, needle) in [
        ("kind,sku,qty,id,colour", "unknown column \"colour\""),
        ("kind,sku,qty", "no id column"),
        ("kind,sku,qty,id,sku", "appears twice"),
    ] {
        let file = tmp.path().join("h.csv");
        std::fs::write(&file, format!("{header}\nsell,A,1,x1\n")).unwrap();
        let out = run(&dir, [Path::new("import"), &file]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{header}: {err}");
        assert!(err.contains(needle), "{header}: {err}");
        assert_eq!(stock(&dir), before);
    }
    let out = run(&dir, ["import", "no-such-file.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
}
