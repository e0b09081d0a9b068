//! The web channel's glue: a [`Runner`] fed by the hub daemon's own rights
//! hook ([`RightsHook`]) on the channel node, so the demo publishes exactly
//! as a hub daemon's channel does: the node's own rights, after each change.

use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::{anyhow, Context, Result};

use crate::daemon::channels::node::{Held, NodeRights, RightsHook, RunnerCell};
use stocksync::channel::config::{
    ChannelConfig, ChannelId, ChannelsConfig, PoolSelector, PublishMode,
};
use stocksync::channel::runner::{ChannelStatus, Runner};
use stocksync::model::LocationId;
use stocksync::node::{system_clock, Node};

/// The web shop's channel: its runner, fed by the channel node's rights hook.
pub struct WebChannel {
    id: ChannelId,
    runner: Arc<RunnerCell>,
}

impl WebChannel {
    /// Starts channel "web" selling from `location`, publishing `node`'s
    /// rights to `url` signed with `secret`; its outbox lives in `dir`.
    pub fn start(
        node: Node,
        dir: &Path,
        location: &LocationId,
        url: &str,
        secret: &str,
    ) -> Result<Self> {
        let id = ChannelId::new("web")?;
        let mut cfg = ChannelConfig::new(
            id.clone(),
            vec![PoolSelector {
                location: location.clone(),
                sku: None,
                safety_stock: 0,
            }],
            url,
            secret,
        );
        // Time compressed for the demo: retries every 50-400 ms, never dead-lettered.
        cfg.mode = PublishMode::Realtime { coalesce_ms: 20 };
        cfg.backoff_base_ms = 50;
        cfg.backoff_max_ms = 400;
        cfg.max_attempts = 1_000;
        cfg.request_timeout_ms = 2_000;
        let pools = cfg.pools.clone();
        let runner = Runner::start(dir, &ChannelsConfig { channel: vec![cfg] }, system_clock())?;
        // What the node holds now; the hook sends every change after.
        runner.feed(&id, &NodeRights(&node))?;
        let runner: Arc<RunnerCell> = Arc::new(RwLock::new(Some(runner)));
        RightsHook::attach(
            &node,
            &id,
            &pools,
            Arc::new(Held::default()),
            runner.clone(),
        )
        .context("the channel cannot watch its node's rights")?;
        Ok(Self { id, runner })
    }

    /// The channel's delivery status.
    pub fn status(&self) -> Result<ChannelStatus> {
        let cell = self
            .runner
            .read()
            .map_err(|_| anyhow!("the runner's lock is poisoned"))?;
        let runner = cell
            .as_ref()
            .ok_or_else(|| anyhow!("the channel is stopped"))?;
        Ok(runner.status(&self.id)?)
    }

    /// Stops the runner (a request in flight finishes); the hook then feeds nothing.
    pub fn shutdown(self) {
        let taken = match self.runner.write() {
            Ok(mut cell) => cell.take(),
            Err(e) => e.into_inner().take(),
        };
        if let Some(r) = taken {
            r.shutdown();
        }
    }
}
