//! A hostile member in the simulated fleet: a till enrolled at its own
//! location `ATK` whose key is in bad hands. It is scripted, not a [`Node`]:
//! it talks straight to the two honest nodes it is linked to (the hub and the
//! first store node) and every step may
//! - **equivocate**: extend two histories of its own key and send one to each
//!   side, so honest nodes hold different changes at the same positions;
//! - **forge**: a mint or a grant at an honest location (the roster forbids
//!   it), a bundle with a broken signature, changes filed under an honest
//!   writer;
//! - **flood**: junk bytes, bundles far ahead of any gap (parking pressure),
//!   bundles of keys outside the fleet.
//!
//! What the checker asserts of it (see `sim::run`): no honest node applies
//! anything forged (the honest pools stay exactly the model's), every
//! refusal an honest node reports comes from the attacker, parked state stays
//! within its configured bounds, and after the heal every honest node holds
//! the proof of the attacker's fork, and no other fork.

use super::world::World;
use crate::escrow::CounterKey;
use crate::identity::Identity;
use crate::model::{LocationId, NodeId, PoolKey, Role, Sku};
use crate::node::Node;
use crate::replica::{CommittedChange, CounterWrite, OwnDoc};
use crate::sync::bundle;
use crate::sync::message::{self, Message};
use crate::sync::signing::sign_head;

/// The attacker's own location (its mints there are allowed, and ignored by
/// the checker's stock model).
pub const LOCATION: &str = "ATK";

/// Bundles in one parking flood (more than a writer may park).
const FLOOD_BURST: usize = 24;

/// What the attacker sent, by kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttackCounts {
    /// Steps where it extended both histories.
    pub equivocations: usize,
    /// Forged messages.
    pub forgeries: usize,
    /// Flooding messages.
    pub floods: usize,
}

/// One branch of the attacker's history.
struct Branch {
    doc: OwnDoc,
    changes: Vec<CommittedChange>,
    minted: i64,
}

/// The scripted attacker.
pub struct Adversary {
    identity: Identity,
    /// A second stolen member key that never equivocates (so it is never
    /// frozen): what it forges is refused by the roster rules alone.
    forger: Identity,
    /// Its node id (in the roster, as a till at [`LOCATION`]).
    pub id: NodeId,
    /// The honest nodes it talks to; branch `k` goes to `targets[k]`.
    pub targets: [usize; 2],
    branches: [Branch; 2],
    /// Changes of a third history kept for floods (never sent from its start).
    flood: Vec<CommittedChange>,
    /// What it sent.
    pub counts: AttackCounts,
    next_junk: u64,
}

fn pool(location: &str, sku: &str) -> PoolKey {
    // Names here are valid.
    PoolKey::new(
        LocationId::new(location).expect("valid location"),
        Sku::new(sku).expect("valid sku"),
    )
}

impl Adversary {
    /// The attacker of seed `seed`, linked to `targets`.
    pub fn new(seed: u64, targets: [usize; 2]) -> Self {
        let mut s = [0xA7u8; 32];
        s[..8].copy_from_slice(&seed.to_le_bytes());
        let identity = Identity::from_seed(s);
        let id = identity.node_id();
        s[31] ^= 0xFF;
        let forger = Identity::from_seed(s);
        let branch = || Branch {
            doc: OwnDoc::new(&id, 1),
            changes: Vec::new(),
            minted: 0,
        };
        let mut flood_doc = OwnDoc::new(&id, 7);
        let key = CounterKey::Minted(pool(LOCATION, "F"));
        let flood = (0..64)
            .filter_map(|v| {
                let w = CounterWrite {
                    key: key.clone(),
                    old: v,
                    new: v + 1,
                };
                flood_doc.commit(&[w], "[]", 0)
            })
            .collect();
        Self {
            identity,
            forger,
            id,
            targets,
            branches: [branch(), branch()],
            flood,
            counts: AttackCounts::default(),
            next_junk: 0,
        }
    }

    /// Its roster entries: two tills at its own location.
    pub fn members(&self) -> [(NodeId, crate::fleet::Member); 2] {
        // The location name is valid.
        let loc = LocationId::new(LOCATION).expect("valid location");
        let member = |name: &str| crate::fleet::Member::new(name, Role::Till, [loc.clone()]);
        [
            (self.id, member("attacker")),
            (self.forger.node_id(), member("forger")),
        ]
    }

    /// True once both honest sides got a different history of its key.
    pub fn equivocated(&self) -> bool {
        self.counts.equivocations > 0
    }

    /// A signed bundle of `changes` (consecutive, of `epoch`).
    fn bundle(&self, epoch: u32, changes: &[CommittedChange]) -> Option<Message> {
        let last = changes.last()?;
        let signature = sign_head(&self.identity, last.position, &last.hash);
        Some(Message::Changes(bundle::pack(
            self.id,
            epoch,
            changes.iter().map(|c| c.bytes.clone()).collect(),
            changes.first()?.position.seq,
            signature,
        )))
    }

    /// Delivers `bytes` to honest node `to`, connecting first if needed.
    fn deliver(&self, world: &mut World, to: usize, bytes: Vec<u8>) {
        let me = self.id;
        let hex = me.to_hex();
        world.with_node(to, |n: &Node| {
            if !n.sync_status().peers.contains(&hex) {
                // An honest node accepts the connection: the attacker is enrolled.
                let _ = n.peer_up(me);
            }
            n.receive(me, bytes);
        });
    }

    /// Extends branch `k` by one mint at the attacker's location.
    fn extend(&mut self, k: usize, by: i64) {
        let b = &mut self.branches[k];
        let w = CounterWrite {
            key: CounterKey::Minted(pool(LOCATION, "E")),
            old: b.minted,
            new: b.minted + by,
        };
        if let Some(c) = b.doc.commit(&[w], "[]", 0) {
            b.minted += by;
            b.changes.push(c);
        }
    }

    /// Both histories grow by one different change; each side gets its own in
    /// full (small: one change per equivocating step).
    pub fn equivocate(&mut self, world: &mut World) {
        self.extend(0, 1);
        self.extend(1, 2);
        for k in 0..2 {
            if let Some(m) = self.bundle(1, &self.branches[k].changes) {
                self.deliver(world, self.targets[k], message::encode(&m));
            }
        }
        self.counts.equivocations += 1;
    }

    /// One forged message, of a kind picked by `pick`.
    pub fn forge(&mut self, world: &mut World, pick: u64) {
        let to = self.targets[(pick % 2) as usize];
        let bytes = match pick % 4 {
            // A mint or a grant at an honest location, signed by the forger
            // (each in an epoch of its own: one refused change does not
            // make the next a gap).
            0 | 1 => {
                let key = if pick.is_multiple_of(4) {
                    CounterKey::Minted(pool("S0", "K0"))
                } else {
                    let victim = world.nodes[to].meta.id;
                    CounterKey::Granted(pool("S0", "K0"), victim)
                };
                let epoch = 2 + self.counts.forgeries as u32;
                let mut doc = OwnDoc::new(&self.forger.node_id(), epoch);
                let w = CounterWrite {
                    key,
                    old: 0,
                    new: 1_000,
                };
                let Some(c) = doc.commit(&[w], "[]", 0) else {
                    return;
                };
                let signature = sign_head(&self.forger, c.position, &c.hash);
                let b = bundle::pack(self.forger.node_id(), epoch, vec![c.bytes], 1, signature);
                Some(message::encode(&Message::Changes(b)))
            }
            // Its own history with a broken signature.
            2 => self.bundle(1, &self.branches[0].changes).map(|m| {
                let Message::Changes(mut b) = m else {
                    return Vec::new();
                };
                if let Some(byte) = b.signature.0.first_mut() {
                    *byte ^= 0x40;
                }
                message::encode(&Message::Changes(b))
            }),
            // Its changes filed under an honest writer.
            _ => self.bundle(1, &self.branches[0].changes).map(|m| {
                let Message::Changes(mut b) = m else {
                    return Vec::new();
                };
                b.writer = world.nodes[to].meta.id;
                message::encode(&Message::Changes(b))
            }),
        };
        if let Some(bytes) = bytes.filter(|b| !b.is_empty()) {
            self.deliver(world, to, bytes);
            self.counts.forgeries += 1;
        }
    }

    /// One flooding message, of a kind picked by `pick`.
    pub fn flood(&mut self, world: &mut World, pick: u64) {
        let to = self.targets[(pick % 2) as usize];
        let bytes = match pick % 3 {
            // Junk.
            0 => {
                self.next_junk += 1;
                let n = (pick % 1500) as usize + 1;
                (0..n)
                    .map(|i| (i as u64 * 31 + self.next_junk * 17 + pick) as u8)
                    .collect()
            }
            // A burst of signed tails far ahead of what anyone holds: parked
            // (each a different slice), never applied, dropped by the bounds.
            1 => {
                let span = self.flood.len() - 10;
                for k in 0..FLOOD_BURST {
                    let start = 2 + (pick as usize + k * 7) % span;
                    if let Some(m) = self.bundle(7, &self.flood[start..start + 8]) {
                        self.deliver(world, to, message::encode(&m));
                    }
                }
                self.counts.floods += FLOOD_BURST;
                return;
            }
            // A key outside the fleet.
            _ => {
                let stranger = Identity::from_seed([(pick % 251) as u8 + 1; 32]);
                let mut doc = OwnDoc::new(&stranger.node_id(), 1);
                let w = CounterWrite {
                    key: CounterKey::Minted(pool("S0", "K0")),
                    old: 0,
                    new: 5,
                };
                let Some(c) = doc.commit(&[w], "[]", 0) else {
                    return;
                };
                let signature = sign_head(&stranger, c.position, &c.hash);
                let b = bundle::pack(stranger.node_id(), 1, vec![c.bytes], 1, signature);
                message::encode(&Message::Changes(b))
            }
        };
        self.deliver(world, to, bytes);
        self.counts.floods += 1;
    }
}
