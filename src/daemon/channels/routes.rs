//! The handlers of `/v1/hub/channels/...` (listed in `channel_api::ROUTES`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{info_span, warn};

use super::super::api::{blocking, body_bytes, AppState, Qty};
use super::super::error::ApiError;
use super::node::ChannelNode;
use super::ChannelServices;
use crate::cli::events::{self, EventFields};
use stocksync::channel::{PublishMode, Redrive};
use stocksync::model::{EventOutcome, Sku};

/// The body of `POST /v1/hub/channels/{channel}/orders`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderBody {
    /// The idempotency key.
    id: String,
    sku: String,
    qty: Qty,
    /// The pool's location (the channel node's own when absent).
    #[serde(default)]
    location: Option<String>,
}

/// The body of `POST /v1/hub/channels/{channel}/redrive` (all SKUs when absent).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveBody {
    #[serde(default)]
    sku: Option<String>,
}

fn services(s: &AppState) -> Result<&std::sync::Arc<ChannelServices>, ApiError> {
    if s.node().meta().role != stocksync::model::Role::Hub {
        // As the hub's other routes answer on a till or store.
        return Err(ApiError::new(
            "not_a_hub",
            "channels run in a hub daemon; this node is not the hub",
        ));
    }
    s.channels()
        .ok_or_else(|| ApiError::new("not_found", "no channels run in this daemon"))
}

fn channel<'a>(svc: &'a ChannelServices, id: &str) -> Result<&'a ChannelNode, ApiError> {
    svc.channel(id)
        .ok_or_else(|| ApiError::new("not_found", format!("no channel {id:?} runs here")))
}

/// `POST /v1/hub/channels/{channel}/orders`: a strict online order on the channel's node.
pub async fn post_order(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let c = channel(services(&s)?, &id)?;
    let bytes = body_bytes(body)?;
    let body: OrderBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new("malformed_request", format!("request body: {e}")))?;
    let qty = body.qty.text();
    let fields = EventFields {
        kind: "order",
        sku: &body.sku,
        qty: &qty,
        id: Some(&body.id),
        location: body.location.as_deref(),
        ..EventFields::default()
    };
    let req = events::build(&fields, c.node.meta()).map_err(|e| ApiError::build(&e))?;
    if !c.config.sells_from(&req.pool) {
        return Err(ApiError::new(
            "invalid_input",
            format!("channel {id} does not sell from {}", req.pool),
        ));
    }
    let node = c.node.clone();
    let span = info_span!("online_order", channel = %id, event = %req.id);
    let result = blocking(move || span.in_scope(|| node.execute(req))).await?;
    match result {
        Ok(outcome) => {
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
                warn!(channel = %id, error = %e, "online order failed");
            }
            Err(api)
        }
    }
}

fn mode_json(m: &PublishMode) -> Value {
    serde_json::to_value(m).unwrap_or(Value::Null)
}

/// One channel as `GET /v1/hub/channels` shows it.
fn channel_json(svc: &ChannelServices, c: &ChannelNode) -> Value {
    let cfg = &c.config;
    let meta = c.node.meta();
    let st = svc.status(&cfg.id).unwrap_or_default();
    let rights: Vec<Value> = c
        .held()
        .into_iter()
        .map(|(p, n)| json!({"location": p.location, "sku": p.sku, "rights": n}))
        .collect();
    let connected = c.network.peers().iter().any(|p| p.connected);
    json!({
        "id": cfg.id,
        "mode": mode_json(&cfg.mode),
        "url": cfg.url,
        "pools": cfg.pools,
        "node": {
            "id": meta.id.to_hex(),
            "name": meta.name,
            "location": meta.location,
            "data_dir": c.dir.display().to_string(),
            "connected_to_hub": connected,
        },
        "rights": rights,
        "status": {
            "last_delivery_ms": st.last_delivery_ms,
            "last_delivered": st.last_delivered.map(|(sku, seq)| json!({"sku": sku, "sequence": seq})),
            "outbox_depth": st.outbox_depth,
            "dead_letters": st.dead_letters,
            "last_error": st.last_error,
            "delivered": st.delivered,
            "failed_attempts": st.failed_attempts,
            "stopped": st.stopped,
        },
    })
}

/// `GET /v1/hub/channels`: every channel's configuration, rights and delivery status.
pub async fn get_channels(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let svc = services(&s)?;
    let list: Vec<Value> = svc.channels().map(|c| channel_json(svc, c)).collect();
    Ok(Json(json!({ "channels": list })))
}

/// `GET /v1/hub/channels/{channel}/dead-letters`.
pub async fn get_dead_letters(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let svc = services(&s)?;
    let c = channel(svc, &id)?;
    let list: Vec<Value> = svc
        .dead_letters(&c.config.id)
        .into_iter()
        .map(|(p, d)| {
            json!({
                "location": p.location,
                "sku": p.sku,
                "available": d.update.available,
                "sequence": d.update.sequence,
                "attempts": d.attempts,
                "error": d.error,
                "failed_at_ms": d.failed_at_ms,
            })
        })
        .collect();
    Ok(Json(json!({ "channel": id, "dead_letters": list })))
}

/// `POST /v1/hub/channels/{channel}/redrive`: re-drive the dead letters (of one SKU, or all).
pub async fn post_redrive(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let svc = services(&s)?;
    let c = channel(svc, &id)?;
    let bytes = body_bytes(body)?;
    let body: RedriveBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        RedriveBody::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::new("malformed_request", format!("request body: {e}")))?
    };
    let which = match &body.sku {
        None => Redrive::All,
        Some(k) => Redrive::Sku(Sku::new(k.clone()).map_err(|e| ApiError::input(&e))?),
    };
    if !svc.redrive(&c.config.id, which) {
        return Err(ApiError::new(
            "node_stopped",
            "the channels are shutting down",
        ));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "channel": id, "redrive": body.sku.unwrap_or_else(|| "all".into()) })),
    ))
}
