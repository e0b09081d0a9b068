//! The online channels a hub daemon runs (docs/hub.md, "Channels in the hub
//! daemon"): each channel is a node of its own (role `channel`, its own data
//! directory, key and certificate) opened by the hub's process, linked to the
//! hub over QUIC on loopback, selling with strict online orders and
//! borrowing from the hub when short; one [`Runner`] publishes what each
//! channel node holds to its webhook.
//!
//! - [`config`]: the `[channels]` section of the daemon configuration.
//! - [`node`]: a channel's node, its network and timer, and the rights hook.
//! - [`routes`]: the handlers of `/v1/hub/channels/...`.
//! - `metrics`: the channels' `/metrics` families.

pub mod config;
mod metrics;
pub mod node;
pub mod routes;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use tracing::info;

use super::config::Config;
use super::network::NetworkHandle;
use node::{ChannelNode, NodeRights, RunnerCell};
use stocksync::channel::runner::{ChannelStatus, Runner, RunnerError};
use stocksync::channel::{ChannelId, DeadLetter, Redrive};
use stocksync::model::PoolKey;
use stocksync::node::{system_clock, Node};

/// The channel nodes and their publishing runner.
pub struct ChannelServices {
    nodes: BTreeMap<ChannelId, ChannelNode>,
    runner: Arc<RunnerCell>,
}

impl ChannelServices {
    /// The channel named `id`, if it runs here.
    pub fn channel(&self, id: &str) -> Option<&ChannelNode> {
        let id = ChannelId::new(id).ok()?;
        self.nodes.get(&id)
    }

    /// Every channel, by id.
    pub fn channels(&self) -> impl Iterator<Item = &ChannelNode> {
        self.nodes.values()
    }

    fn with_runner<R>(&self, f: impl FnOnce(&Runner) -> Result<R, RunnerError>) -> Option<R> {
        let r = self.runner.read().unwrap_or_else(|e| e.into_inner());
        r.as_ref().and_then(|r| f(r).ok())
    }

    /// Channel `id`'s delivery status (`None` once shut down).
    pub fn status(&self, id: &ChannelId) -> Option<ChannelStatus> {
        self.with_runner(|r| r.status(id))
    }

    /// Channel `id`'s dead letters, by pool.
    pub fn dead_letters(&self, id: &ChannelId) -> Vec<(PoolKey, DeadLetter)> {
        self.with_runner(|r| r.dead_letters(id)).unwrap_or_default()
    }

    /// Asks channel `id`'s worker to re-drive `which` dead letters; false once shut down.
    pub fn redrive(&self, id: &ChannelId, which: Redrive) -> bool {
        self.with_runner(|r| r.redrive(id, which)).is_some()
    }

    /// The channels' `/metrics` families (outbox depth, dead letters,
    /// deliveries, failed attempts, rights held), appended to the node's.
    pub fn metrics(&self) -> String {
        metrics::render(self)
    }

    /// Stops the runner (a request in flight finishes), then each channel
    /// node's timer and network.
    pub async fn shutdown(&self) {
        let runner = self
            .runner
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(r) = runner {
            // Joins the worker threads: off the async workers.
            let _ = tokio::task::spawn_blocking(move || r.shutdown()).await;
        }
        for n in self.nodes.values() {
            n.shutdown().await;
        }
    }
}

/// Starts the configured channels (a hub daemon only); `None` when there are none.
pub async fn start(
    node: &Node,
    dir: &Path,
    cfg: &Config,
    network: &Arc<NetworkHandle>,
) -> Result<Option<Arc<ChannelServices>>> {
    if cfg.channels.channel.is_empty() {
        return Ok(None);
    }
    if node.meta().role != stocksync::model::Role::Hub {
        anyhow::bail!(
            "[channels] is configured but this node is not a hub: channels run in the hub's daemon"
        );
    }
    let runner = Runner::start(dir, &cfg.channels.channels(), system_clock())
        .context("cannot start the channels' runner")?;
    let runner: Arc<RunnerCell> = Arc::new(RwLock::new(Some(runner)));
    let mut services = ChannelServices {
        nodes: BTreeMap::new(),
        runner: runner.clone(),
    };
    for c in &cfg.channels.channel {
        let cdir = cfg.channels.node_dir(dir, &c.id);
        let started = ChannelNode::start(c, &cdir, cfg, network, runner.clone()).await;
        let n = match started {
            Ok(n) => n,
            Err(e) => {
                services.shutdown().await;
                return Err(e);
            }
        };
        // The hook already fed every pool; this reads them once more through
        // the runner's own source interface (cheap, and idempotent).
        let fed = services.with_runner(|r| r.feed(&c.id, &NodeRights(&n.node)));
        if fed.is_none() {
            tracing::warn!(channel = %c.id, "cannot feed the channel at start");
        }
        info!(channel = %c.id, node = %n.node.id(), dir = %cdir.display(), "channel node started");
        services.nodes.insert(c.id.clone(), n);
    }
    Ok(Some(Arc::new(services)))
}
