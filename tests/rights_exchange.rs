//! The rights exchange between real nodes: automatic pull below the
//! low-water mark, borrowing on a strict sale within a deadline, concurrent
//! requests to one donor, and no ping-pong. Memory stores; the pull tests run
//! on the hand-pumped test fleet, the borrow tests on threads that pump
//! messages between nodes the way a transport does.

mod fleet;

use std::thread;

use fleet::{member, req, Fleet, Pumped};
use stocksync::error::{EventError, NodeError};
use stocksync::model::{EventKind, LocationId, NodeId, PoolKey, Sku};
use stocksync::node::{system_clock, Node, NodeOptions};
use stocksync::rebalance::RebalanceSettings;
use stocksync::store::memory::MemoryStore;

fn pool() -> PoolKey {
    PoolKey::new(LocationId::new("S1").unwrap(), Sku::new("A").unwrap())
}

fn rights(node: &Node, of: NodeId) -> i64 {
    node.query(|r| r.book().rights(&pool(), &of)).unwrap()
}

fn on_hand(node: &Node) -> i64 {
    node.query(|r| r.book().pool(&pool()).map(|p| p.on_hand()).unwrap_or(0))
        .unwrap()
}

fn settings(low_water: u64) -> RebalanceSettings {
    RebalanceSettings {
        low_water: Some(low_water),
        ..RebalanceSettings::lan()
    }
}

fn options(s: RebalanceSettings) -> NodeOptions {
    NodeOptions {
        rebalance: s,
        ..NodeOptions::default()
    }
}

#[test]
fn a_till_below_its_low_water_mark_pulls_from_a_peer_with_surplus() {
    let mut f = Fleet::new();
    let a = f.start(1, MemoryStore::new(), options(settings(3)));
    let b = f.start(2, MemoryStore::new(), options(settings(3)));
    let (ia, ib) = (f.nodes[a].id(), f.nodes[b].id());
    f.connect(a, b);
    f.event(b, req("r", 20, EventKind::Receipt));
    f.event(b, req("g", 4, EventKind::Grant { to: ia }));
    f.settle();
    assert_eq!(rights(&f.nodes[a], ia), 4);
    // A sells 2: 2 left, below its mark of 3, so it asks B for 6 − 2 = 4.
    f.event(a, req("s1", 2, EventKind::Sale));
    f.settle();
    for n in [a, b] {
        assert_eq!(rights(&f.nodes[n], ia), 6, "node {n}");
        assert_eq!(rights(&f.nodes[n], ib), 12, "node {n}");
    }
    // Rights conserved: every unit on hand is some node's right (no holds).
    assert_eq!(on_hand(&f.nodes[b]), 18);
    let (sa, sb) = (f.nodes[a].rights_stats(), f.nodes[b].rights_stats());
    assert_eq!((sa.asks_sent, sa.rights_received), (1, 4));
    assert_eq!(
        (sb.requests_received, sb.grants_made, sb.rights_given),
        (1, 1, 4)
    );
}

#[test]
fn a_donor_keeps_its_floor_and_two_starving_tills_do_not_trade_rights() {
    let mut f = Fleet::new();
    let a = f.start(1, MemoryStore::new(), options(settings(5)));
    let b = f.start(2, MemoryStore::new(), options(settings(5)));
    let (ia, ib) = (f.nodes[a].id(), f.nodes[b].id());
    f.connect(a, b);
    f.event(b, req("r", 14, EventKind::Receipt));
    f.event(b, req("g", 7, EventKind::Grant { to: ia }));
    f.settle();
    // B sells down to 6 (above its mark of 5), A to 4 (below): A asks for
    // 10 − 4 = 6, B has 1 above its floor of 5 and gives that.
    f.event(b, req("sb", 1, EventKind::Sale));
    f.event(a, req("sa", 3, EventKind::Sale));
    f.settle();
    assert_eq!(rights(&f.nodes[a], ia), 5);
    assert_eq!(rights(&f.nodes[a], ib), 5);
    // Both at their mark, both selling: each sale leaves the seller below it,
    // the other has nothing above its floor, and nothing moves.
    for i in 0..3 {
        f.event(a, req(&format!("a{i}"), 1, EventKind::Sale));
        f.event(b, req(&format!("b{i}"), 1, EventKind::Sale));
        f.settle();
        f.advance(f.now() + 3_000);
    }
    let (sa, sb) = (f.nodes[a].rights_stats(), f.nodes[b].rights_stats());
    assert_eq!(sa.rights_given + sb.rights_given, 1, "{sa:?} {sb:?}");
    assert_eq!(rights(&f.nodes[a], ia) + rights(&f.nodes[a], ib), 4);
}

/// `n` nodes with settings `s`, all linked, on threads.
fn pumped(n: u8, s: RebalanceSettings) -> Pumped {
    let nodes: Vec<Node> = (1..=n)
        .map(|seed| {
            let (identity, meta) = member(seed);
            Node::start(
                identity,
                meta,
                MemoryStore::new(),
                options(s.clone()),
                system_clock(),
            )
            .unwrap()
        })
        .collect();
    Pumped::start(nodes, &Pumped::mesh(usize::from(n)))
}

fn borrowing(deadline_ms: u64) -> RebalanceSettings {
    RebalanceSettings {
        auto_pull: false,
        low_water: Some(1),
        borrow_deadline_ms: deadline_ms,
        ..RebalanceSettings::lan()
    }
}

#[test]
fn a_strict_sale_short_of_rights_borrows_from_a_peer_and_succeeds() {
    let p = pumped(2, borrowing(2_000));
    let (a, b) = (&p.nodes[0], &p.nodes[1]);
    b.execute(req("r", 10, EventKind::Receipt)).unwrap();
    p.wait_for("A sees B's receipt", || rights(a, b.id()) == 10);
    let sold = a.execute(req("s", 3, EventKind::Sale)).unwrap();
    assert_eq!(sold.qty, 3);
    assert!(sold.rights_after >= 0);
    // B counts its grant once its answer is sent, which may be just after
    // the grant itself reached A.
    p.wait_for("B counts its grant", || b.rights_stats().grants_made == 1);
    assert_eq!(a.rights_stats().asks_sent, 1);
    // A record sale never borrows, nor does a node with borrowing off.
    let p2 = pumped(2, borrowing(0));
    let (c, d) = (&p2.nodes[0], &p2.nodes[1]);
    d.execute(req("r", 10, EventKind::Receipt)).unwrap();
    p2.wait_for("C sees D's receipt", || rights(c, d.id()) == 10);
    let err = c.execute(req("s", 3, EventKind::Sale)).unwrap_err();
    assert!(
        matches!(err, NodeError::Event(EventError::InsufficientRights { .. })),
        "{err}"
    );
    assert_eq!(d.rights_stats().requests_received, 0);
}

#[test]
fn a_borrow_that_stays_short_says_what_it_had_asked_and_who_answered() {
    let p = pumped(2, borrowing(2_000));
    let (a, b) = (&p.nodes[0], &p.nodes[1]);
    b.execute(req("r", 4, EventKind::Receipt)).unwrap();
    p.wait_for("A sees B's receipt", || rights(a, b.id()) == 4);
    // B keeps its floor of 1: it can give 3 of the 5 asked.
    let err = a.execute(req("s", 5, EventKind::Sale)).unwrap_err();
    let NodeError::Event(EventError::InsufficientAfterBorrow(report)) = &err else {
        panic!("expected a borrow report, got {err}");
    };
    assert_eq!((report.requested, report.asked, report.granted), (5, 5, 3));
    assert_eq!(report.answers.len(), 1);
    // No roster in these tests: the peer is named by its id.
    let peer = b.id().to_string();
    assert_eq!(report.answers[0].peer, peer);
    assert_eq!(report.answers[0].outcome, "no_surplus");
    let text = err.to_string();
    assert!(
        text.contains(&format!("{peer}: 3 of 5, no_surplus")),
        "{text}"
    );
    // The 3 granted are A's now: a sale of 3 needs no borrow.
    p.wait_for("the grant arrives", || rights(a, a.id()) == 3);
    a.execute(req("s2", 3, EventKind::Sale)).unwrap();
    assert_eq!(rights(b, b.id()), 1);
}

#[test]
fn concurrent_borrows_never_take_a_donor_below_its_floor() {
    // Every node keeps a floor of 4 and asks for just what a sale lacks.
    let p = pumped(
        4,
        RebalanceSettings {
            floor: Some(4),
            ..borrowing(1_500)
        },
    );
    let donor = p.nodes[3].clone();
    donor.execute(req("r", 10, EventKind::Receipt)).unwrap();
    for n in &p.nodes[..3] {
        p.wait_for("the receipt spreads", || rights(n, donor.id()) == 10);
    }
    let sellers: Vec<_> = p.nodes[..3]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let n = n.clone();
            thread::spawn(move || n.execute(req(&format!("s{i}"), 3, EventKind::Sale)))
        })
        .collect();
    let results: Vec<_> = sellers.into_iter().map(|t| t.join().unwrap()).collect();
    let sold: u64 = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|o| o.qty)
        .sum();
    // 6 rights above the floor of 4, asked for 3 at a time, all at once:
    // exactly two sales borrow enough.
    assert_eq!(sold, 6, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, NodeError::Event(EventError::InsufficientAfterBorrow(_))),
                "{e}"
            );
        }
    }
    p.wait_for("everything settles", || {
        p.nodes
            .iter()
            .all(|n| p.nodes.iter().map(|m| rights(n, m.id())).sum::<i64>() == on_hand(n))
    });
    assert_eq!(rights(&donor, donor.id()), 4, "the donor kept its floor");
    assert_eq!(
        donor.rights_stats().rights_given as i64,
        10 - rights(&donor, donor.id())
    );
}
