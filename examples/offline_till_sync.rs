//! Scenario 1 in miniature, over the real sync engine and an in-memory network:
//! a store node grants rights to two tills; the store's link drops; the tills
//! keep selling within their rights (an oversell is refused); the link returns
//! and the store converges to the exact counts. Run:
//! `cargo run --example offline_till_sync`.

use std::collections::VecDeque;
use std::sync::Arc;

use anyhow::Result;
use stocksync::identity::Identity;
use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeId, NodeMeta, PoolKey, Quantity, Role, Sku,
};
use stocksync::node::{NodeOptions, Writer};
use stocksync::store::memory::MemoryStore;
use stocksync::sync::{Effect, Input, SyncConfig, SyncEngine};

struct Device {
    name: &'static str,
    id: NodeId,
    writer: Writer,
    engine: SyncEngine,
}

struct Lan {
    devices: Vec<Device>,
    wire: VecDeque<(usize, usize, Vec<u8>)>,
    now: u64,
    store_link_up: bool,
}

impl Lan {
    fn input(&mut self, i: usize, input: Input) {
        let d = &mut self.devices[i];
        for e in d.writer.sync(&mut d.engine, self.now, input) {
            if let Effect::Send { to, message } = e {
                let j = self
                    .devices
                    .iter()
                    .position(|d| d.id == to)
                    .expect("known peer");
                self.wire.push_back((i, j, message));
            }
        }
    }

    fn link(&mut self, a: usize, b: usize, up: bool) {
        let (ia, ib) = (self.devices[a].id, self.devices[b].id);
        let (ea, eb) = if up {
            (Input::PeerUp(ib), Input::PeerUp(ia))
        } else {
            (Input::PeerDown(ib), Input::PeerDown(ia))
        };
        self.input(a, ea);
        self.input(b, eb);
    }

    fn settle(&mut self) {
        while let Some((from, to, message)) = self.wire.pop_front() {
            if !self.store_link_up && (from == 0 || to == 0) {
                continue;
            }
            let from = self.devices[from].id;
            self.input(to, Input::Received { from, message });
        }
    }

    fn event(&mut self, i: usize, id: &str, qty: u64, kind: EventKind) -> Result<String> {
        let req = EventRequest::new(
            EventId::new(id)?,
            LocationId::new("S1")?,
            Sku::new("TEE")?,
            Quantity::new(qty)?,
            kind,
        );
        let answer = self.devices[i]
            .writer
            .commit_group(vec![req])
            .pop()
            .expect("one answer");
        for c in self.devices[i].writer.take_committed() {
            self.input(i, Input::LocalCommitted(c));
        }
        Ok(match answer {
            Ok(o) => format!(
                "ok (rights now {}, on hand as seen here {})",
                o.rights_after, o.on_hand_after
            ),
            Err(e) => format!("REFUSED: {e}"),
        })
    }

    fn on_hand(&self, i: usize) -> i64 {
        let pool = PoolKey::new(
            LocationId::new("S1").expect("valid"),
            Sku::new("TEE").expect("valid"),
        );
        let r = self.devices[i].writer.replica().expect("replica");
        r.book().pool(&pool).map(|p| p.on_hand()).unwrap_or(0)
    }
}

fn device(seed: u8, name: &'static str, role: Role) -> Result<Device> {
    let identity = Identity::from_seed([seed; 32]);
    let id = identity.node_id();
    let meta = NodeMeta {
        id,
        name: name.into(),
        location: LocationId::new("S1")?,
        role,
    };
    let writer = Writer::new(
        meta,
        Box::new(MemoryStore::new()),
        &NodeOptions::default(),
        Arc::new(|| 0),
    )?;
    Ok(Device {
        name,
        id,
        writer,
        engine: SyncEngine::new(identity, SyncConfig::default()),
    })
}

fn main() -> Result<()> {
    let mut lan = Lan {
        devices: vec![
            device(1, "store", Role::Store)?,
            device(2, "till-a", Role::Till)?,
            device(3, "till-b", Role::Till)?,
        ],
        wire: VecDeque::new(),
        now: 0,
        store_link_up: true,
    };
    lan.link(0, 1, true);
    lan.link(0, 2, true);
    lan.link(1, 2, true);
    let (a, b) = (lan.devices[1].id, lan.devices[2].id);
    println!(
        "store receives 10 TEE and grants 4 to each till: {}",
        lan.event(0, "rcv", 10, EventKind::Receipt)?
    );
    lan.event(0, "g-a", 4, EventKind::Grant { to: a })?;
    lan.event(0, "g-b", 4, EventKind::Grant { to: b })?;
    lan.settle();

    println!("-- the store's link drops; the tills keep selling on their own rights --");
    lan.store_link_up = false;
    println!(
        "till-a sells 3: {}",
        lan.event(1, "a1", 3, EventKind::Sale)?
    );
    println!(
        "till-b sells 4: {}",
        lan.event(2, "b1", 4, EventKind::Sale)?
    );
    println!(
        "till-b sells 1 more: {}",
        lan.event(2, "b2", 1, EventKind::Sale)?
    );
    lan.settle();
    println!(
        "store still sees on hand {} (it heard nothing)",
        lan.on_hand(0)
    );

    println!("-- the link returns; anti-entropy runs on the next probe --");
    lan.store_link_up = true;
    lan.now = 1_500;
    for i in 0..3 {
        lan.input(i, Input::Tick);
    }
    lan.settle();
    for (i, d) in lan.devices.iter().enumerate() {
        println!("{:>7} sees on hand {}", d.name, lan.on_hand(i));
    }
    anyhow::ensure!(
        (0..3).all(|i| lan.on_hand(i) == 3),
        "every replica converges to 10 - 3 - 4 = 3"
    );
    println!("converged: 10 received, 7 sold, 3 on hand everywhere");
    Ok(())
}
