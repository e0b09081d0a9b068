//! `stocksync rebalance`: a store manager's rebalance of a location, through
//! the running daemon (which reaches the other holders) or, with no daemon,
//! on the directory alone (only this node's own grants can then be made).

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use super::daemon_client;
use stocksync::data_dir;
use stocksync::model::{LocationId, Sku};
use stocksync::node::{system_clock, NodeOptions, RebalanceCommand};
use stocksync::rebalance::Strategy;

/// What the command line asked for.
pub struct RebalanceArgs<'a> {
    /// The location.
    pub location: &'a str,
    /// The SKUs (empty: all at the location).
    pub skus: &'a [String],
    /// `velocity` or `even`.
    pub strategy: &'a str,
    /// Plan only.
    pub dry_run: bool,
    /// How long to wait for donors (ms).
    pub wait_ms: u64,
}

/// Runs the rebalance and prints its report.
pub fn run(dir: &Path, a: &RebalanceArgs<'_>, as_json: bool) -> Result<()> {
    let strategy: Strategy = a
        .strategy
        .parse()
        .map_err(|e: String| super::UsageError(e))?;
    let report: Value = match daemon_client::find(dir) {
        Some(client) => client.post(
            "/v1/rebalance",
            &json!({
                "location": a.location,
                "skus": a.skus,
                "strategy": a.strategy,
                "dry_run": a.dry_run,
                "wait_ms": a.wait_ms,
            }),
        )?,
        None => {
            let cmd = RebalanceCommand {
                location: LocationId::new(a.location)?,
                skus: a
                    .skus
                    .iter()
                    .map(|s| Sku::new(s.as_str()))
                    .collect::<Result<_, _>>()?,
                strategy,
                dry_run: a.dry_run,
            };
            let node = data_dir::open(dir, NodeOptions::default(), system_clock())?;
            let report = node.rebalance(&cmd, Duration::from_millis(a.wait_ms))?;
            serde_json::to_value(report)?
        }
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &Value) {
    let s = |v: &Value| match v {
        Value::String(t) => t.clone(),
        other => other.to_string(),
    };
    println!(
        "rebalance of {} by {}{}: {} pools looked at, {} with moves, {} units moved, {} ms",
        s(&r["location"]),
        s(&r["strategy"]),
        if r["dry_run"] == true {
            " (dry run)"
        } else {
            ""
        },
        r["pools_planned"],
        r["pools"].as_array().map_or(0, Vec::len),
        r["moved"],
        r["elapsed_ms"],
    );
    for p in r["pools"].as_array().into_iter().flatten() {
        println!();
        println!("{}", s(&p["sku"]));
        println!(
            "  {:<20} {:>8} {:>8} {:>8} {:>10}  reachable",
            "holder", "rights", "target", "floor", "velocity/h"
        );
        for h in p["holders"].as_array().into_iter().flatten() {
            println!(
                "  {:<20} {:>8} {:>8} {:>8} {:>10}  {}",
                s(&h["node"]),
                h["rights"],
                h["target"],
                h["floor"],
                h["velocity"],
                if h["reachable"] == true { "yes" } else { "no" }
            );
        }
        for m in p["moves"].as_array().into_iter().flatten() {
            println!(
                "  move {} → {}: {} planned, {} granted ({})",
                s(&m["from"]),
                s(&m["to"]),
                m["planned"],
                m["granted"],
                s(&m["outcome"])
            );
        }
        if p["imbalance_left"].as_i64().unwrap_or(0) != 0 {
            println!("  imbalance left: {}", p["imbalance_left"]);
        }
    }
}
