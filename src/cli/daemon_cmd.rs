//! The commands that concern the daemon: `node` (run it), `status`, and the
//! event and stock commands' path through a running daemon.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use super::daemon_client;
use super::events::{self, EventFields};
use super::output;
use crate::daemon::api::{status_json, EventBody};
use crate::daemon::config::{Config, Overrides};
use crate::daemon::server;
use stocksync::data_dir::Reader;

/// Installs the log subscriber: STOCKSYNC_LOG if set, else `default`.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STOCKSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A second installation (tests calling twice) keeps the first: harmless.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// The `node` command's flags.
pub struct NodeFlags<'a> {
    /// `--config FILE`.
    pub config: Option<&'a Path>,
    /// `--api ADDR`.
    pub api: Option<SocketAddr>,
    /// `--listen ADDR`.
    pub listen: Option<SocketAddr>,
    /// `--peer ADDR`...
    pub peers: &'a [String],
    /// `--no-mdns`.
    pub no_mdns: bool,
    /// `--hub ADDR`.
    pub hub: Option<&'a str>,
}

/// `stocksync node`: loads the configuration, installs logging as it says,
/// runs the daemon until a signal.
pub fn node(dir: &Path, flags: &NodeFlags<'_>) -> Result<()> {
    let overrides = Overrides {
        api: flags.api,
        listen: flags.listen,
        peers: flags.peers.to_vec(),
        no_mdns: flags.no_mdns,
        hub: flags.hub.map(str::to_string),
    };
    let cfg = Config::load(flags.config, &overrides)?;
    init_logging(&cfg.log.filter);
    server::run(dir, &cfg)
}

/// Runs an event command through the daemon on `dir`, if one runs; `false`
/// when none does (the caller then opens the directory itself).
pub fn event(dir: &Path, fields: &EventFields<'_>, as_json: bool) -> Result<bool> {
    let Some(client) = daemon_client::find(dir) else {
        return Ok(false);
    };
    let mut body = EventBody::from_fields(fields);
    if body.id.is_none() {
        body.id = Some(events::fresh_id()?.to_string());
    }
    let outcome = client.event(&body)?;
    output::outcome(&outcome, as_json);
    Ok(true)
}

/// `stock [SKU]` through the daemon if one runs, else from the database.
pub fn stock(dir: &Path, sku: Option<&str>, as_json: bool) -> Result<()> {
    let rows = match daemon_client::find(dir) {
        Some(client) => client.stock(sku)?,
        None => {
            let reader = Reader::open(dir)?;
            if let Some(s) = sku {
                stocksync::model::Sku::new(s)?;
            }
            reader.stock(sku)?
        }
    };
    output::stock(&rows, as_json);
    Ok(())
}

/// `status`: the daemon's status document, or the node's identity when no daemon runs.
pub fn status(dir: &Path, as_json: bool) -> Result<()> {
    let doc = match daemon_client::find(dir) {
        Some(client) => client.status()?,
        None => status_json(
            &Reader::open(dir)?.meta()?,
            None,
            None,
            Value::Array(vec![]),
            Value::Null,
        ),
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_status(&doc);
    }
    Ok(())
}

fn print_status(doc: &Value) {
    let n = &doc["node"];
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let d = &doc["daemon"];
    if d.is_object() {
        println!(
            "daemon: running, pid {}, API http://{}, up {} s",
            d["pid"],
            s(&d["api"]),
            d["uptime_ms"].as_u64().unwrap_or(0) / 1000
        );
    } else {
        println!("daemon: not running");
    }
    println!(
        "node {} at {}, role {}\nid {}",
        s(&n["name"]),
        s(&n["location"]),
        s(&n["role"]),
        s(&n["id"])
    );
    let y = &doc["sync"];
    if y.is_object() {
        println!(
            "sync: {} peer(s) up, {} changes applied, {} rejected, {} bytes pending, {} parked bundles, roster version {}",
            y["peers"].as_array().map_or(0, Vec::len),
            y["changes_applied"],
            y["rejected"],
            y["outbox_bytes"],
            y["parked_bundles"],
            y["roster_version"]
        );
        if let Some(r) = y["last_rejection"].as_str() {
            println!("last rejection: {r}");
        }
        if let Some(c) = y["own_history_conflict"].as_str() {
            println!("OWN HISTORY CONFLICT: {c}");
        }
        for f in y["forks"].as_array().into_iter().flatten() {
            println!(
                "FORK: writer {} signed two histories from {}",
                s(&f["writer"]),
                s(&f["position"])
            );
        }
    }
    let net = &doc["network"];
    if let Some(why) = net["alone"].as_str() {
        println!("network: none ({why})");
    } else if net["running"].as_bool() == Some(true) {
        println!(
            "network: listening on {}, {} refused handshake(s)",
            s(&net["listen"]),
            net["refusals"].as_array().map_or(0, Vec::len)
        );
    }
    let disc = &net["discovery"];
    for src in disc["sources"].as_array().into_iter().flatten() {
        println!(
            "discovery {}: {} found, {} lost, ignored {} of another fleet, {} malformed",
            s(&src["source"]),
            src["found"],
            src["lost"],
            src["ignored_other_fleet"],
            src["malformed"]
        );
    }
    if let Some(off) = disc["mdns_off"].as_str() {
        println!("discovery: {off}");
    }
    for p in doc["peers"].as_array().into_iter().flatten() {
        println!(
            "peer {} {} {}{}",
            s(&p["address"]),
            p["node_id"]
                .as_str()
                .map_or("(id unknown)", |i| &i[..16.min(i.len())]),
            if p["connected"].as_bool() == Some(true) {
                "connected"
            } else {
                "not connected"
            },
            p["last_error"]
                .as_str()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        );
    }
    for r in net["refusals"].as_array().into_iter().flatten() {
        println!(
            "refused {} {}: {}",
            s(&r["address"]),
            r["claimed"].as_str().unwrap_or("?"),
            s(&r["reason"])
        );
    }
}
