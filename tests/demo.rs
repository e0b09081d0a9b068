//! `stocksync demo`: the fleet demo runs its whole day and its check passes
//! (exit 0, the check line printed); with `--keep-running` it serves the
//! hub's HTTP API at the address it prints until it is stopped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_stocksync");
/// Longest the demo may take here before the test gives up (it takes seconds).
const DEADLINE: Duration = Duration::from_secs(180);

/// A plain HTTP/1.1 GET on loopback: the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read the answer");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

/// Kills the demo if the test fails before stopping it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn the_demo_plays_the_day_and_its_check_passes() {
    let t0 = Instant::now();
    let out = Command::new(BIN)
        .arg("demo")
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("demo took {:.1} s", t0.elapsed().as_secs_f64());
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
    assert!(
        last.is_some_and(|l| l.starts_with("check: PASSED")),
        "{stdout}\n{stderr}"
    );
    for act in [
        "loses its internet link",
        "LAN rebalance",
        "refused:",
        "internet link is back",
        "transfers between the stores",
        "webhook receiver goes down",
        "restored from the morning's backup",
        "recovering own history",
    ] {
        assert!(stdout.contains(act), "no `{act}` in:\n{stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn keep_running_serves_the_hubs_api_until_stopped() {
    let mut running = Running(
        Command::new(BIN)
            .args(["demo", "--keep-running"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the demo"),
    );
    let child = &mut running.0;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let t0 = Instant::now();
    let mut seen = Vec::new();
    let addr: SocketAddr = loop {
        let left = DEADLINE.saturating_sub(t0.elapsed());
        let line = match rx.recv_timeout(left) {
            Ok(l) => l,
            Err(_) => panic!("no address printed:\n{}", seen.join("\n")),
        };
        if let Some(rest) = line.split("the hub's API: http://").nth(1) {
            break rest.trim().parse().expect("an address");
        }
        seen.push(line);
    };
    assert!(
        seen.iter().any(|l| l.starts_with("check: PASSED")),
        "{}",
        seen.join("\n")
    );
    assert!(addr.ip().is_loopback());
    let (status, body) = get(addr, "/v1/health");
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(addr, "/openapi.json");
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(doc["paths"]["/v1/health"].is_object(), "{doc}");
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    let t1 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(30),
            "the demo did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
