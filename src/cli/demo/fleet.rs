//! The demo's fleet in one process: a fleet made in a temporary directory as
//! the fleet CLI makes one (`fleet init` for the hub, each node enrolled by
//! the hub with its certificate, the CA and the signed roster), every node on
//! SQLite, linked over QUIC with mutual TLS on 127.0.0.1 with static
//! addresses (no mDNS). Each node reaches the hub through its own [`Link`]
//! (its internet uplink, which can be cut); the two tills of a store are
//! also linked directly (their LAN).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::link::Link;
use crate::cli::fleet::{init_hub, install, EnrolRequest, Hub};
use crate::daemon::config::NetworkSection;
use crate::daemon::network::{start_network, NetworkHandle};
use stocksync::data_dir;
use stocksync::model::{LocationId, NodeId, Position};
use stocksync::net::{NetConfig, NodeTls, Transport};
use stocksync::node::{system_clock, Node, NodeOptions};
use stocksync::rebalance::RebalanceSettings;
use stocksync::sync::SyncConfig;

/// Keep-alive of every link: a cut link is noticed within about a second.
const KEEP_ALIVE: Duration = Duration::from_millis(250);
/// A link silent this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_millis(1_000);

/// The nodes besides the hub: name, location, role and store partner.
pub const MEMBERS: [(&str, &str, &str, Option<usize>); 5] = [
    ("till-1a", "STORE-1", "till", None),
    ("till-1b", "STORE-1", "till", Some(1)),
    ("till-2a", "STORE-2", "till", None),
    ("till-2b", "STORE-2", "till", Some(3)),
    ("web", "HQ", "channel", None),
];

/// Index of the hub in [`Fleet::node`]; members follow from 1 in [`MEMBERS`] order.
pub const HUB: usize = 0;

/// A member node: its directory, and while it runs, its node and transport.
struct Member {
    name: String,
    location: LocationId,
    dir: PathBuf,
    partner: Option<usize>,
    options: NodeOptions,
    uplink: Link,
    running: Option<(Node, Transport)>,
}

/// The running fleet.
pub struct Fleet {
    /// The runtime every transport runs on.
    pub rt: tokio::runtime::Runtime,
    hub_dir: PathBuf,
    hub: Node,
    hub_net: Arc<NetworkHandle>,
    hub_addr: SocketAddr,
    hub_section: NetworkSection,
    members: Vec<Member>,
}

/// The tills' rebalancing: no automatic pull, a strict sale short of rights
/// borrows from connected peers for up to a second, a donor may give all.
fn till_rebalance() -> RebalanceSettings {
    RebalanceSettings {
        auto_pull: false,
        floor: Some(0),
        borrow_deadline_ms: 1_000,
        ..RebalanceSettings::lan()
    }
}

impl Fleet {
    /// Makes the fleet in `base` and starts every node.
    pub fn build(base: &Path) -> Result<Fleet> {
        let hub_dir = base.join("hub");
        init_hub(&hub_dir, "hub", "HQ").context("fleet init")?;
        let hub = Hub::open(&hub_dir)?;
        let mut made = Vec::new();
        for (name, location, role, _) in MEMBERS {
            let dir = base.join(name);
            let enrolled = crate::cli::init_node(&dir, name, location, role)
                .and_then(|meta| hub.enrol(&EnrolRequest::of(&meta)))
                .and_then(|bundle| install(&dir, &bundle));
            made.push(enrolled.with_context(|| format!("enrol {name}"))?);
        }
        hub.close();
        // Each node got the roster of its own enrolment; the latest one, which
        // the roster exchange would spread, is handed to all of them at once.
        let latest = data_dir::Reader::open(&hub_dir)?
            .roster()?
            .ok_or(anyhow!("the hub holds no roster"))?;
        for (name, ..) in MEMBERS {
            let node = data_dir::open(&base.join(name), NodeOptions::default(), system_clock())?;
            // An older roster is replaced; the same one is kept.
            let _ = node.install_roster(latest.clone());
            node.shutdown();
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("stocksync-demo")
            .build()
            .context("async runtime")?;
        // The hub sends one change per round trip: a restored till recovers
        // its history change by change (the demo catches it part-way).
        let hub_options = NodeOptions {
            sync: SyncConfig {
                window_bytes: 1,
                bundle_changes: 1,
                ..SyncConfig::default()
            },
            ..NodeOptions::default()
        };
        let hub_node = data_dir::open(&hub_dir, hub_options, system_clock())?;
        let hub_section = NetworkSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            mdns: false,
            keep_alive_ms: KEEP_ALIVE.as_millis() as u64,
            idle_timeout_ms: IDLE_TIMEOUT.as_millis() as u64,
            ..NetworkSection::default()
        };
        let hub_net = rt.block_on(start_network(&hub_node, &hub_dir, &hub_section))?;
        let hub_addr: SocketAddr = hub_net.summary()["listen"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or(anyhow!("the hub's transport has no address"))?;
        let mut members = Vec::new();
        for ((name, location, role, partner), _) in MEMBERS.into_iter().zip(&made) {
            let rebalance = if role == "till" {
                till_rebalance()
            } else {
                RebalanceSettings::default()
            };
            members.push(Member {
                name: name.into(),
                location: LocationId::new(location)?,
                dir: base.join(name),
                partner,
                options: NodeOptions {
                    rebalance,
                    ..NodeOptions::default()
                },
                uplink: rt.block_on(Link::start(hub_addr))?,
                running: None,
            });
        }
        let mut fleet = Fleet {
            rt,
            hub_dir,
            hub: hub_node,
            hub_net: Arc::new(hub_net),
            hub_addr,
            hub_section,
            members,
        };
        for i in 1..=MEMBERS.len() {
            fleet.start(i, true)?;
        }
        Ok(fleet)
    }

    fn member(&self, i: usize) -> Result<&Member> {
        i.checked_sub(1)
            .and_then(|m| self.members.get(m))
            .ok_or(anyhow!("no member {i}"))
    }

    fn member_mut(&mut self, i: usize) -> Result<&mut Member> {
        i.checked_sub(1)
            .and_then(|m| self.members.get_mut(m))
            .ok_or(anyhow!("no member {i}"))
    }

    /// Every node index: the hub, then the members.
    pub fn all(&self) -> std::ops::RangeInclusive<usize> {
        0..=self.members.len()
    }

    /// Node `i` (0 the hub); fails when it is stopped.
    pub fn node(&self, i: usize) -> Result<&Node> {
        if i == HUB {
            return Ok(&self.hub);
        }
        let m = self.member(i)?;
        m.running
            .as_ref()
            .map(|(n, _)| n)
            .ok_or(anyhow!("{} is stopped", m.name))
    }

    /// Node `i`'s name.
    pub fn name(&self, i: usize) -> String {
        if i == HUB {
            return "hub".into();
        }
        self.member(i).map(|m| m.name.clone()).unwrap_or_default()
    }

    /// Node `i`'s home location.
    pub fn location(&self, i: usize) -> Result<LocationId> {
        if i == HUB {
            return Ok(self.hub.meta().location.clone());
        }
        Ok(self.member(i)?.location.clone())
    }

    /// Node `i`'s data directory.
    pub fn dir(&self, i: usize) -> Result<PathBuf> {
        if i == HUB {
            return Ok(self.hub_dir.clone());
        }
        Ok(self.member(i)?.dir.clone())
    }

    /// Every node's name by id.
    pub fn names(&self) -> Vec<(NodeId, String)> {
        let mut v = vec![(self.hub.id(), "hub".to_string())];
        for (i, m) in self.members.iter().enumerate() {
            if let Some((n, _)) = &m.running {
                v.push((n.id(), m.name.clone()));
            } else if let Ok(meta) = data_dir::Reader::open(&m.dir).and_then(|r| r.meta()) {
                v.push((meta.id, self.name(i + 1)));
            }
        }
        v
    }

    /// Opens member `i` and starts its transport: it dials the hub through
    /// its uplink and, with `lan`, its store partner when that one runs.
    pub fn start(&mut self, i: usize, lan: bool) -> Result<()> {
        let partner_addr = match self.member(i)?.partner {
            Some(p) if lan => self
                .member(p)?
                .running
                .as_ref()
                .map(|(_, t)| t.local_addr()),
            _ => None,
        };
        let m = self.member(i)?;
        let node = data_dir::open(&m.dir, m.options.clone(), system_clock())
            .with_context(|| format!("open {}", m.name))?;
        let tls = NodeTls::load(&m.dir)?;
        // Every field is set today; the rest defaults should one be added.
        #[allow(clippy::needless_update)]
        let config = NetConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            peers: std::iter::once(m.uplink.addr())
                .chain(partner_addr)
                .collect(),
            keep_alive: KEEP_ALIVE,
            idle_timeout: IDLE_TIMEOUT,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(300),
            ..NetConfig::default()
        };
        let net = self
            .rt
            .block_on(Transport::start(node.clone(), tls, config))?;
        self.member_mut(i)?.running = Some((node, net));
        Ok(())
    }

    /// Dials member `i`'s store partner (after a start without the LAN).
    pub fn join_lan(&self, i: usize) -> Result<()> {
        let m = self.member(i)?;
        let Some(p) = m.partner else { return Ok(()) };
        let (Some((_, net)), Some((pn, pt))) = (&m.running, &self.member(p)?.running) else {
            return Ok(());
        };
        let _g = self.rt.enter();
        net.add_peer(pt.local_addr(), Some(pn.id()));
        Ok(())
    }

    /// Stops member `i`: its transport closes, its node is released.
    pub fn stop(&mut self, i: usize) -> Result<()> {
        if let Some((node, net)) = self.member_mut(i)?.running.take() {
            self.rt.block_on(net.shutdown());
            node.shutdown();
        }
        Ok(())
    }

    /// Cuts member `i`'s uplink to the hub.
    pub fn cut(&self, i: usize) -> Result<()> {
        self.member(i)?.uplink.cut();
        Ok(())
    }

    /// Restores member `i`'s uplink to the hub.
    pub fn restore(&self, i: usize) -> Result<()> {
        self.member(i)?.uplink.restore();
        Ok(())
    }

    /// Whether member `i` has a live connection to the hub.
    pub fn hub_link_up(&self, i: usize) -> Result<bool> {
        let m = self.member(i)?;
        let hub = self.hub.id();
        Ok(m.running
            .as_ref()
            .is_some_and(|(_, t)| t.peers().iter().any(|p| p.connected && p.id == Some(hub))))
    }

    /// Whether member `i` has a live connection to its store partner.
    pub fn lan_up(&self, i: usize) -> Result<bool> {
        let m = self.member(i)?;
        let Some(p) = m.partner.or_else(|| {
            (1..=self.members.len()).find(|&j| self.member(j).is_ok_and(|o| o.partner == Some(i)))
        }) else {
            return Ok(false);
        };
        let Ok(pn) = self.node(p) else {
            return Ok(false);
        };
        let pid = pn.id();
        Ok(m.running
            .as_ref()
            .is_some_and(|(_, t)| t.peers().iter().any(|p| p.connected && p.id == Some(pid))))
    }

    /// The hub's node, directory, network and its network configuration (for its HTTP API).
    pub fn hub_parts(&self) -> (&Node, &Path, &Arc<NetworkHandle>, &NetworkSection) {
        (&self.hub, &self.hub_dir, &self.hub_net, &self.hub_section)
    }

    /// The hub's QUIC address.
    pub fn hub_addr(&self) -> SocketAddr {
        self.hub_addr
    }

    /// `writer`'s head as node `at` holds it.
    pub fn head(&self, at: usize, writer: &NodeId) -> Result<Option<Position>> {
        Ok(self
            .node(at)?
            .query(|r| r.heads().get(writer).map(|h| h.position))?)
    }

    /// Stops every member, then the hub's network; the hub node is released on drop.
    pub fn shutdown(mut self) {
        // Last started first: a node closes its link before the partner it
        // dialled goes (a close towards a peer already gone waits for the idle timeout).
        for i in (1..=self.members.len()).rev() {
            let _ = self.stop(i);
        }
        let net = self.hub_net.clone();
        self.rt.block_on(net.shutdown());
    }
}
