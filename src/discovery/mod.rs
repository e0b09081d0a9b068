//! Peer discovery: candidate addresses of other nodes, as hints for the transport.
//!
//! A [`Discovery`] source announces this node (an [`Announcement`]) and reports
//! [`DiscoveryEvent`]s: a peer found, its addresses or claims changed, a peer
//! lost. Nothing here is trusted: a record only *claims* a node id, location,
//! role and fleet. The transport dials the addresses and its QUIC/TLS handshake
//! decides who is really there (pass [`Peer::expected`] as the expected id).
//!
//! Sources:
//! - [`memory`]: a shared in-memory LAN for the simulator and tests.
//! - [`static_peers`]: peers and the hub from the configuration (the fallback
//!   where routers drop multicast).
//! - `mdns` (feature `mdns`): mDNS/DNS-SD on an explicit interface allow-list.
//!
//! [`dial::DialPlan`] turns the events into transport calls (one dialled
//! address per peer).
//!
//! Every source is poll-based (sans-IO friendly): the caller polls
//! [`Discovery::poll_event`] and, for sources with timers, calls
//! [`Discovery::tick`] with the time. Records of another fleet, of this node, or
//! malformed ones are dropped and counted in [`DiscoveryStats`], never a panic;
//! at most a configured number of peers is tracked. See docs/discovery.md.

use std::net::SocketAddr;

use crate::fleet::FleetId;
use crate::model::{LocationId, NodeId, Role};

pub mod dial;
#[cfg(feature = "mdns")]
pub mod mdns;
pub mod memory;
pub mod record;
pub mod static_peers;
pub mod table;

pub use record::{RecordError, PROTOCOL_VERSION, SERVICE_TYPE};
pub use table::PeerTable;

/// Default most peers one source tracks.
pub const DEFAULT_MAX_PEERS: usize = 1024;

/// Most addresses kept per peer (the rest are dropped).
pub const MAX_ADDRS_PER_PEER: usize = 16;

/// What this node announces about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// This node's id (its public key).
    pub node: NodeId,
    /// Its home location.
    pub location: LocationId,
    /// Its role.
    pub role: Role,
    /// The fleet it belongs to.
    pub fleet: FleetId,
    /// The UDP port its transport listens on.
    pub port: u16,
}

/// What a peer claims about itself in its record (unverified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The claimed node id.
    pub node: NodeId,
    /// The claimed home location.
    pub location: LocationId,
    /// The claimed role.
    pub role: Role,
    /// The claimed fleet.
    pub fleet: FleetId,
}

/// How discovery names a peer across events.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerKey {
    /// A peer that announced itself under this (claimed) node id.
    Node(NodeId),
    /// A configured entry (static peer or hub), as written in the configuration.
    Configured(String),
}

/// A candidate peer: where to dial, and who it claims or is expected to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The key its later events carry.
    pub key: PeerKey,
    /// Addresses to try, deduplicated and sorted (IPv4 first), never empty.
    pub addrs: Vec<SocketAddr>,
    /// What an announcing peer claims; `None` for a configured entry.
    pub claim: Option<Claim>,
    /// The node id the configuration pins for a configured entry, if any.
    pub pinned: Option<NodeId>,
    /// Whether the configuration names this entry as the hub.
    pub hub: bool,
}

impl Peer {
    /// The node id the transport should expect in the handshake, if any.
    pub fn expected(&self) -> Option<NodeId> {
        self.pinned.or(self.claim.as_ref().map(|c| c.node))
    }
}

/// What a discovery source reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// A peer not tracked before.
    Found(Peer),
    /// A tracked peer's addresses or claims changed; the whole new view.
    Updated(Peer),
    /// A tracked peer went away (goodbye, expiry, or no longer resolvable).
    Lost(PeerKey),
}

/// Counters of what a source saw and did (records dropped are counted here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiscoveryStats {
    /// `Found` events emitted.
    pub found: u64,
    /// `Updated` events emitted.
    pub updated: u64,
    /// `Lost` events emitted.
    pub lost: u64,
    /// Records of this node itself, ignored.
    pub ignored_self: u64,
    /// Records of another fleet, ignored.
    pub ignored_other_fleet: u64,
    /// Records with a missing, oversized or unparsable field, ignored.
    pub malformed: u64,
    /// Records of a protocol version this build does not speak, ignored.
    pub unsupported_version: u64,
    /// New peers refused because the table was full.
    pub over_capacity: u64,
    /// Records with no usable address, ignored.
    pub no_address: u64,
    /// Configured entries that did not resolve (each failed attempt).
    pub resolve_failures: u64,
}

/// Why a discovery source cannot start or act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// mDNS needs an explicit interface allow-list; none was given.
    #[error("mDNS needs an explicit interface allow-list (none configured): refusing to start")]
    NoInterfaces,
    /// An interface name that cannot be one.
    #[error("interface name {0:?} is not valid (1 to 15 bytes, no '/', ':' or whitespace)")]
    BadInterface(String),
    /// The process is in the network namespace the configuration refuses.
    #[error("refusing to start mDNS in network namespace {0} (refuse_netns)")]
    RefusedNetns(String),
    /// The process's network namespace could not be read.
    #[error("cannot tell the network namespace: {0}")]
    NetnsUnknown(std::io::Error),
    /// A configured peer entry that cannot be parsed.
    #[error("peer entry {entry:?}: {reason}")]
    BadEntry {
        /// The entry as configured.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The announcement does not fit in a record.
    #[error("announcement: {0}")]
    Record(#[from] RecordError),
    /// The mDNS library failed.
    #[error("mDNS: {0}")]
    Mdns(String),
    /// The source was shut down.
    #[error("discovery is shut down")]
    Shutdown,
}

/// A source of candidate peers.
pub trait Discovery: Send {
    /// Starts announcing this node, or replaces the current announcement.
    fn announce(&mut self, announcement: &Announcement) -> Result<(), DiscoveryError>;

    /// The next pending event, if any; never blocks.
    fn poll_event(&mut self) -> Option<DiscoveryEvent>;

    /// Runs the source's timers (re-resolution, expiry) at `now_ms`, a
    /// monotonic time in milliseconds. Sources without timers ignore it.
    fn tick(&mut self, now_ms: u64) {
        let _ = now_ms;
    }

    /// When [`Discovery::tick`] next has work, if ever.
    fn next_tick_ms(&self) -> Option<u64> {
        None
    }

    /// The counters so far.
    fn stats(&self) -> DiscoveryStats;

    /// Stops announcing (saying goodbye where the medium allows) and stops
    /// reporting. Idempotent.
    fn shutdown(&mut self) -> Result<(), DiscoveryError>;
}

/// Sorts IPv4 first, drops duplicates, unusable addresses (unspecified,
/// multicast, broadcast, port 0) and everything past [`MAX_ADDRS_PER_PEER`].
pub fn clean_addrs(addrs: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    let mut v: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| {
            let ip = a.ip();
            a.port() != 0
                && !ip.is_unspecified()
                && !ip.is_multicast()
                && ip != std::net::IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
        })
        .collect();
    v.sort_by_key(|a| (a.is_ipv6(), *a));
    v.dedup();
    v.truncate(MAX_ADDRS_PER_PEER);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addrs_are_cleaned_and_bounded() {
        let a: SocketAddr = "10.0.0.2:7401".parse().unwrap();
        let b: SocketAddr = "[fe80::1]:7401".parse().unwrap();
        let bad = [
            "0.0.0.0:7401",
            "224.0.0.251:5353",
            "10.0.0.3:0",
            "255.255.255.255:1",
        ]
        .map(|s| s.parse::<SocketAddr>().unwrap());
        let got = clean_addrs([b, a, a].into_iter().chain(bad));
        assert_eq!(got, vec![a, b]);
        let many = (0..40u16).map(|p| SocketAddr::from(([10, 0, 0, 1], 1000 + p)));
        assert_eq!(clean_addrs(many).len(), MAX_ADDRS_PER_PEER);
    }
}
