//! The node daemon and its HTTP/JSON API, run as the real binary: events,
//! stock, auth, bad bodies, idempotency, the command line through the daemon,
//! SIGTERM under load, the OpenAPI document.

mod harness;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harness::{cli, fresh, history_ids, on_hand, Daemon, DEADLINE};
use serde_json::Value;

fn receive(d: &Daemon, qty: u64) {
    let (s, b) = d.post(&format!(
        r#"{{"kind":"receive","sku":"A","qty":{qty},"id":"rcv-{qty}"}}"#
    ));
    assert_eq!(s, 201, "{b}");
}

#[test]
fn a_receipt_and_a_sale_with_the_token_then_stock() {
    let (_t, dir) = fresh();
    let d = Daemon::start(&dir);
    receive(&d, 10);
    let (s, sale) = d.post(r#"{"kind":"sell","sku":"A","qty":"3","id":"sale-1","ref":"R-1"}"#);
    assert_eq!(s, 201, "{sale}");
    assert_eq!(sale["kind"], "sale");
    assert_eq!(sale["replayed"], false);
    assert_eq!(
        (
            sale["rights_after"].as_i64(),
            sale["on_hand_after"].as_i64()
        ),
        (Some(7), Some(7))
    );
    let api_rows = d.stock("A");
    assert_eq!(on_hand(&api_rows), 7);
    let (s, all) = d.get("/v1/stock", Some(&d.token));
    assert_eq!((s, &all), (200, &api_rows));
    // A SKU never seen: no rows, as `stock X --json` prints; a bad name: 422.
    assert_eq!(d.stock("NEVER"), Value::Array(vec![]));
    assert_eq!(d.get("/v1/stock/BAD%20SKU", Some(&d.token)).0, 422);
    assert_eq!(d.terminate(), Some(0));
    // The same JSON as the direct `stock --json`.
    let out = cli(&dir, &["stock", "--json"]);
    let direct: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(direct, api_rows);
    assert!(
        !dir.join("daemon.json").exists(),
        "runtime file removed at shutdown"
    );
}

#[test]
fn without_the_right_token_401_and_nothing_applied() {
    let (_t, dir) = fresh();
    let d = Daemon::start(&dir);
    receive(&d, 10);
    let mut wrong = d.token.clone().into_bytes();
    wrong[10] = if wrong[10] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    let sale = r#"{"kind":"sell","sku":"A","qty":1,"id":"no-auth"}"#;
    for token in [None, Some(wrong.as_str()), Some(""), Some(&d.token[..63])] {
        let (s, b) = d.post_with(sale, token);
        assert_eq!(s, 401, "{token:?}: {b}");
        assert_eq!(b["error"]["code"], "unauthorized");
        assert_eq!(d.get("/v1/stock", token).0, 401);
        assert_eq!(d.get("/v1/status", token).0, 401);
    }
    assert_eq!(d.get("/v1/health", None).0, 200);
    assert_eq!(d.get("/openapi.json", None).0, 200);
    assert_eq!(on_hand(&d.stock("A")), 10);
    assert!(!history_ids(&dir, "A").contains(&"no-auth".to_string()));
}

#[test]
fn malformed_and_oversize_bodies_are_refused_and_change_nothing() {
    let (_t, dir) = fresh();
    let d = Daemon::start(&dir);
    receive(&d, 10);
    let cases: [(&str, u16, &str); 7] = [
        (
            r#"{"kind":"sell","sku":"A","qty":1,"id":"m1""#,
            400,
            "malformed_request",
        ),
        ("not json", 400, "malformed_request"),
        (
            r#"{"kind":"sell","sku":"A","qty":1,"id":"m2","bogus":1}"#,
            400,
            "malformed_request",
        ),
        (r#"{"kind":"sell","sku":"A","qty":1}"#, 422, "missing_field"),
        (
            r#"{"kind":"sell","sku":"A","qty":0,"id":"m3"}"#,
            422,
            "invalid_input",
        ),
        (
            r#"{"kind":"sell","sku":"B","qty":1,"id":"m4"}"#,
            422,
            "unknown_sku",
        ),
        (
            r#"{"kind":"sell","sku":"A","qty":1,"id":"m5","reason":"x"}"#,
            422,
            "field_not_applicable",
        ),
    ];
    for (body, status, code) in cases {
        let (s, b) = d.post(body);
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {b}"
        );
    }
    let big = format!(
        r#"{{"kind":"sell","sku":"A","qty":1,"id":"big","ref":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let (s, b) = d.post(&big);
    assert_eq!(s, 413, "{b}");
    assert_eq!(b["error"]["code"], "payload_too_large");
    assert_eq!(on_hand(&d.stock("A")), 10);
    assert_eq!(history_ids(&dir, "A"), ["rcv-10"]);
}

#[test]
fn the_same_idempotency_key_twice_is_applied_once() {
    let (_t, dir) = fresh();
    let d = Daemon::start(&dir);
    receive(&d, 10);
    let body = r#"{"kind":"sell","sku":"A","qty":2,"id":"once"}"#;
    let (s1, first) = d.post(body);
    let (s2, again) = d.post(body);
    assert_eq!((s1, s2), (201, 200), "{first} {again}");
    assert_eq!(again["replayed"], true);
    let mut same = again.clone();
    same["replayed"] = Value::Bool(false);
    assert_eq!(same, first, "the retry answers the first result");
    assert_eq!(on_hand(&d.stock("A")), 8);
    let ids = history_ids(&dir, "A");
    assert_eq!(ids.iter().filter(|i| *i == "once").count(), 1, "{ids:?}");
    // The id reused for a different event: refused, nothing changed.
    let (s, b) = d.post(r#"{"kind":"sell","sku":"A","qty":3,"id":"once"}"#);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (409, Some("duplicate_event_id"))
    );
    assert_eq!(on_hand(&d.stock("A")), 8);
}

#[test]
fn the_command_line_goes_through_a_running_daemon_with_the_same_answers() {
    let (_t, dir) = fresh();
    let d = Daemon::start(&dir);
    receive(&d, 5);
    // The directory is locked by the daemon: success can only come through the API.
    let out = cli(&dir, &["sell", "A", "2", "--id", "c1", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sold: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (sold["id"].as_str(), sold["on_hand_after"].as_i64()),
        (Some("c1"), Some(3))
    );
    let generated = cli(&dir, &["sell", "A", "1", "--json"]);
    assert!(generated.status.success());
    let g: Value = serde_json::from_slice(&generated.stdout).unwrap();
    assert!(g["id"].as_str().unwrap().starts_with("gen-"), "{g}");
    let refusals: [(&[&str], i32); 3] = [
        (&["sell", "A", "99"], 3),
        (&["sell", "NOPE", "1"], 2),
        (&["sell", "A", "0"], 2),
    ];
    let through: Vec<_> = refusals.iter().map(|(a, _)| cli(&dir, a)).collect();
    let status = cli(&dir, &["status", "--json"]);
    let st: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(st["running"], true);
    assert_eq!(st["node"]["name"], "till-1");
    assert!(st["sync"]["peers"].is_array() && st["peers"].is_array());
    assert_eq!(on_hand(&d.stock("A")), 2);
    let stock = cli(&dir, &["stock", "A", "--json"]);
    assert!(stock.status.success());
    let rows: Value = serde_json::from_slice(&stock.stdout).unwrap();
    assert_eq!(rows, d.stock("A"));
    assert_eq!(cli(&dir, &["stock", "BAD SKU"]).status.code(), Some(2));
    assert_eq!(d.terminate(), Some(0));
    for ((args, code), via) in refusals.iter().zip(through) {
        let direct = cli(&dir, args);
        assert_eq!(via.status.code(), Some(*code), "{args:?} via the daemon");
        assert_eq!(direct.status.code(), Some(*code), "{args:?} directly");
        assert_eq!(
            String::from_utf8_lossy(&via.stderr),
            String::from_utf8_lossy(&direct.stderr),
            "{args:?}"
        );
    }
    let status = cli(&dir, &["status", "--json"]);
    let st: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (st["running"].as_bool(), st["daemon"].is_null()),
        (Some(false), true)
    );
}

#[test]
fn a_stale_runtime_file_does_not_break_the_command_line() {
    let (_t, dir) = fresh();
    let d = Daemon::start(&dir);
    receive(&d, 5);
    let stale = std::fs::read(dir.join("daemon.json")).unwrap();
    drop(d); // SIGKILL: the runtime file stays behind.
    std::fs::write(dir.join("daemon.json"), &stale).unwrap();
    let out = cli(&dir, &["sell", "A", "1", "--id", "after"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !dir.join("daemon.json").exists(),
        "the stale file is removed"
    );
    let out = cli(&dir, &["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("daemon: not running"));
}

#[test]
fn a_second_daemon_and_a_remote_api_are_refused() {
    let (_t, dir) = fresh();
    let _d = Daemon::start(&dir);
    let second = cli(&dir, &["node", "--api", "127.0.0.1:0"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use"));
    let remote = cli(&dir, &["node", "--api", "0.0.0.0:0"]);
    assert_eq!(remote.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&remote.stderr).contains("allow_remote"));
    let config = dir.with_extension("toml");
    std::fs::write(&config, "[api]\nadress = \"127.0.0.1:0\"\n").unwrap();
    let typo = cli(&dir, &["node", "--config", config.to_str().unwrap()]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&typo.stderr).contains("adress"));
}

#[test]
fn ctrl_c_shuts_down_cleanly_and_the_token_is_kept() {
    let (_t, dir) = fresh();
    let mut d = Daemon::start(&dir);
    receive(&d, 5);
    let token = d.token.clone();
    let pid = d.child.id().to_string();
    let int = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status();
    assert!(int.unwrap().success());
    assert_eq!(d.wait(), Some(0), "{}", d.log());
    assert!(!dir.join("daemon.json").exists());
    let again = Daemon::start(&dir);
    assert_eq!(again.token, token, "the token survives a restart");
    assert_eq!(on_hand(&again.stock("A")), 5);
}

#[test]
fn sigterm_under_load_loses_no_acknowledged_sale_and_doubles_none() {
    let (_t, dir) = fresh();
    let d = Daemon::start(&dir);
    receive(&d, 100_000);
    let answered = AtomicUsize::new(0);
    let acked: Vec<Vec<String>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|t| {
                let (d, answered) = (&d, &answered);
                s.spawn(move || {
                    let mut ok = Vec::new();
                    let end = Instant::now() + DEADLINE;
                    for i in 0.. {
                        if Instant::now() > end {
                            break;
                        }
                        let id = format!("t{t}-{i}");
                        let body = format!(r#"{{"kind":"sell","sku":"A","qty":1,"id":"{id}"}}"#);
                        match d.try_post(&body) {
                            Some(200 | 201) => {
                                ok.push(id);
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(s) => panic!("sale {id}: status {s}"),
                            None => break, // the daemon stopped accepting
                        }
                    }
                    ok
                })
            })
            .collect();
        let end = Instant::now() + DEADLINE;
        while answered.load(Ordering::Relaxed) < 200 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        let pid = d.child.id().to_string();
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        assert!(kill.unwrap().success());
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut d = d;
    assert_eq!(d.wait(), Some(0), "{}", d.log());
    assert!(!dir.join("daemon.json").exists());
    let acked: Vec<String> = acked.into_iter().flatten().collect();
    assert!(acked.len() >= 200, "{} sales answered", acked.len());
    let d = Daemon::start(&dir);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in history_ids(&dir, "A") {
        *seen.entry(id).or_default() += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "an event recorded twice");
    for id in &acked {
        assert_eq!(seen.get(id), Some(&1), "acknowledged sale {id} lost");
    }
    let sales = seen.len() as i64 - 1;
    assert_eq!(on_hand(&d.stock("A")), 100_000 - sales);
    // In-flight requests were let finish: every sale applied was also answered.
    assert_eq!(
        sales as usize,
        acked.len(),
        "a sale applied but never answered"
    );
    eprintln!("{} sales answered before SIGTERM took effect", acked.len());
}

#[test]
fn the_openapi_document_lists_every_route_and_each_answers() {
    let (_t, dir) = fresh();
    let d = Daemon::start(&dir);
    receive(&d, 5);
    let (s, doc) = d.get("/openapi.json", None);
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let served = [
        ("post", "/v1/events"),
        ("get", "/v1/stock"),
        ("get", "/v1/stock/{sku}"),
        ("get", "/v1/status"),
        ("get", "/v1/health"),
        ("get", "/openapi.json"),
    ];
    for (method, path) in served {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} undocumented"
        );
    }
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path.replace("{sku}", "A");
            if method == "get" && (path == "/" || path.starts_with("/v1/hub/")) {
                // A hub's routes (tests/dashboard_browser.rs); this node is a till.
                let (s, b) = d.get(&concrete, Some(&d.token));
                assert_eq!(
                    (s, &b["error"]["code"]),
                    (409, &serde_json::json!("not_a_hub")),
                    "{path}"
                );
                continue;
            }
            let (s, b) = match method.as_str() {
                "get" => d.get(&concrete, Some(&d.token)),
                "post" => d.post(r#"{"kind":"receive","sku":"A","qty":1,"id":"doc"}"#),
                m => panic!("unexpected method {m}"),
            };
            assert!((200..300).contains(&s), "{method} {path}: {s} {b}");
        }
    }
    assert_eq!(d.get("/v1/nothing", Some(&d.token)).0, 404);
}

#[test]
fn allocate_goes_through_the_daemon_and_names_receivers_not_in_the_roster() {
    let (_t, dir) = fresh();
    let config = dir.with_extension("toml");
    std::fs::write(
        &config,
        "[rebalance]\nreserve = [{ location = \"S1\", units = 4 }]\n\
         allocate = [{ node = \"web\", location = \"S1\", share = 1, target = 5 }]\n",
    )
    .unwrap();
    let d = Daemon::start_with(&dir, &["--config", config.to_str().unwrap()]);
    // A receipt at the node's own location is allocated; no receiver is
    // enrolled, so nothing moves.
    receive(&d, 10);
    let out = cli(
        &dir,
        &["--json", "allocate", "--location", "S1", "--dry-run"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["dry_run"], true);
    assert_eq!(r["unknown_receivers"], serde_json::json!(["web"]));
    assert_eq!(r["allocated"], 0);
    assert_eq!(on_hand(&d.stock("A")), 10);
    // A bad location is refused with a usage error and changes nothing.
    let out = cli(&dir, &["allocate", "--location", "BAD LOC"]);
    assert!(!out.status.success());
    assert_eq!(d.terminate(), Some(0));
    // Without the daemon the command says it needs it.
    let out = cli(&dir, &["allocate", "--location", "S1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("daemon"));
}
