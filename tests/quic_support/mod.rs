//! Helpers for the QUIC tests: a fleet authority, nodes on SQLite data
//! directories with their certificates, and polling with a deadline.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use stocksync::data_dir;
use stocksync::fleet::{FleetAuthority, Member, Roster};
use stocksync::identity::Identity;
use stocksync::model::{
    EventId, EventKind, EventOutcome, EventRequest, LocationId, NodeId, Quantity, Role, Sku,
};
use stocksync::net::{issue, FleetCa, NetConfig, NodeTls};
use stocksync::node::{system_clock, Node, NodeOptions};
use stocksync::{NodeError, NodeSpec};

/// A node's data directory and id.
#[derive(Clone, Debug)]
pub struct Peer {
    pub dir: PathBuf,
    pub id: NodeId,
    pub name: String,
}

/// A fleet: its authority, its CA and a temporary directory for its nodes.
pub struct TestFleet {
    pub tmp: tempfile::TempDir,
    pub hq: FleetAuthority,
    pub ca: FleetCa,
}

impl TestFleet {
    /// A fleet whose authority key comes from `seed`.
    pub fn new(seed: u8) -> Self {
        let hq = FleetAuthority::from_seed([seed; 32]);
        let ca = FleetCa::derive(&hq).unwrap();
        Self {
            tmp: tempfile::tempdir().unwrap(),
            hq,
            ca,
        }
    }

    /// A new till at S1 in its own data directory.
    pub fn init(&self, name: &str) -> Peer {
        let dir = self.tmp.path().join(name);
        let meta = data_dir::init(&dir, &NodeSpec::parse(name, "S1", "till").unwrap()).unwrap();
        Peer {
            dir,
            id: meta.id,
            name: name.into(),
        }
    }

    /// A roster of this fleet listing `peers` as tills at S1.
    pub fn roster(&self, peers: &[&Peer]) -> Roster {
        peers.iter().fold(self.hq.roster(), |r, p| {
            r.with_member(
                p.id,
                Member::new(&p.name, Role::Till, [LocationId::new("S1").unwrap()]),
            )
        })
    }

    /// Opens `peer` as a node of this fleet holding `roster`.
    pub fn open(&self, peer: &Peer, roster: &Roster) -> Node {
        let options = NodeOptions {
            fleet: Some(self.hq.fleet()),
            ..NodeOptions::default()
        };
        let node = data_dir::open(&peer.dir, options, system_clock()).unwrap();
        node.install_roster(self.hq.sign(roster).unwrap()).unwrap();
        node
    }

    /// `peer`'s TLS material, its certificate issued by this fleet.
    pub fn tls(&self, peer: &Peer) -> NodeTls {
        let identity = Identity::load(&peer.dir).unwrap();
        let cert = issue(&self.hq, peer.id, &peer.name).unwrap();
        NodeTls::new(&identity, cert, self.ca.clone()).unwrap()
    }
}

/// Loopback settings with quick redials, dialling `peers`.
pub fn config(peers: Vec<SocketAddr>) -> NetConfig {
    NetConfig {
        peers,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..NetConfig::default()
    }
}

/// Commits an event on `node` off the reactor.
pub async fn event(
    node: &Node,
    id: &str,
    qty: u64,
    kind: EventKind,
) -> Result<EventOutcome, NodeError> {
    let node = node.clone();
    let req = EventRequest::new(
        EventId::new(id).unwrap(),
        LocationId::new("S1").unwrap(),
        Sku::new("A").unwrap(),
        Quantity::new(qty).unwrap(),
        kind,
    );
    tokio::task::spawn_blocking(move || node.execute(req))
        .await
        .unwrap()
}

/// Units on hand at S1 as `node` sees them.
pub fn on_hand(node: &Node) -> i64 {
    node.query(|r| r.book().pools().map(|(_, p)| p.on_hand()).sum())
        .unwrap()
}

/// Polls `f` every 10 ms until it holds; panics after `limit` naming `what`.
pub async fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A UDP relay between one client and `target` that can be cut (drops every
/// packet, as a pulled cable would) and restored.
pub struct Relay {
    /// The address clients send to.
    pub addr: SocketAddr,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays between the first client that sends to it and `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        use std::sync::atomic::Ordering;
        let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        back.connect(target).await.unwrap();
        let addr = front.local_addr().unwrap();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let c = cut.clone();
        let task = tokio::spawn(async move {
            let (mut from_client, mut from_target) = (vec![0u8; 65536], vec![0u8; 65536]);
            let mut client = None;
            loop {
                tokio::select! {
                    r = front.recv_from(&mut from_client) => {
                        let Ok((n, peer)) = r else { return };
                        client = Some(peer);
                        if !c.load(Ordering::SeqCst) {
                            let _ = back.send(&from_client[..n]).await;
                        }
                    }
                    r = back.recv(&mut from_target) => {
                        let Ok(n) = r else { continue };
                        if let (false, Some(peer)) = (c.load(Ordering::SeqCst), client) {
                            let _ = front.send_to(&from_target[..n], peer).await;
                        }
                    }
                }
            }
        });
        Relay { addr, cut, task }
    }

    /// Drops every packet from now on (`true`) or relays again (`false`).
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
