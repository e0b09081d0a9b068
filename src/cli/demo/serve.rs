//! `demo --keep-running`: the hub's HTTP API on 127.0.0.1, built as the node
//! daemon builds it (the hub's and the channels' services started, their
//! routes, the dashboard, `/openapi.json` and `/metrics`), served until
//! ctrl-c or SIGTERM while the fleet stays up.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::fleet::Fleet;
use crate::daemon::api::{self, AppState};
use crate::daemon::config::Config;
use crate::daemon::runtime_file::RuntimeInfo;
use crate::daemon::{auth, channel_api, hub_api, server};

/// Serves the hub's API until a signal; prints its address first.
pub fn serve(fleet: &Fleet) -> Result<()> {
    let (node, dir, network, section) = fleet.hub_parts();
    let cfg = Config {
        network: section.clone(),
        ..Config::default()
    };
    fleet.rt.block_on(async {
        let token = auth::load_or_create(dir)?;
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("bind the hub's API")?;
        let addr = listener.local_addr()?;
        let hub = hub_api::start(node, dir, &cfg, network)?;
        let channels = channel_api::start(node, dir, &cfg, network).await?;
        let info = RuntimeInfo {
            api: addr,
            pid: std::process::id(),
            node_id: node.id().to_hex(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        let state = AppState::new(node.clone(), dir.to_path_buf(), info, network.clone())
            .with_public_metrics(true)
            .with_hub(hub.clone())
            .with_channels(channels.clone());
        let app = api::router(state, token, cfg.api.body_limit);
        // Watched before the address is printed: a signal from then on stops us cleanly.
        let stopped = signal()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(server::serve(listener, app, stop_rx));
        println!();
        println!("the fleet keeps running; the hub's API: http://{addr}");
        println!(
            "    (GET /v1/health, /openapi.json, /metrics; other routes take the token in {})",
            dir.join("api.token").display()
        );
        println!("    ctrl-c stops it");
        stopped.await;
        let _ = stop_tx.send(true);
        let _ = server.await;
        if let Some(c) = &channels {
            c.shutdown().await;
        }
        if let Some(h) = &hub {
            h.shutdown();
        }
        anyhow::Ok(())
    })
}

/// Resolves on ctrl-c (SIGINT) or SIGTERM (call inside the runtime).
fn signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("watch SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
