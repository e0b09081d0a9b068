//! One channel's node inside the hub daemon: its own data directory, key and
//! certificate, its network (QUIC on 127.0.0.1, dialling the hub's own
//! transport), its timer, and the hook that feeds the runner on every change
//! of the node's rights.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use anyhow::{bail, Context, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

use super::super::config::{Config, NetworkSection};
use super::super::network::{self, NetworkHandle};
use stocksync::channel::runner::Runner;
use stocksync::channel::{AvailableSource, ChannelConfig, ChannelId, PoolSelector};
use stocksync::data_dir;
use stocksync::escrow::StockBook;
use stocksync::model::{NodeId, PoolKey, Role};
use stocksync::node::{system_clock, DeltaSink, Node};
use stocksync::rebalance::RebalanceSettings;
use stocksync::replica::{Deltas, Replica};

/// The runner every channel node feeds; empty once shut down.
pub type RunnerCell = RwLock<Option<Runner>>;

/// Rights held per pool, as last seen by the hook.
pub type Held = Mutex<BTreeMap<PoolKey, u64>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What `node` holds in each pool `pools` select, per `book` (never below 0).
pub fn held_in(book: &StockBook, node: &NodeId, pools: &[PoolSelector]) -> Vec<(PoolKey, u64)> {
    book.pools()
        .map(|(k, _)| k)
        .filter(|k| pools.iter().any(|s| s.matches(k)))
        .map(|k| (k.clone(), held_of(book, k, node)))
        .collect()
}

fn held_of(book: &StockBook, pool: &PoolKey, node: &NodeId) -> u64 {
    u64::try_from(book.rights(pool, node)).unwrap_or(0)
}

/// The channel node's own rights: what the runner publishes as available.
pub struct NodeRights<'a>(pub &'a Node);

impl AvailableSource for NodeRights<'_> {
    fn available(&self, pools: &[PoolSelector]) -> Vec<(PoolKey, u64)> {
        let me = self.0.id();
        self.0
            .query(|r| held_in(r.book(), &me, pools))
            .unwrap_or_default()
    }
}

/// The hook: on every durable change of the replica (own sales, grants
/// received, sync), the pools it raised a counter in are re-read and the
/// runner gets each one whose holding changed. Runs under the node's lock:
/// a map update and a condvar notify per pool.
pub struct RightsHook {
    id: ChannelId,
    me: NodeId,
    pools: Vec<PoolSelector>,
    held: Arc<Held>,
    runner: Arc<RunnerCell>,
}

impl RightsHook {
    /// Attaches to channel `id`'s `node` a hook feeding `runner` with the
    /// node's rights in `pools` (kept in `held`), from the next durable change on.
    pub fn attach(
        node: &Node,
        id: &ChannelId,
        pools: &[PoolSelector],
        held: Arc<Held>,
        runner: Arc<RunnerCell>,
    ) -> Result<(), stocksync::error::NodeError> {
        let hook = RightsHook {
            id: id.clone(),
            me: node.id(),
            pools: pools.to_vec(),
            held,
            runner,
        };
        node.attach_delta_sink(Arc::new(hook))
    }
}

impl DeltaSink for RightsHook {
    fn apply(&self, deltas: Deltas, replica: &Replica) {
        let book = replica.book();
        let changed: Vec<(PoolKey, u64)> = if deltas.reset {
            held_in(book, &self.me, &self.pools)
        } else {
            let touched: BTreeSet<&PoolKey> = deltas
                .raises
                .iter()
                .filter_map(|r| r.key.pool())
                .filter(|p| self.pools.iter().any(|s| s.matches(p)))
                .collect();
            touched
                .into_iter()
                .map(|p| (p.clone(), held_of(book, p, &self.me)))
                .collect()
        };
        if changed.is_empty() {
            return;
        }
        let mut held = lock(&self.held);
        let runner = self.runner.read().unwrap_or_else(|e| e.into_inner());
        for (pool, n) in changed {
            if !deltas.reset && held.get(&pool) == Some(&n) {
                continue;
            }
            held.insert(pool.clone(), n);
            if let Some(r) = runner.as_ref() {
                if let Err(e) = r.observe(&self.id, pool, n) {
                    warn!(channel = %self.id, error = %e, "cannot feed the channel");
                }
            }
        }
    }
}

/// A channel's running node.
pub struct ChannelNode {
    /// The channel's configuration.
    pub config: ChannelConfig,
    /// Its node's data directory.
    pub dir: PathBuf,
    /// Its node.
    pub node: Node,
    /// Its network (dialling the hub).
    pub network: Arc<NetworkHandle>,
    /// Rights held per pool, kept by the hook.
    pub held: Arc<Held>,
    stop: watch::Sender<bool>,
    timer: Mutex<Option<JoinHandle<()>>>,
}

/// The hub's own transport address as a loopback dial target.
fn hub_target(hub: &NetworkHandle) -> Result<String> {
    let Some(listen) = hub.listen_addr() else {
        bail!("channels need the hub's network: the hub runs alone (not enrolled in a fleet)");
    };
    let ip = if listen.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        listen.ip()
    };
    Ok(SocketAddr::new(ip, listen.port()).to_string())
}

impl ChannelNode {
    /// Opens channel `config`'s node in `dir`, attaches the hook feeding
    /// `runner`, and starts its network (dialling `hub`) and timer.
    pub async fn start(
        config: &ChannelConfig,
        dir: &Path,
        cfg: &Config,
        hub: &NetworkHandle,
        runner: Arc<RunnerCell>,
    ) -> Result<Self> {
        let id = &config.id;
        if !dir.exists() {
            bail!(
                "channel {id}: no node in {} (enrol one: `stocksync init --data {} --node {id} \
                 --location LOC --role channel --join HUB_DIR`)",
                dir.display(),
                dir.display()
            );
        }
        let mut options = cfg.node_options();
        // The channel asks the hub, its only peer, for rights: always on.
        options.rebalance.auto_pull = true;
        if options.rebalance.borrow_deadline_ms == 0 {
            options.rebalance.borrow_deadline_ms = RebalanceSettings::lan().borrow_deadline_ms;
        }
        let node = data_dir::open(dir, options, system_clock())
            .with_context(|| format!("channel {id}: cannot open its node in {}", dir.display()))?;
        if node.meta().role != Role::Channel {
            bail!(
                "channel {id}: the node in {} has role {}, not channel",
                dir.display(),
                node.meta().role.as_str()
            );
        }
        let held = Arc::new(Held::default());
        RightsHook::attach(&node, id, &config.pools, held.clone(), runner)
            .with_context(|| format!("channel {id}: cannot watch its rights"))?;
        let net = NetworkSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            peers: Vec::new(),
            hub: Some(hub_target(hub)?),
            mdns: false,
            mdns_interfaces: Vec::new(),
            mdns_ipv6: false,
            keep_alive_ms: cfg.network.keep_alive_ms,
            idle_timeout_ms: cfg.network.idle_timeout_ms,
        };
        let network = Arc::new(
            network::start_network(&node, dir, &net)
                .await
                .with_context(|| format!("channel {id}: cannot start its network"))?,
        );
        let (stop, stop_rx) = watch::channel(false);
        let timer = tokio::spawn(super::super::server::timer_loop(node.clone(), stop_rx));
        Ok(Self {
            config: config.clone(),
            dir: dir.to_path_buf(),
            node,
            network,
            held,
            stop,
            timer: Mutex::new(Some(timer)),
        })
    }

    /// Rights held per pool, as the hook last saw them.
    pub fn held(&self) -> BTreeMap<PoolKey, u64> {
        lock(&self.held).clone()
    }

    /// Stops the timer, then the network.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let timer = lock(&self.timer).take();
        if let Some(t) = timer {
            let _ = t.await;
        }
        self.network.shutdown().await;
    }
}
