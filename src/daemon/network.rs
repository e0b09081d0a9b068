//! The daemon's one integration point with the peer network.
//!
//! The QUIC transport (and mDNS discovery) are built on another branch; once
//! merged, [`start_network`] starts it on the daemon's runtime with the
//! `[network]` section and [`NetworkHandle`] wraps it: `peers()` fills the
//! `peers` array of `GET /v1/status` and `shutdown()` closes the connections
//! before the node is released. Until then the daemon runs the node alone.

use serde::Serialize;
use stocksync::node::Node;
use tracing::warn;

use super::config::NetworkSection;

/// A connected or configured peer, as `GET /v1/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    /// The peer's node id (hex), once authenticated.
    pub node_id: Option<String>,
    /// The peer's address.
    pub address: String,
    /// Whether a connection is up.
    pub connected: bool,
}

/// The running network layer (none in this build).
#[derive(Debug, Default)]
pub struct NetworkHandle {
    _private: (),
}

impl NetworkHandle {
    /// The peers the transport knows.
    pub fn peers(&self) -> Vec<PeerView> {
        Vec::new()
    }

    /// Closes every connection and stops the transport.
    pub async fn shutdown(&self) {}
}

/// Starts the peer network for `node` as `cfg` asks. Called once, on the
/// daemon's runtime, after the node is open and before the API serves.
pub fn start_network(node: &Node, cfg: &NetworkSection) -> NetworkHandle {
    warn!(
        node = %node.id(),
        listen = %cfg.listen,
        peers = cfg.peers.len(),
        hub = cfg.hub.as_deref().unwrap_or("-"),
        mdns = cfg.mdns,
        "the network layer is not built in this branch: the node runs alone (no peers, no sync)"
    );
    NetworkHandle::default()
}
