//! `stocksync bench rebalance`: a till out of rights borrows from its LAN
//! peer over real QUIC on loopback and the sale succeeds. Each timed sale
//! finds the till with no rights, so it borrows exactly the one unit it
//! sells; the baseline in the same run is the same sale on the peer, which
//! holds rights (a durable local sale), and the link's QUIC round trip.
//! Then a store manager's rebalance of a store and its tills
//! ([`super::rebalance_store`]): time to settle and bytes moved.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};

use super::super::bench_local::hist;
use super::fleet::{start, Fleet};
use super::{event, link_to, put, record, wait_synced};
use stocksync::model::{EventKind, Role};
use stocksync::rebalance::RebalanceSettings;
use stocksync::store::sqlite::Durability;

/// Runs the figures on a fresh pair of tills in `base`.
fn measure(base: &Path, samples: u64) -> Result<Map<String, Value>> {
    let mut f = Fleet::new(base)?;
    let a = f.add("till-a", Role::Till, "S1")?;
    let b = f.add("till-b", Role::Till, "S1")?;
    f.seal()?;
    // Borrow exactly what a sale lacks: a mark of 1, refilled to 1; no
    // automatic pull between sales, so every timed sale has to borrow.
    let settings = RebalanceSettings {
        auto_pull: false,
        low_water: Some(1),
        refill_factor: 1,
        floor: Some(0),
        borrow_deadline_ms: 1_000,
        ..RebalanceSettings::lan()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("async runtime")?;
    let nb = f.open_with(&b, Durability::Full, settings.clone())?;
    event(&nb, "stock-in".into(), 2 * samples + 10, EventKind::Receipt)?;
    let lb = start(&rt, &f, &b, nb, vec![])?;
    let na = f.open_with(&a, Durability::Full, settings)?;
    let la = start(&rt, &f, &a, na, vec![lb.net.local_addr()])?;
    super::wait_for("the tills' link", || {
        Ok(la.net.peers().iter().all(|p| p.connected))
    })?;
    wait_synced(&la.node, &lb.node)?;
    let (mut borrow, mut local) = (hist(), hist());
    let mut failed = 0u64;
    for i in 0..samples {
        let t = Instant::now();
        match event(&la.node, format!("a-{i}"), 1, EventKind::Sale) {
            Ok(_) => record(&mut borrow, t.elapsed())?,
            Err(_) => failed += 1,
        }
        let t = Instant::now();
        event(&lb.node, format!("b-{i}"), 1, EventKind::Sale)?;
        record(&mut local, t.elapsed())?;
    }
    let rtt = link_to(&la.net, b.id)?.rtt;
    let stats = la.node.rights_stats();
    let mut out = Map::new();
    out.insert("bench".into(), json!("rebalance"));
    put(&mut out, "borrow_sale", &borrow);
    put(&mut out, "local_sale", &local);
    out.insert("borrow_failed".into(), json!(failed));
    out.insert("quic_rtt_us".into(), json!(rtt.as_micros() as u64));
    out.insert("asks_sent".into(), json!(stats.asks_sent));
    out.insert("rights_received".into(), json!(stats.rights_received));
    let ratio = |a: &str, b: &str| -> f64 {
        let (x, y) = (
            out.get(a).and_then(Value::as_f64).unwrap_or(0.0),
            out.get(b).and_then(Value::as_f64).unwrap_or(0.0),
        );
        if y > 0.0 {
            (x / y * 10.0).round() / 10.0
        } else {
            0.0
        }
    };
    let r50 = ratio("borrow_sale_p50_us", "local_sale_p50_us");
    let r99 = ratio("borrow_sale_p99_us", "local_sale_p99_us");
    out.insert("borrow_over_local_p50".into(), json!(r50));
    out.insert("borrow_over_local_p99".into(), json!(r99));
    out.insert("goal_borrow_sale_p99_us".into(), json!(50_000));
    rt.block_on(la.net.shutdown());
    rt.block_on(lb.net.shutdown());
    Ok(out)
}

/// `bench rebalance`: prints the figures as one JSON object, or as a table.
pub fn run(samples: u64, tills: usize, skus: usize, as_json: bool) -> Result<()> {
    let base = std::env::temp_dir().join(format!(
        "stocksync-bench-rebalance-{}",
        super::super::events::fresh_id()?
    ));
    std::fs::create_dir_all(base.join("borrow"))?;
    std::fs::create_dir_all(base.join("store"))?;
    let report = measure(&base.join("borrow"), samples.max(1)).and_then(|mut r| {
        let store =
            super::rebalance_store::measure(&base.join("store"), tills.max(1), skus.max(1))?;
        r.extend(store);
        Ok(r)
    });
    let _ = std::fs::remove_dir_all(&base);
    let report = report?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&Value::Object(report))?);
    } else {
        let width = report.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in &report {
            println!("{k:<width$}  {v}");
        }
    }
    Ok(())
}
