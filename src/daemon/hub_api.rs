//! The hub's HTTP API (`/v1/hub/...`): what HQ reads of the whole fleet and
//! the dashboard. Served only by a hub daemon; its routes are listed in
//! [`ROUTES`] and documented in `openapi_hub.json`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use axum::routing::MethodRouter;

use super::api::{AppState, Route};
use super::config::Config;
use super::network::NetworkHandle;
use stocksync::node::Node;

/// The hub's routes.
pub const ROUTES: &[Route] = &[];

/// The handler of one of [`ROUTES`].
pub fn handler(_r: &Route) -> Option<MethodRouter<AppState>> {
    None
}

/// What the hub's routes share (the aggregate, ...).
#[allow(dead_code)] // built once the hub's routes are served
pub struct HubServices {}

impl HubServices {
    /// The hub's own `/metrics` families, appended to the node's.
    pub fn metrics(&self) -> String {
        String::new()
    }

    /// Stops what the services run.
    pub fn shutdown(&self) {}
}

/// Starts the hub's services when `node` is a hub; `None` otherwise.
pub fn start(
    _node: &Node,
    _dir: &Path,
    _cfg: &Config,
    _network: &Arc<NetworkHandle>,
) -> Result<Option<Arc<HubServices>>> {
    Ok(None)
}
