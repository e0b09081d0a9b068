//! A structured fuzzer: real messages of a real writer, mutated at the field
//! level (writer, epoch, positions, changes dropped, duplicated, reordered,
//! spliced, bit-flipped, truncated, signatures altered) and at the byte level,
//! fed to a node that holds a random prefix of that writer's history.
//!
//! After every input: no panic; the node's head for the writer is one of the
//! writer's real heads (nothing forged or corrupted was ever applied); parked
//! bundles and the outbox stay within their stated bounds.
//!
//! `STOCKSYNC_FUZZ_INPUTS` sets the number of inputs (CI: 20,000; long mode:
//! 10,000,000); `STOCKSYNC_FUZZ_SEED` replays a run.

use std::collections::HashSet;
use std::sync::Arc;

use rand_core::{Rng, SeedableRng};
use rand_xorshift::XorShiftRng;
use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeMeta, Position, Quantity, ReservationId,
    Role, Sku,
};
use stocksync::node::{Node, NodeOptions};
use stocksync::replica::{RangeSummary, WriterRange};
use stocksync::store::memory::MemoryStore;
use stocksync::sync::message::{self, Bundle, ChangeBytes, HeadSignature, Message};
use stocksync::sync::ForkProof;
use stocksync::{Identity, NodeId, SyncConfig};

fn node(seed: u8, options: NodeOptions) -> Node {
    let identity = Identity::from_seed([seed; 32]);
    let meta = NodeMeta {
        id: identity.node_id(),
        name: format!("n{seed}"),
        location: LocationId::new("S1").unwrap(),
        role: Role::Store,
    };
    Node::start(identity, meta, MemoryStore::new(), options, Arc::new(|| 0)).unwrap()
}

fn req(id: String, sku: &str, qty: u64, kind: EventKind) -> EventRequest {
    EventRequest::new(
        EventId::new(id).unwrap(),
        LocationId::new("S1").unwrap(),
        Sku::new(sku).unwrap(),
        Quantity::new(qty).unwrap(),
        kind,
    )
}

/// The writer's history: one-change bundles as sent, and every real head.
struct Corpus {
    writer: NodeId,
    /// Encoded `Changes` messages, in order, each ending at `heads[i]`.
    bundles: Vec<Vec<u8>>,
    /// A multi-change bundle of the whole epoch.
    whole: Bundle,
    /// Other messages the writer sent (heads, digests).
    other: Vec<Vec<u8>>,
    heads: HashSet<(Position, [u8; 32])>,
}

/// A change in the writer's name (no key needed to name an actor) that
/// continues the real head `after`: mints 999,999 units. Only the head
/// signature tells it from the writer's own.
fn forged_change(writer: NodeId, after: (Position, [u8; 32])) -> Vec<u8> {
    use automerge::legacy::{Key, ObjectId, Op, OpType, SortedVec};
    let op = Op {
        action: OpType::Put(automerge::ScalarValue::counter(999_999)),
        obj: ObjectId::Root,
        key: Key::Map("m|S1|A".into()),
        pred: SortedVec::new(),
        insert: false,
    };
    let change = automerge::Change::from(automerge::ExpandedChange {
        operations: vec![op],
        actor_id: automerge::ActorId::from(writer.0),
        hash: None,
        seq: after.0.seq + 1,
        start_op: std::num::NonZeroU64::new(10_000).unwrap(),
        time: 0,
        message: Some(format!(r#"{{"epoch":{},"events":[]}}"#, after.0.epoch)),
        deps: vec![automerge::ChangeHash(after.1)],
        extra_bytes: Vec::new(),
        author: None,
    });
    change.raw_bytes().to_vec()
}

fn corpus(victim: NodeId) -> Corpus {
    let w = node(7, NodeOptions::default());
    let writer = w.id();
    w.peer_up(victim).unwrap();
    let mut bundles = Vec::new();
    let mut other = Vec::new();
    let mut heads = HashSet::new();
    let mut n = 0;
    let sent = |w: &Node, bundles: &mut Vec<Vec<u8>>, other: &mut Vec<Vec<u8>>| {
        for o in w.take_sends() {
            match message::decode(&o.message) {
                Ok(Message::Changes(_)) => bundles.push(o.message),
                _ => other.push(o.message),
            }
        }
    };
    let mut event = |w: &Node, kind: EventKind, sku: &str, qty: u64| {
        n += 1;
        w.execute(req(format!("e{n}"), sku, qty, kind)).unwrap();
    };
    for sku in ["A", "B", "C"] {
        event(&w, EventKind::Receipt, sku, 50);
    }
    sent(&w, &mut bundles, &mut other);
    for i in 0..25 {
        let sku = ["A", "B", "C"][i % 3];
        let kind = match i % 5 {
            0 => EventKind::Grant { to: victim },
            1 => EventKind::Reserve {
                reservation: ReservationId::new(format!("R{i}")).unwrap(),
            },
            _ => EventKind::Sale,
        };
        event(&w, kind, sku, 1);
        sent(&w, &mut bundles, &mut other);
    }
    w.query(|r| {
        let h = *r
            .heads()
            .get(&writer)
            .expect("the writer holds its own head");
        heads.insert((h.position, h.hash));
    })
    .unwrap();
    // Every intermediate head, from the bundles themselves (each ends at one).
    let probe = node(8, NodeOptions::default());
    probe.peer_up(writer).unwrap();
    for b in &bundles {
        probe.receive(writer, b.clone());
        let h = probe.query(|r| r.heads().get(&writer).copied()).unwrap();
        let h = h.expect("a real bundle applies");
        heads.insert((h.position, h.hash));
    }
    let mut all = Vec::new();
    let mut first_seq = 1;
    let mut signature = Vec::new();
    for b in &bundles {
        if let Ok(Message::Changes(b)) = message::decode(b) {
            if all.is_empty() {
                first_seq = b.first_seq;
            }
            // One-change bundles carry each change whole.
            all.extend(b.changes.into_iter().map(|c| c.0));
            signature = b.signature.0;
        }
    }
    let whole = stocksync_bundle(writer, 1, all, first_seq, signature);
    Corpus {
        writer,
        bundles,
        whole,
        other,
        heads,
    }
}

/// A bundle of whole changes (dependencies included: receivers accept that too
/// only for the first; later ones are left in, so this is itself a mutation
/// the verifier must refuse unless it is a single change).
fn stocksync_bundle(
    writer: NodeId,
    epoch: u32,
    changes: Vec<Vec<u8>>,
    first_seq: u64,
    signature: Vec<u8>,
) -> Bundle {
    Bundle {
        writer,
        epoch,
        first_seq,
        changes: changes.into_iter().map(ChangeBytes).collect(),
        signature: HeadSignature(signature),
    }
}

fn flip(rng: &mut XorShiftRng, bytes: &mut [u8]) {
    if bytes.is_empty() {
        return;
    }
    let at = (rng.next_u64() % bytes.len() as u64) as usize;
    bytes[at] ^= 1 << (rng.next_u64() % 8);
}

/// One mutated input, from the corpus.
fn mutate(rng: &mut XorShiftRng, c: &Corpus, strangers: &[NodeId]) -> Vec<u8> {
    let pick = |rng: &mut XorShiftRng, n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    let base = &c.bundles[pick(rng, c.bundles.len())];
    let Ok(Message::Changes(mut b)) = message::decode(base) else {
        return base.clone();
    };
    match rng.next_u64() % 16 {
        15 => {
            // A fork proof of two real bundles of the one history (they agree,
            // so it proves nothing), one of them possibly mutated.
            let other = &c.bundles[pick(rng, c.bundles.len())];
            let Ok(Message::Changes(o)) = message::decode(other) else {
                return base.clone();
            };
            if rng.next_u64().is_multiple_of(2) {
                let i = pick(rng, b.changes.len());
                flip(rng, &mut b.changes[i].0);
            } else if rng.next_u64().is_multiple_of(2) {
                flip(rng, &mut b.signature.0);
            }
            return message::encode(&Message::Fork(ForkProof { a: b, b: o }));
        }
        14 => {
            // A forged continuation of a real head, under a real signature.
            let heads: Vec<_> = c.heads.iter().copied().collect();
            let after = heads[pick(rng, heads.len())];
            b.epoch = after.0.epoch;
            b.first_seq = after.0.seq + 1;
            b.changes = vec![ChangeBytes(forged_change(c.writer, after))];
        }
        0 => b.writer = strangers[pick(rng, strangers.len())],
        1 => b.epoch = b.epoch.wrapping_add(1 + (rng.next_u64() % 3) as u32),
        2 => b.first_seq = b.first_seq.wrapping_add(rng.next_u64() % 5).wrapping_sub(2),
        3 => flip(rng, &mut b.signature.0),
        4 => {
            let i = pick(rng, b.changes.len());
            flip(rng, &mut b.changes[i].0);
        }
        5 => {
            let i = pick(rng, b.changes.len());
            let c = &mut b.changes[i].0;
            let cut = pick(rng, c.len());
            c.truncate(cut);
        }
        6 => {
            // Another change's bytes under this bundle's signature.
            let other = &c.bundles[pick(rng, c.bundles.len())];
            if let Ok(Message::Changes(o)) = message::decode(other) {
                b.changes = o.changes;
            }
        }
        7 => {
            // The whole epoch, cut and re-signed with a head that does not match.
            let mut w = c.whole.clone();
            let keep = 1 + pick(rng, w.changes.len());
            w.changes.truncate(keep);
            w.signature = b.signature;
            b = w;
        }
        8 => {
            let dup = b.changes.clone();
            b.changes.extend(dup);
        }
        9 => b.changes.clear(),
        10 => {
            // Bytes of the encoded message, flipped.
            let mut m = message::encode(&Message::Changes(b));
            for _ in 0..1 + rng.next_u64() % 4 {
                flip(rng, &mut m);
            }
            return m;
        }
        11 => {
            let mut m = base.clone();
            let cut = pick(rng, m.len());
            m.truncate(cut);
            return m;
        }
        12 => {
            let mut m = c.other[pick(rng, c.other.len())].clone();
            flip(rng, &mut m);
            return m;
        }
        _ => {
            let p = Position {
                epoch: (rng.next_u64() % 3) as u32,
                seq: rng.next_u64() % 40,
            };
            let range = WriterRange {
                depth: (rng.next_u64() % 10) as u8,
                prefix: (rng.next_u64() % 300) as u32,
            };
            let hash = [(rng.next_u64() % 3) as u8; 32];
            let mut heads = vec![(c.writer, p, hash), (strangers[0], p, hash)];
            if rng.next_u64().is_multiple_of(2) {
                heads.reverse();
            }
            if rng.next_u64().is_multiple_of(5) {
                // A refusal, with a reason up to 4 KiB (only 256 bytes are kept).
                let n = (rng.next_u64() % 4096) as usize;
                return message::encode(&Message::Refused {
                    writer: heads[0].0,
                    position: p,
                    reason: "é".repeat(n / 2),
                });
            }
            if rng.next_u64().is_multiple_of(2) {
                let n = (rng.next_u64() % 20) as usize;
                let children = (0..n)
                    .map(|i| RangeSummary {
                        sum: u128::from(rng.next_u64()) * i as u128,
                        count: (rng.next_u64() % 5000) as u32,
                    })
                    .collect();
                return message::encode(&Message::Summaries { range, children });
            }
            return message::encode(&Message::Heads {
                range,
                heads,
                reply: rng.next_u64().is_multiple_of(2),
            });
        }
    }
    message::encode(&Message::Changes(b))
}

#[test]
fn mutated_messages_never_panic_never_apply_and_stay_bounded() {
    let inputs: u64 = std::env::var("STOCKSYNC_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("STOCKSYNC_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let options = NodeOptions {
        sync: SyncConfig {
            max_parked: 64,
            max_parked_bytes: 256 * 1024,
            ..SyncConfig::default()
        },
        outbox_bytes_per_peer: 1 << 20,
        ..NodeOptions::default()
    };
    let victim_id = Identity::from_seed([1; 32]).node_id();
    let c = corpus(victim_id);
    let strangers: Vec<NodeId> = (20..24u8)
        .map(|s| Identity::from_seed([s; 32]).node_id())
        .collect();
    let mut rng = XorShiftRng::seed_from_u64(seed);
    let mut victim = node(1, options.clone());
    let mut round_left = 0u64;
    for i in 0..inputs {
        if round_left == 0 {
            // A fresh victim holding a random prefix of the writer's history.
            victim = node(1, options.clone());
            victim.peer_up(c.writer).unwrap();
            let k = (rng.next_u64() % (c.bundles.len() as u64 + 1)) as usize;
            for b in &c.bundles[..k] {
                victim.receive(c.writer, b.clone());
            }
            victim.take_sends();
            round_left = 500;
        }
        round_left -= 1;
        let input = mutate(&mut rng, &c, &strangers);
        victim.receive(c.writer, input);
        victim.take_sends();
        let head = victim
            .query(|r| r.heads().get(&c.writer).map(|h| (h.position, h.hash)))
            .unwrap();
        if let Some(h) = head {
            assert!(
                c.heads.contains(&h),
                "input {i} (seed {seed}): head {h:?} is not one of the writer's"
            );
        }
        let forged = victim
            .query(|r| strangers.iter().any(|s| r.heads().contains_key(s)))
            .unwrap();
        assert!(
            !forged,
            "input {i} (seed {seed}): a stranger's change applied"
        );
        let s = victim.sync_status();
        assert!(
            s.forks.is_empty(),
            "input {i} (seed {seed}): a fork believed of one history: {s:?}"
        );
        assert!(
            s.parked_bundles <= 64 && s.parked_bytes <= 256 * 1024,
            "{s:?}"
        );
        assert!(s.outbox_bytes <= 1 << 20, "{s:?}");
    }
    // The victim still works and still converges with the real history.
    for b in &c.bundles {
        victim.receive(c.writer, b.clone());
    }
    let head = victim
        .query(|r| r.heads().get(&c.writer).map(|h| (h.position, h.hash)))
        .unwrap()
        .unwrap();
    assert!(c.heads.contains(&head));
    println!("structured fuzz: {inputs} inputs, seed {seed}, ok");
}
