//! The daemon's life: open the node (the directory lock is held until exit),
//! bind the API, write the runtime file, run the node's timer and the network,
//! and on SIGTERM or ctrl-c shut down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::api::{self, AppState};
use super::auth::{self, Token};
use super::config::Config;
use super::network::{self, NetworkHandle};
use super::runtime_file::{self, RuntimeInfo};
use super::{channel_api, hub_api};
use stocksync::data_dir;
use stocksync::node::{system_clock, Node};

/// Longest sleep of the timer loop when the node asks for no tick.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Runs `stocksync node` on data directory `dir` until a signal; returns once
/// shut down (the runtime file removed, the directory released).
pub fn run(dir: &Path, cfg: &Config) -> Result<()> {
    let node = data_dir::open(dir, cfg.node_options(), system_clock())?;
    let token = auth::load_or_create(dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stocksync-daemon")
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(serve_until_signal(dir, cfg, node.clone(), token));
    // Blocking calls still running past the grace period are abandoned here:
    // nothing was acknowledged for them.
    rt.shutdown_timeout(cfg.shutdown_grace());
    node.shutdown();
    if let Err(e) = runtime_file::remove(dir) {
        error!(error = %e, "cannot remove the runtime file");
    }
    info!("stopped");
    result
}

/// Resolves on SIGTERM or ctrl-c (SIGINT). Installed before the API is announced.
fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: shutting down"),
            _ = int.recv() => info!("interrupt: shutting down"),
        }
    })
}

async fn serve_until_signal(dir: &Path, cfg: &Config, node: Node, token: Token) -> Result<()> {
    let signal = shutdown_signal()?;
    let listener = TcpListener::bind(cfg.api.address)
        .await
        .with_context(|| format!("cannot bind the API to {}", cfg.api.address))?;
    let api = listener.local_addr()?;
    let network = Arc::new(network::start_network(&node, dir, &cfg.network).await?);
    let hub = hub_api::start(&node, dir, cfg, &network)?;
    let channels = channel_api::start(&node, dir, cfg, &network).await?;
    let info = RuntimeInfo {
        api,
        pid: std::process::id(),
        node_id: node.id().to_hex(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let state = AppState::new(
        node.clone(),
        dir.to_path_buf(),
        info.clone(),
        network.clone(),
    )
    .with_public_metrics(cfg.api.metrics_without_token)
    .with_hub(hub.clone())
    .with_channels(channels.clone());
    let app = api::router(state, token, cfg.api.body_limit);
    let (stop_tx, stop_rx) = watch::channel(false);
    let timer = tokio::spawn(timer_loop(node.clone(), stop_rx.clone()));
    let server = tokio::spawn(serve(listener, app, stop_rx));
    runtime_file::write(dir, &info).context("cannot write the runtime file")?;
    info!(node = %node.id(), name = %node.meta().name, %api, "API listening");
    if !api.ip().is_loopback() {
        warn!(%api, "the API is reachable from other hosts (allow_remote): plain HTTP, the token is the only guard");
    }

    signal.await;
    // Stop accepting; in-flight requests (and their commits) finish, bounded.
    let _ = stop_tx.send(true);
    // The dashboard's event streams never end by themselves: end them now.
    if let Some(h) = &hub {
        h.shutdown();
    }
    match tokio::time::timeout(cfg.shutdown_grace(), server).await {
        Ok(Ok(Ok(()))) => info!("API closed; every request answered"),
        Ok(Ok(Err(e))) => warn!(error = %e, "API server failed"),
        Ok(Err(e)) => warn!(error = %e, "API server task failed"),
        Err(_) => warn!(
            grace_ms = cfg.api.shutdown_grace_ms,
            "grace period over: requests still running are abandoned"
        ),
    }
    let _ = timer.await;
    if let Some(c) = &channels {
        c.shutdown().await;
    }
    network.shutdown().await;
    Ok(())
}

/// The API application for `node` (also what `bench api` serves).
pub fn app(
    node: &Node,
    dir: &Path,
    token: Token,
    body_limit: usize,
    info: RuntimeInfo,
    network: Arc<NetworkHandle>,
) -> Router {
    let state = AppState::new(node.clone(), dir.to_path_buf(), info, network);
    api::router(state, token, body_limit)
}

/// Serves `app` on `listener` until `stop` turns true, then finishes the
/// requests in flight and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let until = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(until)
    .await
}

/// Runs [`Node::tick`] whenever [`Node::tick_in`] says it is due, until `stop`.
pub(super) async fn timer_loop(node: Node, mut stop: watch::Receiver<bool>) {
    loop {
        let n = node.clone();
        let wait = tokio::task::spawn_blocking(move || n.tick_in())
            .await
            .ok()
            .flatten()
            .map_or(IDLE_TICK, |d| d.min(IDLE_TICK));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let n = node.clone();
        if tokio::task::spawn_blocking(move || n.tick()).await.is_err() {
            error!(node = %node.id(), "node timer failed");
        }
    }
}
