//! `stocksync allocate`: a hub gives its rights above its reserve to the
//! channels and stores of its `[rebalance] allocate` entries, through the
//! running daemon (whose configuration names the receivers).

use std::path::Path;

use anyhow::Result;
use serde_json::{json, Value};

use super::daemon_client;

/// Runs the allocation and prints its report.
pub fn run(
    dir: &Path,
    location: &str,
    skus: &[String],
    dry_run: bool,
    as_json: bool,
) -> Result<()> {
    // The receivers are the daemon's configuration: without a running
    // daemon there is nothing to allocate to.
    let Some(client) = daemon_client::find(dir) else {
        return Err(super::UsageError(format!(
            "allocate needs the node's daemon running on {} (its [rebalance] allocate entries name the receivers)",
            dir.display()
        ))
        .into());
    };
    let report: Value = client.post(
        "/v1/allocate",
        &json!({ "location": location, "skus": skus, "dry_run": dry_run }),
    )?;
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
        "allocation at {}{}: {} pools looked at, {} with grants, {} units allocated, {} ms",
        s(&r["location"]),
        if r["dry_run"] == true {
            " (dry run)"
        } else {
            ""
        },
        r["pools_planned"],
        r["pools"].as_array().map_or(0, Vec::len),
        r["allocated"],
        r["elapsed_ms"],
    );
    for u in r["unknown_receivers"].as_array().into_iter().flatten() {
        println!("receiver not in the roster: {}", s(u));
    }
    for p in r["pools"].as_array().into_iter().flatten() {
        println!();
        println!(
            "{}: rights {}, floor {}, {} to allocate",
            s(&p["sku"]),
            p["rights"],
            p["floor"],
            p["available"]
        );
        println!("  {:<20} {:>8} {:>8}  outcome", "to", "planned", "granted");
        for g in p["grants"].as_array().into_iter().flatten() {
            println!(
                "  {:<20} {:>8} {:>8}  {}",
                s(&g["to"]),
                g["planned"],
                g["granted"],
                s(&g["outcome"])
            );
        }
    }
}
