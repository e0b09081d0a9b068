//! A hub daemon's fleet routes: `POST /v1/fleet/enrol`,
//! `POST /v1/fleet/revoke`, `POST /v1/fleet/retire` and `POST /v1/fleet/tokens`, so members can be
//! enrolled and revoked, and enrolment tokens made, while the hub runs (the
//! command line goes through them when it finds the daemon).
//! The fleet key is read from the data directory for each request and never
//! leaves the process; edits are serialized so each gets its own version.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use tracing::info_span;

use super::api::{blocking, body_bytes, AppState};
use super::error::ApiError;
use crate::cli::fleet::token_cmd::{issue_token, now_s};
use crate::cli::fleet::{
    retired, Bundle, EnrolRequest, FleetError, Hub, IssuedToken, RetireBody, Retired, RevokeBody,
    Revoked, TokenBody, EDITS,
};
use stocksync::error::NodeError;

/// The API error for a failed fleet edit.
fn fleet_error(e: &anyhow::Error) -> ApiError {
    if let Some(f) = e.downcast_ref::<FleetError>() {
        return match f {
            FleetError::NotHub(_) => ApiError::new("not_a_hub", f.to_string()),
            FleetError::Io(_) => ApiError::internal(f.to_string()),
            _ => ApiError::new("fleet_refused", f.to_string()),
        };
    }
    if let Some(n) = e.downcast_ref::<NodeError>() {
        return ApiError::node(n);
    }
    ApiError::internal(format!("{e:#}"))
}

fn parse<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body_bytes(body)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new("malformed_request", format!("request body: {e}")))
}

/// Runs `f` on the hub of the daemon's node, one edit at a time, on the blocking pool.
async fn with_hub<R: Send + 'static>(
    s: &AppState,
    what: &'static str,
    f: impl FnOnce(&Hub) -> anyhow::Result<R> + Send + 'static,
) -> Result<R, ApiError> {
    let (node, dir) = (s.node().clone(), s.dir().to_path_buf());
    let span = info_span!("fleet", node = %node.id(), edit = what);
    blocking(move || {
        let _one = EDITS.lock().unwrap_or_else(|e| e.into_inner());
        span.in_scope(|| Hub::of_node(node, &dir).and_then(|hub| f(&hub)))
    })
    .await?
    .map_err(|e| fleet_error(&e))
}

/// `POST /v1/fleet/enrol`: an [`EnrolRequest`] in, the node's [`Bundle`] out (201).
pub async fn post_enrol(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req: EnrolRequest = parse(body)?;
    let bundle: Bundle = with_hub(&s, "enrol", move |hub| hub.enrol(&req)).await?;
    Ok((StatusCode::CREATED, Json(bundle)))
}

/// `POST /v1/fleet/revoke`: a [`RevokeBody`] in, [`Revoked`] out.
pub async fn post_revoke(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Revoked>, ApiError> {
    let req: RevokeBody = parse(body)?;
    let done = with_hub(&s, "revoke", move |hub| {
        hub.revoke(&req.node, &req.reason)
            .map(|(id, after, roster_version)| Revoked {
                node_id: id.to_hex(),
                after,
                roster_version,
            })
    })
    .await?;
    Ok(Json(done))
}

/// `POST /v1/fleet/retire`: a [`RetireBody`] in, [`Retired`] out.
pub async fn post_retire(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Retired>, ApiError> {
    let req: RetireBody = parse(body)?;
    let done = with_hub(&s, "retire", move |hub| {
        hub.retire(&req.node, &req.reason, &req.heir).map(retired)
    })
    .await?;
    Ok(Json(done))
}

/// `POST /v1/fleet/tokens`: a [`TokenBody`] in, the [`IssuedToken`] out (201).
/// Its `token` holds the secret: the only time it is shown.
pub async fn post_tokens(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req: TokenBody = parse(body)?;
    let dir = s.dir().to_path_buf();
    let issued: IssuedToken = blocking(move || issue_token(&dir, &req, now_s()))
        .await?
        .map_err(|e| fleet_error(&e.into()))?;
    Ok((StatusCode::CREATED, Json(issued)))
}
