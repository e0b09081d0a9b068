//! The online channels run inside a hub daemon, and their HTTP API
//! (`/v1/hub/channels/...`). Its routes are listed in [`ROUTES`] and
//! documented in `openapi_channels.json`; the services live in
//! [`super::channels`].

use axum::routing::{get, post, MethodRouter};

use super::api::{AppState, Route};
use super::channels::routes;
pub use super::channels::{start, ChannelServices};

/// The channels' routes.
pub const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/v1/hub/channels",
        auth: true,
    },
    Route {
        method: "post",
        path: "/v1/hub/channels/{channel}/orders",
        auth: true,
    },
    Route {
        method: "get",
        path: "/v1/hub/channels/{channel}/dead-letters",
        auth: true,
    },
    Route {
        method: "post",
        path: "/v1/hub/channels/{channel}/redrive",
        auth: true,
    },
];

/// The handler of one of [`ROUTES`].
pub fn handler(r: &Route) -> Option<MethodRouter<AppState>> {
    Some(match (r.method, r.path) {
        ("get", "/v1/hub/channels") => get(routes::get_channels),
        ("post", "/v1/hub/channels/{channel}/orders") => post(routes::post_order),
        ("get", "/v1/hub/channels/{channel}/dead-letters") => get(routes::get_dead_letters),
        ("post", "/v1/hub/channels/{channel}/redrive") => post(routes::post_redrive),
        _ => return None,
    })
}
