//! The fleet roster end to end: an outsider, members overstepping their
//! place, a revoked till, the roster exchange, own events the roster forbids,
//! and the roster kept across a restart on SQLite (`persist.rs`).

mod harness;
mod persist;

use harness::{at, fleet, loc, options, sends_roster, settle_watching, CHANNEL, HUB, STORE, TILL};
use stocksync::fleet::{FleetAuthority, Member, RosterError};
use stocksync::model::{EventKind, NodeId, NodeMeta, PoolKey, Role, Sku};
use stocksync::store::memory::MemoryStore;
use stocksync::store::{ChangeRange, Store};
use stocksync::sync::message::{self, Bundle, ChangeBytes, HeadSignature, Message};
use stocksync::sync::RejectReason;
use stocksync::{EventError, Identity, NodeError};

const OUTSIDER: u8 = 9;

fn pool(l: &str) -> PoolKey {
    PoolKey::new(loc(l), Sku::new("A").unwrap())
}

#[test]
fn an_outsider_is_refused_by_every_member_and_nothing_of_it_is_relayed_or_parked() {
    let mut f = fleet(&[]);
    f.line();
    f.mesh
        .event(STORE, at("S1", "r", 10, EventKind::Receipt))
        .unwrap();
    f.mesh.settle();
    // A fresh key that signs its own, valid changes: a receipt of 1,000 units
    // and a grant of all of them to the store.
    let store = MemoryStore::new();
    let meta = |id| NodeMeta {
        id,
        name: "intruder".into(),
        location: loc("S1"),
        role: Role::Store,
    };
    let m = &mut f.mesh;
    let o = m
        .add_with([OUTSIDER; 32], store.clone(), options(None), meta)
        .unwrap();
    let outsider = m.nodes[o].id;
    let to = m.nodes[STORE].id;
    m.event(o, at("S1", "o-r", 1_000, EventKind::Receipt))
        .unwrap();
    m.event(o, at("S1", "o-g", 1_000, EventKind::Grant { to }))
        .unwrap();
    for i in [STORE, TILL, HUB, CHANNEL] {
        m.connect(o, i);
    }
    assert_eq!(settle_watching(m, outsider), vec![], "no member relays it");
    for i in [STORE, TILL, HUB, CHANNEL] {
        let n = &m.nodes[i];
        assert!(!n.rejected.is_empty(), "node {i} saw the outsider");
        assert!(
            n.rejected.iter().all(|r| *r == RejectReason::NotMember),
            "{i}: {:?}",
            n.rejected
        );
        assert_eq!(m.head(i, o), None);
        assert_eq!(m.book(i).counters_of(&outsider).count(), 0);
        assert_eq!(m.book(i).rights(&pool("S1"), &to), 10);
        assert_eq!(n.node.sync_status().parked_bundles, 0);
    }
    // Refused before its signature is checked: a garbage signature is still
    // `NotMember`, not `Forgery`; and a bundle ahead of a gap is not parked.
    let mut changes = store
        .clone()
        .changes(&ChangeRange::whole_epoch(outsider, 1))
        .unwrap();
    assert_eq!(changes.len(), 2);
    let second = changes.pop().unwrap();
    let hash = automerge::Change::try_from(&second.bytes[..])
        .unwrap()
        .hash()
        .0;
    let intruder = Identity::from_seed([OUTSIDER; 32]);
    let bundle = |first_seq, bytes: Vec<u8>, signature| {
        message::encode(&Message::Changes(Bundle {
            writer: outsider,
            epoch: 1,
            first_seq,
            changes: vec![ChangeBytes(bytes)],
            signature: HeadSignature(signature),
        }))
    };
    let garbage = bundle(1, changes.pop().unwrap().bytes, vec![0; 64]);
    let signed = stocksync::sync::signing::sign_head(&intruder, second.position, &hash);
    let ahead_of_a_gap = bundle(2, second.bytes, signed);
    for bytes in [garbage, ahead_of_a_gap] {
        m.nodes[HUB].rejected.clear();
        m.receive(HUB, outsider, bytes);
        assert_eq!(m.nodes[HUB].rejected, vec![RejectReason::NotMember]);
        assert_eq!(m.nodes[HUB].node.sync_status().parked_bundles, 0);
    }
    assert_eq!(settle_watching(m, outsider), vec![]);
}

#[test]
fn a_member_minting_outside_its_locations_or_a_channel_minting_is_refused() {
    // The till and the channel run software that checks nothing of its own.
    let mut f = fleet(&[TILL, CHANNEL]);
    f.line();
    let (till, channel) = (f.id(TILL), f.id(CHANNEL));
    let m = &mut f.mesh;
    m.event(TILL, at("S2", "t-r", 5, EventKind::Receipt))
        .unwrap();
    m.event(CHANNEL, at("S1", "c-r", 5, EventKind::Receipt))
        .unwrap();
    assert_eq!(settle_watching(m, till), vec![]);
    let outside = RosterError::OutsideLocations {
        location: loc("S2"),
    };
    assert_eq!(
        m.nodes[STORE].rejected,
        vec![RejectReason::NotPermitted(outside.to_string())]
    );
    let no_mint = RosterError::RoleMayNotMint {
        role: Role::Channel,
    };
    assert_eq!(
        m.nodes[HUB].rejected,
        vec![RejectReason::NotPermitted(no_mint.to_string())]
    );
    for i in [STORE, HUB] {
        assert_eq!(m.book(i).counters_of(&till).count(), 0);
        assert_eq!(m.book(i).counters_of(&channel).count(), 0);
    }
    assert_eq!(settle_watching(m, channel), vec![]);
}

#[test]
fn a_grant_to_a_non_member_is_refused_and_the_change_before_it_stays() {
    let mut f = fleet(&[STORE]);
    let stranger = Identity::from_seed([OUTSIDER; 32]).node_id();
    let store = f.id(STORE);
    let m = &mut f.mesh;
    let receipt = m
        .event(STORE, at("S1", "r", 100, EventKind::Receipt))
        .unwrap();
    m.event(STORE, at("S1", "g", 50, EventKind::Grant { to: stranger }))
        .unwrap();
    f.line();
    let refused = RosterError::GrantToNonMember { to: stranger };
    for i in [TILL, HUB] {
        let m = &f.mesh;
        // Refused each time it comes (the heads exchange sends it twice).
        let reported = &m.nodes[i].rejected;
        assert!(!reported.is_empty());
        let want = RejectReason::NotPermitted(refused.to_string());
        assert!(reported.iter().all(|r| *r == want), "{reported:?}");
        assert_eq!(
            m.head(i, STORE),
            Some(receipt.position),
            "the receipt before it stays"
        );
        assert_eq!(m.book(i).rights(&pool("S1"), &store), 100);
        assert_eq!(m.book(i).rights(&pool("S1"), &stranger), 0);
    }
    assert!(
        f.mesh.nodes[CHANNEL].rejected.is_empty(),
        "the hub relayed nothing refused"
    );
}

#[test]
fn a_revoked_till_keeps_its_earlier_changes_and_its_later_ones_are_refused_and_reported() {
    // The till's key is stolen: its software keeps selling and checks nothing.
    let mut f = fleet(&[TILL]);
    f.line();
    let till = f.id(TILL);
    let m = &mut f.mesh;
    m.event(STORE, at("S1", "r", 10, EventKind::Receipt))
        .unwrap();
    m.event(STORE, at("S1", "g", 5, EventKind::Grant { to: till }))
        .unwrap();
    m.settle();
    let p1 = m
        .event(TILL, at("S1", "s1", 1, EventKind::Sale))
        .unwrap()
        .position;
    m.settle();
    // HQ revokes the till after the last change it saw, through the hub.
    let mut v5 = f.roster.clone();
    v5.revoke(&till, p1, "stolen").unwrap();
    f.install(HUB, &v5);
    f.mesh.settle();
    assert_eq!(
        f.versions(),
        vec![5, 0, 5, 5],
        "the stolen till ignores rosters"
    );
    let m = &mut f.mesh;
    let p2 = m
        .event(TILL, at("S1", "s2", 1, EventKind::Sale))
        .unwrap()
        .position;
    let p3 = m
        .event(TILL, at("S1", "s3", 1, EventKind::Sale))
        .unwrap()
        .position;
    assert_eq!(settle_watching(m, till), vec![]);
    let revoked = |got| RejectReason::Revoked { after: p1, got };
    assert_eq!(m.nodes[STORE].rejected, vec![revoked(p2), revoked(p3)]);
    let status = m.nodes[STORE].node.sync_status();
    assert!(status.last_rejection.unwrap().contains("revoked"));
    assert_eq!(status.parked_bundles, 0);
    for i in [STORE, HUB, CHANNEL] {
        assert_eq!(
            m.head(i, TILL),
            Some(p1),
            "node {i} keeps the sale before the revocation"
        );
        assert_eq!(m.book(i).rights(&pool("S1"), &till), 4);
    }
}

#[test]
fn a_newer_roster_reaches_every_node_through_relays_and_a_foreign_one_is_refused() {
    let mut f = fleet(&[]);
    f.line();
    let member = |n: &str| Member::new(n, Role::Till, [loc("S1")]);
    // Enrolling a second till at one end of the line reaches the other end.
    let v5 = f
        .roster
        .clone()
        .with_member(NodeId([77; 32]), member("till-2"));
    f.install(TILL, &v5);
    f.mesh.settle();
    assert_eq!(f.versions(), vec![5; 4]);
    // The store's link to the hub loses everything for a while: v6 stops there.
    f.mesh.cut.push((STORE, HUB));
    let v6 = v5.clone().with_member(NodeId([78; 32]), member("till-3"));
    f.install(TILL, &v6);
    f.mesh.settle();
    f.mesh.cut.clear();
    assert_eq!(f.versions(), vec![6, 6, 5, 5]);
    // The hub's probes show version 5; the store sends v6 again once the
    // resend interval (10 s) has passed since the lost copy.
    f.mesh.advance(1_000);
    assert_eq!(f.versions(), vec![6, 6, 5, 5]);
    f.mesh.advance(11_000);
    assert_eq!(f.versions(), vec![6; 4]);
    // A channel that was away installs v7; on reconnecting, the hub learns it
    // from the channel: the highest version wins, whichever side holds it.
    f.mesh.disconnect(HUB, CHANNEL);
    let v7 = v6.clone().with_member(NodeId([79; 32]), member("till-4"));
    f.install(CHANNEL, &v7);
    f.mesh.connect(HUB, CHANNEL);
    f.mesh.settle();
    assert_eq!(f.versions(), vec![7; 4]);
    // Another authority's roster, of a higher version, and a tampered copy of
    // the real one: refused, reported, not installed, not relayed.
    let other = FleetAuthority::from_seed([7; 32]);
    let mut theirs = v7.clone();
    theirs.fleet = other.fleet();
    theirs.version = 99;
    let foreign = other.sign(&theirs).unwrap();
    let mut tampered = f.sign(&v7.clone().with_member(NodeId([80; 32]), member("x")));
    let last = tampered.body.len() - 1;
    tampered.body[last] ^= 1;
    let from = f.id(STORE);
    for signed in [foreign, tampered] {
        f.mesh
            .receive(HUB, from, message::encode(&Message::Roster(signed)));
        assert!(
            matches!(
                f.mesh.nodes[HUB].rejected.pop(),
                Some(RejectReason::ForeignRoster(_))
            ),
            "{:?}",
            f.mesh.nodes[HUB].rejected
        );
        assert!(!sends_roster(&f.mesh, HUB));
    }
    f.mesh.settle();
    assert_eq!(f.versions(), vec![7; 4]);
    assert_eq!(f.mesh.nodes[HUB].node.sync_status().roster_version, 7);
}

#[test]
fn own_events_the_roster_forbids_are_refused_locally_and_the_node_stays_usable() {
    let mut f = fleet(&[]);
    f.line();
    let (till, hub) = (f.id(TILL), f.id(HUB));
    let stranger = NodeId([OUTSIDER; 32]);
    let m = &mut f.mesh;
    let mut refused = |i: usize, req| match m.event(i, req) {
        Err(NodeError::Event(EventError::NotPermitted(e))) => e,
        other => panic!("node {i}: {other:?}"),
    };
    let outside = RosterError::OutsideLocations {
        location: loc("S2"),
    };
    assert_eq!(
        refused(STORE, at("S2", "x1", 5, EventKind::Receipt)),
        outside
    );
    let no_mint = RosterError::RoleMayNotMint {
        role: Role::Channel,
    };
    assert_eq!(
        refused(CHANNEL, at("S1", "x2", 5, EventKind::Return)),
        no_mint
    );
    let grant = |to| EventKind::Grant { to };
    let non_member = RosterError::GrantToNonMember { to: stranger };
    assert_eq!(
        refused(STORE, at("S1", "x3", 5, grant(stranger))),
        non_member
    );
    let elsewhere = RosterError::GrantOutsideLocations {
        to: hub,
        location: loc("S1"),
    };
    assert_eq!(refused(STORE, at("S1", "x4", 5, grant(hub))), elsewhere);
    assert!(m.queue.is_empty(), "nothing was committed, nothing sent");
    // The node stays usable; a refused event's id was never used.
    m.event(STORE, at("S1", "x1", 10, EventKind::Receipt))
        .unwrap();
    m.event(STORE, at("S1", "x3", 5, grant(till))).unwrap();
    m.settle();
    let sale = m.event(TILL, at("S1", "s1", 1, EventKind::Sale)).unwrap();
    m.settle();
    assert_eq!(m.book(HUB).rights(&pool("S1"), &till), 4);
    assert!(m.nodes.iter().all(|n| n.rejected.is_empty()));
    // A till that learns it is revoked sells no more.
    let mut v5 = f.roster.clone();
    v5.revoke(&till, sale.position, "lost").unwrap();
    f.install(STORE, &v5);
    f.mesh.settle();
    let revoked = RosterError::Revoked {
        after: sale.position,
        reason: "lost".into(),
    };
    match f.mesh.event(TILL, at("S1", "s2", 1, EventKind::Sale)) {
        Err(NodeError::Event(EventError::NotPermitted(e))) => assert_eq!(e, revoked),
        other => panic!("{other:?}"),
    }
    // A node in the fleet with no roster yet may write nothing.
    let fresh = f
        .mesh
        .add_with(
            [50; 32],
            MemoryStore::new(),
            options(Some(f.authority.fleet())),
            |id| NodeMeta {
                id,
                name: "new".into(),
                location: loc("S1"),
                role: Role::Store,
            },
        )
        .unwrap();
    match f.mesh.event(fresh, at("S1", "n1", 1, EventKind::Receipt)) {
        Err(NodeError::Event(EventError::NotPermitted(RosterError::NotMember))) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lasting_refusal_is_answered_and_the_sender_stops_offering_and_reports_it() {
    let mut f = fleet(&[]);
    f.line();
    // A node in open mode (its software checks nothing) holding an outsider's
    // changes keeps meeting a member that refuses them.
    let m = &mut f.mesh;
    let meta = |id| NodeMeta {
        id,
        name: "open".into(),
        location: loc("S1"),
        role: Role::Store,
    };
    let o = m
        .add_with([OUTSIDER; 32], MemoryStore::new(), options(None), meta)
        .unwrap();
    let outsider = m.nodes[o].id;
    m.event(o, at("S1", "o-r", 5, EventKind::Receipt)).unwrap();
    m.connect(o, STORE);
    let mut offers = 0;
    for t in 1..=10u64 {
        m.tick(t * 1_000);
        while let Some((from, to, bytes)) = m.queue.pop_front() {
            let sender = m.nodes[from].id;
            if let Ok(Message::Changes(b)) = message::decode(&bytes) {
                if from == o && b.writer == outsider && t > 1 {
                    offers += 1;
                }
            }
            m.receive(to, sender, bytes);
        }
    }
    // The first round crosses the answer (a few offers); after it, none.
    assert_eq!(offers, 0, "offered again after the refusal was answered");
    let status = m.nodes[o].node.sync_status();
    let said = status.last_refused_by_peer.expect("the sender reports it");
    assert!(said.contains("not a member"), "{said}");
    assert_eq!(m.head(STORE, o), None);
}
