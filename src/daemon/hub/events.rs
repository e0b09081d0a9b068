//! The dashboard (`GET /`, one static page embedded in the binary) and its
//! live feed (`GET /v1/hub/events`, server-sent events). The page needs the
//! token: `GET /?token=<DIR/api.token>` stores it in an HttpOnly, SameSite=Strict
//! cookie and redirects to `/`; the cookie is accepted on GET routes only
//! (see [`super::super::auth`]).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Serialize;
use serde_json::Value;

use super::super::api::AppState;
use super::super::auth::TOKEN_COOKIE;
use super::super::channel_api::ChannelServices;
use super::super::error::ApiError;
use super::query::Query;
use super::read::services;

/// The dashboard page.
const PAGE: &str = include_str!("dashboard.html");
/// A comment line sent on an idle stream, so proxies and the browser keep it.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// One channel's row on the dashboard.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChannelRow {
    /// The channel's id.
    pub id: String,
    /// Time of its last delivery (Unix ms).
    pub last_delivery_ms: Option<i64>,
    /// Updates waiting or in flight.
    pub outbox_depth: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Its last error.
    pub last_error: Option<String>,
}

/// What the dashboard reads of the channels running in the hub daemon.
pub trait ChannelRows {
    /// One row per channel.
    fn channel_rows(&self) -> Vec<ChannelRow>;
}

impl ChannelRows for ChannelServices {
    /// Each channel running in the hub daemon, with its runner's status
    /// (a channel whose runner is stopped shows its last error as such).
    fn channel_rows(&self) -> Vec<ChannelRow> {
        self.channels()
            .map(|c| {
                let id = c.config.id.as_str().to_string();
                match self.status(&c.config.id) {
                    Some(st) => ChannelRow {
                        id,
                        last_delivery_ms: st
                            .last_delivery_ms
                            .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
                        outbox_depth: st.outbox_depth as u64,
                        dead_letters: st.dead_letters as u64,
                        last_error: st.stopped.or(st.last_error),
                    },
                    None => ChannelRow {
                        id,
                        last_error: Some("stopped".into()),
                        ..ChannelRow::default()
                    },
                }
            })
            .collect()
    }
}

/// `GET /`: the dashboard; `?token=` stores the token in a cookie and redirects.
pub(in super::super) async fn get_dashboard(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    services(&s)?;
    let q = Query::parse(q.as_deref(), &["token"])?;
    if let Some(t) = q.get("token") {
        // Only a token's characters go into the header.
        if t.is_empty() || t.len() > 128 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::new("invalid_input", "token: expected hex digits"));
        }
        let cookie = format!("{TOKEN_COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict");
        return Ok((
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/".to_string()),
                (header::SET_COOKIE, cookie),
            ],
        )
            .into_response());
    }
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(PAGE),
    )
        .into_response())
}

/// The channels' rows as JSON (`null`: no channels run here).
fn channels_json(s: &AppState) -> Value {
    s.channels()
        .map(|c| serde_json::to_value(c.channel_rows()).unwrap_or(Value::Null))
        .unwrap_or(Value::Null)
}

/// `GET /v1/hub/events`: the fleet snapshot at once, then again each time it
/// changed (at most every 250 ms), with a heartbeat; at most
/// [`super::super::hub_api::MAX_SSE_CLIENTS`] clients.
pub(in super::super) async fn get_events(
    State(s): State<AppState>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let h = services(&s)?;
    let permit = h.sse.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            "too_many_clients",
            "too many event streams open on this hub; close one",
        )
    })?;
    let rx = h.snapshots.clone();
    let stop = h.stop.subscribe();
    let init = (rx, stop, true, s, permit);
    let events = stream::unfold(init, |(mut rx, mut stop, first, s, permit)| async move {
        if *stop.borrow() {
            return None;
        }
        if !first {
            tokio::select! {
                r = rx.changed() => r.ok()?,
                _ = stop.wait_for(|v| *v) => return None,
            }
        }
        let fleet = rx.borrow_and_update().clone();
        let data = format!("{{\"fleet\":{fleet},\"channels\":{}}}", channels_json(&s));
        let event = Event::default().event("snapshot").data(data);
        Some((Ok(event), (rx, stop, false, s, permit)))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT)))
}
