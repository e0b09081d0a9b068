//! What the transport reports about its peers (for a status API).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::model::NodeId;

/// One peer: a dial target, or a peer that dialled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The dial target's address, or the connected peer's address.
    pub addr: SocketAddr,
    /// The peer's node id: expected, learned from its certificate, or unknown yet.
    pub id: Option<NodeId>,
    /// True for an address this node dials (static or discovered).
    pub dialled: bool,
    /// True while a connection to this peer is up (whichever side dialled).
    pub connected: bool,
    /// When the current connection came up.
    pub since: Option<SystemTime>,
    /// Why the last attempt or connection failed, if it did.
    pub last_error: Option<String>,
    /// Dial attempts after the first one.
    pub reconnects: u64,
}

/// Traffic of one live link since it came up: the transport's own frame
/// counter and quinn's connection statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkStats {
    /// The peer.
    pub peer: NodeId,
    /// Bytes of frames (4-byte length prefix and message) written to the stream.
    pub payload_tx_bytes: u64,
    /// UDP bytes sent (QUIC headers, encryption, acks, keep-alives, the handshake included).
    pub udp_tx_bytes: u64,
    /// UDP datagrams sent.
    pub udp_tx_datagrams: u64,
    /// UDP bytes received.
    pub udp_rx_bytes: u64,
    /// The current round-trip estimate.
    pub rtt: Duration,
}
