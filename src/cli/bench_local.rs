//! `stocksync bench local`: one node on the local disk, measured against baselines
//! taken in the same run (the disk's fdatasync floor and a bare SQLite commit).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use rusqlite::params;
use serde_json::json;

use stocksync::data_dir::{self, NodeSpec};
use stocksync::model::{EventId, EventKind, EventRequest, LocationId, Quantity, Sku};
use stocksync::node::{system_clock, Node, NodeOptions};
use stocksync::store::sqlite::Durability;

pub(super) fn hist() -> Histogram<u64> {
    // 3 significant figures over 1 ns .. 60 s cannot fail to construct.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

pub(super) fn summary(h: &Histogram<u64>) -> serde_json::Value {
    let us = |ns: u64| ns as f64 / 1000.0;
    json!({
        "samples": h.len(),
        "p50_us": us(h.value_at_quantile(0.5)),
        "p99_us": us(h.value_at_quantile(0.99)),
        "max_us": us(h.max()),
    })
}

fn fsync_floor(dir: &Path, samples: u64) -> Result<Histogram<u64>> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(dir.join("fsync.bin"))?;
    let block = vec![7u8; 4096];
    let mut h = hist();
    for _ in 0..samples {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        h.record(t.elapsed().as_nanos() as u64)?;
    }
    Ok(h)
}

fn bare_commit(dir: &Path, samples: u64) -> Result<Histogram<u64>> {
    let conn = rusqlite::Connection::open(dir.join("bare.db"))?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")?;
    let payload = vec![1u8; 100];
    let mut h = hist();
    for i in 0..samples {
        let t = Instant::now();
        conn.execute("BEGIN IMMEDIATE", [])?;
        conn.prepare_cached("INSERT INTO t(id, v) VALUES (?1, ?2)")?
            .execute(params![i as i64, payload])?;
        conn.execute("COMMIT", [])?;
        h.record(t.elapsed().as_nanos() as u64)?;
    }
    Ok(h)
}

fn new_node(
    dir: &Path,
    durability: Durability,
    options: NodeOptions,
) -> Result<(Node, LocationId)> {
    let spec = NodeSpec::parse("bench", "S1", "till")?;
    data_dir::init(dir, &spec)?;
    let node = data_dir::open_with_durability(dir, options, durability, system_clock())?;
    Ok((node, spec.location))
}

fn sale(location: &LocationId, sku: &Sku, id: String) -> Result<EventRequest> {
    Ok(EventRequest::new(
        EventId::new(id)?,
        location.clone(),
        sku.clone(),
        Quantity::new(1)?,
        EventKind::Sale,
    ))
}

fn receive(node: &Node, location: &LocationId, sku: &Sku, qty: u64) -> Result<()> {
    let q = Quantity::new(qty.min(stocksync::model::MAX_QUANTITY))?;
    node.execute(EventRequest::new(
        EventId::new(format!("rcv-{sku}"))?,
        location.clone(),
        sku.clone(),
        q,
        EventKind::Receipt,
    ))?;
    Ok(())
}

fn single_caller(dir: &Path, samples: u64) -> Result<Histogram<u64>> {
    let (node, loc) = new_node(dir, Durability::Full, NodeOptions::default())?;
    let sku = Sku::new("SKU-1")?;
    receive(&node, &loc, &sku, samples + 10)?;
    let mut h = hist();
    for i in 0..samples {
        let req = sale(&loc, &sku, format!("s-{i}"))?;
        let t = Instant::now();
        node.execute(req)?;
        h.record(t.elapsed().as_nanos() as u64)?;
    }
    Ok(h)
}

/// `callers` threads sell for `duration`, each keeping up to `window` sales in
/// flight (window 1: each waits for its acknowledgement before the next sale).
fn concurrent(
    dir: &Path,
    callers: u64,
    window: usize,
    duration: Duration,
) -> Result<serde_json::Value> {
    let (node, loc) = new_node(dir, Durability::Full, NodeOptions::default())?;
    let skus: Vec<Sku> = (0..16)
        .map(|i| Sku::new(format!("SKU-{i}")))
        .collect::<Result<_, _>>()?;
    for s in &skus {
        receive(&node, &loc, s, 100_000_000)?;
    }
    let start = Instant::now();
    let total: u64 = std::thread::scope(|scope| -> Result<u64> {
        let handles: Vec<_> = (0..callers)
            .map(|c| {
                let (node, loc, skus) = (&node, &loc, &skus);
                scope.spawn(move || -> Result<u64> {
                    let mut n = 0u64;
                    let mut in_flight = std::collections::VecDeque::new();
                    while start.elapsed() < duration {
                        let sku = &skus[(c as usize + n as usize) % skus.len()];
                        in_flight.push_back(node.submit(sale(loc, sku, format!("c{c}-{n}"))?));
                        n += 1;
                        if in_flight.len() >= window {
                            if let Some(t) = in_flight.pop_front() {
                                t.wait()?;
                            }
                        }
                    }
                    for t in in_flight {
                        t.wait()?;
                    }
                    Ok(n)
                })
            })
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.join().map_err(|_| anyhow::anyhow!("caller panicked"))??;
        }
        Ok(sum)
    })?;
    let secs = start.elapsed().as_secs_f64();
    Ok(json!({
        "callers": callers,
        "in_flight_per_caller": window,
        "sales": total,
        "seconds": secs,
        "sales_per_s": total as f64 / secs
    }))
}

/// Writes a file of `lines` receipts as JSON lines and imports it into a fresh
/// node through the `import` command's own path (not a child process).
fn import_receipts(dir: &Path, lines: u64) -> Result<serde_json::Value> {
    let (node, _) = new_node(&dir.join("node"), Durability::Full, NodeOptions::default())?;
    let file = dir.join("receipts.jsonl");
    let mut w = BufWriter::new(File::create(&file)?);
    for i in 0..lines {
        writeln!(
            w,
            r#"{{"kind":"receive","sku":"SKU-{}","qty":{},"id":"asn-{}-{i}","ref":"ASN-{}"}}"#,
            i % 1000,
            1 + i % 50,
            i / 100,
            i / 100
        )?;
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let start = Instant::now();
    let mut input = BufReader::with_capacity(1 << 16, File::open(&file)?);
    let format = super::import::Format::of_path(&file);
    let report = super::import::into_node(&node, &mut input, format, false)?;
    let secs = start.elapsed().as_secs_f64();
    node.shutdown();
    anyhow::ensure!(
        report.applied == lines && report.failed == 0 && report.stopped.is_none(),
        "import bench did not apply every line: {report:?}"
    );
    Ok(json!({
        "lines": lines,
        "file_bytes": std::fs::metadata(&file)?.len(),
        "seconds": secs,
        "lines_per_s": lines as f64 / secs
    }))
}

/// Builds a node with `history` sales, one change each, and measures a cold open in a child process.
fn restart(dir: &Path, history: u64) -> Result<serde_json::Value> {
    let build = Instant::now();
    {
        let options = NodeOptions {
            max_batch: 1,
            ..NodeOptions::default()
        };
        let (node, loc) = new_node(dir, Durability::Normal, options)?;
        let sku = Sku::new("SKU-1")?;
        receive(&node, &loc, &sku, history + 20_000)?;
        // Keep a window of submissions in flight so the build is quick, one change per sale.
        let mut pending = std::collections::VecDeque::new();
        for i in 0..history {
            pending.push_back(node.submit(sale(&loc, &sku, format!("h-{i}"))?));
            if pending.len() >= 64 {
                if let Some(t) = pending.pop_front() {
                    t.wait()?;
                }
            }
        }
        for t in pending {
            t.wait()?;
        }
        // Top up so the last epoch is one change short of full: the worst case
        // for a restart, which loads the current epoch's changes.
        let epoch_changes = NodeOptions::default().epoch_changes;
        let mut extra = 0u64;
        while node.query(|r| r.own_position().seq)? + 1 < epoch_changes {
            node.execute(sale(&loc, &sku, format!("top-{extra}"))?)?;
            extra += 1;
        }
        node.shutdown();
    }
    let build_s = build.elapsed().as_secs_f64();
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .args(["bench", "restart"])
        .arg(dir)
        .output()
        .context("running the restart probe")?;
    anyhow::ensure!(
        out.status.success(),
        "restart probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut probe: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    probe["history_sales"] = json!(history);
    probe["build_s"] = json!(build_s);
    probe["db_bytes"] = json!(std::fs::metadata(dir.join("stocksync.db"))?.len());
    Ok(probe)
}

/// The child side of the restart measurement: open, answer one query, report.
pub fn restart_probe(dir: &Path) -> Result<()> {
    let t = Instant::now();
    let node = super::open_node(dir)?;
    let (pools, own) = node.query(|r| (r.book().pools().count(), r.own_position()))?;
    let open_ms = t.elapsed().as_secs_f64() * 1000.0;
    node.shutdown();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |field: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    println!(
        "{}",
        json!({
            "open_ms": open_ms,
            "peak_rss_mb": kb("VmHWM:") as f64 / 1024.0,
            "pools": pools,
            "own_epoch": own.epoch,
            "own_epoch_changes_loaded": own.seq
        })
    );
    Ok(())
}

/// Runs every measurement and prints the figures.
pub fn run(history: u64, samples: u64, dir: Option<PathBuf>, as_json: bool) -> Result<()> {
    let temporary = dir.is_none();
    let base = match dir {
        Some(d) => d,
        None => {
            std::env::temp_dir().join(format!("stocksync-bench-{}", super::events::fresh_id()?))
        }
    };
    std::fs::create_dir_all(&base)?;
    let fsync = fsync_floor(&base, samples)?;
    let bare = bare_commit(&base, samples)?;
    let single = single_caller(&base.join("single"), samples)?;
    let c8 = concurrent(&base.join("c8"), 8, 1, Duration::from_secs(5))?;
    let c8w = concurrent(&base.join("c8w"), 8, 32, Duration::from_secs(5))?;
    let c64 = concurrent(&base.join("c64"), 64, 1, Duration::from_secs(5))?;
    let import = import_receipts(&base.join("import"), 20_000)?;
    let restart = restart(&base.join("restart"), history)?;
    let ratio = single.value_at_quantile(0.5) as f64 / bare.value_at_quantile(0.5).max(1) as f64;
    let report = json!({
        "bench": "local",
        "fdatasync_4k": summary(&fsync),
        "sqlite_full_commit_baseline": summary(&bare),
        "durable_sale_single_caller": summary(&single),
        "sale_p50_over_bare_commit_p50": ratio,
        "durable_sales_8_callers": c8,
        "durable_sales_8_callers_32_in_flight": c8w,
        "durable_sales_64_callers": c64,
        "import_20000_receipts": import,
        "restart": restart,
        "goals": {
            "sale_p50_ratio_max": 1.3,
            "sales_per_s_min": 50000,
            "restart_ms_max": 1000,
            "restart_rss_mb_max": 100
        }
    });
    if temporary {
        let _ = std::fs::remove_dir_all(&base);
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report:#}");
    }
    Ok(())
}
