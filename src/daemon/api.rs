//! The routes of the local HTTP/JSON API (`/v1/...`), their request and answer
//! bodies, and the router built from [`ROUTES`] (the list the OpenAPI
//! document is checked against).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post, MethodRouter};
use axum::{middleware, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{debug, info_span, warn};

use super::auth::{self, Token};
use super::error::ApiError;
use super::network::NetworkHandle;
use super::runtime_file::RuntimeInfo;
use crate::cli::events::{self, EventFields, FieldError};
use stocksync::data_dir::Reader;
use stocksync::model::{EventOutcome, NodeMeta, Sku};
use stocksync::node::{Node, RebalanceCommand, RebalanceReport, SyncStatus};
use stocksync::store::StockRow;

/// One route: method, path (axum syntax, as in the OpenAPI document) and
/// whether it needs the bearer token.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// Lower-case HTTP method.
    pub method: &'static str,
    /// Path.
    pub path: &'static str,
    /// Needs `Authorization: Bearer <token>`.
    pub auth: bool,
}

/// Every route the router serves; the router is built from this list only.
pub const ROUTES: &[Route] = &[
    Route {
        method: "post",
        path: "/v1/events",
        auth: true,
    },
    Route {
        method: "post",
        path: "/v1/rebalance",
        auth: true,
    },
    Route {
        method: "post",
        path: "/v1/allocate",
        auth: true,
    },
    Route {
        method: "get",
        path: "/v1/stock",
        auth: true,
    },
    Route {
        method: "get",
        path: "/v1/stock/{sku}",
        auth: true,
    },
    Route {
        method: "get",
        path: "/v1/status",
        auth: true,
    },
    Route {
        method: "post",
        path: "/v1/fleet/enrol",
        auth: true,
    },
    Route {
        method: "post",
        path: "/v1/fleet/revoke",
        auth: true,
    },
    Route {
        method: "post",
        path: "/v1/fleet/retire",
        auth: true,
    },
    Route {
        method: "post",
        path: "/v1/fleet/tokens",
        auth: true,
    },
    Route {
        method: "get",
        path: "/v1/health",
        auth: false,
    },
    Route {
        method: "get",
        path: "/openapi.json",
        auth: false,
    },
    Route {
        method: "get",
        path: METRICS_PATH,
        auth: true,
    },
];

/// The metrics route: behind the token unless `[api] metrics_without_token`.
pub const METRICS_PATH: &str = "/metrics";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    node: Node,
    dir: Arc<PathBuf>,
    reader: Arc<Mutex<Option<Reader>>>,
    runtime: Arc<RuntimeInfo>,
    network: Arc<NetworkHandle>,
    started: Instant,
    metrics_public: bool,
    hub: Option<Arc<super::hub_api::HubServices>>,
    channels: Option<Arc<super::channel_api::ChannelServices>>,
}

impl AppState {
    /// The state of a daemon serving `node`, whose data directory is `dir`.
    pub fn new(
        node: Node,
        dir: PathBuf,
        runtime: RuntimeInfo,
        network: Arc<NetworkHandle>,
    ) -> Self {
        Self {
            node,
            dir: Arc::new(dir),
            reader: Arc::new(Mutex::new(None)),
            runtime: Arc::new(runtime),
            network,
            started: Instant::now(),
            metrics_public: false,
            hub: None,
            channels: None,
        }
    }

    /// Serves the hub's routes with `hub` (a hub daemon only).
    pub fn with_hub(mut self, hub: Option<Arc<super::hub_api::HubServices>>) -> Self {
        self.hub = hub;
        self
    }

    /// Serves the channels' routes with `channels` (a hub running channels).
    pub fn with_channels(
        mut self,
        channels: Option<Arc<super::channel_api::ChannelServices>>,
    ) -> Self {
        self.channels = channels;
        self
    }

    /// Serves `/metrics` without the token (`[api] metrics_without_token`).
    pub fn with_public_metrics(mut self, public: bool) -> Self {
        self.metrics_public = public;
        self
    }
}

impl AppState {
    /// The node served.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Its data directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The daemon's version.
    pub fn version(&self) -> &str {
        &self.runtime.version
    }

    /// How long the daemon has served.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The peer network.
    pub fn network(&self) -> &NetworkHandle {
        &self.network
    }

    /// The hub's services, on a hub daemon.
    pub fn hub(&self) -> Option<&Arc<super::hub_api::HubServices>> {
        self.hub.as_ref()
    }

    /// The channels running in this daemon, if any.
    pub fn channels(&self) -> Option<&Arc<super::channel_api::ChannelServices>> {
        self.channels.as_ref()
    }
}

/// `POST /v1/events`: the fields of an event command, named as its flags (an
/// import line's fields). `id` is required over the API.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    /// An event command's name (receive, sell, order, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// SKU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// Units (signed for adjust): a number or a string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qty: Option<Qty>,
    /// The idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The pool's location (the node's own when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// A reference for the audit trail.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// strict or record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// An adjustment's reason code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A hold's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation: Option<String>,
    /// Destination location (transfer-out) or receiving node id (grant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Origin location (transfer-in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Transfer id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<String>,
}

/// A quantity as JSON gives it: a number or a string.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Qty {
    /// A JSON number (checked as its text, like the command line's).
    Number(serde_json::Number),
    /// A string such as "3" or "-2".
    Text(String),
}

impl Qty {
    /// The quantity as the command line would have received it.
    pub fn text(&self) -> String {
        match self {
            Qty::Number(n) => n.to_string(),
            Qty::Text(s) => s.clone(),
        }
    }
}

impl EventBody {
    /// The body of the event command with `f`'s fields (the command line's path to the API).
    pub fn from_fields(f: &EventFields<'_>) -> Self {
        let own = |v: Option<&str>| v.map(str::to_string);
        Self {
            kind: Some(f.kind.into()),
            sku: Some(f.sku.into()),
            qty: Some(Qty::Text(f.qty.into())),
            id: own(f.id),
            location: own(f.location),
            reference: own(f.reference),
            policy: own(f.policy),
            reason: own(f.reason),
            reservation: own(f.reservation),
            to: own(f.to),
            from: own(f.from),
            transfer: own(f.transfer),
        }
    }

    /// The event's fields (`qty` is [`Qty::text`] of the body's); kind, sku,
    /// qty and id are required.
    pub fn fields<'a>(&'a self, qty: Option<&'a str>) -> Result<EventFields<'a>, FieldError> {
        let need = |name, v: &'a Option<String>| v.as_deref().ok_or(FieldError::Missing(name));
        Ok(EventFields {
            kind: need("kind", &self.kind)?,
            sku: need("sku", &self.sku)?,
            qty: qty.ok_or(FieldError::Missing("qty"))?,
            id: Some(need("id", &self.id)?),
            location: self.location.as_deref(),
            reference: self.reference.as_deref(),
            policy: self.policy.as_deref(),
            reason: self.reason.as_deref(),
            reservation: self.reservation.as_deref(),
            to: self.to.as_deref(),
            from: self.from.as_deref(),
            transfer: self.transfer.as_deref(),
        })
    }
}

/// Runs a blocking node call on the blocking pool.
pub(super) async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("request task failed: {e}")))
}

/// The request body, read within the limit.
pub(super) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                "payload_too_large",
                "request body is over the API's body_limit",
            )
        } else {
            ApiError::new("malformed_request", r.body_text())
        }
    })
}

async fn post_event(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = body_bytes(body)?;
    let body: EventBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new("malformed_request", format!("request body: {e}")))?;
    let qty = body.qty.as_ref().map(Qty::text);
    let fields = body
        .fields(qty.as_deref())
        .map_err(|e| ApiError::build(&e.into()))?;
    let req = events::build(&fields, s.node.meta()).map_err(|e| ApiError::build(&e))?;
    let span = info_span!("event", node = %s.node.id(), event = %req.id);
    let node = s.node.clone();
    let result = blocking(move || span.in_scope(|| node.execute(req))).await?;
    match result {
        Ok(outcome) => {
            debug!(node = %s.node.id(), event = %outcome.id, replayed = outcome.replayed, "event answered");
            let status = if outcome.replayed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok((status, Json::<EventOutcome>(outcome)))
        }
        Err(e) => {
            let api = ApiError::node(&e);
            if api.status.is_server_error() {
                warn!(node = %s.node.id(), error = %e, "event failed");
            }
            Err(api)
        }
    }
}

/// The body of `POST /v1/rebalance`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RebalanceBody {
    location: String,
    #[serde(default)]
    skus: Vec<String>,
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    wait_ms: Option<u64>,
}

/// Longest a rebalance waits for donors' answers.
const MAX_REBALANCE_WAIT_MS: u64 = 30_000;

pub(super) async fn post_rebalance(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = body_bytes(body)?;
    let body: RebalanceBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new("malformed_request", format!("request body: {e}")))?;
    let cmd = rebalance_command(&body)?;
    let wait = body.wait_ms.unwrap_or(3_000).min(MAX_REBALANCE_WAIT_MS);
    let span = info_span!("rebalance", node = %s.node.id(), location = %cmd.location);
    let node = s.node.clone();
    let result = blocking(move || {
        span.in_scope(|| node.rebalance(&cmd, std::time::Duration::from_millis(wait)))
    })
    .await?;
    result
        .map(|r| (StatusCode::OK, Json::<RebalanceReport>(r)))
        .map_err(|e| ApiError::node(&e))
}

/// Checks a rebalance body's names.
fn rebalance_command(body: &RebalanceBody) -> Result<RebalanceCommand, ApiError> {
    let location = stocksync::model::LocationId::new(body.location.clone())
        .map_err(|e| ApiError::input(&e))?;
    let skus = body
        .skus
        .iter()
        .map(|k| Sku::new(k.clone()).map_err(|e| ApiError::input(&e)))
        .collect::<Result<Vec<_>, _>>()?;
    let strategy = match body.strategy.as_deref() {
        None => stocksync::rebalance::Strategy::Velocity,
        Some(t) => t
            .parse()
            .map_err(|e: String| ApiError::new("invalid_input", e))?,
    };
    Ok(RebalanceCommand {
        location,
        skus,
        strategy,
        dry_run: body.dry_run,
    })
}

async fn stock_rows(s: AppState, sku: Option<String>) -> Result<Json<Vec<StockRow>>, ApiError> {
    let rows = blocking(move || {
        let mut guard = s.reader.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(Reader::open(&s.dir).map_err(|e| ApiError::store(&e))?);
        }
        match guard.as_ref() {
            Some(r) => r.stock(sku.as_deref()).map_err(|e| ApiError::store(&e)),
            None => Err(ApiError::internal("stock reader not open")),
        }
    })
    .await??;
    Ok(Json(rows))
}

async fn get_stock(State(s): State<AppState>) -> Result<Json<Vec<StockRow>>, ApiError> {
    stock_rows(s, None).await
}

async fn get_stock_sku(
    State(s): State<AppState>,
    Path(sku): Path<String>,
) -> Result<Json<Vec<StockRow>>, ApiError> {
    Sku::new(sku.as_str()).map_err(|e| ApiError::input(&e))?;
    stock_rows(s, Some(sku)).await
}

/// The status document (`GET /v1/status`, and `stocksync status` without a daemon).
pub fn status_json(
    meta: &NodeMeta,
    daemon: Option<Value>,
    sync: Option<&SyncStatus>,
    peers: Value,
    network: Value,
) -> Value {
    json!({
        "running": daemon.is_some(),
        "node": {
            "id": meta.id.to_hex(),
            "name": meta.name,
            "location": meta.location,
            "role": meta.role.as_str(),
        },
        "daemon": daemon,
        "sync": sync,
        "peers": peers,
        "network": network,
    })
}

async fn get_status(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let node = s.node.clone();
    let sync = blocking(move || node.sync_status()).await?;
    let daemon = json!({
        "pid": s.runtime.pid,
        "api": s.runtime.api,
        "version": s.runtime.version,
        "uptime_ms": s.started.elapsed().as_millis() as u64,
    });
    let node = s.node.clone();
    let lags = blocking(move || node.peer_lags()).await?;
    let mut peers =
        serde_json::to_value(s.network.peers()).map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(list) = peers.as_array_mut() {
        for p in list {
            let id = p["node_id"].as_str().map(str::to_string);
            let lag = lags.iter().find(|l| Some(l.peer.to_hex()) == id);
            p["lag"] = lag.map_or(Value::Null, |l| {
                json!({
                    "writers_behind": l.writers_behind,
                    "unacknowledged_bytes": l.unacknowledged_bytes,
                    "since_progress_ms": l.since_progress_ms,
                })
            });
        }
    }
    let node = s.node.clone();
    let rights = blocking(move || node.rights_stats()).await?;
    let mut status = status_json(
        s.node.meta(),
        Some(daemon),
        Some(&sync),
        peers,
        s.network.summary(),
    );
    status["rebalance"] = json!(rights);
    Ok(Json(status))
}

async fn get_health(State(s): State<AppState>) -> Json<Value> {
    Json(json!({ "status": "ok", "node_id": s.node.id().to_hex(), "version": s.runtime.version }))
}

async fn get_openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::document(),
    )
}

/// Every route served: the node's [`ROUTES`], then the hub's and the channels'.
pub fn all_routes() -> impl Iterator<Item = &'static Route> {
    ROUTES
        .iter()
        .chain(super::hub_api::ROUTES)
        .chain(super::channel_api::ROUTES)
}

/// The handler of route `r` (every route of [`all_routes`] has one).
fn handler(r: &Route) -> Option<MethodRouter<AppState>> {
    node_handler(r)
        .or_else(|| super::hub_api::handler(r))
        .or_else(|| super::channel_api::handler(r))
}

/// The handler of one of the node's [`ROUTES`].
fn node_handler(r: &Route) -> Option<MethodRouter<AppState>> {
    Some(match (r.method, r.path) {
        ("post", "/v1/events") => post(post_event),
        ("post", "/v1/rebalance") => post(post_rebalance),
        ("post", "/v1/allocate") => post(super::allocate_api::post_allocate),
        ("get", "/v1/stock") => get(get_stock),
        ("get", "/v1/stock/{sku}") => get(get_stock_sku),
        ("get", "/v1/status") => get(get_status),
        ("post", "/v1/fleet/enrol") => post(super::fleet_api::post_enrol),
        ("post", "/v1/fleet/revoke") => post(super::fleet_api::post_revoke),
        ("post", "/v1/fleet/retire") => post(super::fleet_api::post_retire),
        ("post", "/v1/fleet/tokens") => post(super::fleet_api::post_tokens),
        ("get", "/v1/health") => get(get_health),
        ("get", "/openapi.json") => get(get_openapi),
        ("get", METRICS_PATH) => get(super::metrics::get_metrics),
        _ => return None,
    })
}

/// The API's router: [`all_routes`], the token on those that need it, the body limit.
pub fn router(state: AppState, token: Token, body_limit: usize) -> Router {
    let mut protected = Router::new();
    let mut public = Router::new();
    for r in all_routes() {
        // Proven by the test `every_route_has_a_handler`.
        let Some(h) = handler(r) else { continue };
        let open_metrics = r.path == METRICS_PATH && state.metrics_public;
        if r.auth && !open_metrics {
            protected = protected.route(r.path, h);
        } else {
            public = public.route(r.path, h);
        }
    }
    let protected = protected.route_layer(middleware::from_fn_with_state(token, auth::require));
    public
        .merge(protected)
        .fallback(|| async { ApiError::new("not_found", "no such route (see /openapi.json)") })
        .method_not_allowed_fallback(|| async {
            ApiError::new("method_not_allowed", "method not allowed on this route")
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_handler() {
        for r in all_routes() {
            assert!(handler(r).is_some(), "{} {}", r.method, r.path);
        }
    }

    #[test]
    fn the_body_needs_its_id_and_keeps_the_flags_names() {
        let b: EventBody =
            serde_json::from_str(r#"{"kind":"sell","sku":"A","qty":2,"ref":"R"}"#).unwrap();
        let qty = b.qty.as_ref().map(Qty::text);
        assert!(matches!(
            b.fields(qty.as_deref()),
            Err(FieldError::Missing("id"))
        ));
        assert!(serde_json::from_str::<EventBody>(r#"{"kind":"sell","bogus":1}"#).is_err());
        let f = EventFields {
            kind: "adjust",
            sku: "A",
            qty: "-2",
            id: Some("x"),
            reason: Some("count"),
            ..EventFields::default()
        };
        let round: EventBody =
            serde_json::from_value(serde_json::to_value(EventBody::from_fields(&f)).unwrap())
                .unwrap();
        let qty = round.qty.as_ref().map(Qty::text);
        let back = round.fields(qty.as_deref()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{f:?}"));
    }
}
