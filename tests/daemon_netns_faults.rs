//! Faults over real daemons in network namespaces (gated: `STOCKSYNC_NETNS=1`
//! and root, with `nft`; otherwise it prints why and passes).
//!
//! A hub (HQ) and three tills, each `stocksync node` in its own namespace on
//! the harness's bridge (tests/netns): till-a and till-b are store S1's LAN
//! (mDNS on `lan0` only, and the hub's address), till-c is store S2 (the
//! hub's address, no mDNS). The test keeps the ground truth: every receipt
//! and every acknowledged sale (its answer), the refusals and the deficits
//! recorded.
//!
//! 1. Connected: receipts and sales at every till.
//! 2. Store S1 cut off from the hub and store S2 (one nft table in the switch
//!    namespace). Offline, till-a sells under `strict` until refused (each
//!    refusal counted) and till-b under `record` beyond its rights (deficits);
//!    their sales still reach each other over the store LAN, not the hub;
//!    till-c keeps selling with the hub. Mid-sales, till-a's daemon is killed
//!    (SIGKILL) while a seller thread posts; it is restarted (still cut off) and
//!    the sale whose answer was lost is retried with the same id.
//! 3. Healed: every node's stock equals the ground truth (on hand and
//!    deficits per pool), every acknowledged sale is in its till's journal
//!    once (its id answers `replayed` with the first answer), till-a sold
//!    exactly its rights under `strict`, on hand is never below minus the
//!    recorded deficits (checked at every node, also during the partition),
//!    and `verify` passes on every directory.
//!
//! Delay is not injected: `tc netem` is absent from this kernel and no
//! NFQUEUE crate is in the build; delay, duplication and reordering are left
//! to the simulator (`tests/sim.rs`) and to the loopback UDP-proxy test.
//!
//! ```sh
//! sudo STOCKSYNC_NETNS=1 cargo test --test daemon_netns_faults -- --nocapture
//! ```

mod netns;
#[allow(dead_code)]
#[path = "daemon_net/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use netns::{Host, Lan};
use serde_json::{json, Value};
use support::{p, Fleet, BIN};

/// The transport's port in every namespace.
const PORT: u16 = 7401;
/// How long anything awaited may take.
const DEADLINE: Duration = Duration::from_secs(20);
/// The one SKU.
const SKU: &str = "TSHIRT-M";

/// What one sale posted through the command line came to.
#[derive(Debug)]
enum Outcome {
    /// Acknowledged (new or replayed): the answer.
    Acked(Value),
    /// Refused by the escrow rule (exit code 3).
    Refused,
    /// No answer (the daemon died mid-request): unknown until retried.
    Unknown(String),
}

/// Where a node's directory is and which namespace it runs in.
#[derive(Clone)]
struct Place<'a> {
    lan: &'a Lan,
    host: Host,
    dir: PathBuf,
}

impl Place<'_> {
    /// `stocksync --data DIR ARGS...` inside the namespace: (exit code, stdout, stderr).
    fn cli(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self
            .lan
            .command(&self.host, Path::new(BIN))
            .args(["--data", p(&self.dir)])
            .args(args)
            .output()
            .expect("run stocksync");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Posts one sale of one unit (through the daemon when one runs).
    fn sell(&self, id: &str, policy: &str) -> Outcome {
        let (code, out, err) =
            self.cli(&["--json", "sell", SKU, "1", "--id", id, "--policy", policy]);
        match code {
            Some(0) => Outcome::Acked(serde_json::from_str(&out).expect("answer JSON")),
            Some(3) => Outcome::Refused,
            _ => Outcome::Unknown(format!("{code:?}: {out}{err}")),
        }
    }

    fn receive(&self, qty: u64, id: &str) -> Value {
        let (code, out, err) = self.cli(&["--json", "receive", SKU, &qty.to_string(), "--id", id]);
        assert_eq!(code, Some(0), "receive {id}: {out}{err}");
        serde_json::from_str(&out).expect("answer JSON")
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.cli(&["status", "--json"]).1).unwrap_or(Value::Null)
    }

    /// (on hand, deficit) per location.
    fn stock(&self) -> BTreeMap<String, (i64, i64)> {
        let rows: Value =
            serde_json::from_str(&self.cli(&["--json", "stock", SKU]).1).unwrap_or(Value::Null);
        rows.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some((
                    r["location"].as_str()?.to_string(),
                    (r["on_hand"].as_i64()?, r["deficit"].as_i64()?),
                ))
            })
            .collect()
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
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// A daemon in a namespace; killed on drop.
struct NsDaemon<'a> {
    at: Place<'a>,
    child: Child,
}

impl<'a> NsDaemon<'a> {
    /// Starts `stocksync node` for `at`, dialling `hub` (if any), mDNS on lan0 if `mdns`.
    fn start(at: &Place<'a>, hub: Option<&str>, mdns: bool) -> Self {
        let cfg = at.dir.with_extension("toml");
        let hub = hub.map(|h| format!("hub = \"{h}\"\n")).unwrap_or_default();
        // Rights stay where the receipts put them: the ground truth counts
        // each till's own rights (rights moving between tills is
        // tests/daemon_rebalance.rs's subject), so no pull and no borrow.
        let text = format!(
            "[api]\naddress = \"127.0.0.1:7480\"\n[network]\nlisten = \"0.0.0.0:{PORT}\"\n\
             {hub}mdns = {mdns}\nmdns_interfaces = [\"lan0\"]\n\
             [rebalance]\nauto_pull = false\nborrow_deadline_ms = 0\n"
        );
        std::fs::write(&cfg, text).expect("config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(at.dir.with_extension("log"))
            .expect("log");
        let child = at
            .lan
            .command(&at.host, Path::new(BIN))
            .args(["--data", p(&at.dir), "node", "--config", p(&cfg)])
            .env("STOCKSYNC_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        let d = NsDaemon {
            at: at.clone(),
            child,
        };
        at.wait("the daemon answers", |a| a.status()["running"] == true);
        d
    }

    /// SIGKILL, and waits for the process to be gone.
    fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }

    /// SIGTERM and waits (bounded) for a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                assert_eq!(s.code(), Some(0), "{}", self.at.log());
                return;
            }
            assert!(Instant::now() < end, "no exit: {}", self.at.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NsDaemon<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ground truth the test keeps.
#[derive(Default)]
struct Truth {
    /// Units received per location.
    received: BTreeMap<String, i64>,
    /// Acknowledged sales: (till index, id, location, first answer).
    acked: Vec<(usize, String, String, Value)>,
    /// Sales refused by the escrow rule.
    refused: usize,
}

impl Truth {
    fn ack(&mut self, till: usize, id: &str, location: &str, answer: Value) {
        assert!(
            !self.acked.iter().any(|(_, i, ..)| i == id),
            "{id} acknowledged twice by the test's own count"
        );
        self.acked
            .push((till, id.to_string(), location.to_string(), answer));
    }

    /// Records one outcome; `Unknown` ones are returned for a retry.
    fn record(&mut self, till: usize, id: &str, location: &str, o: Outcome) -> Option<String> {
        match o {
            Outcome::Acked(v) => self.ack(till, id, location, v),
            Outcome::Refused => self.refused += 1,
            Outcome::Unknown(why) => {
                println!("  {id}: no answer ({})", why.trim());
                return Some(id.to_string());
            }
        }
        None
    }

    /// (on hand, deficit) per location, as every node must end up seeing it.
    fn expected(&self) -> BTreeMap<String, (i64, i64)> {
        let mut m: BTreeMap<String, (i64, i64)> = self
            .received
            .iter()
            .map(|(l, q)| (l.clone(), (*q, 0)))
            .collect();
        for (_, _, loc, a) in &self.acked {
            let e = m.entry(loc.clone()).or_default();
            e.0 -= a["qty"].as_i64().expect("qty");
            e.1 += a["deficit_created"].as_i64().expect("deficit_created");
        }
        m
    }

    fn acked_at(&self, till: usize) -> usize {
        self.acked.iter().filter(|(t, ..)| *t == till).count()
    }
}

/// On hand never below minus the recorded deficits, at any pool `at` shows.
fn assert_floor(name: &str, stock: &BTreeMap<String, (i64, i64)>) {
    for (loc, (on_hand, deficit)) in stock {
        assert!(
            *on_hand >= -*deficit,
            "{name}: {loc} on hand {on_hand} below minus its deficits {deficit}"
        );
    }
}

fn connected(at: &Place, id: &str) -> bool {
    at.status()["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|x| x["connected"] == true && x["node_id"] == id)
}

#[test]
fn partitions_kill9_and_heal_converge_to_the_ground_truth() {
    let name = "partitions_kill9_and_heal_converge_to_the_ground_truth";
    if !netns::enabled(name) {
        return;
    }
    if !netns::nft_available() {
        println!("{name}: skipped (nft missing: the partition needs it)");
        return;
    }
    let begin = Instant::now();
    let fleet = Fleet::new("hub", "HQ");
    let dirs = [
        fleet.hub.clone(),
        fleet.join("till-a", "S1"),
        fleet.join("till-b", "S1"),
        fleet.join("till-c", "S2"),
    ];
    let ids: Vec<String> = dirs.iter().map(|d| support::node_id(d)).collect();
    let mut lan = Lan::new().expect("switch namespace");
    let hosts: Vec<Host> = (0..4)
        .map(|_| lan.add_host().expect("host namespace"))
        .collect();
    let at: Vec<Place> = (0..4)
        .map(|i| Place {
            lan: &lan,
            host: hosts[i].clone(),
            dir: dirs[i].clone(),
        })
        .collect();
    let (hub, a, b, c) = (0, 1, 2, 3);
    let hub_addr = format!("{}:{PORT}", hosts[hub].ip);
    let loc = ["HQ", "S1", "S1", "S2"];

    // 0. All up; every till holds the whole roster (version 4).
    let dh = NsDaemon::start(&at[hub], None, false);
    let mut da = Some(NsDaemon::start(&at[a], Some(&hub_addr), true));
    let db = NsDaemon::start(&at[b], Some(&hub_addr), true);
    let dc = NsDaemon::start(&at[c], Some(&hub_addr), false);
    for t in [a, b, c] {
        at[t].wait("the till holds the whole roster", |x| {
            x.status()["sync"]["roster_version"] == 4
        });
    }
    at[a].wait("till-a links to till-b (mDNS)", |x| connected(x, &ids[b]));

    // 1. Connected: receipts and sales everywhere.
    let mut truth = Truth::default();
    for (t, qty) in [(a, 20), (b, 5), (c, 10)] {
        at[t].receive(qty, &format!("rcv-{t}"));
        *truth.received.entry(loc[t].to_string()).or_default() += qty as i64;
    }
    for i in 0..3 {
        for (t, policy) in [(a, "strict"), (b, "strict"), (c, "strict")] {
            let id = format!("on-{t}-{i}");
            let o = at[t].sell(&id, policy);
            assert!(truth.record(t, &id, loc[t], o).is_none());
        }
    }
    at[hub].wait("the hub holds phase 1", |x| x.stock() == truth.expected());

    // 2. Store S1 cut off from the hub and store S2.
    assert!(lan
        .partition_groups(
            "store_cut",
            &[&hosts[a], &hosts[b]],
            &[&hosts[hub], &hosts[c]]
        )
        .expect("partition"));
    let hub_before = at[hub].stock();
    // till-b sells under `record` beyond its rights (2 left): deficits.
    for i in 0..6 {
        let id = format!("off-b-{i}");
        let o = at[b].sell(&id, "record");
        assert!(matches!(o, Outcome::Acked(_)), "{id}: {o:?}");
        truth.record(b, &id, "S1", o);
    }
    // till-c goes on with the hub.
    for i in 0..3 {
        let id = format!("off-c-{i}");
        let o = at[c].sell(&id, "strict");
        assert!(truth.record(c, &id, "S2", o).is_none());
    }
    // till-a sells under `strict` from a POS thread; its daemon is killed
    // after a few answers, while the thread keeps posting.
    let stop = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    let mut unknown = Vec::new();
    let seller = at[a].clone();
    let results = std::thread::scope(|s| {
        let pos = s.spawn(|| {
            let mut out = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let id = format!("off-a-{i}");
                let o = seller.sell(&id, "strict");
                let lost = matches!(o, Outcome::Unknown(_));
                out.push((id, o));
                answered.fetch_add(1, Ordering::SeqCst);
                if lost {
                    break;
                }
            }
            out
        });
        while answered.load(Ordering::SeqCst) < 4 && !pos.is_finished() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(d) = da.take() {
            d.kill9();
        }
        stop.store(true, Ordering::SeqCst);
        pos.join().expect("POS thread")
    });
    println!("till-a killed after {} posts", results.len());
    for (id, o) in results {
        unknown.extend(truth.record(a, &id, "S1", o));
    }
    // Restarted (still cut off): the lost answers are retried with their ids,
    // then it sells until the rule refuses it three times.
    let da = NsDaemon::start(&at[a], Some(&hub_addr), true);
    for id in &unknown {
        let o = at[a].sell(id, "strict");
        assert!(!matches!(o, Outcome::Unknown(_)), "{id}: {o:?}");
        truth.record(a, id, "S1", o);
    }
    let mut i = 100;
    let refused_before = truth.refused;
    while truth.refused < refused_before + 3 {
        let id = format!("off-a-{i}");
        let o = at[a].sell(&id, "strict");
        assert!(!matches!(o, Outcome::Unknown(_)), "{id}: {o:?}");
        truth.record(a, &id, "S1", o);
        i += 1;
        assert!(i < 200, "till-a was never refused");
    }
    // The store LAN still syncs (the restarted till-a finds till-b by mDNS);
    // the hub sees nothing of it.
    let s1 = |x: &Place| x.stock().get("S1").copied();
    let s1_truth = truth.expected().get("S1").copied();
    at[b].wait(
        "till-b gets till-a's offline sales over the store LAN",
        |x| s1(x) == s1_truth,
    );
    at[a].wait("till-a gets till-b's offline sales", |x| s1(x) == s1_truth);
    assert_eq!(
        at[hub].stock().get("S1"),
        hub_before.get("S1"),
        "the hub is cut off"
    );
    for t in [hub, a, b, c] {
        assert_floor(&format!("node {t} during the partition"), &at[t].stock());
    }

    // 3. Healed: convergence to the ground truth everywhere.
    lan.heal_groups("store_cut").expect("heal");
    let healed = Instant::now();
    let expected = truth.expected();
    for t in [hub, a, b, c] {
        at[t].wait("the node's stock equals the ground truth", |x| {
            x.stock() == expected
        });
    }
    let converged = healed.elapsed();
    // Exactly the rights under `strict`: 20 received at till-a, no grant.
    assert_eq!(truth.acked_at(a), 20, "till-a sold its rights, no more");
    assert!(truth.refused >= 3);
    let deficit_s1 = expected["S1"].1;
    assert!(
        deficit_s1 > 0,
        "till-b's record sales made deficits: {expected:?}"
    );
    for t in [hub, a, b, c] {
        let st = at[t].stock();
        assert_floor(&format!("node {t}"), &st);
        let status = at[t].status();
        assert!(
            status["sync"]["forks"]
                .as_array()
                .is_none_or(|f| f.is_empty()),
            "no fork: {status}"
        );
    }
    // No acknowledged sale lost or doubled: each id is in its till's journal
    // once, answered `replayed` with the first answer.
    for (t, id, _, first) in &truth.acked {
        let policy = if id.starts_with("off-b-") {
            "record"
        } else {
            "strict"
        };
        let Outcome::Acked(again) = at[*t].sell(id, policy) else {
            panic!("{id}: not acknowledged on retry");
        };
        assert_eq!(again["replayed"], true, "{id}: {again}");
        for k in ["id", "qty", "position", "deficit_created", "on_hand_after"] {
            assert_eq!(again[k], first[k], "{id}: {k} of the first answer");
        }
    }
    assert_eq!(at[hub].stock(), expected, "retries changed nothing");

    for d in [dh, da, db, dc] {
        d.stop();
    }
    for x in &at {
        let (code, out, err) = x.cli(&["verify"]);
        assert_eq!(code, Some(0), "verify {}: {out}{err}", x.dir.display());
    }
    println!(
        "{}",
        json!({"MEASURED_heal_to_converged_ms": converged.as_millis() as u64,
               "acknowledged_sales": truth.acked.len(), "refused_strict": truth.refused,
               "deficit_s1": deficit_s1, "expected": format!("{expected:?}"),
               "total_ms": begin.elapsed().as_millis() as u64})
    );
}
