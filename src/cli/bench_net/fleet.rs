//! The bench's fleet: an authority made for the run, nodes on SQLite in a
//! temporary directory, their certificates and transports on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use stocksync::data_dir::{self, NodeSpec};
use stocksync::fleet::{FleetAuthority, Member, Roster, SignedRoster};
use stocksync::identity::Identity;
use stocksync::model::{NodeId, Role};
use stocksync::net::{issue, FleetCa, NetConfig, NodeTls, RosterSource, Transport};
use stocksync::node::{system_clock, Node, NodeOptions};
use stocksync::rebalance::RebalanceSettings;
use stocksync::store::sqlite::Durability;

/// A node's data directory, id and name.
pub(super) struct Peer {
    pub(super) dir: PathBuf,
    pub(super) id: NodeId,
    pub(super) name: String,
}

/// A fleet authority, its CA, and the roster of every node made for the run.
pub(super) struct Fleet {
    hq: FleetAuthority,
    ca: FleetCa,
    base: PathBuf,
    roster: Roster,
    signed: Option<SignedRoster>,
}

impl Fleet {
    pub(super) fn new(base: &Path) -> Result<Self> {
        let hq = FleetAuthority::generate()?;
        let ca = FleetCa::derive(&hq)?;
        let roster = hq.roster();
        Ok(Self {
            hq,
            ca,
            base: base.to_path_buf(),
            roster,
            signed: None,
        })
    }

    /// A new node in its own directory, added to the roster.
    pub(super) fn add(&mut self, name: &str, role: Role, location: &str) -> Result<Peer> {
        let dir = self.base.join(name);
        let spec = NodeSpec::parse(name, location, role.as_str())?;
        let meta = data_dir::init(&dir, &spec)?;
        self.roster = self
            .roster
            .clone()
            .with_member(meta.id, Member::new(name, role, [spec.location.clone()]));
        Ok(Peer {
            dir,
            id: meta.id,
            name: name.into(),
        })
    }

    /// Signs the roster once every node is added.
    pub(super) fn seal(&mut self) -> Result<()> {
        self.signed = Some(self.hq.sign(&self.roster)?);
        Ok(())
    }

    /// Opens `p` as a member of the fleet, holding the signed roster.
    pub(super) fn open(&self, p: &Peer, durability: Durability) -> Result<Node> {
        self.open_with(p, durability, RebalanceSettings::default())
    }

    /// Like [`Fleet::open`], with these rebalancing settings.
    pub(super) fn open_with(
        &self,
        p: &Peer,
        durability: Durability,
        rebalance: RebalanceSettings,
    ) -> Result<Node> {
        let options = NodeOptions {
            fleet: Some(self.hq.fleet()),
            rebalance,
            ..NodeOptions::default()
        };
        let node = data_dir::open_with_durability(&p.dir, options, durability, system_clock())
            .with_context(|| format!("open {}", p.name))?;
        if node.roster_version() == 0 {
            let signed = self.signed.clone().ok_or(anyhow!("roster not sealed"))?;
            node.install_roster(signed)?;
        }
        Ok(node)
    }

    pub(super) fn tls(&self, p: &Peer) -> Result<NodeTls> {
        let cert = issue(&self.hq, p.id, &p.name)?;
        Ok(NodeTls::new(
            &Identity::load(&p.dir)?,
            cert,
            self.ca.clone(),
        )?)
    }

    pub(super) fn roster_source(&self) -> RosterSource {
        let r = Arc::new(self.roster.clone());
        Arc::new(move || Some(r.clone()))
    }
}

/// A node and its running transport.
pub(super) struct Live {
    pub(super) node: Node,
    pub(super) net: Transport,
}

pub(super) fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub(super) fn start(
    rt: &tokio::runtime::Runtime,
    f: &Fleet,
    p: &Peer,
    node: Node,
    peers: Vec<SocketAddr>,
) -> Result<Live> {
    let config = NetConfig {
        peers,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..NetConfig::default()
    };
    let net = rt.block_on(Transport::start(node.clone(), f.tls(p)?, config))?;
    Ok(Live { node, net })
}
