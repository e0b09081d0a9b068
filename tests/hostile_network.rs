//! Scenario 6, hostile network, over real QUIC: a hub and two tills as
//! daemons, each till's only path to the hub through a UDP proxy that drops,
//! duplicates, reorders and delays datagrams while all three nodes keep
//! selling; then the proxies go clean and every node converges to the ground
//! truth the test kept. Last, a batch of datagrams a proxy held back (never
//! delivered) and copies of 300 it delivered are replayed, twice, after the
//! connection they belonged to is gone: nothing changes.

#[allow(dead_code)]
#[path = "daemon_net/support.rs"]
mod support;
mod udp_proxy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{free_port, node_id, wait_for, Daemon, Fleet};
use udp_proxy::{seed_from_env, Mode, Policy, UdpProxy};

const SKU: &str = "TSHIRT-M";

/// The hostile policy of each direction.
const HOSTILE: Policy = Policy {
    drop_pct: 15,
    dup_pct: 10,
    reorder_pct: 10,
    reorder_window: 3,
    delay_ms: (0, 30),
};

/// What a seller saw acknowledged at its own location.
#[derive(Default, Debug)]
struct Truth {
    received: i64,
    sold: i64,
    acked_sales: usize,
    refused: usize,
}

impl Truth {
    fn on_hand(&self) -> i64 {
        self.received - self.sold
    }
}

/// Receives 60 units at `d`'s own location, then sells 1–3 at a time until
/// `stop`; when the escrow rule refuses (stock ran out), receives 20 more.
fn seller(d: &Daemon, tag: &str, seed: u64, stop: &AtomicBool) -> Truth {
    let mut t = Truth::default();
    d.event(json!({"kind": "receive", "sku": SKU, "qty": 60, "id": format!("{tag}-r")}));
    t.received += 60;
    let mut x = seed | 1;
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let qty = (x % 3 + 1) as i64;
        let id = format!("{tag}-s{i}");
        let (status, v) = d.post(json!({"kind": "sell", "sku": SKU, "qty": qty, "id": id}));
        match status {
            200 | 201 => {
                t.sold += qty;
                t.acked_sales += 1;
            }
            409 if v["error"]["code"] == "insufficient_rights" => {
                t.refused += 1;
                let id = format!("{tag}-r{i}");
                d.event(json!({"kind": "receive", "sku": SKU, "qty": 20, "id": id}));
                t.received += 20;
            }
            _ => panic!("{tag} sale {id}: {status} {v}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    t
}

/// The on-hand count per location as `d` sees it, and whether any row is negative.
fn counts(d: &Daemon) -> (BTreeMap<String, i64>, bool) {
    let (status, rows) = d.get(&format!("/v1/stock/{SKU}"));
    assert_eq!(status, 200, "{rows}");
    let mut negative = false;
    let mut by_loc = BTreeMap::new();
    for r in rows.as_array().expect("rows") {
        let on_hand = r["on_hand"].as_i64().expect("on_hand");
        negative |= on_hand < 0 || r["rights"].as_i64().unwrap_or(0) < 0;
        by_loc.insert(r["location"].as_str().expect("loc").to_string(), on_hand);
    }
    (by_loc, negative)
}

#[test]
fn counts_stay_exact_through_a_hostile_network_and_late_replays() {
    let seed = seed_from_env();
    println!("seed {seed} (set STOCKSYNC_PROXY_SEED to repeat the proxies' decisions)");
    let fleet = Fleet::new("hub", "HQ");
    let (t1, t2) = (fleet.join("till-1", "S1"), fleet.join("till-2", "S2"));
    let (id1, id2) = (node_id(&t1), node_id(&t2));
    let (ph, p1, p2) = (free_port(), free_port(), free_port());
    let proxy1 = UdpProxy::start("till-1<->hub", ph, seed, HOSTILE, HOSTILE);
    let proxy2 = UdpProxy::start("till-2<->hub", ph, seed.rotate_left(17), HOSTILE, HOSTILE);
    // The hub dials nobody; each till knows only its proxy.
    let hub = Daemon::start(&fleet.hub, ph, &[]);
    let d1 = Daemon::start(&t1, p1, &[proxy1.addr]);
    let d2 = Daemon::start(&t2, p2, &[proxy2.addr]);
    wait_for(
        "the hub links both tills through the proxies",
        || {
            let c = hub.connected();
            c.contains(&id1) && c.contains(&id2)
        },
        || hub.status().to_string(),
    );
    // Every path goes through a proxy: the hub sees the tills at the proxies'
    // sockets, never at their own ports.
    for peer in hub.status()["peers"].as_array().expect("peers") {
        let addr: SocketAddr = peer["address"].as_str().expect("address").parse().unwrap();
        assert!(addr != p1 && addr != p2, "a direct path: {peer}");
    }

    // Hostile phase: all three sell at their own location; midway proxy1
    // holds a batch of datagrams back (never delivered now); it also keeps
    // copies of the first 300 datagrams it forwards.
    for p in [&proxy1, &proxy2] {
        p.set_mode(Mode::Hostile);
    }
    // Copies of datagrams that were delivered, to be replayed later too.
    proxy1.record(300);
    let stop = AtomicBool::new(false);
    let nodes = [(&hub, "HQ"), (&d1, "S1"), (&d2, "S2")];
    let truths: Vec<Truth> = std::thread::scope(|s| {
        let workers: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, (d, loc))| {
                let stop = &stop;
                s.spawn(move || seller(d, loc, seed.wrapping_add(i as u64), stop))
            })
            .collect();
        std::thread::sleep(Duration::from_secs(3));
        // Shorter than the idle timeout (2 s): the link survives, QUIC resends.
        proxy1.set_mode(Mode::Hold);
        std::thread::sleep(Duration::from_millis(800));
        proxy1.set_mode(Mode::Hostile);
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let during = [proxy1.counters(), proxy2.counters()];
    println!("{}", json!({"hostile_phase": during}));
    for c in &during {
        for dir in ["to_target", "to_clients"] {
            assert!(c[dir]["dropped"].as_u64() > Some(0), "{c}");
            assert!(c[dir]["duplicated"].as_u64() > Some(0), "{c}");
            assert!(c[dir]["reordered"].as_u64() > Some(0), "{c}");
        }
    }
    // Changes flowed through the misbehaving proxies (not only once clean).
    let hub_applied = hub.status()["sync"]["changes_applied"].as_u64();
    let reconnects: Vec<Value> = [&d1, &d2]
        .iter()
        .map(|d| d.status()["peers"][0]["reconnects"].clone())
        .collect();
    println!("hub changes applied during the hostile phase: {hub_applied:?}; till redials: {reconnects:?}");
    assert!(hub_applied > Some(100), "{}", hub.status());
    let held = proxy1.held();
    let c = &during[0];
    let withheld = c["to_target"]["held"].as_u64().unwrap_or(0)
        + c["to_clients"]["held"].as_u64().unwrap_or(0);
    assert!(withheld > 0, "proxy1 held datagrams back: {c}");
    assert_eq!(
        c["to_target"]["recorded"].as_u64().unwrap_or(0)
            + c["to_clients"]["recorded"].as_u64().unwrap_or(0),
        300,
        "{c}"
    );
    let truth: BTreeMap<String, i64> = nodes
        .iter()
        .zip(&truths)
        .map(|((_, loc), t)| (loc.to_string(), t.on_hand()))
        .collect();
    println!("ground truth {truth:?} from {truths:?}");
    assert!(truths.iter().all(|t| t.acked_sales > 20), "{truths:?}");

    // The proxies go clean: every node converges to the ground truth.
    for p in [&proxy1, &proxy2] {
        p.set_mode(Mode::Clean);
    }
    let clean = Instant::now();
    let converged = |d: &Daemon| counts(d).0 == truth;
    wait_for(
        "every node shows the ground truth",
        || nodes.iter().all(|(d, _)| converged(d)),
        || {
            let seen: Vec<_> = nodes.iter().map(|(d, _)| counts(d).0).collect();
            format!("truth {truth:?}\nseen {seen:?}\n{}", hub.status())
        },
    );
    println!(
        "converged {} ms after the proxies went clean",
        clean.elapsed().as_millis()
    );
    for (d, _) in &nodes {
        let (_, negative) = counts(d);
        assert!(!negative, "a negative count under strict: {:?}", counts(d));
        let st = d.status();
        assert_eq!(st["sync"]["rejected"], 0, "{st}");
    }

    // Late replay: till-1 restarts (its old connection is gone), then every
    // held datagram is delivered, twice, in both directions.
    assert_eq!(d1.terminate(), Some(0));
    let d1 = Daemon::start(&t1, p1, &[proxy1.addr]);
    wait_for(
        "till-1 links the hub again",
        || hub.connected().contains(&id1) && d1.connected().len() == 1,
        || hub.status().to_string(),
    );
    // Once seen (1 run in 3 with the whole suite loading the machine): right
    // after till-1's restart, till-2 showed an older S1 count for a moment.
    // The replay check below starts from every node at the truth again.
    wait_for(
        "every node shows the truth after the restart",
        || [&hub, &d1, &d2].iter().all(|d| counts(d).0 == truth),
        || {
            let seen: Vec<_> = [&hub, &d1, &d2].iter().map(|d| counts(d).0).collect();
            format!("truth {truth:?}\nseen {seen:?}")
        },
    );
    let before: Vec<_> = [&hub, &d1, &d2].iter().map(|d| counts(d).0).collect();
    let applied: Vec<Value> = [&hub, &d1, &d2]
        .iter()
        .map(|d| d.status()["sync"]["changes_applied"].clone())
        .collect();
    let replayed = proxy1.replay_held(2);
    assert_eq!(replayed, 2 * held);
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<_> = [&hub, &d1, &d2].iter().map(|d| counts(d).0).collect();
    assert_eq!(before, after, "a replayed datagram changed a count");
    assert_eq!(before[0], truth);
    for (d, applied) in [&hub, &d1, &d2].iter().zip(&applied) {
        let st = d.status();
        assert_eq!(&st["sync"]["changes_applied"], applied, "{st}");
        assert_eq!(st["sync"]["rejected"], 0, "{st}");
    }
    assert!(hub.connected().contains(&id1) && hub.connected().contains(&id2));
    // The link still works: a sale after the replay reaches the hub.
    // (A receipt first: the sellers may have sold S1 down to 0.)
    d1.event(json!({"kind": "receive", "sku": SKU, "qty": 2, "id": "after-replay-in"}));
    d1.event(json!({"kind": "sell", "sku": SKU, "qty": 1, "id": "after-replay"}));
    let s1 = truth["S1"] + 1;
    wait_for(
        "a sale after the replay reaches the hub",
        || counts(&hub).0.get("S1") == Some(&s1),
        || hub.status().to_string(),
    );
    println!(
        "{}",
        json!({"end": [proxy1.counters(), proxy2.counters()], "held_then_replayed": held})
    );
}
