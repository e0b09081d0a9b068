//! A fleet that has seen 250,000 writers: two replicas that differ in one
//! writer find it with a few small messages, and equal replicas exchange only
//! digests. The engine runs on its own over replicas holding synthetic heads.

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};
use stocksync::model::Position;
use stocksync::replica::{Replica, Snapshot, WriterHead};
use stocksync::sync::{Effect, Input, SyncConfig, SyncEngine};
use stocksync::{Identity, NodeId};

const WRITERS: u32 = 250_000;

fn writer(i: u32) -> NodeId {
    NodeId(Sha256::digest(i.to_le_bytes()).into())
}

fn replica(me: NodeId, bump: Option<u32>) -> Replica {
    let heads: HashMap<NodeId, WriterHead> = (0..WRITERS)
        .map(|i| {
            let seq = if bump == Some(i) { 6 } else { 5 };
            let head = WriterHead {
                position: Position { epoch: 1, seq },
                hash: [seq as u8; 32],
            };
            (writer(i), head)
        })
        .collect();
    let snapshot = Snapshot {
        heads,
        ..Snapshot::default()
    };
    Replica::open(me, snapshot, 10_000).unwrap()
}

/// Messages sent, their sizes, and the loads asked, until both engines are quiet.
struct Traffic {
    sizes: Vec<usize>,
    loads: Vec<(NodeId, NodeId)>,
}

fn pump(
    a: (&mut SyncEngine, &mut Replica, NodeId),
    b: (&mut SyncEngine, &mut Replica, NodeId),
    first: Vec<(usize, Input)>,
    now: u64,
) -> Traffic {
    let mut t = Traffic {
        sizes: Vec::new(),
        loads: Vec::new(),
    };
    let (ea, ra, ida) = a;
    let (eb, rb, idb) = b;
    let mut queue: std::collections::VecDeque<(usize, Input)> = first.into();
    while let Some((to, input)) = queue.pop_front() {
        let (engine, replica, me, other) = if to == 0 {
            (&mut *ea, &mut *ra, ida, idb)
        } else {
            (&mut *eb, &mut *rb, idb, ida)
        };
        for e in engine.handle(replica, now, input) {
            match e {
                Effect::Send { message, .. } => {
                    t.sizes.push(message.len());
                    queue.push_back((1 - to, Input::Received { from: me, message }));
                }
                Effect::Load { range, .. } => t.loads.push((other, range.writer)),
                _ => {}
            }
        }
        assert!(t.sizes.len() < 1_000, "the exchange does not end");
    }
    t
}

#[test]
fn one_writer_of_250000_that_differs_is_found_with_small_messages() {
    let (ia, ib) = (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]));
    let (ida, idb) = (ia.node_id(), ib.node_id());
    let mut ra = replica(ida, None);
    let mut rb = replica(idb, Some(123_456));
    let mut ea = SyncEngine::new(ia, SyncConfig::default());
    let mut eb = SyncEngine::new(ib, SyncConfig::default());
    let t = pump(
        (&mut ea, &mut ra, ida),
        (&mut eb, &mut rb, idb),
        vec![(0, Input::PeerUp(idb)), (1, Input::PeerUp(ida))],
        0,
    );
    // Only B holds something newer: it loads that one writer's changes for A.
    assert_eq!(t.loads, vec![(ida, writer(123_456))], "{:?}", t.loads.len());
    let total: usize = t.sizes.iter().sum();
    let largest = t.sizes.iter().max().copied().unwrap_or(0);
    println!(
        "250,000 writers, one differs: {} messages, {total} bytes, largest {largest}",
        t.sizes.len()
    );
    assert!(largest < 16 * 1024, "largest message {largest} bytes");
    assert!(total < 64 * 1024, "{total} bytes in all");

    // Equal replicas: the probes are digests alone.
    let mut rb = replica(idb, None);
    let mut eb = SyncEngine::new(Identity::from_seed([2; 32]), SyncConfig::default());
    let mut ea = SyncEngine::new(Identity::from_seed([1; 32]), SyncConfig::default());
    let t = pump(
        (&mut ea, &mut ra, ida),
        (&mut eb, &mut rb, idb),
        vec![(0, Input::PeerUp(idb)), (1, Input::PeerUp(ida))],
        0,
    );
    assert!(t.loads.is_empty());
    let later = pump(
        (&mut ea, &mut ra, ida),
        (&mut eb, &mut rb, idb),
        vec![(0, Input::Tick), (1, Input::Tick)],
        1_001,
    );
    assert_eq!(later.sizes.len(), 2, "one digest each way, no answer");
    assert!(later.sizes.iter().all(|&s| s < 64), "{:?}", later.sizes);
}

#[test]
fn heads_outside_their_range_or_out_of_order_are_refused_and_applied_nowhere() {
    use stocksync::replica::WriterRange;
    use stocksync::sync::message::{self, Message};
    use stocksync::sync::{RejectReason, SyncEvent};
    let me = Identity::from_seed([1; 32]);
    let peer = Identity::from_seed([2; 32]).node_id();
    let mut r = Replica::open(me.node_id(), Snapshot::default(), 10_000).unwrap();
    let mut e = SyncEngine::new(me, SyncConfig::default());
    e.handle(&mut r, 0, Input::PeerUp(peer));
    let (a, b) = (writer(1), writer(2));
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let p = Position { epoch: 1, seq: 3 };
    let narrow = WriterRange {
        depth: 8,
        prefix: u32::from_be_bytes([lo.0[0], lo.0[1], lo.0[2], lo.0[3]]),
    };
    for (range, heads) in [
        (WriterRange::ALL, vec![(hi, p, [0; 32]), (lo, p, [0; 32])]),
        (narrow, vec![(hi, p, [0; 32])]),
        (
            WriterRange {
                depth: 9,
                prefix: 0,
            },
            vec![],
        ),
    ] {
        let msg = message::encode(&Message::Heads {
            range,
            heads,
            reply: false,
        });
        let effects = e.handle(
            &mut r,
            1,
            Input::Received {
                from: peer,
                message: msg,
            },
        );
        let refused = effects.iter().any(|f| {
            matches!(
                f,
                Effect::Report(SyncEvent::Rejected {
                    reason: RejectReason::Malformed(_),
                    ..
                })
            )
        });
        assert!(refused, "{range:?} accepted");
        assert!(!effects
            .iter()
            .any(|f| matches!(f, Effect::Send { .. } | Effect::Load { .. })));
    }
}
