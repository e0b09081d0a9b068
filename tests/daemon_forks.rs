//! Forks end to end over real `stocksync node` daemons on loopback: a till's
//! data directory copied to a second device and both run, and a till
//! restored from an older copy that sells offline. The hub reports the fork
//! (and keeps reporting it after a restart: the proof is stored), the proof
//! reaches the till's copies, and they refuse further sales with
//! `409 own_history_conflict`.
//!
//! The hub's stock shows the branch that reached it first only: counting both
//! branches of a fork is not built (docs/daemon.md, "Forks").

#[allow(dead_code)]
#[path = "daemon_net/support.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{json, Value};
use support::{free_port, node_id, ok, p, wait_for, Daemon, Fleet};

/// Files of a data directory that belong to a running process, not to the node.
const RUNTIME_FILES: [&str; 2] = ["lock", "daemon.json"];

/// Copies the data directory `from` to `to` (replacing it), leaving out the
/// lock and the runtime file: what an operator copying a device's disk gets.
fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).expect("remove old copy");
    }
    std::fs::create_dir_all(to).expect("create copy");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let name = e.file_name();
        if RUNTIME_FILES.iter().any(|r| name == *r) {
            continue;
        }
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &to.join(&name));
        } else {
            std::fs::copy(e.path(), to.join(&name)).expect("copy file");
        }
    }
}

fn receive(d: &Daemon, qty: u64, id: &str) -> Value {
    d.event(json!({"kind": "receive", "sku": "TSHIRT-M", "qty": qty, "id": id}))
}

fn sell(d: &Daemon, id: &str) -> (u16, Value) {
    d.post(json!({"kind": "sell", "sku": "TSHIRT-M", "qty": 1, "id": id}))
}

/// The writers `status` lists as forked.
fn forks(status: &Value) -> Vec<String> {
    status["sync"]["forks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["writer"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `stocksync status --json` of the daemon on `dir`, through the command line.
fn cli_status(dir: &Path) -> Value {
    serde_json::from_str(&ok(&["--data", p(dir), "status", "--json"])).expect("status JSON")
}

fn wait_fork(d: &Daemon, writer: &str, what: &str) {
    wait_for(
        what,
        || forks(&d.status()).iter().any(|w| w == writer),
        || format!("{}\n{}", d.status(), d.log()),
    );
}

/// A sale must be refused as the own history conflict it is.
fn assert_refused(d: &Daemon, id: &str) {
    let (status, body) = sell(d, id);
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "own_history_conflict", "{body}");
}

/// Starts the hub and a synced till with 10 units received; the till is stopped.
fn synced_till(fleet: &Fleet, ph: SocketAddr, pt: SocketAddr) -> (Daemon, std::path::PathBuf) {
    let till = fleet.join("till-1", "S1");
    let hub = Daemon::start(&fleet.hub, ph, &[]);
    let d = Daemon::start(&till, pt, &[ph]);
    receive(&d, 10, "r1");
    wait_for(
        "the hub holds the receipt",
        || hub.on_hand("TSHIRT-M", "S1") == 10,
        || format!("{}\n{}", hub.status(), d.log()),
    );
    assert_eq!(d.terminate(), Some(0));
    (hub, till)
}

#[test]
fn a_copied_directory_run_twice_is_a_fork_everywhere() {
    let fleet = Fleet::new("hub", "HQ");
    let (ph, pa, pb) = (free_port(), free_port(), free_port());
    let (hub, till) = synced_till(&fleet, ph, pa);
    let id = node_id(&till);
    let copy = fleet.tmp.path().join("till-1-copy");
    copy_dir(&till, &copy);
    assert_eq!(node_id(&copy), id, "the copy is the same node");

    // The hub is down while both copies sell: each sale is accepted by its
    // own copy (neither can yet see the other's history). With the hub up,
    // whichever sold second would see the first's sale relayed and refuse it.
    assert_eq!(hub.terminate(), Some(0));
    let a = Daemon::start(&till, pa, &[ph]);
    let b = Daemon::start(&copy, pb, &[ph]);
    let (sa, va) = sell(&a, "sale-a");
    let (sb, vb) = sell(&b, "sale-b");
    assert_eq!((sa, sb), (201, 201), "{va} {vb}");

    let hub = Daemon::start(&fleet.hub, ph, &[]);
    let started = std::time::Instant::now();
    wait_fork(&hub, &id, "the hub reports the fork of the copied till");
    let st = cli_status(&fleet.hub);
    assert!(forks(&st).contains(&id), "status --json lists it: {st}");
    // While both copies are up they hold one node id: the hub's transport
    // keeps one link per node id, so each copy's connection replaces the
    // other's ("replaced"), no `peer_up` follows a replacement, and the proof
    // does not reliably get through (docs/daemon.md, "Forks"). One copy at a
    // time, each learns it: the hub sends every proof it holds on connect.
    let fork_seen_by_hub = started.elapsed();
    assert_eq!(b.terminate(), Some(0));
    wait_fork(&a, &id, "the original learns its key forked");
    assert!(forks(&cli_status(&till)).contains(&id));
    assert_refused(&a, "after-a");
    assert_eq!(a.terminate(), Some(0));
    let b = Daemon::start(&copy, pb, &[ph]);
    wait_fork(&b, &id, "the copy learns its key forked");
    assert!(forks(&cli_status(&copy)).contains(&id));
    assert_refused(&b, "after-b");
    println!(
        "{}",
        json!({"copied_dir_fork_at_hub_ms": fork_seen_by_hub.as_millis() as u64,
               "copied_dir_fork_at_both_copies_ms": started.elapsed().as_millis() as u64,
               "note": "from the hub's start (both copies sold offline) to the hub's status, then to both copies' (one at a time)"})
    );
    // Both sales were accepted locally; the hub counts one branch only (the
    // first to arrive): 10 received, one of the two sales.
    assert_eq!(hub.on_hand("TSHIRT-M", "S1"), 9, "{}", hub.status());

    // The proof is stored: a restarted hub still lists the fork.
    assert_eq!(hub.terminate(), Some(0));
    let hub = Daemon::start(&fleet.hub, ph, &[]);
    assert!(
        forks(&hub.status()).contains(&id),
        "the restarted hub lists the fork: {}",
        hub.status()
    );
    assert!(forks(&cli_status(&fleet.hub)).contains(&id));
    let text = ok(&["--data", p(&fleet.hub), "status"]);
    assert!(
        text.contains(&format!("FORK: writer {id}")),
        "the text status names it: {text}"
    );
}

#[test]
fn a_till_restored_from_an_older_copy_that_sold_offline_is_a_fork() {
    let fleet = Fleet::new("hub", "HQ");
    let (ph, pt) = (free_port(), free_port());
    let (hub, till) = synced_till(&fleet, ph, pt);
    let id = node_id(&till);
    let monday = fleet.tmp.path().join("till-1-monday");
    copy_dir(&till, &monday);

    // Tuesday: more sales, synced.
    let d = Daemon::start(&till, pt, &[ph]);
    for i in 0..3 {
        let (s, v) = sell(&d, &format!("tue-{i}"));
        assert_eq!(s, 201, "{v}");
    }
    wait_for(
        "the hub holds Tuesday's sales",
        || hub.on_hand("TSHIRT-M", "S1") == 7,
        || hub.status().to_string(),
    );
    assert_eq!(d.terminate(), Some(0));

    // The disk is restored from Monday's copy; offline (no hub), it sells.
    copy_dir(&monday, &till);
    let d = Daemon::start(&till, pt, &[]);
    assert_eq!(d.on_hand("TSHIRT-M", "S1"), 10, "Monday's state");
    let (s, v) = sell(&d, "wed-offline");
    assert_eq!(s, 201, "{v}");
    assert_eq!(d.terminate(), Some(0));

    // Back with the hub: the fork is reported at both ends.
    let d = Daemon::start(&till, pt, &[ph]);
    wait_fork(&hub, &id, "the hub reports the restored till's fork");
    wait_fork(&d, &id, "the restored till learns its key forked");
    assert!(forks(&cli_status(&fleet.hub)).contains(&id));
    assert!(forks(&cli_status(&till)).contains(&id));
    assert_refused(&d, "after-restore");
    // The hub keeps Tuesday's branch (it arrived first).
    assert_eq!(hub.on_hand("TSHIRT-M", "S1"), 7, "{}", hub.status());
}

/// Both copies of a forked till running against the hub at once: their
/// connections replace each other at the hub, and each replacement is a new
/// session, so the proofs reach both (red when a replaced link kept the old
/// session: neither copy had the proof 30 s after the hub did).
#[test]
fn two_live_copies_both_learn_the_fork() {
    let fleet = Fleet::new("hub", "HQ");
    let (ph, pa, pb) = (free_port(), free_port(), free_port());
    let (hub, till) = synced_till(&fleet, ph, pa);
    let id = node_id(&till);
    let copy = fleet.tmp.path().join("till-1-copy");
    copy_dir(&till, &copy);
    assert_eq!(hub.terminate(), Some(0));
    let a = Daemon::start(&till, pa, &[ph]);
    let b = Daemon::start(&copy, pb, &[ph]);
    assert_eq!((sell(&a, "sale-a").0, sell(&b, "sale-b").0), (201, 201));
    let hub = Daemon::start(&fleet.hub, ph, &[]);
    wait_fork(&hub, &id, "the hub reports the fork");
    wait_fork(&a, &id, "the original learns it, the copy still running");
    wait_fork(&b, &id, "the copy learns it, the original still running");
}
