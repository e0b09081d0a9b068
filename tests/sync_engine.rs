//! The sync engine on its own: relay, back-pressure, streaming catch-up, loss
//! repair by timers, and refusal of forged or malformed messages.

use std::collections::VecDeque;
use std::sync::Arc;

use stocksync::identity::Identity;
use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeId, NodeMeta, Position, Quantity, Role, Sku,
};
use stocksync::node::{NodeOptions, Writer};
use stocksync::store::memory::MemoryStore;
use stocksync::sync::message::{self, Bundle, ChangeBytes, HeadSignature, Message};
use stocksync::sync::{Effect, Input, SyncConfig, SyncEngine, SyncEvent};

struct Node {
    id: NodeId,
    writer: Writer,
    engine: SyncEngine,
    rejected: Vec<String>,
}

struct Net {
    nodes: Vec<Node>,
    queue: VecDeque<(usize, usize, Vec<u8>)>,
    now: u64,
    /// Drop every message from `.0` to `.1`.
    blocked: Option<(usize, usize)>,
}

impl Net {
    fn new(n: u8, config: SyncConfig) -> Self {
        let nodes = (0..n)
            .map(|i| {
                let identity = Identity::from_seed([i + 1; 32]);
                let id = identity.node_id();
                let meta = NodeMeta {
                    id,
                    name: format!("n{i}"),
                    location: LocationId::new("S1").unwrap(),
                    role: Role::Till,
                };
                let writer = Writer::new(
                    meta,
                    Box::new(MemoryStore::new()),
                    &NodeOptions::default(),
                    Arc::new(|| 0),
                )
                .unwrap();
                Node {
                    id,
                    writer,
                    engine: SyncEngine::new(identity, config.clone()),
                    rejected: Vec::new(),
                }
            })
            .collect();
        Self {
            nodes,
            queue: VecDeque::new(),
            now: 0,
            blocked: None,
        }
    }

    fn input(&mut self, i: usize, input: Input) {
        let n = &mut self.nodes[i];
        for e in n.writer.sync(&mut n.engine, self.now, input) {
            match e {
                Effect::Send { to, message } => {
                    let j = self.nodes.iter().position(|n| n.id == to).unwrap();
                    if self.blocked != Some((i, j)) {
                        self.queue.push_back((i, j, message));
                    }
                }
                Effect::Report(SyncEvent::Rejected { reason, .. }) => {
                    self.nodes[i].rejected.push(reason)
                }
                _ => {}
            }
        }
    }

    fn connect(&mut self, a: usize, b: usize) {
        let (ia, ib) = (self.nodes[a].id, self.nodes[b].id);
        self.input(a, Input::PeerUp(ib));
        self.input(b, Input::PeerUp(ia));
    }

    /// Delivers up to `max` messages; returns how many.
    fn deliver(&mut self, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some((from, to, message)) = self.queue.pop_front() else {
                break;
            };
            let from = self.nodes[from].id;
            self.input(to, Input::Received { from, message });
            n += 1;
        }
        n
    }

    fn settle(&mut self) {
        while self.deliver(usize::MAX) > 0 {}
    }

    fn tick(&mut self, at: u64) {
        self.now = at;
        for i in 0..self.nodes.len() {
            self.input(i, Input::Tick);
        }
    }

    fn event(&mut self, i: usize, id: &str, qty: u64, kind: EventKind) {
        let req = EventRequest::new(
            EventId::new(id).unwrap(),
            LocationId::new("S1").unwrap(),
            Sku::new("A").unwrap(),
            Quantity::new(qty).unwrap(),
            kind,
        );
        self.nodes[i]
            .writer
            .commit_group(vec![req])
            .pop()
            .unwrap()
            .unwrap();
        for c in self.nodes[i].writer.take_committed() {
            self.input(i, Input::LocalCommitted(c));
        }
    }

    fn head(&self, i: usize, writer: usize) -> Option<Position> {
        let w = self.nodes[writer].id;
        self.nodes[i]
            .writer
            .replica()
            .unwrap()
            .heads()
            .get(&w)
            .map(|h| h.position)
    }
}

#[test]
fn changes_relay_along_a_line_and_grants_come_back() {
    // 0 — 1 — 2: node 0 never talks to node 2.
    let mut net = Net::new(3, SyncConfig::default());
    net.connect(0, 1);
    net.connect(1, 2);
    net.event(0, "r", 10, EventKind::Receipt);
    net.event(0, "s", 2, EventKind::Sale);
    net.settle();
    assert_eq!(net.head(2, 0), net.head(0, 0));
    let to = net.nodes[0].id;
    net.event(2, "r2", 5, EventKind::Receipt);
    net.event(2, "g", 3, EventKind::Grant { to });
    net.settle();
    let pool =
        stocksync::model::PoolKey::new(LocationId::new("S1").unwrap(), Sku::new("A").unwrap());
    let r = net.nodes[0].writer.replica().unwrap();
    assert_eq!(r.book().rights(&pool, &to), 8 + 3);
    assert!(net.nodes.iter().all(|n| n.rejected.is_empty()));
}

#[test]
fn a_slow_peer_bounds_what_is_in_flight_and_catch_up_streams() {
    let config = SyncConfig {
        window_bytes: 16 * 1024,
        bundle_changes: 64,
        ..SyncConfig::default()
    };
    let mut net = Net::new(2, config.clone());
    net.event(0, "r", 100_000, EventKind::Receipt);
    for n in 0..3_000 {
        net.event(0, &format!("s{n}"), 1, EventKind::Sale);
    }
    net.connect(0, 1);
    // Node 1 never answers: everything it would send back is lost.
    net.blocked = Some((1, 0));
    net.settle();
    let bytes_from_0 = net.nodes[0].engine.stats().bytes_sent;
    assert!(
        bytes_from_0 < (config.window_bytes + 64 * 1024) as u64,
        "{bytes_from_0} bytes sent without acks, window {}",
        config.window_bytes
    );
    assert!(
        net.head(1, 0) < net.head(0, 0),
        "a window-limited peer cannot be caught up without acks"
    );
    // Acks flow again: the rest streams in bundles until caught up.
    net.blocked = None;
    net.tick(10_000);
    net.settle();
    assert_eq!(net.head(1, 0), net.head(0, 0));
}

#[test]
fn a_lost_message_is_repaired_by_the_timers() {
    let mut net = Net::new(2, SyncConfig::default());
    net.connect(0, 1);
    net.settle();
    net.event(0, "r", 10, EventKind::Receipt);
    // The push is lost.
    net.queue.clear();
    net.event(0, "s", 1, EventKind::Sale);
    net.settle();
    assert!(
        net.head(1, 0) < net.head(0, 0),
        "the second change cannot apply over a gap"
    );
    net.tick(2_000);
    net.settle();
    net.tick(4_000);
    net.settle();
    assert_eq!(net.head(1, 0), net.head(0, 0));
}

#[test]
fn forged_and_malformed_messages_are_refused_and_never_relayed() {
    let mut net = Net::new(3, SyncConfig::default());
    net.connect(0, 1);
    net.connect(1, 2);
    net.event(0, "r", 10, EventKind::Receipt);
    net.settle();
    let before = net.head(2, 0);
    // Node 2 (an insider) builds a change of its own and claims it is node 0's,
    // or signs node 0's next change with its own key.
    let mut doc =
        automerge::Automerge::new().with_actor(automerge::ActorId::from(net.nodes[0].id.0));
    let mut tx = doc.transaction();
    automerge::transaction::Transactable::put(
        &mut tx,
        automerge::ROOT,
        "m|S1|A",
        automerge::ScalarValue::counter(999),
    )
    .unwrap();
    tx.commit_with(
        automerge::transaction::CommitOptions::default().with_message(r#"{"epoch":9,"events":[]}"#),
    );
    let forged = doc.get_last_local_change().unwrap();
    let bundle = Bundle {
        writer: net.nodes[0].id,
        epoch: 9,
        first_seq: 1,
        changes: vec![ChangeBytes(forged.raw_bytes().to_vec())],
        signature: HeadSignature(vec![7; 64]),
    };
    let from = net.nodes[2].id;
    net.input(
        1,
        Input::Received {
            from,
            message: message::encode(&Message::Changes(bundle)),
        },
    );
    for garbage in [
        vec![],
        vec![9, 0, 1],
        vec![1, 0, 0xff, 0xff, 0xff],
        vec![1, 1, 1, 2, 3],
    ] {
        net.input(
            1,
            Input::Received {
                from,
                message: garbage,
            },
        );
    }
    net.settle();
    assert_eq!(
        net.nodes[1].rejected.len(),
        5,
        "{:?}",
        net.nodes[1].rejected
    );
    assert!(net.nodes[1].rejected[0].contains("signature"));
    assert_eq!(net.head(2, 0), before);
    assert_eq!(net.head(1, 0), net.head(0, 0));
    assert!(
        net.nodes[2].rejected.is_empty(),
        "nothing forged was relayed onwards"
    );
}

#[test]
fn equal_replicas_exchange_only_digests() {
    let mut net = Net::new(2, SyncConfig::default());
    net.connect(0, 1);
    net.event(0, "r", 1_000, EventKind::Receipt);
    for n in 0..500 {
        net.event(0, &format!("s{n}"), 1, EventKind::Sale);
    }
    net.settle();
    let before: u64 = net.nodes.iter().map(|n| n.engine.stats().bytes_sent).sum();
    net.tick(1_500);
    net.settle();
    let after: u64 = net.nodes.iter().map(|n| n.engine.stats().bytes_sent).sum();
    assert!(after > before, "a probe was sent");
    assert!(
        after - before < 100,
        "{} bytes for one probe round",
        after - before
    );
}

#[test]
fn last_unit_two_channels_during_a_partition_exactly_one_sells() {
    // Scenario 2: one unit left; its right sits with the till. The web channel
    // (node 2) holds none, so during the partition only the till can sell it.
    let mut net = Net::new(3, SyncConfig::default());
    net.connect(0, 1);
    net.connect(0, 2);
    net.event(0, "r", 1, EventKind::Receipt);
    let till = net.nodes[1].id;
    net.event(0, "g", 1, EventKind::Grant { to: till });
    net.settle();
    // Partition: nothing flows.
    let sale = |net: &mut Net, i: usize, id: &str, kind: EventKind| {
        let req = EventRequest::new(
            EventId::new(id).unwrap(),
            LocationId::new("S1").unwrap(),
            Sku::new("A").unwrap(),
            Quantity::new(1).unwrap(),
            kind,
        );
        net.nodes[i].writer.commit_group(vec![req]).pop().unwrap()
    };
    let till_sale = sale(&mut net, 1, "till-sale", EventKind::Sale);
    let web_order = sale(&mut net, 2, "web-order", EventKind::OnlineOrder);
    assert!(till_sale.is_ok());
    assert!(web_order.unwrap_err().is_refusal());
    for i in 0..3 {
        for c in net.nodes[i].writer.take_committed() {
            net.input(i, Input::LocalCommitted(c));
        }
    }
    net.tick(2_000);
    net.settle();
    let pool =
        stocksync::model::PoolKey::new(LocationId::new("S1").unwrap(), Sku::new("A").unwrap());
    for n in &net.nodes {
        let p = n
            .writer
            .replica()
            .unwrap()
            .book()
            .pool(&pool)
            .cloned()
            .unwrap();
        assert_eq!(p.on_hand(), 0);
    }
}
