//! The Python POS client (`examples/pos_client.py`) against a real daemon:
//! sales, stock, a refused oversell, bad input, a daemon that is down, and a
//! sale whose first answer is lost, retried with the same idempotency key and
//! applied once. Skipped, with a message, when `python3` is not on PATH.

#[allow(dead_code)]
#[path = "daemon_api/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::{fresh, history_ids, on_hand, Daemon};
use serde_json::Value;

/// The client under test.
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pos_client.py");

fn python_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `python3 pos_client.py --data DIR ARGS...`.
fn pos(dir: &Path, args: &[&str]) -> Output {
    Command::new("python3")
        .arg(CLIENT)
        .arg("--data")
        .arg(dir)
        .args(args)
        .output()
        .expect("run python3")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A loopback TCP proxy to `upstream` that forwards the first connection's
/// request but withholds the answer (the client sees a timeout); later
/// connections pass both ways. Records what it withheld.
struct LossyProxy {
    addr: SocketAddr,
    withheld: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
}

impl LossyProxy {
    fn start(upstream: SocketAddr) -> LossyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let withheld = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0usize));
        let (w, c) = (withheld.clone(), connections.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let n = {
                    let mut c = c.lock().unwrap();
                    *c += 1;
                    *c
                };
                let w = w.clone();
                std::thread::spawn(move || relay(client, upstream, n == 1, &w));
            }
        });
        LossyProxy {
            addr,
            withheld,
            connections,
        }
    }
}

/// Relays one connection; with `withhold`, the answer is read and kept, never sent.
fn relay(client: TcpStream, upstream: SocketAddr, withhold: bool, withheld: &Mutex<Vec<u8>>) {
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    let (mut from_client, mut to_server) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    // Client → server until the client closes (after its timeout, when withholding).
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let mut answer = Vec::new();
    let _ = server.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = server.read_to_end(&mut answer);
    if withhold {
        withheld.lock().unwrap().extend_from_slice(&answer);
    } else {
        let mut client = client;
        let _ = client.write_all(&answer);
        let _ = client.shutdown(Shutdown::Both);
    }
    let _ = up.join();
}

#[test]
fn the_python_pos_sells_reads_stock_is_refused_and_retries_with_the_same_key() {
    if !python_available() {
        println!("skipped: python3 not found");
        return;
    }
    let (_t, dir) = fresh();
    let d = Daemon::start(&dir);
    let (s, b) = d.post(r#"{"kind":"receive","sku":"A","qty":10,"id":"rcv-1"}"#);
    assert_eq!(s, 201, "{b}");

    // A sale: exit 0, first time.
    let out = pos(&dir, &["sell", "A", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.starts_with("sold: 3 x A"), "{said}");
    assert!(said.contains("on hand 7"), "{said}");
    assert_eq!(on_hand(&d.stock("A")), 7);

    // Stock through the client, as JSON and as lines.
    let out = pos(&dir, &["--json", "stock", "A"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).expect("stock JSON");
    assert_eq!(rows, d.stock("A"));
    assert_eq!(on_hand(&rows), 7);
    let out = pos(&dir, &["stock"]);
    assert!(
        text(&out.stdout).contains("on hand      7"),
        "{}",
        text(&out.stdout)
    );
    let out = pos(&dir, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("node till-1 (till) at S1"));

    // An oversell is refused by the escrow rule: exit 3, nothing changes.
    let out = pos(&dir, &["sell", "A", "8"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.starts_with("refused: insufficient rights"), "{err}");
    assert!(err.contains("7 available, 8 requested"), "{err}");
    // Bad input: exit 2, with the daemon's reason or the client's own.
    for (args, says) in [
        (&["sell", "NEVER", "1"][..], "bad input: unknown SKU"),
        (&["sell", "BAD SKU", "1"][..], "bad input:"),
        (&["sell", "A", "0"][..], "must be above zero"),
        (&["sell", "A", "two"][..], "not a whole number"),
    ] {
        let out = pos(&dir, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // The same id again for another sale is bad input, not a replay.
    let first = history_ids(&dir, "A")[1].clone();
    let out = pos(&dir, &["sell", "A", "1", "--id", &first]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(on_hand(&d.stock("A")), 7);

    // The first answer is lost: the client times out, retries with the same
    // key, and gets the replay of the sale the daemon already applied.
    let upstream: SocketAddr = d.base.trim_start_matches("http://").parse().unwrap();
    let proxy = LossyProxy::start(upstream);
    let api = format!("http://{}", proxy.addr);
    let out = pos(
        &dir,
        &["--api", &api, "--timeout", "1", "--json", "sell", "A", "2"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("sale JSON");
    let withheld = text(&proxy.withheld.lock().unwrap());
    assert!(
        withheld.starts_with("HTTP/1.1 201"),
        "the first attempt was applied: {withheld}"
    );
    assert_eq!(*proxy.connections.lock().unwrap(), 2, "one retry");
    assert!(
        text(&out.stderr).contains("retrying"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(answer["replayed"], true, "{answer}");
    assert_eq!(answer["on_hand_after"], 5, "{answer}");
    let id = answer["id"].as_str().expect("id");
    let ids = history_ids(&dir, "A");
    assert_eq!(ids.iter().filter(|i| *i == id).count(), 1, "{ids:?}");
    assert_eq!(ids.len(), 3, "receipt and two sales: {ids:?}");
    assert_eq!(on_hand(&d.stock("A")), 5, "applied once");

    // Nobody answering: bounded retries, exit 4, the id to retry with.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = pos(
        &dir,
        &[
            "--api",
            &dead,
            "--attempts",
            "2",
            "sell",
            "A",
            "1",
            "--id",
            "pos-x",
        ],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("daemon unreachable"), "{err}");
    assert!(err.contains("retry with --id pos-x"), "{err}");
    // The daemon stopped: its runtime file is gone and the client says so.
    assert_eq!(d.terminate(), Some(0));
    let out = pos(&dir, &["status"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("no daemon runs"),
        "{}",
        text(&out.stderr)
    );
}
