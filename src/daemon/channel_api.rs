//! The online channels run inside a hub daemon, and their HTTP API
//! (`/v1/hub/channels/...`). Its routes are listed in
//! [`ROUTES`] and documented in `openapi_channels.json`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use axum::routing::MethodRouter;

use super::api::{AppState, Route};
use super::config::Config;
use super::network::NetworkHandle;
use stocksync::node::Node;

/// The channels' routes.
pub const ROUTES: &[Route] = &[];

/// The handler of one of [`ROUTES`].
pub fn handler(_r: &Route) -> Option<MethodRouter<AppState>> {
    None
}

/// The channel nodes and their publishing runner.
#[allow(dead_code)] // built once channels run
pub struct ChannelServices {}

impl ChannelServices {
    /// The channels' `/metrics` families (outbox depth, webhook failures), appended to the node's.
    pub fn metrics(&self) -> String {
        String::new()
    }

    /// Stops what the services run.
    pub fn shutdown(&self) {}
}

/// Starts the configured channels (a hub daemon only); `None` when there are none.
pub fn start(
    _node: &Node,
    _dir: &Path,
    _cfg: &Config,
    _network: &Arc<NetworkHandle>,
) -> Result<Option<Arc<ChannelServices>>> {
    Ok(None)
}
