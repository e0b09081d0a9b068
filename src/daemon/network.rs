//! The daemon's one integration point with the peer network.
//!
//! [`start_network`] starts the QUIC transport (`stocksync::net`) on the
//! daemon's runtime when the data directory holds fleet credentials
//! (`fleet.id`, `node-cert.pem`, `fleet-ca.pem`), listening on
//! `[network].listen`, and starts discovery ([`super::discovery`]): the static
//! `peers` and the `hub`, and mDNS on `mdns_interfaces` when `mdns` is set,
//! feed the transport's dial targets. A node without credentials runs alone:
//! no open-mode networking, a node on the network must be enrolled.
//! [`NetworkHandle`] reports the transport's peers, refusals and discovery to
//! `GET /v1/status`, and shuts discovery down, then the transport, before the
//! node is released. The transport is the only consumer of the node's
//! outgoing messages.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Value};
use stocksync::data_dir;
use stocksync::discovery::Announcement;
use stocksync::net::{NetConfig, NodeTls, Transport};
use stocksync::node::Node;
use tracing::{info, warn};

use super::config::NetworkSection;
use super::discovery::{DiscoveryRunner, SharedTransport};

/// A configured or connected peer, as `GET /v1/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    /// The peer's node id (hex): expected, or read from its certificate; absent until known.
    pub node_id: Option<String>,
    /// The peer's address (the dial target, or where it dialled from).
    pub address: String,
    /// True for an address this node dials (static peer or hub).
    pub dialled: bool,
    /// Whether a connection is up.
    pub connected: bool,
    /// When the current connection came up, Unix milliseconds.
    pub since_ms: Option<u64>,
    /// Why the last attempt or connection failed.
    pub last_error: Option<String>,
    /// Dial attempts after the first.
    pub reconnects: u64,
}

/// A refused handshake, as `GET /v1/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct RefusalView {
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// The peer's address.
    pub address: String,
    /// The node id its certificate claims, when it parsed.
    pub claimed: Option<String>,
    /// Why.
    pub reason: String,
}

/// The transport's counters, as `/metrics` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportCounters {
    /// Whether a transport runs (false: the node runs alone).
    pub running: bool,
    /// Handshakes refused since start.
    pub handshake_refusals: u64,
    /// Dial attempts after the first, summed over the current dial targets.
    pub reconnects: u64,
    /// Messages dropped because their peer was not connected or its queue was full.
    pub dropped: u64,
}

/// The running network layer, or why there is none.
#[derive(Default)]
pub struct NetworkHandle {
    transport: SharedTransport,
    discovery: Mutex<Option<DiscoveryRunner>>,
    listen: Option<SocketAddr>,
    alone: Option<String>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl NetworkHandle {
    /// A node that runs alone, for `reason`.
    pub fn alone(reason: impl Into<String>) -> Self {
        Self {
            alone: Some(reason.into()),
            ..Self::default()
        }
    }

    fn with<R>(&self, f: impl FnOnce(&Transport) -> R) -> Option<R> {
        let t = self.transport.lock().unwrap_or_else(|e| e.into_inner());
        t.as_ref().map(f)
    }

    /// The address the transport listens on, when it runs.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen
    }

    /// The peers the transport knows: dial targets and connected peers.
    pub fn peers(&self) -> Vec<PeerView> {
        self.with(|t| {
            t.peers()
                .into_iter()
                .map(|p| PeerView {
                    node_id: p.id.map(|i| i.to_hex()),
                    address: p.addr.to_string(),
                    dialled: p.dialled,
                    connected: p.connected,
                    since_ms: p.since.map(unix_ms),
                    last_error: p.last_error,
                    reconnects: p.reconnects,
                })
                .collect()
        })
        .unwrap_or_default()
    }

    /// The handshakes the transport refused, oldest first (the last 64).
    pub fn refusals(&self) -> Vec<RefusalView> {
        self.with(|t| {
            t.refusals()
                .into_iter()
                .map(|r| RefusalView {
                    at_ms: unix_ms(r.at),
                    address: r.addr.to_string(),
                    claimed: r.claimed.map(|c| c.to_hex()),
                    reason: r.reason.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
    }

    /// The transport's counters, for `/metrics` (zeros when the node runs alone).
    pub fn counters(&self) -> TransportCounters {
        self.with(|t| TransportCounters {
            running: true,
            handshake_refusals: t.refusals_total(),
            reconnects: t.peers().iter().map(|p| p.reconnects).sum(),
            dropped: t.dropped(),
        })
        .unwrap_or_default()
    }

    /// The `network` object of the status: running or alone (and why), the
    /// address listened on, refusals, messages dropped for unconnected peers,
    /// and discovery (its sources, the peers it found, records it ignored).
    pub fn summary(&self) -> Value {
        let running = self.with(|_| ()).is_some();
        let discovery = self
            .discovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(DiscoveryRunner::summary);
        json!({
            "running": running,
            "alone": self.alone,
            "listen": self.listen.map(|a| a.to_string()),
            "dropped": self.with(Transport::dropped).unwrap_or(0),
            "refusals": self.refusals(),
            "discovery": discovery,
        })
    }

    /// Stops discovery (unregistering: mDNS goodbyes), then closes every
    /// connection (the node sees each peer go) and stops the transport.
    pub async fn shutdown(&self) {
        let discovery = self
            .discovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut d) = discovery {
            d.stop().await;
        }
        let t = self
            .transport
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = t {
            t.shutdown().await;
        }
    }
}

/// Starts the peer network for `node` (data directory `dir`) as `cfg` asks.
/// Called once, on the daemon's runtime, after the node is open and before
/// the API serves. Fails when the node is enrolled but its certificates do
/// not load, or the listen address cannot be bound.
pub async fn start_network(node: &Node, dir: &Path, cfg: &NetworkSection) -> Result<NetworkHandle> {
    let Some(fleet) = data_dir::fleet_id(dir)? else {
        let reason = "the node belongs to no fleet (no fleet.id): it runs alone; \
                      enrol it (`stocksync fleet init`, `init --join`, `enrol accept`) to sync";
        warn!(node = %node.id(), "{reason}");
        return Ok(NetworkHandle::alone(reason));
    };
    let tls = NodeTls::load(dir).context("cannot load the node's fleet certificates")?;
    let config = NetConfig {
        listen: cfg.listen,
        // Discovery adds the dial targets, static ones included.
        peers: Vec::new(),
        keep_alive: Duration::from_millis(cfg.keep_alive_ms),
        idle_timeout: Duration::from_millis(cfg.idle_timeout_ms),
        ..NetConfig::default()
    };
    let transport = Transport::start(node.clone(), tls, config)
        .await
        .with_context(|| format!("cannot start the peer transport on {}", cfg.listen))?;
    let listen = transport.local_addr();
    if crate::cli::fleet::token_cmd::serves_tokens(dir) {
        // A hub: new nodes enrol with a token on this same port (docs/network.md).
        let service = crate::cli::fleet::TokenEnrolment::new(node.clone(), dir, fleet);
        transport.serve_enrolment(Arc::new(service));
        info!(node = %node.id(), %listen, "serving token enrolment");
    }
    let meta = node.meta();
    let me = Announcement {
        node: meta.id,
        location: meta.location.clone(),
        role: meta.role,
        fleet,
        port: listen.port(),
    };
    let shared: SharedTransport = Arc::new(Mutex::new(Some(transport)));
    let discovery = match DiscoveryRunner::start(cfg, &me, shared.clone()) {
        Ok(d) => d,
        Err(e) => {
            let t = shared.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(t) = t {
                t.shutdown().await;
            }
            return Err(e).context("cannot start peer discovery");
        }
    };
    info!(node = %node.id(), %listen, static_peers = cfg.peers.len() + usize::from(cfg.hub.is_some()),
          mdns = ?cfg.mdns_interfaces, "peer network started");
    Ok(NetworkHandle {
        transport: shared,
        discovery: Mutex::new(Some(discovery)),
        listen: Some(listen),
        alone: None,
    })
}
