//! `GET /metrics`: the node's counters and gauges in the Prometheus text
//! exposition format 0.0.4 (docs/operations.md, "Metrics").
//!
//! [`gather`] reads a [`Snapshot`] from the node and the transport (the only
//! I/O); [`render`] turns it into text with the small writer in [`text`].
//! Every label comes from a bounded set: event kinds and outcomes are fixed,
//! deficits are summed per location (never per SKU), peers are the connected
//! ones (16 hex characters of their node id), and each family stops at
//! [`text::MAX_SERIES`] series.
//!
//! The text is hand-written rather than built with a metrics crate: every
//! value is a snapshot read at scrape time, so a registry of live metric
//! objects would only be filled to be read once; the writer is 200 lines
//! with its tests and adds no dependency.

pub mod text;

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::api::{blocking, AppState};
use super::error::ApiError;
use super::network::TransportCounters;
use stocksync::escrow::StockBook;
use stocksync::node::{EventCount, RightsStats, SyncStatus};
use stocksync::sync::PeerLag;
use text::{Exposition, Kind};

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Characters of a peer's node id (hex) used as its label.
const PEER_LABEL_LEN: usize = 16;

/// Everything `/metrics` shows, read at one scrape.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The daemon's version.
    pub version: String,
    /// Seconds since the daemon started.
    pub uptime_seconds: f64,
    /// Answers by event kind and outcome.
    pub events: Vec<EventCount>,
    /// Uncovered deficit units per location, summed over its pools.
    pub deficits: BTreeMap<String, i64>,
    /// The node's sync state.
    pub sync: SyncStatus,
    /// Each connected peer's lag.
    pub lags: Vec<PeerLag>,
    /// The rights exchange's counters.
    pub rights: RightsStats,
    /// The transport's counters.
    pub transport: TransportCounters,
}

/// Uncovered deficit units per location: the sum over the location's pools
/// of every node's deficit as this replica sees it.
pub fn deficits_by_location(book: &StockBook) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for (pool, state) in book.pools() {
        let d = state.deficit();
        let loc = pool.location.as_str();
        match out.get_mut(loc) {
            Some(sum) => *sum = sum.saturating_add(d),
            None => {
                out.insert(loc.to_string(), d);
            }
        }
    }
    out
}

/// The exposition of `s`.
pub fn render(s: &Snapshot) -> String {
    let mut e = Exposition::default();
    use Kind::{Counter, Gauge};
    e.family(
        "stocksync_build_info",
        Gauge,
        "Always 1; the version label says which build runs.",
    )
    .sample(&[("version", &s.version)], 1u64);
    e.single(
        "stocksync_uptime_seconds",
        Gauge,
        "Seconds since the daemon started.",
        s.uptime_seconds,
    );
    let mut f = e.family(
        "stocksync_events_total",
        Counter,
        "Events answered since start, by kind and outcome (applied, replayed, refused by the escrow rule, the roster or the own-history state, invalid for the node's state, failed).",
    );
    for c in &s.events {
        f.sample(&[("kind", c.kind), ("outcome", c.outcome)], c.count);
    }
    let mut f = e.family(
        "stocksync_deficit_units",
        Gauge,
        "Uncovered deficit units per location, summed over its pools and nodes, as this replica sees them.",
    );
    for (loc, d) in &s.deficits {
        f.sample(&[("location", loc)], *d);
    }
    sync_families(&mut e, s);
    rights_families(&mut e, &s.rights);
    transport_families(&mut e, &s.transport);
    let dropped = e.dropped();
    e.single(
        "stocksync_metrics_series_dropped",
        Gauge,
        "Series left out of this scrape because a family reached its cap of 1024.",
        dropped,
    );
    e.finish()
}

fn sync_families(e: &mut Exposition, s: &Snapshot) {
    use Kind::{Counter, Gauge};
    let y = &s.sync;
    e.single(
        "stocksync_peers_connected",
        Gauge,
        "Peers connected now.",
        y.peers.len(),
    );
    let peer = |l: &PeerLag| {
        let mut hex = l.peer.to_hex();
        hex.truncate(PEER_LABEL_LEN);
        hex
    };
    let mut f = e.family(
        "stocksync_peer_writers_behind",
        Gauge,
        "Writers this node holds newer changes of than the peer is known to.",
    );
    for l in &s.lags {
        f.sample(&[("peer", &peer(l))], l.writers_behind);
    }
    let mut f = e.family(
        "stocksync_peer_unacknowledged_bytes",
        Gauge,
        "Bytes of changes sent to the peer and not yet acknowledged.",
    );
    for l in &s.lags {
        f.sample(&[("peer", &peer(l))], l.unacknowledged_bytes);
    }
    let mut f = e.family(
        "stocksync_peer_since_progress_seconds",
        Gauge,
        "Seconds since the peer last acknowledged anything (or connected).",
    );
    for l in &s.lags {
        f.sample(&[("peer", &peer(l))], l.since_progress_ms as f64 / 1000.0);
    }
    let pending: usize = s.lags.iter().map(|l| l.writers_behind).sum();
    e.single(
        "stocksync_pending_writers_behind",
        Gauge,
        "Writers behind, summed over connected peers: the changes still to push.",
        pending,
    );
    let counters: [(&'static str, &str, u64); 5] = [
        (
            "stocksync_sync_bytes_sent_total",
            "Bytes of sync messages handed to the outbox.",
            y.bytes_sent,
        ),
        (
            "stocksync_sync_bytes_received_total",
            "Bytes of sync messages received.",
            y.bytes_received,
        ),
        (
            "stocksync_changes_applied_total",
            "Remote changes applied and made durable.",
            y.changes_applied,
        ),
        (
            "stocksync_rejected_total",
            "Sync messages or changes refused, from any peer.",
            y.rejected,
        ),
        (
            "stocksync_outbox_dropped_total",
            "Messages dropped because a peer's outbox queue was full (the protocol repairs them).",
            y.outbox_dropped,
        ),
    ];
    for (name, help, v) in counters {
        e.single(name, Counter, help, v);
    }
    e.single(
        "stocksync_persist_failures_total",
        Counter,
        "Persists of remote changes that failed (repaired later).",
        y.persist_failures,
    );
    let gauges: [(&'static str, &str, u64); 5] = [
        (
            "stocksync_outbox_bytes",
            "Bytes waiting in the outbox.",
            y.outbox_bytes as u64,
        ),
        (
            "stocksync_parked_bundles",
            "Out-of-order bundles held until their gap is filled.",
            y.parked_bundles as u64,
        ),
        (
            "stocksync_parked_bytes",
            "Bytes of those bundles.",
            y.parked_bytes as u64,
        ),
        (
            "stocksync_forks",
            "Writers seen signing two histories (cloned devices, restored backups).",
            y.forks.len() as u64,
        ),
        (
            "stocksync_roster_version",
            "Version of the fleet roster held (0: none, or open mode).",
            y.roster_version,
        ),
    ];
    for (name, help, v) in gauges {
        e.single(name, Gauge, help, v);
    }
    let blocked = y.own_history_conflict.is_some() || y.own_history_recovering.is_some();
    e.single(
        "stocksync_own_history_blocked",
        Gauge,
        "1 while the node refuses every event because of its own history (a restored backup or cloned key).",
        blocked,
    );
}

fn rights_families(e: &mut Exposition, r: &RightsStats) {
    let counters: [(&'static str, &str, u64); 6] = [
        (
            "stocksync_rights_requests_received_total",
            "Rights requests received from peers.",
            r.requests_received,
        ),
        (
            "stocksync_rights_grants_made_total",
            "Grants committed for peers.",
            r.grants_made,
        ),
        (
            "stocksync_rights_given_units_total",
            "Rights granted to peers, in units.",
            r.rights_given,
        ),
        (
            "stocksync_rights_asks_sent_total",
            "Rights requests sent to peers.",
            r.asks_sent,
        ),
        (
            "stocksync_rights_received_units_total",
            "Rights peers granted this node, in units (as answered).",
            r.rights_received,
        ),
        (
            "stocksync_rights_stray_answers_total",
            "Rights answers that matched no open request.",
            r.stray_answers,
        ),
    ];
    for (name, help, v) in counters {
        e.single(name, Kind::Counter, help, v);
    }
}

fn transport_families(e: &mut Exposition, t: &TransportCounters) {
    e.single(
        "stocksync_transport_running",
        Kind::Gauge,
        "1 when the peer transport runs (0: the node runs alone, not enrolled).",
        t.running,
    );
    e.single(
        "stocksync_transport_handshake_refusals_total",
        Kind::Counter,
        "Peer handshakes refused since start (unknown, revoked or mismatched certificates).",
        t.handshake_refusals,
    );
    e.single(
        "stocksync_transport_reconnects",
        Kind::Gauge,
        "Dial attempts after the first, summed over the current dial targets.",
        t.reconnects,
    );
    e.single(
        "stocksync_transport_dropped_messages_total",
        Kind::Counter,
        "Messages dropped because their peer was not connected or its queue was full.",
        t.dropped,
    );
}

/// Reads a [`Snapshot`] of the node and transport `s` serves.
async fn gather(s: &AppState) -> Result<Snapshot, ApiError> {
    let node = s.node().clone();
    let (events, sync, lags, rights, deficits) = blocking(move || {
        let deficits = node.query(|r| deficits_by_location(r.book()));
        (
            node.event_counts(),
            node.sync_status(),
            node.peer_lags(),
            node.rights_stats(),
            deficits,
        )
    })
    .await?;
    Ok(Snapshot {
        version: s.version().to_string(),
        uptime_seconds: s.uptime().as_secs_f64(),
        events,
        deficits: deficits.map_err(|e| ApiError::node(&e))?,
        sync,
        lags,
        rights,
        transport: s.network().counters(),
    })
}

/// `GET /metrics`.
pub(super) async fn get_metrics(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let snapshot = gather(&s).await?;
    let mut text = render(&snapshot);
    if let Some(h) = s.hub() {
        text.push_str(&h.metrics());
    }
    if let Some(c) = s.channels() {
        text.push_str(&c.metrics());
    }
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stocksync::model::NodeId;

    #[test]
    fn every_sample_has_its_family_and_peers_are_short() {
        let s = Snapshot {
            version: "0.1.0".into(),
            lags: vec![PeerLag {
                peer: NodeId([0xab; 32]),
                writers_behind: 3,
                unacknowledged_bytes: 10,
                since_progress_ms: 1500,
            }],
            deficits: BTreeMap::from([("S1".to_string(), 4)]),
            ..Snapshot::default()
        };
        let text = render(&s);
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(typed.contains(name), "{line}");
                assert!(name.starts_with("stocksync_"), "{line}");
            }
        }
        assert!(text.contains("stocksync_peer_writers_behind{peer=\"abababababababab\"} 3\n"));
        assert!(
            text.contains("stocksync_peer_since_progress_seconds{peer=\"abababababababab\"} 1.5\n")
        );
        assert!(text.contains("stocksync_pending_writers_behind 3\n"));
        assert!(text.contains("stocksync_deficit_units{location=\"S1\"} 4\n"));
        assert!(text.contains("stocksync_build_info{version=\"0.1.0\"} 1\n"));
    }
}
