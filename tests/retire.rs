//! Retiring a dead till: its remaining rights count as its heir's on every
//! replica once the roster spreads, pool totals unchanged; its later offline
//! sales are refused everywhere and reported with what they spent.

#[path = "roster/harness.rs"]
mod harness;

use harness::{at, fleet, loc, Fleet, CHANNEL, HUB, STORE, TILL};
use stocksync::model::{EventKind, PoolKey, Position, Sku};
use stocksync::sync::RejectReason;
use stocksync::{EventError, NodeError};

fn pool() -> PoolKey {
    PoolKey::new(loc("S1"), Sku::new("A").unwrap())
}

/// Store receives 10 and grants 8 to the till; the till sells 1 (its last
/// change the fleet holds, returned): the till holds 7 rights, the store 2.
fn till_with_seven(f: &mut Fleet) -> Position {
    f.line();
    let till = f.id(TILL);
    let m = &mut f.mesh;
    m.event(STORE, at("S1", "r", 10, EventKind::Receipt))
        .unwrap();
    m.event(STORE, at("S1", "g", 8, EventKind::Grant { to: till }))
        .unwrap();
    m.settle();
    let p1 = m
        .event(TILL, at("S1", "t1", 1, EventKind::Sale))
        .unwrap()
        .position;
    m.settle();
    for i in [STORE, TILL, HUB, CHANNEL] {
        assert_eq!(m.book(i).rights(&pool(), &till), 7, "node {i}");
        assert_eq!(m.head(i, TILL), Some(p1), "node {i}");
    }
    p1
}

#[test]
fn a_retired_tills_rights_count_as_the_stores_and_its_later_sales_are_refused_and_reported() {
    let mut f = fleet(&[]);
    let p1 = till_with_seven(&mut f);
    let (store, till) = (f.id(STORE), f.id(TILL));
    let before: Vec<i64> = [STORE, HUB, CHANNEL]
        .iter()
        .map(|i| f.mesh.book(*i).rights_by_node(&pool()).values().sum())
        .collect();
    assert_eq!(before, vec![9, 9, 9]);

    // The till goes dark and keeps selling offline: 2 then 1 units.
    f.mesh.disconnect(TILL, STORE);
    f.mesh.settle();
    let p2 = f
        .mesh
        .event(TILL, at("S1", "t2", 2, EventKind::Sale))
        .unwrap()
        .position;
    let p3 = f
        .mesh
        .event(TILL, at("S1", "t3", 1, EventKind::Sale))
        .unwrap()
        .position;

    // HQ retires it at the last position the fleet holds, to the store.
    let mut v5 = f.roster.clone();
    v5.retire(&till, p1, "stolen", store).unwrap();
    f.install(HUB, &v5);
    f.mesh.settle();
    for i in [STORE, HUB, CHANNEL] {
        let book = f.mesh.book(i);
        assert_eq!(
            book.rights(&pool(), &store),
            2 + 7,
            "node {i}: the store inherits"
        );
        assert_eq!(
            book.rights(&pool(), &till),
            0,
            "node {i}: the till holds none"
        );
        let sum: i64 = book.rights_by_node(&pool()).values().sum();
        assert_eq!(sum, before[0], "node {i}: pool total unchanged");
        let p = book.pool(&pool()).unwrap();
        assert_eq!(sum, p.on_hand() - p.held());
        assert_eq!(book.deficit(&pool()), 0);
    }

    // The store sells its own 2, then the till's 7, and not one more.
    let m = &mut f.mesh;
    m.event(STORE, at("S1", "s1", 2, EventKind::Sale)).unwrap();
    m.event(STORE, at("S1", "s2", 7, EventKind::Sale)).unwrap();
    match m.event(STORE, at("S1", "s3", 1, EventKind::Sale)) {
        Err(NodeError::Event(EventError::InsufficientRights { available, .. })) => {
            assert_eq!(available, 0)
        }
        other => panic!("{other:?}"),
    }
    m.settle();
    let on_hand = m.book(HUB).pool(&pool()).unwrap().on_hand();
    assert_eq!(on_hand, 0);

    // The till comes back with its offline sales: refused, reported, counts unchanged.
    m.connect(TILL, STORE);
    m.settle();
    assert!(
        m.nodes[STORE]
            .rejected
            .iter()
            .any(|r| matches!(r, RejectReason::Revoked { after, .. } if *after == p1)),
        "{:?}",
        m.nodes[STORE].rejected
    );
    let status = m.nodes[STORE].node.sync_status();
    assert_eq!(status.retired_writes, p3.seq - p1.seq);
    assert_eq!(
        status.retired_units_spent, 3,
        "the 2 + 1 units sold offline"
    );
    assert_eq!(status.retired.len(), 1);
    assert_eq!(status.retired[0].writer, till.to_hex());
    assert_eq!(status.retired[0].last, format!("{}/{}", p3.epoch, p3.seq));
    assert!(p2 < p3);
    for i in [STORE, HUB, CHANNEL] {
        assert_eq!(m.head(i, TILL), Some(p1), "node {i} keeps the till at p1");
        let book = m.book(i);
        assert_eq!(book.pool(&pool()).unwrap().on_hand(), 0, "node {i}");
        assert_eq!(book.rights(&pool(), &store), 0, "node {i}");
        assert_eq!(book.rights(&pool(), &till), 0, "node {i}");
    }
    // The till got the roster too: it takes no more events.
    assert_eq!(m.nodes[TILL].node.roster_version(), 5);
    assert!(m.event(TILL, at("S1", "t4", 1, EventKind::Sale)).is_err());
}

#[test]
fn rights_move_only_once_the_replica_holds_the_retired_history_up_to_its_point() {
    let mut f = fleet(&[]);
    let p1 = till_with_seven(&mut f);
    let (store, till) = (f.id(STORE), f.id(TILL));
    // The channel is cut off before the till's next sale reaches it.
    f.mesh.disconnect(HUB, CHANNEL);
    let p2 = f
        .mesh
        .event(TILL, at("S1", "t2", 3, EventKind::Sale))
        .unwrap()
        .position;
    f.mesh.settle();
    assert_eq!(f.mesh.head(CHANNEL, TILL), Some(p1));
    // Retired after p2 (the hub holds it); the roster reaches the channel first.
    let mut v5 = f.roster.clone();
    v5.retire(&till, p2, "broken", store).unwrap();
    f.install(HUB, &v5);
    f.install(CHANNEL, &v5);
    f.mesh.settle();
    // The channel lacks the till's sale of 3: moving the 7 it sees would
    // over-count, so it moves nothing yet.
    let book = f.mesh.book(CHANNEL);
    assert_eq!(book.rights(&pool(), &till), 7);
    assert_eq!(book.rights(&pool(), &store), 2);
    // Once the sale arrives, 4 move.
    f.mesh.connect(HUB, CHANNEL);
    f.mesh.settle();
    for i in [STORE, HUB, CHANNEL] {
        let book = f.mesh.book(i);
        assert_eq!(book.rights(&pool(), &till), 0, "node {i}");
        assert_eq!(book.rights(&pool(), &store), 2 + 4, "node {i}");
    }
}

#[test]
fn the_heir_must_be_an_unrevoked_member_at_every_location_of_the_retired_node() {
    use stocksync::fleet::RosterError;
    let f = fleet(&[]);
    let (store, till, hub) = (f.id(STORE), f.id(TILL), f.id(HUB));
    let mut r = f.roster.clone();
    let v = r.version;
    assert_eq!(
        r.retire(&till, Position::default(), "x", hub),
        Err(RosterError::HeirOutsideLocations {
            heir: hub,
            location: loc("S1")
        })
    );
    assert_eq!(
        r.retire(&till, Position::default(), "x", till),
        Err(RosterError::HeirIsSelf)
    );
    r.revoke(&store, Position::default(), "gone").unwrap();
    assert_eq!(
        r.retire(&till, Position::default(), "x", store),
        Err(RosterError::HeirNotMember { heir: store })
    );
    assert_eq!(r.version, v + 1, "refused edits change nothing");
    assert_eq!(r.heir_of(&till), None);
}

#[test]
fn on_sqlite_the_stock_rows_follow_the_move_and_verify_holds_across_a_restart() {
    use stocksync::fleet::{FleetAuthority, Member};
    use stocksync::model::{NodeId, Role};
    use stocksync::{data_dir, system_clock};
    let dir = tempfile::tempdir().unwrap();
    let spec = stocksync::NodeSpec::parse("store-1", "S1", "store").unwrap();
    let meta = data_dir::init(dir.path(), &spec).unwrap();
    let authority = FleetAuthority::from_seed([42; 32]);
    let till = NodeId([77; 32]);
    let roster = authority
        .roster()
        .with_member(meta.id, Member::new("store-1", Role::Store, [loc("S1")]))
        .with_member(till, Member::new("till-1", Role::Till, [loc("S1")]));
    let open = || {
        data_dir::open(
            dir.path(),
            harness::options(Some(authority.fleet())),
            system_clock(),
        )
        .unwrap()
    };
    let rights = || {
        let reader = data_dir::Reader::open(dir.path()).unwrap();
        assert!(
            reader.verify().unwrap().ok,
            "{:?}",
            reader.verify().unwrap().checks
        );
        reader.stock(Some("A")).unwrap()[0].rights
    };
    {
        let node = open();
        node.install_roster(authority.sign(&roster).unwrap())
            .unwrap();
        node.execute(at("S1", "r", 10, EventKind::Receipt)).unwrap();
        node.execute(at("S1", "g", 4, EventKind::Grant { to: till }))
            .unwrap();
    }
    assert_eq!(rights(), 6);
    {
        // The till never wrote: its history up to its point (none) is held.
        let mut v = roster.clone();
        v.retire(&till, Position::default(), "broken", meta.id)
            .unwrap();
        let node = open();
        node.install_roster(authority.sign(&v).unwrap()).unwrap();
    }
    assert_eq!(rights(), 10, "the row moved with no change of the pool");
    open().execute(at("S1", "s", 10, EventKind::Sale)).unwrap();
    assert_eq!(rights(), 0);
    let node = open();
    let book = node.query(|r| r.book().clone()).unwrap();
    assert_eq!(book.rights(&pool(), &meta.id), 0);
    assert_eq!(book.pool(&pool()).unwrap().on_hand(), 0);
}
