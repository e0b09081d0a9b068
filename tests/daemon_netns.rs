//! `stocksync node` daemons in network namespaces (gated: `STOCKSYNC_NETNS=1`
//! and root; otherwise it prints why and passes).
//!
//! A hub and two tills of one fleet, enrolled from one directory tree, each
//! daemon in its own namespace on the harness's bridge (tests/netns), with no
//! static peers: every daemon runs mDNS on `lan0` only. The parent never
//! starts mDNS; it drives each daemon with the command line run inside the
//! daemon's namespace (the API is on that namespace's loopback).
//!
//! 1. The hub's port is cut (nft): the two tills find each other by mDNS and
//!    a sale at till-1 reaches till-2 over QUIC (time printed, not asserted).
//! 2. Healed: the hub gets everything.
//! 3. A daemon of another fleet in a fourth namespace, announcing by mDNS and
//!    dialling till-1 directly: its records are ignored (other fleet) and its
//!    handshake refused.
//!
//! ```sh
//! sudo STOCKSYNC_NETNS=1 cargo test --test daemon_netns -- --nocapture
//! ```

mod netns;
#[allow(dead_code)]
#[path = "daemon_net/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use netns::{Host, Lan};
use serde_json::{json, Value};
use support::{p, Fleet, BIN};

/// The transport's port in every namespace.
const PORT: u16 = 7401;
/// How long anything awaited may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// A daemon in a namespace; killed on drop.
struct NsDaemon<'a> {
    lan: &'a Lan,
    host: Host,
    dir: PathBuf,
    child: Child,
}

impl<'a> NsDaemon<'a> {
    /// Starts `stocksync node` on `dir` in `host`'s namespace, mDNS on lan0, dialling `peers`.
    fn start(lan: &'a Lan, host: &Host, dir: &Path, peers: &[String]) -> Self {
        let cfg = dir.with_extension("toml");
        let text = format!(
            "[api]\naddress = \"127.0.0.1:7480\"\n[network]\nlisten = \"0.0.0.0:{PORT}\"\n\
             peers = {}\nmdns = true\nmdns_interfaces = [\"lan0\"]\n",
            json!(peers)
        );
        std::fs::write(&cfg, text).expect("config");
        let log = std::fs::File::create(dir.with_extension("log")).expect("log");
        let child = lan
            .command(host, Path::new(BIN))
            .args(["--data", p(dir), "node", "--config", p(&cfg)])
            .env("STOCKSYNC_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        let d = NsDaemon {
            lan,
            host: host.clone(),
            dir: dir.to_path_buf(),
            child,
        };
        d.wait("the daemon answers", |d| d.status()["running"] == true);
        d
    }

    /// SIGTERM (a graceful stop: mDNS goodbyes, links closed) and waits for the exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let end = Instant::now() + DEADLINE;
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < end, "daemon did not exit: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `stocksync --data DIR ARGS...` inside the namespace (through the daemon's API).
    fn cli(&self, args: &[&str]) -> String {
        let out = self
            .lan
            .command(&self.host, Path::new(BIN))
            .args(["--data", p(&self.dir)])
            .args(args)
            .output()
            .expect("run stocksync");
        if out.status.success() {
            String::from_utf8_lossy(&out.stdout).into_owned()
        } else {
            String::new()
        }
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.cli(&["status", "--json"])).unwrap_or(Value::Null)
    }

    fn on_hand(&self, location: &str) -> i64 {
        let rows: Value = serde_json::from_str(&self.cli(&["--json", "stock", "TSHIRT-M"]))
            .unwrap_or(Value::Null);
        rows.as_array()
            .into_iter()
            .flatten()
            .find(|r| r["location"] == location)
            .and_then(|r| r["on_hand"].as_i64())
            .unwrap_or(0)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    fn wait(&self, what: &str, f: impl Fn(&Self) -> bool) {
        let end = Instant::now() + DEADLINE;
        while !f(self) {
            assert!(
                Instant::now() < end,
                "timed out waiting for: {what}\n{}\n{}",
                self.status(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The mDNS source's counters, per the status.
    fn mdns_stats(&self) -> Value {
        self.status()["network"]["discovery"]["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["source"] == "mdns")
            .cloned()
            .unwrap_or(Value::Null)
    }
}

impl Drop for NsDaemon<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connected(d: &NsDaemon, id: &str) -> bool {
    d.status()["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|x| x["connected"] == true && x["node_id"] == id)
}

fn node_id(dir: &Path) -> String {
    support::node_id(dir)
}

#[test]
fn daemons_in_namespaces_sync_by_mdns_and_refuse_another_fleet() {
    if !netns::enabled("daemons_in_namespaces_sync_by_mdns_and_refuse_another_fleet") {
        return;
    }
    if !netns::nft_available() {
        println!("skipped: nft missing (the hub's partition needs it)");
        return;
    }
    let begin = Instant::now();
    let fleet = Fleet::new("hub", "HQ");
    let (t1, t2) = (fleet.join("till-1", "S1"), fleet.join("till-2", "S2"));
    let (id1, id2) = (node_id(&t1), node_id(&t2));
    let mut lan = Lan::new().expect("switch namespace");
    let [hh, h1, h2, hx] = std::array::from_fn(|_| lan.add_host().expect("host namespace"));

    // 0. All up, all found by mDNS: the tills learn the fleet's roster (till-1
    //    was enrolled before till-2 and only knows it from the hub's roster).
    let hub = NsDaemon::start(&lan, &hh, &fleet.hub, &[]);
    let d1 = NsDaemon::start(&lan, &h1, &t1, &[]);
    let d2 = NsDaemon::start(&lan, &h2, &t2, &[]);
    for d in [&d1, &d2] {
        d.wait(
            "the till links to the hub and holds the whole roster",
            |d| d.status()["sync"]["roster_version"] == 3,
        );
    }
    d1.stop();
    d2.stop();

    // 1. The hub's port is cut; the tills restart and have only each other.
    assert!(lan.partition(&hh).expect("partition"));
    let t0 = Instant::now();
    let d1 = NsDaemon::start(&lan, &h1, &t1, &[]);
    let d2 = NsDaemon::start(&lan, &h2, &t2, &[]);
    d1.cli(&["receive", "TSHIRT-M", "10", "--id", "r1"]);
    d1.cli(&["sell", "TSHIRT-M", "1", "--id", "s1"]);
    d1.wait("till-1 has its own sale", |d| d.on_hand("S1") == 9);
    d2.wait("till-2 connects to till-1 (found by mDNS)", |d| {
        connected(d, &id1)
    });
    let found = t0.elapsed();
    d2.wait("till-2 sees till-1's sale", |d| d.on_hand("S1") == 9);
    let synced = t0.elapsed();
    println!(
        "{}",
        json!({"MEASURED_tills_start_to_mdns_link_ms": found.as_millis() as u64,
               "MEASURED_tills_start_to_sale_at_peer_ms": synced.as_millis() as u64,
               "note": "both till daemons started with no peers, hub cut off; clock from the first till's spawn"})
    );
    // One till found the other by mDNS and dialled it (the other accepted).
    let lists = |d: &NsDaemon, id: &str| {
        d.status()["network"]["discovery"]["found"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x["key"] == id))
    };
    assert!(
        lists(&d1, &id2) || lists(&d2, &id1),
        "a till's discovery lists the other: {} {}",
        d1.status()["network"]["discovery"],
        d2.status()["network"]["discovery"]
    );
    assert!(
        !connected(&hub, &id1),
        "the hub is cut off: {}",
        hub.status()
    );

    // 2. Healed: the hub finds both tills and gets everything.
    lan.heal(&hh).expect("heal");
    hub.wait("the hub gets till-1's sale", |d| d.on_hand("S1") == 9);
    hub.wait("the hub links to both tills", |d| {
        connected(d, &id1) && connected(d, &id2)
    });

    // 3. Another fleet's node on the LAN: announced by mDNS, dialling till-1.
    let other = Fleet::new("intruder", "X");
    let till1_addr = format!("{}:{PORT}", h1.ip);
    let intruder = NsDaemon::start(&lan, &hx, &other.hub, std::slice::from_ref(&till1_addr));
    d1.wait("till-1 ignores the other fleet's mDNS record", |d| {
        d.mdns_stats()["ignored_other_fleet"]
            .as_u64()
            .is_some_and(|n| n > 0)
    });
    // Dialled directly, the handshake fails: the intruder (the TLS client)
    // finds till-1's certificate is not of its fleet and aborts, and till-1
    // would refuse the intruder's certificate the same way.
    let dialled = |d: &NsDaemon| -> Value {
        d.status()["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["address"] == till1_addr.as_str())
            .cloned()
            .unwrap_or(Value::Null)
    };
    intruder.wait(
        "the intruder's direct dial of till-1 fails at the handshake",
        |d| {
            dialled(d)["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("certificate"))
        },
    );
    println!("intruder -> till-1: {}", dialled(&intruder)["last_error"]);
    let hx_ip = hx.ip.to_string();
    let refusals: Vec<Value> = d1.status()["network"]["refusals"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    println!(
        "till-1's refusals from the intruder's address: {}",
        refusals
            .iter()
            .filter(|r| r["address"].as_str().is_some_and(|a| a.starts_with(&hx_ip)))
            .count()
    );
    let intruder_id = node_id(&other.hub);
    assert!(!connected(&d1, &intruder_id));
    assert!(!connected(&intruder, &id1), "{}", intruder.status());
    assert_eq!(dialled(&intruder)["connected"], false);
    assert_eq!(d1.on_hand("X"), 0);
    println!(
        "daemon_netns: total {} ms",
        begin.elapsed().as_millis() as u64
    );
}
