//! `stocksync bench sync`: the protocol's own cost over a zero-latency in-memory
//! network: wire bytes per sale, anti-entropy bytes when replicas are equal,
//! and the time for a store to catch up with 20,000 offline sales from 5 tills.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use stocksync::identity::Identity;
use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeId, NodeMeta, Quantity, Role, Sku,
};
use stocksync::sim::mesh::Mesh;
use stocksync::store::memory::MemoryStore;
use stocksync::store::sqlite::{Durability, SqliteStore};
use stocksync::sync::SyncConfig;

/// A sale or receipt of SKU-1 at S1 on node `i`, gossiped at once.
fn event(m: &mut Mesh, i: usize, id: String, qty: u64, kind: EventKind) -> Result<()> {
    let req = EventRequest::new(
        EventId::new(id)?,
        LocationId::new("S1")?,
        Sku::new("SKU-1")?,
        Quantity::new(qty)?,
        kind,
    );
    m.event(i, req)?;
    Ok(())
}

fn sell(m: &mut Mesh, i: usize, n: u64) -> Result<()> {
    event(m, i, format!("s{n}"), 1, EventKind::Sale)
}

fn receive(m: &mut Mesh, i: usize, qty: u64) -> Result<()> {
    event(m, i, "rcv".into(), qty, EventKind::Receipt)
}

fn meta(role: Role) -> impl FnOnce(NodeId) -> NodeMeta {
    move |id| NodeMeta {
        id,
        name: role.as_str().into(),
        location: LocationId::new("S1").expect("valid"),
        role,
    }
}

/// Bytes on the wire per sale between a till and its store, with `sales` sales one
/// change each, `gap_ms` apart, pushed after `push_delay_ms`.
fn steady(sales: u64, gap_ms: u64, push_delay_ms: u64) -> Result<serde_json::Value> {
    let config = SyncConfig {
        push_delay_ms,
        ..SyncConfig::default()
    };
    let mut m = Mesh::new(config.clone());
    let till = m.add([1; 32], MemoryStore::new(), meta(Role::Till))?;
    let store = m.add([2; 32], MemoryStore::new(), meta(Role::Store))?;
    receive(&mut m, till, sales + 1)?;
    m.connect(till, store);
    m.settle();
    let start_bytes = m.bytes;
    for n in 0..sales {
        sell(&mut m, till, n)?;
        m.advance(m.now() + gap_ms);
    }
    m.advance(m.now() + push_delay_ms + 1);
    anyhow::ensure!(
        m.head(store, till) == m.head(till, till),
        "store did not converge"
    );
    let bytes = m.bytes - start_bytes;
    Ok(json!({
        "sales": sales,
        "ms_between_sales": gap_ms,
        "push_delay_ms": push_delay_ms,
        "bytes": bytes,
        "bytes_per_sale": bytes as f64 / sales as f64,
    }))
}

/// One anti-entropy round between replicas that are already equal.
fn equal_probe(history: u64) -> Result<serde_json::Value> {
    let config = SyncConfig::default();
    let mut m = Mesh::new(config.clone());
    let till = m.add([3; 32], MemoryStore::new(), meta(Role::Till))?;
    let store = m.add([4; 32], MemoryStore::new(), meta(Role::Store))?;
    receive(&mut m, till, history + 1)?;
    m.connect(till, store);
    for n in 0..history {
        sell(&mut m, till, n)?;
    }
    m.settle();
    let before = m.bytes;
    // Past the probe interval: both sides send a digest; equal replicas answer nothing.
    m.advance(m.now() + config.probe_interval_ms + 1);
    let round = m.bytes - before;
    Ok(json!({ "history_changes": history, "bytes_per_probe_round_both_ways": round }))
}

/// Five tills with `per_till` offline sales each meet a store on SQLite (FULL).
fn catch_up(dir: &Path, per_till: u64) -> Result<serde_json::Value> {
    let mut m = Mesh::new(SyncConfig::default());
    let store_id = Identity::from_seed([50; 32]).node_id();
    std::fs::create_dir_all(dir)?;
    let sqlite = SqliteStore::create(dir, &meta(Role::Store)(store_id), Durability::Full)?;
    let store = m.add([50; 32], sqlite, meta(Role::Store))?;
    let mut tills = Vec::new();
    for t in 0..5u8 {
        let i = m.add([60 + t; 32], MemoryStore::new(), meta(Role::Till))?;
        receive(&mut m, i, per_till + 1)?;
        for n in 0..per_till {
            sell(&mut m, i, n)?;
        }
        tills.push(i);
    }
    let start = Instant::now();
    let cpu = cpu_time();
    for &t in &tills {
        m.connect(t, store);
    }
    m.settle();
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_time() - cpu;
    for &t in &tills {
        anyhow::ensure!(
            m.head(store, t) == m.head(t, t),
            "store did not catch up with a till"
        );
    }
    Ok(json!({
        "tills": tills.len(),
        "offline_sales": per_till * tills.len() as u64,
        "seconds_wall": wall,
        "seconds_cpu": cpu,
        "store_durability": "sqlite synchronous=FULL",
    }))
}

fn cpu_time() -> f64 {
    // utime + stime of this process, from /proc (Linux); 0 elsewhere.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs every measurement and prints the figures.
pub fn run(as_json: bool) -> Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "stocksync-bench-sync-{}",
        super::events::fresh_id()?
    ));
    let report = json!({
        "bench": "sync",
        "steady_one_change_per_push": steady(2_000, 10, 0)?,
        "steady_coalesced_100ms": steady(2_000, 10, 100)?,
        "anti_entropy_equal": equal_probe(20_000)?,
        "catch_up": catch_up(&dir, 4_000)?,
        "goals": { "bytes_per_sale_max": 64, "equal_probe_bytes_max": 1024, "catch_up_seconds_max": 2.0 }
    });
    let _ = std::fs::remove_dir_all(&dir);
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report:#}");
    }
    Ok(())
}
