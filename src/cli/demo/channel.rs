//! The web channel's glue: a [`Runner`] over an [`AvailableSource`] reading
//! the channel node's own rights, fed by a thread that looks every
//! [`FEED_EVERY`] (the runner publishes only changed values). Kept in one
//! module so it can give way to the hub daemon's channel services.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

use stocksync::channel::config::{
    ChannelConfig, ChannelId, ChannelsConfig, PoolSelector, PublishMode,
};
use stocksync::channel::runner::{ChannelStatus, Runner};
use stocksync::channel::AvailableSource;
use stocksync::model::{LocationId, PoolKey};
use stocksync::node::{system_clock, Node};

/// How often the feeder reads the channel node's rights.
const FEED_EVERY: Duration = Duration::from_millis(40);

/// What the channel publishes: the rights its node holds, never more.
pub struct NodeRights(pub Node);

impl AvailableSource for NodeRights {
    fn available(&self, pools: &[PoolSelector]) -> Vec<(PoolKey, u64)> {
        let me = self.0.id();
        self.0
            .query(|r| {
                r.book()
                    .pools()
                    .filter(|(k, _)| pools.iter().any(|s| s.matches(k)))
                    .map(|(k, _)| (k.clone(), r.book().rights(k, &me).max(0) as u64))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The channel `web` publishing `node`'s rights at `location` to `url`.
pub struct WebChannel {
    id: ChannelId,
    runner: Arc<Runner>,
    stop: Arc<AtomicBool>,
    feeder: Option<JoinHandle<()>>,
}

impl WebChannel {
    /// Starts the runner (its outbox in `dir`) and the feeder.
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
        let runner = Arc::new(Runner::start(
            dir,
            &ChannelsConfig { channel: vec![cfg] },
            system_clock(),
        )?);
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, c) = (runner.clone(), stop.clone(), id.clone());
        let source = NodeRights(node);
        let feeder = std::thread::Builder::new()
            .name("demo-channel-feed".into())
            .spawn(move || {
                while !s.load(Ordering::SeqCst) {
                    // A runner error names an unknown channel: not ours.
                    let _ = r.feed(&c, &source);
                    std::thread::sleep(FEED_EVERY);
                }
            })
            .context("the channel feeder")?;
        Ok(Self {
            id,
            runner,
            stop,
            feeder: Some(feeder),
        })
    }

    /// The channel's delivery status.
    pub fn status(&self) -> Result<ChannelStatus> {
        Ok(self.runner.status(&self.id)?)
    }

    /// Stops the feeder, then the runner (a request in flight finishes).
    pub fn shutdown(mut self) {
        self.stop_feeder();
        // The feeder is joined: this is the last handle, and dropping it stops the workers.
    }

    fn stop_feeder(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(f) = self.feeder.take() {
            let _ = f.join();
        }
    }
}

impl Drop for WebChannel {
    fn drop(&mut self) {
        self.stop_feeder();
    }
}
