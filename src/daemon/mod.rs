//! `stocksync node`: the daemon that holds a node's data directory and serves
//! its local HTTP/JSON API, so a point of sale in any language can use the
//! till's node and the command line's event commands go through it
//! (see docs/daemon.md).
//!
//! - [`config`]: the TOML configuration and its command-line overrides.
//! - [`server`]: the daemon's life: open, serve, tick, shut down gracefully.
//! - [`api`]: the routes and their bodies; [`openapi`]: their OpenAPI document.
//! - [`auth`]: the bearer token; [`error`]: error answers and their exit codes.
//! - [`runtime_file`]: `daemon.json`, how the command line finds the daemon.
//! - [`network`]: the one integration point with the peer transport.
//! - [`discovery`]: static peers, the hub and mDNS feeding the transport's dial targets.
//! - [`fleet_api`]: a hub's enrolment and revocation routes.
//! - [`metrics`]: `GET /metrics` in the Prometheus text format.
//! - [`hub_api`]: a hub's `/v1/hub/...` routes and dashboard; [`hub`]: their handlers.
//! - [`channel_api`]: online channels run inside a hub, and their routes
//!   ([`channels`]: their nodes, handlers, status and metrics).

pub mod allocate_api;
pub mod api;
pub mod auth;
pub mod channel_api;
pub mod channels;
pub mod config;
pub mod discovery;
pub mod error;
pub mod fleet_api;
pub mod hub;
pub mod hub_api;
pub mod metrics;
pub mod network;
pub mod openapi;
pub mod runtime_file;
pub mod server;
