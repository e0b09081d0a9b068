//! The hub's HTTP API (`/v1/hub/...`): what HQ reads of the whole fleet and
//! the dashboard. Served only by a hub daemon (any other answers
//! `not_a_hub`); its routes are listed in [`ROUTES`] and documented in
//! `openapi_hub.json`. The handlers are in [`super::hub`].

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::routing::{get, post, MethodRouter};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::info;

use super::api::{AppState, Route};
use super::config::Config;
use super::hub::{events, read, snapshot};
use super::metrics::text::{Exposition, Kind};
use super::network::NetworkHandle;
use stocksync::hub::{Hub, SqliteAggregateStore};
use stocksync::model::Role;
use stocksync::node::Node;

/// The aggregate's file in the hub's data directory.
pub const AGGREGATE_FILE: &str = "hub.db";
/// Most server-sent-event clients served at once.
pub const MAX_SSE_CLIENTS: usize = 16;
/// Shortest time between two snapshots pushed to the dashboard.
pub const SNAPSHOT_EVERY: Duration = Duration::from_millis(250);

/// The hub's routes.
pub const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/",
        auth: false,
    },
    Route {
        method: "get",
        path: "/v1/hub/stock",
        auth: true,
    },
    Route {
        method: "get",
        path: "/v1/hub/stock/{sku}",
        auth: true,
    },
    Route {
        method: "get",
        path: "/v1/hub/nodes",
        auth: true,
    },
    Route {
        method: "get",
        path: "/v1/hub/deficits",
        auth: true,
    },
    Route {
        method: "get",
        path: "/v1/hub/transfers",
        auth: true,
    },
    Route {
        method: "post",
        path: "/v1/hub/rebalance",
        auth: true,
    },
    Route {
        method: "get",
        path: "/v1/hub/events",
        auth: true,
    },
];

/// The handler of one of [`ROUTES`].
pub fn handler(r: &Route) -> Option<MethodRouter<AppState>> {
    Some(match (r.method, r.path) {
        ("get", "/") => get(events::get_dashboard),
        ("get", "/v1/hub/stock") => get(read::get_stock),
        ("get", "/v1/hub/stock/{sku}") => get(read::get_stock_sku),
        ("get", "/v1/hub/nodes") => get(read::get_nodes),
        ("get", "/v1/hub/deficits") => get(read::get_deficits),
        ("get", "/v1/hub/transfers") => get(read::get_transfers),
        ("post", "/v1/hub/rebalance") => post(read::post_rebalance),
        ("get", "/v1/hub/events") => get(events::get_events),
        _ => return None,
    })
}

/// What the hub's routes share: the aggregate, the dashboard's snapshots.
pub struct HubServices {
    /// The hub's live aggregate.
    pub hub: Hub,
    /// The newest dashboard snapshot (JSON), replaced when something changed.
    pub snapshots: watch::Receiver<Arc<str>>,
    /// Turns true at shutdown: the event streams end.
    pub stop: watch::Sender<bool>,
    /// One permit per event-stream client.
    pub sse: Arc<Semaphore>,
    producer: Mutex<Option<JoinHandle<()>>>,
}

impl HubServices {
    /// The hub's own `/metrics` families, appended to the node's.
    pub fn metrics(&self) -> String {
        let (t, pools) = self.hub.read(|a| (a.totals(), a.pool_count()));
        let rows = snapshot::node_rows(&self.hub, snapshot::unix_ms());
        let online = rows.iter().filter(|r| r.online).count();
        let exposure: i64 = rows
            .iter()
            .map(|r| r.offline_exposure)
            .fold(0, i64::saturating_add);
        let mut e = Exposition::default();
        use Kind::{Counter, Gauge};
        e.single(
            "stocksync_hub_skus",
            Gauge,
            "SKUs the hub's aggregate tracks.",
            t.skus,
        );
        e.single(
            "stocksync_hub_pools",
            Gauge,
            "Pools (SKU x location) the hub's aggregate tracks.",
            pools,
        );
        e.family(
            "stocksync_hub_nodes",
            Gauge,
            "Fleet nodes by state: online (connected to the hub, or the hub itself) or offline.",
        )
        .sample(&[("state", "online")], online)
        .sample(&[("state", "offline")], rows.len() - online);
        e.single(
            "stocksync_hub_offline_exposure_units",
            Gauge,
            "Positive rights held by nodes the hub cannot reach now: units they may sell unseen.",
            exposure,
        );
        e.single(
            "stocksync_hub_deficit_units",
            Gauge,
            "Uncovered deficit units over the fleet, as the hub's aggregate sees them.",
            t.deficit,
        );
        e.single(
            "stocksync_hub_in_transit_units",
            Gauge,
            "Units shipped and not yet received, over every transfer.",
            t.in_transit,
        );
        e.single(
            "stocksync_hub_store_failures_total",
            Counter,
            "Writes of the hub's aggregate store that failed since start.",
            self.hub.store_failures(),
        );
        e.single(
            "stocksync_hub_store_behind",
            Gauge,
            "1 while the aggregate store is behind memory (its last write failed).",
            self.hub.store_error().is_some(),
        );
        e.finish()
    }

    /// Stops the snapshot task and ends every event stream.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        let task = self
            .producer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = task {
            t.abort();
        }
    }
}

/// Starts the hub's services when `node` is a hub; `None` otherwise. The
/// aggregate lives in `DIR/hub.db`; a snapshot task feeds the dashboard.
/// Called inside the daemon's runtime.
pub fn start(
    node: &Node,
    dir: &Path,
    _cfg: &Config,
    _network: &Arc<NetworkHandle>,
) -> Result<Option<Arc<HubServices>>> {
    if node.meta().role != Role::Hub {
        return Ok(None);
    }
    let path = dir.join(AGGREGATE_FILE);
    let store = SqliteAggregateStore::open(&path)
        .with_context(|| format!("cannot open the hub aggregate {}", path.display()))?;
    let hub = Hub::start(node.clone(), store).context("cannot start the hub aggregate")?;
    let (tx, rx) = watch::channel::<Arc<str>>(Arc::from("null"));
    let (stop, stop_rx) = watch::channel(false);
    let producer = tokio::spawn(snapshot::produce(hub.clone(), tx, stop_rx));
    info!(file = %path.display(), "hub aggregate attached");
    Ok(Some(Arc::new(HubServices {
        hub,
        snapshots: rx,
        stop,
        sse: Arc::new(Semaphore::new(MAX_SSE_CLIENTS)),
        producer: Mutex::new(Some(producer)),
    })))
}
