//! The transport: one QUIC endpoint that listens and dials, its links to peers,
//! the threads that feed the node, and a graceful shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use quinn::{Endpoint, EndpointConfig, TransportConfig, VarInt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, Instrument};

use super::dial::{self, Target};
use super::engine::{self, RosterCache};
use super::enrol::server::{self as enrol_server, EnrolServer, EnrolService};
use super::enrol::ENROL_ALPN;
use super::link::{self, Link};
use super::status::{LinkStats, PeerInfo};
use super::tls::{transport_config, NodeTls};
use super::verify::{RefusalLog, RefusalRecord, RosterSource};
use super::{close, NetError};
use crate::model::NodeId;
use crate::node::Node;

/// Most incoming connections in progress (handshaking, not yet accepted) at once.
const MAX_INCOMING: usize = 256;

/// The transport's settings.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// The UDP address to listen on (port 0: chosen by the system).
    pub listen: SocketAddr,
    /// Static peers to dial (and redial) from the start.
    pub peers: Vec<SocketAddr>,
    /// QUIC keep-alive period: a quiet link still sends this often (default 500 ms).
    pub keep_alive: Duration,
    /// A link silent this long is dead (default 2 s: a dead link is noticed
    /// within idle + keep-alive = 2.5 s; see docs/network.md).
    pub idle_timeout: Duration,
    /// First redial delay after a failure (default 100 ms; doubles, jittered).
    pub backoff_min: Duration,
    /// Largest redial delay (default 10 s).
    pub backoff_max: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            peers: Vec::new(),
            keep_alive: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// The mutable part of the transport: links by peer and dial targets by address.
#[derive(Default)]
pub(crate) struct State {
    /// The live link to each connected peer.
    pub links: HashMap<NodeId, Link>,
    /// The addresses kept dialled.
    pub targets: HashMap<SocketAddr, Target>,
    /// The next link sequence number.
    pub next_seq: u64,
}

/// What the transport's tasks and threads share.
pub(crate) struct Inner {
    /// The node fed.
    pub node: Node,
    /// Its id.
    pub id: NodeId,
    /// Its certificate, key and fleet CA.
    pub tls: NodeTls,
    /// The settings it started with.
    pub config: NetConfig,
    /// QUIC settings shared by every connection.
    pub transport: Arc<TransportConfig>,
    /// The endpoint that listens and dials.
    pub endpoint: Endpoint,
    /// The roster handshakes check.
    pub roster: RosterCache,
    /// Refused handshakes.
    pub refusals: Arc<RefusalLog>,
    state: Mutex<State>,
    /// Orders registrations and removals with the node's `peer_up`/`peer_down`.
    pub updown: tokio::sync::Mutex<()>,
    /// Set once at shutdown.
    pub stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Messages the pump dropped (peer not connected, or its queue full).
    pub dropped: AtomicU64,
    /// The enrolment service a hub serves (unset: the enrolment protocol is not offered).
    enrol: OnceLock<Arc<EnrolServer>>,
}

impl Inner {
    /// The state (every update is a single step on plain maps; never held across an await).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The roster handshakes check.
    pub fn roster_source(&self) -> RosterSource {
        self.roster.source()
    }

    /// Stops accepting and dialling and closes every link (idempotent, does not wait).
    fn begin_stop(&self) {
        self.stop.send_replace(true);
        dial::cancel_all(self);
        let conns: Vec<_> = self
            .state()
            .links
            .values()
            .map(|l| l.conn.clone())
            .collect();
        for c in conns {
            c.close(VarInt::from_u32(close::SHUTDOWN), b"shutdown");
        }
        self.endpoint
            .close(VarInt::from_u32(close::SHUTDOWN), b"shutdown");
    }

    /// Keeps `task` to wait for it at shutdown.
    pub fn track(&self, task: JoinHandle<()>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }
}

/// A running QUIC transport for one node.
pub struct Transport {
    inner: Arc<Inner>,
    threads: Option<engine::Threads>,
    local: SocketAddr,
}

/// Dropped without [`Transport::shutdown`]: stops the same way, without
/// waiting (connections close, the node sees `peer_down` as their tasks end).
impl Drop for Transport {
    fn drop(&mut self) {
        self.inner.begin_stop();
        if let Some(threads) = self.threads.take() {
            threads.signal();
        }
    }
}

impl Transport {
    /// Binds `config.listen`, starts accepting and dialling `config.peers`.
    /// Must be called inside a tokio runtime (blocking node calls go to its blocking pool).
    pub async fn start(node: Node, tls: NodeTls, config: NetConfig) -> Result<Transport, NetError> {
        if tls.node() != node.id() {
            return Err(NetError::Key(format!(
                "the certificate is for {}, the node is {}",
                tls.node(),
                node.id()
            )));
        }
        if config.keep_alive >= config.idle_timeout {
            return Err(NetError::Config(
                "the keep-alive period must be shorter than the idle timeout".into(),
            ));
        }
        let runtime = quinn::default_runtime().ok_or(NetError::NoRuntime)?;
        let transport = Arc::new(transport_config(config.keep_alive, config.idle_timeout)?);
        let roster = RosterCache::load(&node, tls.ca().fleet()).await;
        let socket = std::net::UdpSocket::bind(config.listen).map_err(NetError::Bind)?;
        let local = socket.local_addr().map_err(NetError::Bind)?;
        let refusals = Arc::new(RefusalLog::default());
        // Each incoming connection gets its own server config (see `accept_loop`);
        // this one only makes the endpoint a server.
        let mut server =
            tls.server_config(roster.source(), local, refusals.clone(), transport.clone())?;
        // A fleet is tens of devices: bound the handshakes in progress.
        server.max_incoming(MAX_INCOMING);
        let endpoint = Endpoint::new(EndpointConfig::default(), Some(server), socket, runtime)
            .map_err(NetError::Bind)?;
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            id: node.id(),
            node,
            tls,
            config: config.clone(),
            transport,
            endpoint,
            roster,
            refusals,
            state: Mutex::new(State::default()),
            updown: tokio::sync::Mutex::new(()),
            stop,
            tasks: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            enrol: OnceLock::new(),
        });
        let span = info_span!("net", node = %inner.id, %local);
        inner.track(tokio::spawn(accept_loop(inner.clone()).instrument(span)));
        let threads = match engine::Threads::start(inner.clone(), tokio::runtime::Handle::current())
        {
            Ok(t) => t,
            Err(e) => {
                inner.begin_stop();
                return Err(NetError::Bind(e));
            }
        };
        let t = Transport {
            inner,
            threads: Some(threads),
            local,
        };
        for addr in config.peers {
            t.add_peer(addr, None);
        }
        info!(node = %t.inner.id, %local, "transport started");
        Ok(t)
    }

    /// The address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Dials `addr` and keeps redialling it; with `expected`, only that node is accepted there.
    /// Adding an address already known only updates its expected id (for the next dial).
    pub fn add_peer(&self, addr: SocketAddr, expected: Option<NodeId>) {
        dial::add(&self.inner, addr, expected);
    }

    /// Stops dialling `addr` (a live connection stays until it ends).
    pub fn remove_peer(&self, addr: SocketAddr) {
        dial::remove(&self.inner, addr);
    }

    /// Serves online enrolment with `service` on this endpoint from now on
    /// (a hub): connections may then negotiate the enrolment protocol
    /// without a client certificate (see [`NodeTls::server_config_for`]).
    /// Only the first call takes effect.
    pub fn serve_enrolment(&self, service: Arc<dyn EnrolService>) {
        let _ = self.inner.enrol.set(Arc::new(EnrolServer::new(service)));
    }

    /// The dial targets and the connected peers.
    pub fn peers(&self) -> Vec<PeerInfo> {
        dial::peers(&self.inner)
    }

    /// Traffic of each live link since it came up.
    pub fn link_stats(&self) -> Vec<LinkStats> {
        self.inner
            .state()
            .links
            .iter()
            .map(|(id, l)| {
                let s = l.conn.stats();
                LinkStats {
                    peer: *id,
                    payload_tx_bytes: l.written.load(Ordering::Relaxed),
                    udp_tx_bytes: s.udp_tx.bytes,
                    udp_tx_datagrams: s.udp_tx.datagrams,
                    udp_rx_bytes: s.udp_rx.bytes,
                    rtt: s.path.rtt,
                }
            })
            .collect()
    }

    /// The last refused handshakes, oldest first.
    pub fn refusals(&self) -> Vec<RefusalRecord> {
        self.inner.refusals.records()
    }

    /// Handshakes refused since start.
    pub fn refusals_total(&self) -> u64 {
        self.inner.refusals.total()
    }

    /// Messages dropped because their peer was not connected or its queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Closes every connection cleanly (the node sees `peer_down`), stops
    /// dialling, and releases the socket.
    pub async fn shutdown(mut self) {
        let inner = self.inner.clone();
        inner.begin_stop();
        let tasks = std::mem::take(&mut *inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            if tokio::time::timeout(Duration::from_secs(2), t)
                .await
                .is_err()
            {
                debug!("a task outlived the shutdown");
            }
        }
        // Links whose task did not finish: the node must still see them go.
        let left: Vec<(NodeId, u64)> = inner
            .state()
            .links
            .iter()
            .map(|(id, l)| (*id, l.seq))
            .collect();
        for (id, seq) in left {
            link::unregister(&inner, id, seq).await;
        }
        if let Some(threads) = self.threads.take() {
            threads.stop().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), inner.endpoint.wait_idle()).await;
        info!(node = %inner.id, "transport stopped");
    }
}

/// The application protocol an established connection negotiated.
pub(crate) fn alpn_of(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol)
}

/// Accepts connections until the endpoint closes; each gets a verifier knowing its address.
async fn accept_loop(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    loop {
        let incoming = tokio::select! {
            i = inner.endpoint.accept() => i,
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(incoming) = incoming else { break };
        let addr = incoming.remote_address();
        let enrol = inner.enrol.get().cloned();
        let config = match inner.tls.server_config_for(
            inner.roster_source(),
            addr,
            inner.refusals.clone(),
            inner.transport.clone(),
            enrol.is_some(),
        ) {
            Ok(c) => c,
            Err(e) => {
                debug!(peer = %addr, error = %e, "no server config");
                incoming.refuse();
                continue;
            }
        };
        let connecting = match incoming.accept_with(Arc::new(config)) {
            Ok(c) => c,
            Err(e) => {
                debug!(peer = %addr, error = %e, "incoming connection failed");
                continue;
            }
        };
        let inner2 = inner.clone();
        let task = tokio::spawn(
            async move {
                match connecting.await {
                    Ok(conn) => {
                        match enrol.filter(|_| alpn_of(&conn).as_deref() == Some(ENROL_ALPN)) {
                            Some(server) => enrol_server::serve(server, conn).await,
                            None => {
                                link::run(inner2, conn, false).await;
                            }
                        }
                    }
                    Err(e) => debug!(error = %e, "incoming handshake failed"),
                }
            }
            .instrument(info_span!("incoming", peer = %addr)),
        );
        inner.track(task);
    }
}
