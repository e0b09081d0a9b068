//! How far behind each connected peer is, as far as this node knows: the
//! writers it still has to push there, the bytes unacknowledged, and how long
//! since the peer last acknowledged anything.

use serde::Serialize;

use super::engine::SyncEngine;
use crate::model::NodeId;

/// One connected peer's lag, seen from this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerLag {
    /// The peer.
    pub peer: NodeId,
    /// Writers this node holds newer changes of than the peer is known to.
    pub writers_behind: usize,
    /// Bytes of changes sent and not yet acknowledged.
    pub unacknowledged_bytes: usize,
    /// Milliseconds since the peer last acknowledged (or connected).
    pub since_progress_ms: u64,
}

impl SyncEngine {
    /// The lag of every connected peer at time `now_ms`.
    pub fn peer_lags(&self, now_ms: u64) -> Vec<PeerLag> {
        self.peers
            .iter()
            .map(|(id, p)| PeerLag {
                peer: *id,
                writers_behind: p.pending.len(),
                unacknowledged_bytes: p.in_flight,
                since_progress_ms: now_ms.saturating_sub(p.last_progress_ms),
            })
            .collect()
    }
}
