//! The bounded table of announced peers, shared by the announcing sources (pure).
//!
//! It turns records (parsed or not) into [`DiscoveryEvent`]s: records of this
//! node, of another fleet, malformed ones, ones without a usable address and
//! new peers past the bound are dropped and counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tracing::debug;

use super::{clean_addrs, Claim, DiscoveryEvent, DiscoveryStats, Peer, PeerKey, RecordError};
use crate::fleet::FleetId;
use crate::model::NodeId;

/// The peers one announcing source tracks, by claimed node id.
#[derive(Debug)]
pub struct PeerTable {
    me: NodeId,
    fleet: FleetId,
    max_peers: usize,
    peers: BTreeMap<NodeId, Peer>,
    stats: DiscoveryStats,
}

impl PeerTable {
    /// An empty table for node `me` of `fleet`, tracking at most `max_peers`.
    pub fn new(me: NodeId, fleet: FleetId, max_peers: usize) -> Self {
        Self {
            me,
            fleet,
            max_peers,
            peers: BTreeMap::new(),
            stats: DiscoveryStats::default(),
        }
    }

    /// A record was seen at `addrs`: the event it causes, if any.
    pub fn observe(
        &mut self,
        record: Result<Claim, RecordError>,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Option<DiscoveryEvent> {
        let claim = match record {
            Ok(c) => c,
            Err(RecordError::UnsupportedVersion(v)) => {
                self.stats.unsupported_version += 1;
                debug!(node = %self.me, version = %v, "discovery: record of another protocol version ignored");
                return None;
            }
            Err(e) => {
                self.stats.malformed += 1;
                debug!(node = %self.me, error = %e, "discovery: malformed record ignored");
                return None;
            }
        };
        if claim.node == self.me {
            self.stats.ignored_self += 1;
            return None;
        }
        if claim.fleet != self.fleet {
            self.stats.ignored_other_fleet += 1;
            debug!(node = %self.me, peer = %claim.node, fleet = %claim.fleet, "discovery: record of another fleet ignored");
            return None;
        }
        let addrs = clean_addrs(addrs);
        if addrs.is_empty() {
            self.stats.no_address += 1;
            return None;
        }
        let peer = Peer {
            key: PeerKey::Node(claim.node),
            addrs,
            claim: Some(claim.clone()),
            pinned: None,
            hub: false,
        };
        let full = self.peers.len() >= self.max_peers;
        match self.peers.get_mut(&claim.node) {
            Some(old) if *old == peer => None,
            Some(old) => {
                *old = peer.clone();
                self.stats.updated += 1;
                debug!(node = %self.me, peer = %claim.node, addrs = ?peer.addrs, "discovery: peer updated");
                Some(DiscoveryEvent::Updated(peer))
            }
            None if full => {
                self.stats.over_capacity += 1;
                debug!(node = %self.me, peer = %claim.node, max = self.max_peers, "discovery: table full, peer ignored");
                None
            }
            None => {
                self.peers.insert(claim.node, peer.clone());
                self.stats.found += 1;
                debug!(node = %self.me, peer = %claim.node, addrs = ?peer.addrs, "discovery: peer found");
                Some(DiscoveryEvent::Found(peer))
            }
        }
    }

    /// The peer claiming `node` went away: `Lost` if it was tracked.
    pub fn remove(&mut self, node: &NodeId) -> Option<DiscoveryEvent> {
        self.peers.remove(node)?;
        self.stats.lost += 1;
        debug!(node = %self.me, peer = %node, "discovery: peer lost");
        Some(DiscoveryEvent::Lost(PeerKey::Node(*node)))
    }

    /// Every tracked peer goes away: their `Lost` events.
    pub fn clear(&mut self) -> Vec<DiscoveryEvent> {
        let nodes: Vec<NodeId> = self.peers.keys().copied().collect();
        nodes.iter().filter_map(|n| self.remove(n)).collect()
    }

    /// The tracked peer claiming `node`.
    pub fn get(&self, node: &NodeId) -> Option<&Peer> {
        self.peers.get(node)
    }

    /// How many peers are tracked.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The counters so far.
    pub fn stats(&self) -> DiscoveryStats {
        self.stats
    }

    /// The counters, for a source to add what it saw before the table.
    pub fn stats_mut(&mut self) -> &mut DiscoveryStats {
        &mut self.stats
    }
}
