//! A fleet of four members (store, till, hub, channel) with a signed roster,
//! over the lossless mesh, and helpers to watch what is relayed.
#![allow(dead_code)]

use stocksync::fleet::{FleetAuthority, FleetId, Member, Roster, SignedRoster};
use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeId, NodeMeta, Quantity, Role, Sku,
};
use stocksync::node::NodeOptions;
use stocksync::sim::mesh::Mesh;
use stocksync::store::memory::MemoryStore;
use stocksync::sync::message::{self, Message};
use stocksync::sync::SyncConfig;

/// Mesh indices of the members.
pub const STORE: usize = 0;
/// The till, at S1.
pub const TILL: usize = 1;
/// The HQ hub, at HQ only.
pub const HUB: usize = 2;
/// The online channel, selling from S1.
pub const CHANNEL: usize = 3;

/// Name, role and locations of each member, by index.
const SPEC: [(&str, Role, &str); 4] = [
    ("store", Role::Store, "S1"),
    ("till", Role::Till, "S1"),
    ("hub", Role::Hub, "HQ"),
    ("web", Role::Channel, "S1"),
];

/// A location id.
pub fn loc(s: &str) -> LocationId {
    LocationId::new(s).unwrap()
}

/// An event on SKU `A` at `location`.
pub fn at(location: &str, id: &str, qty: u64, kind: EventKind) -> EventRequest {
    EventRequest::new(
        EventId::new(id).unwrap(),
        loc(location),
        Sku::new("A").unwrap(),
        Quantity::new(qty).unwrap(),
        kind,
    )
}

/// Node options in fleet `fleet` (`None`: open mode).
pub fn options(fleet: Option<FleetId>) -> NodeOptions {
    NodeOptions {
        fleet,
        ..NodeOptions::default()
    }
}

/// The fleet under test.
pub struct Fleet {
    /// The members (and any node a test adds).
    pub mesh: Mesh,
    /// HQ's roster key.
    pub authority: FleetAuthority,
    /// The roster every member holds (version 4).
    pub roster: Roster,
}

/// The four members with the roster installed, not yet connected. Those in
/// `rogue` run in open mode: software that checks nothing of its own (a
/// stolen key in modified hands); the others are in the fleet.
pub fn fleet(rogue: &[usize]) -> Fleet {
    let authority = FleetAuthority::from_seed([42; 32]);
    let mut mesh = Mesh::new(SyncConfig::default());
    let mut roster = authority.roster();
    for (i, (name, role, home)) in SPEC.iter().enumerate() {
        let fleet = (!rogue.contains(&i)).then(|| authority.fleet());
        let seed = [i as u8 + 1; 32];
        let meta = |id| NodeMeta {
            id,
            name: name.to_string(),
            location: loc(home),
            role: *role,
        };
        let idx = mesh
            .add_with(seed, MemoryStore::new(), options(fleet), meta)
            .unwrap();
        let member = Member::new(*name, *role, [loc(home)]);
        roster = roster.with_member(mesh.nodes[idx].id, member);
    }
    let signed = authority.sign(&roster).unwrap();
    for i in 0..4 {
        if !rogue.contains(&i) {
            assert_eq!(
                mesh.nodes[i].node.install_roster(signed.clone()).unwrap(),
                4
            );
        }
    }
    Fleet {
        mesh,
        authority,
        roster,
    }
}

impl Fleet {
    /// Joins the members in a line: till — store — hub — channel.
    pub fn line(&mut self) {
        self.mesh.connect(TILL, STORE);
        self.mesh.connect(STORE, HUB);
        self.mesh.connect(HUB, CHANNEL);
        self.mesh.settle();
    }

    /// The id of node `i`.
    pub fn id(&self, i: usize) -> NodeId {
        self.mesh.nodes[i].id
    }

    /// Signs `roster` with the fleet's authority.
    pub fn sign(&self, roster: &Roster) -> SignedRoster {
        self.authority.sign(roster).unwrap()
    }

    /// Installs `roster` at node `i` and queues what it sends.
    pub fn install(&mut self, i: usize, roster: &Roster) {
        let signed = self.sign(roster);
        self.mesh.nodes[i].node.install_roster(signed).unwrap();
        self.mesh.collect(i);
    }

    /// The roster version each member holds.
    pub fn versions(&self) -> Vec<u64> {
        (0..4)
            .map(|i| self.mesh.nodes[i].node.roster_version())
            .collect()
    }
}

/// Delivers every queued message, and returns every `(from, to)` that carried
/// a `Changes` message of `writer` sent by another node than `writer` (a relay).
pub fn settle_watching(m: &mut Mesh, writer: NodeId) -> Vec<(usize, usize)> {
    let mut relayed = Vec::new();
    while let Some((from, to, bytes)) = m.queue.pop_front() {
        let sender = m.nodes[from].id;
        if let Ok(Message::Changes(b)) = message::decode(&bytes) {
            if b.writer == writer && sender != writer {
                relayed.push((from, to));
            }
        }
        m.receive(to, sender, bytes);
    }
    relayed
}

/// True when node `i` has a `Roster` message queued.
pub fn sends_roster(m: &Mesh, i: usize) -> bool {
    m.queue.iter().any(|(from, _, bytes)| {
        *from == i && matches!(message::decode(bytes), Ok(Message::Roster(_)))
    })
}
