//! `POST /v1/allocate`: a hub allocates its rights above its reserve to the
//! channels and stores its `[rebalance] allocate` entries name
//! (docs/rebalancing.md, "Allocation").

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use tracing::info_span;

use super::api::{blocking, body_bytes, AppState};
use super::error::ApiError;
use stocksync::model::{LocationId, Sku};
use stocksync::node::{AllocationCommand, AllocationReport};

/// The body of `POST /v1/allocate`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllocateBody {
    location: String,
    #[serde(default)]
    skus: Vec<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    id: Option<String>,
}

/// Longest idempotency key accepted.
const MAX_ID_LEN: usize = 128;

/// Allocates the rights of a location's pools (the SKUs named, or all).
pub(super) async fn post_allocate(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let bytes = body_bytes(body)?;
    let body: AllocateBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new("malformed_request", format!("request body: {e}")))?;
    let location = LocationId::new(body.location).map_err(|e| ApiError::input(&e))?;
    let skus = body
        .skus
        .into_iter()
        .map(|k| Sku::new(k).map_err(|e| ApiError::input(&e)))
        .collect::<Result<Vec<_>, _>>()?;
    if body
        .id
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > MAX_ID_LEN)
    {
        return Err(ApiError::new(
            "invalid_input",
            format!("id: 1 to {MAX_ID_LEN} characters"),
        ));
    }
    let cmd = AllocationCommand {
        location,
        skus,
        dry_run: body.dry_run,
        id: body.id,
    };
    let span = info_span!("allocate", node = %s.node().id(), location = %cmd.location);
    let node = s.node().clone();
    let result = blocking(move || span.in_scope(|| node.allocate(&cmd))).await?;
    result
        .map(|r| (StatusCode::OK, Json::<AllocationReport>(r)))
        .map_err(|e| ApiError::node(&e))
}
