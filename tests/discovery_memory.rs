//! Discovery without a network: the in-memory LAN (found, updated, lost, the
//! filters and the bound) and static peers (IP literals, names, changes).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use stocksync::discovery::memory::MemoryLan;
use stocksync::discovery::record;
use stocksync::discovery::static_peers::{Resolver, StaticConfig, StaticPeers};
use stocksync::discovery::{
    Announcement, Discovery, DiscoveryError, DiscoveryEvent, PeerKey, DEFAULT_MAX_PEERS,
};
use stocksync::fleet::FleetId;
use stocksync::{LocationId, NodeId, Role};

const FLEET: FleetId = FleetId([0xf1; 32]);

fn ann(n: u8, fleet: FleetId, port: u16) -> Announcement {
    Announcement {
        node: NodeId([n; 32]),
        location: LocationId::new("STORE-1").unwrap(),
        role: Role::Till,
        fleet,
        port,
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([10, 77, 0, last])
}

fn drain(d: &mut impl Discovery) -> Vec<DiscoveryEvent> {
    std::iter::from_fn(|| d.poll_event()).collect()
}

#[test]
fn found_updated_lost() {
    let lan = MemoryLan::new();
    let mut a = lan.join(ip(1), NodeId([1; 32]), FLEET, DEFAULT_MAX_PEERS);
    let mut b = lan.join(ip(2), NodeId([2; 32]), FLEET, DEFAULT_MAX_PEERS);
    a.announce(&ann(1, FLEET, 7401)).unwrap();
    b.announce(&ann(2, FLEET, 7401)).unwrap();

    let ev = drain(&mut a);
    assert_eq!(ev.len(), 1, "{ev:?}");
    let DiscoveryEvent::Found(p) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(p.key, PeerKey::Node(NodeId([2; 32])));
    assert_eq!(p.addrs, vec![SocketAddr::new(ip(2), 7401)]);
    let claim = p.claim.as_ref().unwrap();
    assert_eq!((claim.role, claim.fleet), (Role::Till, FLEET));
    assert_eq!(p.expected(), Some(NodeId([2; 32])));
    // b joined after a announced: it hears a's record all the same.
    assert!(
        matches!(&drain(&mut b)[..], [DiscoveryEvent::Found(p)] if p.key == PeerKey::Node(NodeId([1; 32])))
    );

    // The same announcement again: nothing new. A new port: Updated.
    b.announce(&ann(2, FLEET, 7401)).unwrap();
    assert!(drain(&mut a).is_empty());
    b.announce(&ann(2, FLEET, 7402)).unwrap();
    assert!(
        matches!(&drain(&mut a)[..], [DiscoveryEvent::Updated(p)] if p.addrs == vec![SocketAddr::new(ip(2), 7402)])
    );

    // A goodbye: Lost; afterwards b reports nothing and refuses to announce.
    b.shutdown().unwrap();
    assert_eq!(
        drain(&mut a),
        vec![DiscoveryEvent::Lost(PeerKey::Node(NodeId([2; 32])))]
    );
    assert!(matches!(
        b.announce(&ann(2, FLEET, 7401)),
        Err(DiscoveryError::Shutdown)
    ));
    assert!(b.poll_event().is_none());

    let s = a.stats();
    assert_eq!((s.found, s.updated, s.lost), (1, 1, 1));
    assert!(s.ignored_self >= 1, "a hears its own announcement: {s:?}");
}

#[test]
fn other_fleets_self_and_malformed_records_are_ignored_and_counted() {
    let lan = MemoryLan::new();
    let mut a = lan.join(ip(1), NodeId([1; 32]), FLEET, DEFAULT_MAX_PEERS);
    let mut other = lan.join(
        ip(3),
        NodeId([3; 32]),
        FleetId([0xee; 32]),
        DEFAULT_MAX_PEERS,
    );
    other.announce(&ann(3, FleetId([0xee; 32]), 7401)).unwrap();
    a.announce(&ann(1, FLEET, 7401)).unwrap();

    let addr = vec![SocketAddr::new(ip(9), 7401)];
    let good = record::encode(&ann(9, FLEET, 7401));
    let mut malformed = Vec::new();
    for (key, value) in [
        ("id", "zz".to_string()),
        ("id", "a".repeat(5000)),
        ("loc", "has space".into()),
        ("role", "emperor".into()),
        ("fleet", String::new()),
    ] {
        let mut txt = good.clone();
        txt.retain(|(k, _)| k != key);
        txt.push((key.into(), value));
        malformed.push(lan.inject(txt, addr.clone()));
    }
    let mut v2 = good.clone();
    v2.retain(|(k, _)| k != "v");
    v2.push(("v".into(), "2".into()));
    lan.inject(v2, addr.clone());
    lan.inject(good.clone(), Vec::new()); // no address
    lan.inject(record::encode(&ann(1, FLEET, 9)), addr.clone()); // someone claiming to be a

    assert!(drain(&mut a).is_empty());
    let s = a.stats();
    assert_eq!(s.ignored_other_fleet, 1, "{s:?}");
    assert_eq!(s.malformed, 5, "{s:?}");
    assert_eq!(s.unsupported_version, 1, "{s:?}");
    assert_eq!(s.no_address, 1, "{s:?}");
    assert!(s.ignored_self >= 2, "{s:?}");
    assert_eq!(s.found, 0);
    // The other fleet sees a as another fleet too, and nothing else.
    assert!(drain(&mut other).is_empty());

    // A good record is found, and withdrawn.
    let h = lan.inject(good, addr);
    assert!(matches!(&drain(&mut a)[..], [DiscoveryEvent::Found(_)]));
    lan.withdraw(h);
    assert!(matches!(&drain(&mut a)[..], [DiscoveryEvent::Lost(_)]));
    for h in malformed {
        lan.withdraw(h);
    }
    assert!(
        drain(&mut a).is_empty(),
        "goodbyes of ignored records are no events"
    );
}

#[test]
fn the_table_is_bounded() {
    let lan = MemoryLan::new();
    let mut a = lan.join(ip(1), NodeId([1; 32]), FLEET, 4);
    for n in 10..20u8 {
        lan.inject(
            record::encode(&ann(n, FLEET, 7401)),
            vec![SocketAddr::new(ip(n), 7401)],
        );
    }
    let found = drain(&mut a);
    assert_eq!(found.len(), 4);
    assert_eq!(a.stats().over_capacity, 6);
    // Each peer keeps at most 16 addresses.
    let many: Vec<SocketAddr> = (0..100u16)
        .map(|p| SocketAddr::new(ip(30), 1000 + p))
        .collect();
    let lan2 = MemoryLan::new();
    let mut b = lan2.join(ip(2), NodeId([2; 32]), FLEET, 4);
    lan2.inject(record::encode(&ann(30, FLEET, 7401)), many);
    assert!(matches!(&drain(&mut b)[..], [DiscoveryEvent::Found(p)] if p.addrs.len() == 16));
}

#[test]
fn a_partition_hides_new_records_until_healed() {
    let lan = MemoryLan::new();
    let mut a = lan.join(ip(1), NodeId([1; 32]), FLEET, DEFAULT_MAX_PEERS);
    let mut b = lan.join(ip(2), NodeId([2; 32]), FLEET, DEFAULT_MAX_PEERS);
    lan.set_partitioned(&b, true);
    b.announce(&ann(2, FLEET, 7401)).unwrap();
    a.announce(&ann(1, FLEET, 7401)).unwrap();
    assert!(drain(&mut a).is_empty());
    assert!(drain(&mut b).is_empty());
    lan.set_partitioned(&b, false);
    assert!(matches!(&drain(&mut a)[..], [DiscoveryEvent::Found(_)]));
    assert!(matches!(&drain(&mut b)[..], [DiscoveryEvent::Found(_)]));
    drop(b);
    assert!(matches!(&drain(&mut a)[..], [DiscoveryEvent::Lost(_)]));
    assert_eq!(lan.members(), 1);
}

/// A resolver whose answers the test scripts.
struct Scripted(VecDeque<std::io::Result<Vec<SocketAddr>>>);

impl Resolver for Scripted {
    fn resolve(&mut self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        assert_eq!((host, port), ("hub.example", 7401));
        self.0.pop_front().unwrap_or_else(|| Ok(Vec::new()))
    }
}

#[test]
fn static_peers_literals_names_and_changes() {
    let pin = NodeId([7; 32]);
    let cfg = StaticConfig {
        peers: vec![
            "10.77.0.5:7401".into(),
            format!("{}@[fd00::5]:7401", pin.to_hex()),
            "10.77.0.5:7401".into(), // a duplicate
        ],
        hub: Some("hub.example:7401".into()),
        refresh_ms: 1000,
        ..StaticConfig::default()
    };
    let a1 = SocketAddr::from(([10, 77, 0, 50], 7401));
    let a2 = SocketAddr::from(([10, 77, 0, 51], 7401));
    let script = Scripted(
        [
            Ok(vec![a1]),
            Ok(vec![a1]),
            Err(std::io::Error::other("no answer")),
            Ok(vec![a2, a1]),
            Ok(vec![]),
        ]
        .into(),
    );
    let mut s = StaticPeers::with_resolver(&cfg, script).unwrap();
    assert!(s.announce(&ann(1, FLEET, 7401)).is_ok());
    let ev = drain(&mut s);
    assert_eq!(ev.len(), 2, "IP literals at once, deduplicated: {ev:?}");
    let DiscoveryEvent::Found(pinned) = &ev[1] else {
        panic!("{ev:?}")
    };
    assert_eq!(pinned.expected(), Some(pin));
    assert_eq!(s.next_tick_ms(), Some(0));

    let hub = PeerKey::Configured("hub.example:7401".into());
    s.tick(0);
    assert!(
        matches!(&drain(&mut s)[..], [DiscoveryEvent::Found(p)] if p.hub && p.key == hub && p.addrs == vec![a1] && p.expected().is_none())
    );
    s.tick(500); // not due
    assert_eq!(s.next_tick_ms(), Some(1000));
    s.tick(1000); // same answer
    assert!(drain(&mut s).is_empty());
    s.tick(2000); // a failure keeps the last addresses
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.stats().resolve_failures, 1);
    s.tick(3000); // changed
    assert!(matches!(&drain(&mut s)[..], [DiscoveryEvent::Updated(p)] if p.addrs == vec![a1, a2]));
    s.tick(4000); // no usable address left
    assert_eq!(drain(&mut s), vec![DiscoveryEvent::Lost(hub)]);
    s.shutdown().unwrap();
    assert_eq!(s.next_tick_ms(), None);
}

#[test]
fn bad_static_entries_are_refused() {
    for bad in [
        "nohost",
        "host:0",
        "host:99999",
        "ho st:1",
        ":7401",
        "zz@10.0.0.1:1",
        "10.0.0.1:0",
    ] {
        let cfg = StaticConfig {
            peers: vec![bad.into()],
            ..StaticConfig::default()
        };
        let e = StaticPeers::new(&cfg).err();
        assert!(
            matches!(e, Some(DiscoveryError::BadEntry { .. })),
            "{bad}: {e:?}"
        );
    }
    let cfg = StaticConfig {
        peers: vec!["10.0.0.1:1".into(), "10.0.0.2:1".into()],
        max_peers: 1,
        ..StaticConfig::default()
    };
    assert!(StaticPeers::new(&cfg).is_err());
}
