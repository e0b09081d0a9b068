//! The hub's read routes (`GET /v1/hub/...`) and HQ's rebalance
//! (`POST /v1/hub/rebalance`). Every input is bounded; a daemon that is not
//! a hub answers `not_a_hub`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::super::api::{blocking, AppState};
use super::super::error::ApiError;
use super::super::hub_api::HubServices;
use super::query::Query;
use super::snapshot;
use stocksync::hub::SkuView;
use stocksync::model::Sku;

/// Default and largest page of `GET /v1/hub/stock`.
const STOCK_PAGE: (usize, usize) = (100, 1_000);
/// Default and largest page of the deficit and transfer lists.
const LIST_PAGE: (usize, usize) = (1_000, 10_000);

/// The hub's services, or `not_a_hub`.
pub(super) fn services(s: &AppState) -> Result<Arc<HubServices>, ApiError> {
    s.hub().cloned().ok_or_else(|| {
        ApiError::new(
            "not_a_hub",
            format!(
                "this node's role is {}: the /v1/hub routes are served by a hub daemon",
                s.node().meta().role.as_str()
            ),
        )
    })
}

/// `GET /v1/hub/stock?sku_prefix=&after=&limit=`: SKUs by name with their totals.
pub(in super::super) async fn get_stock(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let h = services(&s)?;
    let q = Query::parse(q.as_deref(), &["sku_prefix", "after", "limit"])?;
    let prefix = q.get("sku_prefix").unwrap_or_default().to_string();
    if prefix.len() > 64 {
        return Err(ApiError::new(
            "invalid_input",
            "sku_prefix is over 64 bytes",
        ));
    }
    let after = match q.get("after") {
        Some(a) => Some(Sku::new(a).map_err(|e| ApiError::input(&e))?),
        None => None,
    };
    let limit = q.limit(STOCK_PAGE)?;
    let page = blocking(move || {
        let (names, matching) = h.hub.read(|a| {
            snapshot::first_skus_where(a, limit, |k| {
                k.as_str().starts_with(&prefix) && after.as_ref().is_none_or(|after| k > after)
            })
        });
        let rows: Vec<_> = names
            .iter()
            .filter_map(|k| h.hub.read(|a| a.sku_summary(k)))
            .collect();
        let next = if matching > limit {
            rows.last().map(|r| r.sku.as_str().to_string())
        } else {
            None
        };
        json!({ "skus": rows, "next": next })
    })
    .await?;
    Ok(Json(page))
}

/// `GET /v1/hub/stock/{sku}`: one SKU across the fleet.
pub(in super::super) async fn get_stock_sku(
    State(s): State<AppState>,
    Path(sku): Path<String>,
) -> Result<Json<SkuView>, ApiError> {
    let h = services(&s)?;
    let sku = Sku::new(sku).map_err(|e| ApiError::input(&e))?;
    let name = sku.as_str().to_string();
    blocking(move || h.hub.sku(&sku))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::new("not_found", format!("the hub has never seen SKU {name}")))
}

/// `GET /v1/hub/nodes`: every node, online or not, with its offline exposure.
pub(in super::super) async fn get_nodes(
    State(s): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let h = services(&s)?;
    let rows = blocking(move || snapshot::node_rows(&h.hub, snapshot::unix_ms())).await?;
    let exposure: i64 = rows
        .iter()
        .map(|r| r.offline_exposure)
        .fold(0, i64::saturating_add);
    Ok(Json(json!({ "offline_exposure": exposure, "nodes": rows })))
}

/// `GET /v1/hub/deficits?limit=`: the uncovered deficits to reconcile.
pub(in super::super) async fn get_deficits(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let h = services(&s)?;
    let limit = Query::parse(q.as_deref(), &["limit"])?.limit(LIST_PAGE)?;
    let mut all = blocking(move || h.hub.deficits()).await?;
    let (count, units) = (
        all.len(),
        all.iter().map(|d| d.deficit).fold(0, i64::saturating_add),
    );
    all.truncate(limit);
    Ok(Json(
        json!({ "count": count, "units": units, "deficits": all }),
    ))
}

/// `GET /v1/hub/transfers?state=&limit=`: every transfer leg and its state.
pub(in super::super) async fn get_transfers(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let h = services(&s)?;
    let q = Query::parse(q.as_deref(), &["state", "limit"])?;
    let limit = q.limit(LIST_PAGE)?;
    let want = match q.get("state") {
        None | Some("all") => None,
        Some("in_transit") => Some(true),
        Some("received") => Some(false),
        Some(other) => {
            return Err(ApiError::new(
                "invalid_input",
                format!("state {other:?}: expected in_transit, received or all"),
            ))
        }
    };
    let legs = blocking(move || h.hub.read(|a| a.legs())).await?;
    let count = legs.len();
    let rows: Vec<Value> = legs
        .into_iter()
        .filter(|(_, l)| want.is_none_or(|w| (l.in_transit > 0) == w))
        .take(limit)
        .map(|(sku, l)| {
            let state = if l.in_transit > 0 {
                "in_transit"
            } else {
                "received"
            };
            json!({
                "sku": sku, "transfer": l.transfer, "from": l.from, "to": l.to,
                "shipped": l.shipped, "received": l.received, "in_transit": l.in_transit,
                "state": state,
            })
        })
        .collect();
    Ok(Json(json!({ "count": count, "legs": rows })))
}

/// `POST /v1/hub/rebalance`: `POST /v1/rebalance`'s body and answer, on a hub.
pub(in super::super) async fn post_rebalance(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    services(&s)?;
    super::super::api::post_rebalance(State(s), body).await
}
