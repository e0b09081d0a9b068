//! From discovery events to transport calls (pure): one dialled address per peer.
//!
//! For each peer the plan dials its first address (IPv4 first) and keeps it as
//! long as an update still lists it with the same expected id; otherwise it
//! moves to the new first address. Two peers (say the hub from the
//! configuration and the same node found by mDNS) may name one address: it is
//! added once, with the expectation of the first, and removed when the last
//! one goes. The actions map onto `Transport::add_peer(addr, expected)` and
//! `Transport::remove_peer(addr)`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{DiscoveryEvent, Peer, PeerKey};
use crate::model::NodeId;

/// What the transport should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialAction {
    /// Connect to `addr`, expecting `expected` in the handshake when given.
    Add {
        /// Where.
        addr: SocketAddr,
        /// The node id the handshake must show, if known.
        expected: Option<NodeId>,
    },
    /// Stop connecting to `addr`.
    Remove {
        /// Where.
        addr: SocketAddr,
    },
}

/// Which address is dialled for which peer.
#[derive(Clone, Debug, Default)]
pub struct DialPlan {
    chosen: BTreeMap<PeerKey, (SocketAddr, Option<NodeId>)>,
    users: BTreeMap<SocketAddr, usize>,
}

impl DialPlan {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// The transport actions `event` calls for.
    pub fn apply(&mut self, event: &DiscoveryEvent) -> Vec<DialAction> {
        let mut out = Vec::new();
        match event {
            DiscoveryEvent::Found(p) | DiscoveryEvent::Updated(p) => self.place(p, &mut out),
            DiscoveryEvent::Lost(key) => self.release(key, &mut out),
        }
        out
    }

    /// The dialled address of each peer.
    pub fn dialled(&self) -> impl Iterator<Item = (&PeerKey, SocketAddr)> {
        self.chosen.iter().map(|(k, (a, _))| (k, *a))
    }

    fn place(&mut self, p: &Peer, out: &mut Vec<DialAction>) {
        let expected = p.expected();
        if let Some((addr, exp)) = self.chosen.get(&p.key) {
            if p.addrs.contains(addr) && *exp == expected {
                return;
            }
            self.release(&p.key, out);
        }
        // A Peer's addresses are never empty; a defensive no-op otherwise.
        let Some(addr) = p.addrs.first().copied() else {
            return;
        };
        let n = self.users.entry(addr).or_insert(0);
        *n += 1;
        if *n == 1 {
            out.push(DialAction::Add { addr, expected });
        }
        self.chosen.insert(p.key.clone(), (addr, expected));
    }

    fn release(&mut self, key: &PeerKey, out: &mut Vec<DialAction>) {
        let Some((addr, _)) = self.chosen.remove(key) else {
            return;
        };
        if let Some(n) = self.users.get_mut(&addr) {
            *n -= 1;
            if *n == 0 {
                self.users.remove(&addr);
                out.push(DialAction::Remove { addr });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(key: PeerKey, addrs: &[&str], pinned: Option<NodeId>) -> Peer {
        Peer {
            key,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            claim: None,
            pinned,
            hub: false,
        }
    }

    #[test]
    fn one_address_per_peer_kept_while_listed() {
        let mut plan = DialPlan::new();
        let k = PeerKey::Node(NodeId([1; 32]));
        let a: SocketAddr = "10.0.0.1:7401".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:7401".parse().unwrap();
        let pin = Some(NodeId([1; 32]));
        let found = DiscoveryEvent::Found(peer(k.clone(), &["10.0.0.1:7401"], pin));
        assert_eq!(
            plan.apply(&found),
            [DialAction::Add {
                addr: a,
                expected: pin
            }]
        );
        let more =
            DiscoveryEvent::Updated(peer(k.clone(), &["10.0.0.2:7401", "10.0.0.1:7401"], pin));
        assert!(plan.apply(&more).is_empty(), "still listed: kept");
        let moved = DiscoveryEvent::Updated(peer(k.clone(), &["10.0.0.2:7401"], pin));
        assert_eq!(
            plan.apply(&moved),
            [
                DialAction::Remove { addr: a },
                DialAction::Add {
                    addr: b,
                    expected: pin
                }
            ]
        );
        assert_eq!(plan.dialled().count(), 1);
        assert_eq!(
            plan.apply(&DiscoveryEvent::Lost(k.clone())),
            [DialAction::Remove { addr: b }]
        );
        assert!(plan.apply(&DiscoveryEvent::Lost(k)).is_empty());
    }

    #[test]
    fn a_shared_address_is_added_once_and_removed_last() {
        let mut plan = DialPlan::new();
        let hub = PeerKey::Configured("10.0.0.9:7401".into());
        let node = PeerKey::Node(NodeId([9; 32]));
        let addr: SocketAddr = "10.0.0.9:7401".parse().unwrap();
        let first = plan.apply(&DiscoveryEvent::Found(peer(
            hub.clone(),
            &["10.0.0.9:7401"],
            None,
        )));
        assert_eq!(
            first,
            [DialAction::Add {
                addr,
                expected: None
            }]
        );
        let second = plan.apply(&DiscoveryEvent::Found(peer(
            node.clone(),
            &["10.0.0.9:7401"],
            Some(NodeId([9; 32])),
        )));
        assert!(second.is_empty());
        assert!(plan.apply(&DiscoveryEvent::Lost(hub)).is_empty());
        assert_eq!(
            plan.apply(&DiscoveryEvent::Lost(node)),
            [DialAction::Remove { addr }]
        );
    }
}
