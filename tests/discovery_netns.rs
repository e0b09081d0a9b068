//! mDNS discovery between network namespaces (gated: `STOCKSYNC_NETNS=1`, root).
//!
//! The parent builds a LAN of namespaces (tests/netns) and never starts mDNS
//! itself: each node is this test binary re-executed inside a host namespace
//! (`ip netns exec NS <this binary> --exact child_node`), told its part by
//! environment variables. A child starts the mDNS source on `lan0` only,
//! announces, prints every event as a JSON line and stops (unregistering)
//! when the parent writes `stop`. Run with:
//!
//! ```sh
//! sudo STOCKSYNC_NETNS=1 cargo test --test discovery_netns -- --nocapture
//! ```

mod netns;

use std::time::{Duration, Instant};

use serde_json::Value;
use stocksync::fleet::FleetId;
use stocksync::NodeId;

use netns::node::{addrs, id, is, run_child, till, ChildNode, Part, FLEET, PORT};
use netns::Lan;

const OTHER_FLEET: FleetId = FleetId([0xf2; 32]);

/// A node's body when the parent re-executes this binary; passes as a no-op otherwise.
#[test]
fn child_node() {
    run_child();
}

#[test]
fn mdns_between_namespaces() {
    if !netns::enabled("mdns_between_namespaces") {
        return;
    }
    let mut lan = Lan::new().expect("switch namespace");
    let [ha, hb, hc, hd, he] = std::array::from_fn(|_| lan.add_host().expect("host namespace"));
    let spy = if netns::nft_available() {
        Some(lan.add_spy(&ha).expect("spy namespace"))
    } else {
        println!("nft missing: the allow-list spy check is skipped");
        None
    };
    let spy_before = spy.as_ref().map(|s| lan.spy_counts(s).unwrap());

    // 1. Two nodes of one fleet find each other, with the right fields and addresses.
    let mut a = ChildNode::spawn(
        &lan,
        &ha,
        "A",
        Part {
            role: "store",
            ..till(id(0xa1), "STORE-A")
        },
    );
    let mut b = ChildNode::spawn(&lan, &hb, "B", till(id(0xb2), "STORE-B"));
    let fa = a
        .wait_for(Duration::from_secs(10), is("found", id(0xb2)))
        .expect("A finds B");
    assert_eq!(addrs(&fa), [format!("{}:{PORT}", hb.ip)]);
    assert_eq!(
        (fa["loc"].as_str(), fa["role"].as_str()),
        (Some("STORE-B"), Some("till"))
    );
    assert_eq!(fa["fleet"], FLEET.to_hex().as_str());
    let fb = b
        .wait_for(Duration::from_secs(10), is("found", id(0xa1)))
        .expect("B finds A");
    // A also has side0 (10.78.0.1), not on its allow-list: only lan0's address is announced.
    assert_eq!(addrs(&fb), [format!("{}:{PORT}", ha.ip)]);
    assert_eq!(
        (fb["loc"].as_str(), fb["role"].as_str()),
        (Some("STORE-A"), Some("store"))
    );

    // A joined the mDNS group on lan0 only (mdns-sd joins every interface at start
    // and leaves the ones off the allow-list at once: the spy below counts that).
    let groups = lan.igmp_groups(&ha).expect("read /proc/net/igmp");
    println!("A's IPv4 multicast memberships: {groups:?}");
    assert!(groups.contains(&(
        netns::HOST_IF.to_string(),
        netns::MDNS_GROUP_HEX.to_string()
    )));
    assert!(
        !groups
            .iter()
            .any(|(dev, g)| dev == "side0" && g == netns::MDNS_GROUP_HEX),
        "A is still in the mDNS group on side0, off its allow-list: {groups:?}"
    );

    // 2. A node of another fleet is ignored (and itself ignores A and B).
    let mut c = ChildNode::spawn(
        &lan,
        &hc,
        "C",
        Part {
            fleet: OTHER_FLEET,
            ..till(id(0xc3), "STORE-C")
        },
    );
    c.wait_for(Duration::from_secs(5), |v| v["ev"] == "started")
        .expect("C starts");
    c.collect(Duration::from_secs(3));
    a.collect(Duration::from_millis(200));
    b.collect(Duration::from_millis(200));
    let c_hex = id(0xc3).to_hex();
    for n in [&a, &b] {
        assert!(
            !n.seen.iter().any(|v| v["node"] == c_hex.as_str()),
            "{} reported C",
            n.name
        );
    }
    let cs = c.stop();
    assert!(
        !c.seen.iter().any(|v| v["ev"] == "found"),
        "C found a node of another fleet"
    );
    assert!(
        cs["stats"]["ignored_other_fleet"].as_u64() >= Some(1),
        "C heard no record at all: {cs}"
    );

    // 3. Time from a host's start to A finding it, over 10 starts; a clean stop is Lost at A.
    let mut delays = Vec::new();
    let mut lost_seen = 0;
    for run in 0..10u8 {
        let n = NodeId([0xd0 + run; 32]);
        let mut d = ChildNode::spawn(&lan, &hd, &format!("D{run}"), till(n, "STORE-D"));
        let started = d
            .wait_for(Duration::from_secs(5), |v| v["ev"] == "started")
            .expect("D starts");
        let found = a
            .wait_for(Duration::from_secs(10), is("found", n))
            .expect("A finds D");
        delays.push(
            found["t"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(started["t"].as_u64().unwrap_or(0)),
        );
        d.stop();
        if a.wait_for(Duration::from_secs(5), is("lost", n)).is_some() {
            lost_seen += 1;
        }
    }
    delays.sort_unstable();
    println!(
        "MEASURED start-to-found over {} runs: p50 {} ms, min {} ms, max {} ms (all: {delays:?})",
        delays.len(),
        delays[delays.len() / 2],
        delays[0],
        delays[delays.len() - 1]
    );
    println!("Lost seen at A after a clean stop: {lost_seen} of 10");
    assert_eq!(lost_seen, 10, "a clean stop (goodbye) must be Lost at A");

    // 4. A partitioned host hears nothing new; its silent departure is not seen at once.
    if lan.partition(&hb).expect("partition") {
        let mut e = ChildNode::spawn(&lan, &he, "E", till(id(0xe5), "STORE-E"));
        a.wait_for(Duration::from_secs(10), is("found", id(0xe5)))
            .expect("A finds E");
        b.collect(Duration::from_secs(3));
        assert!(
            b.wait_for(Duration::ZERO, is("found", id(0xe5))).is_none(),
            "B, cut off, found E"
        );
        b.stop(); // its goodbye is dropped by the partition
        let lost = a.wait_for(Duration::from_secs(3), is("lost", id(0xb2)));
        println!(
            "partition: B's goodbye dropped; Lost at A within 3 s: {} (records live until their TTL)",
            lost.is_some()
        );
        lan.heal(&hb).expect("heal");
        e.stop();
    } else {
        println!("nft missing: the partition part is skipped");
        b.stop();
    }
    let sa = a.stop();
    println!("A's stats: {}", sa["stats"]);
    assert_eq!(sa["stats"]["malformed"], 0);

    // 5. The allow-list: no mDNS packet ever left A through side0.
    if let (Some(spy), Some((igmp0, mdns0))) = (spy, spy_before) {
        let (igmp, mdns) = lan.spy_counts(&spy).unwrap();
        println!(
            "allow-list spy on A's side0: {} IGMP packets, {} mDNS packets",
            igmp - igmp0,
            mdns - mdns0
        );
        assert_eq!(
            mdns - mdns0,
            0,
            "mDNS traffic left A through an interface off its allow-list"
        );
    }
}

#[test]
fn mdns_address_changes_and_ipv6() {
    if !netns::enabled("mdns_address_changes_and_ipv6") {
        return;
    }
    let mut lan = Lan::new().expect("switch namespace");
    let [ha, hb] = std::array::from_fn(|_| lan.add_host().expect("host namespace"));
    let mut a = ChildNode::spawn(
        &lan,
        &ha,
        "A6",
        Part {
            ipv6: true,
            ..till(id(0x61), "STORE-A")
        },
    );
    let mut b = ChildNode::spawn(
        &lan,
        &hb,
        "B6",
        Part {
            ipv6: true,
            ..till(id(0x62), "STORE-B")
        },
    );
    let v4 = format!("{}:{PORT}", hb.ip);
    a.wait_for(Duration::from_secs(10), is("found", id(0x62)))
        .expect("A finds B");
    // With IPv6 on, B's link-local address (tentative for a while) arrives in the
    // first resolution or in a later Updated event.
    let with_v6 = |v: &Value| {
        (v["ev"] == "found" || v["ev"] == "updated")
            && v["node"] == id(0x62).to_hex().as_str()
            && addrs(v).contains(&v4)
            && addrs(v).iter().any(|x| x.starts_with("[fe80::"))
    };
    let got = a.wait_for(Duration::from_secs(20), with_v6);
    println!(
        "IPv6: B's link-local address {} ({})",
        if got.is_some() {
            "arrived"
        } else {
            "did not arrive within 20 s"
        },
        got.as_ref()
            .map_or("-".into(), |v| format!("{} {:?}", v["ev"], addrs(v)))
    );
    let got = got.expect("B's IPv6 link-local address reaches A");
    assert!(
        addrs(&got)
            .iter()
            .all(|x| !x.starts_with("[fe80::") || x.contains('%')),
        "link-local without scope: {got}"
    );

    // A second IPv4 address on B's lan0: re-announced, an Updated event at A.
    let extra = format!(
        "{}.{}.{}.111",
        netns::SUBNET[0],
        netns::SUBNET[1],
        netns::SUBNET[2]
    );
    netns::run(
        "ip",
        &[
            "-n",
            &hb.ns,
            "addr",
            "add",
            &format!("{extra}/24"),
            "dev",
            netns::HOST_IF,
        ],
    )
    .unwrap();
    let extra_addr = format!("{extra}:{PORT}");
    let t0 = Instant::now();
    let mark = a.seen.len();
    let up = a.wait_from(mark, Duration::from_secs(15), |v| {
        v["ev"] == "updated"
            && v["node"] == id(0x62).to_hex().as_str()
            && addrs(v).contains(&extra_addr)
    });
    println!(
        "address added on B: Updated at A after {:?}: {}",
        t0.elapsed(),
        up.is_some()
    );
    assert!(up.is_some(), "a new address of B never reached A");
    netns::run(
        "ip",
        &[
            "-n",
            &hb.ns,
            "addr",
            "del",
            &format!("{extra}/24"),
            "dev",
            netns::HOST_IF,
        ],
    )
    .unwrap();
    let t0 = Instant::now();
    let mark = a.seen.len();
    let down = a.wait_from(mark, Duration::from_secs(10), |v| {
        v["ev"] == "updated"
            && v["node"] == id(0x62).to_hex().as_str()
            && !addrs(v).contains(&extra_addr)
    });
    println!(
        "address removed on B: Updated at A within 10 s: {} ({:?})",
        down.is_some(),
        t0.elapsed()
    );
    b.stop();
    a.wait_for(Duration::from_secs(5), is("lost", id(0x62)))
        .expect("B's goodbye is Lost at A");
    a.stop();
}
