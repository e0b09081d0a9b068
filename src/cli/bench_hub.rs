//! `stocksync bench hub`: the hub's aggregate at fleet scale.
//!
//! A generated fleet of `stores` × `skus` pools is fed as counter raises
//! straight into the [`Aggregate`] (not through Automerge or sync: this
//! measures the aggregate alone): resident memory, build time, raises/s, and
//! the latency of one SKU across every store and of one node. In the same run,
//! a smaller fleet of real nodes syncs its changes to a hub node with and
//! without the aggregate attached (SQLite aggregate store), which gives the
//! realistic ingest rate and the aggregate's share of it; and a `StockBook`
//! of a sample of the fleet gives what the hub's replica costs per pool.

use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use stocksync::escrow::{CounterKey, StockBook};
use stocksync::hub::{Aggregate, Hub, SqliteAggregateStore};
use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeId, NodeMeta, PoolKey, Quantity, Role, Sku,
};
use stocksync::sim::mesh::Mesh;
use stocksync::store::memory::MemoryStore;
use stocksync::sync::SyncConfig;

/// A field of /proc/self/status in kB (0 when unreadable).
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// xorshift64*: a fixed-seed generator, so every run builds the same fleet.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn store_id(i: usize) -> NodeId {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    NodeId(b)
}

/// The raises of one store's pool of one SKU: receipts, sales, and for one
/// pool in 10 a grant to the web channel; one sale in 200 beyond rights.
fn pool_raises(rng: &mut Rng, pool: &PoolKey, channel: NodeId) -> Vec<(CounterKey, i64)> {
    let minted = 1 + rng.below(100) as i64;
    let mut consumed = rng.below(minted as u64) as i64;
    if rng.below(200) == 0 {
        consumed = minted + 1;
    }
    let mut out = vec![
        (CounterKey::Minted(pool.clone()), minted),
        (CounterKey::Consumed(pool.clone()), consumed),
    ];
    if rng.below(10) == 0 && consumed < minted {
        out.push((CounterKey::Granted(pool.clone(), channel), 1));
    }
    out
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Builds the generated fleet into an aggregate and measures it.
fn generated(stores: usize, skus: usize) -> Result<serde_json::Value> {
    let channel = NodeId([0xcc; 32]);
    let sku_names: Vec<Sku> = (0..skus)
        .map(|k| Sku::new(format!("SKU-{k:06}")))
        .collect::<Result<_, _>>()?;
    let rss_before = status_kb("VmRSS:");
    let mut agg = Aggregate::new();
    agg.set_role(&channel, Role::Channel)?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut raises = 0u64;
    let started = Instant::now();
    for s in 0..stores {
        let id = store_id(s);
        let loc = LocationId::new(format!("S{s:04}"))?;
        for sku in &sku_names {
            let pool = PoolKey::new(loc.clone(), sku.clone());
            for (k, v) in pool_raises(&mut rng, &pool, channel) {
                agg.raise(&id, &k, v)?;
                raises += 1;
            }
        }
        agg.heard(&id, Default::default(), s as i64)?;
        // What the hub hands its store after each batch (dropped here).
        drop(agg.take_changes());
    }
    let build_s = started.elapsed().as_secs_f64();
    let rss_after = status_kb("VmRSS:");
    let pools = (stores * skus) as f64;

    let mut lat = Vec::with_capacity(10_000);
    let mut checksum = 0i64;
    for _ in 0..10_000 {
        let sku = &sku_names[rng.below(skus as u64) as usize];
        let t = Instant::now();
        let v = agg.sku(sku);
        lat.push(t.elapsed().as_nanos() as u64);
        checksum = checksum.wrapping_add(v.map(|v| v.total_on_hand).unwrap_or(0));
    }
    lat.sort_unstable();
    let mut node_lat = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let id = store_id(rng.below(stores as u64) as usize);
        let t = Instant::now();
        let v = agg.node(&id);
        node_lat.push(t.elapsed().as_nanos() as u64);
        checksum = checksum.wrapping_add(v.map(|v| v.rights_total).unwrap_or(0));
    }
    node_lat.sort_unstable();
    let t = Instant::now();
    let deficits = agg.deficits().len();
    let deficits_ms = t.elapsed().as_secs_f64() * 1e3;
    // What the hub's dashboard and /metrics do under the aggregate's lock.
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let (first, _) = crate::daemon::hub::snapshot::first_skus(&agg, 200);
    let select_ms = ms(t);
    let t = Instant::now();
    for sku in &first {
        checksum = checksum.wrapping_add(agg.sku(sku).map_or(0, |v| v.total_on_hand));
    }
    let grid_ms = ms(t);
    let t = Instant::now();
    checksum = checksum.wrapping_add(agg.totals().on_hand);
    let totals_ms = ms(t);
    let t = Instant::now();
    checksum = checksum.wrapping_add(agg.pool_count() as i64);
    let pool_count_ms = ms(t);
    Ok(json!({
        "fed": "counter raises straight into the aggregate (no Automerge, no sync)",
        "stores": stores,
        "skus": skus,
        "pools": stores * skus,
        "raises": raises,
        "build_s": build_s,
        "raises_per_s": raises as f64 / build_s,
        "rss_before_mb": rss_before as f64 / 1024.0,
        "rss_after_mb": rss_after as f64 / 1024.0,
        "aggregate_bytes_per_pool": (rss_after.saturating_sub(rss_before) * 1024) as f64 / pools,
        "sku_query_us": { "p50": percentile(&lat, 0.5), "p99": percentile(&lat, 0.99), "max": percentile(&lat, 1.0) },
        "node_query_us": { "p50": percentile(&node_lat, 0.5), "p99": percentile(&node_lat, 0.99) },
        "deficits": deficits,
        "deficits_list_ms": deficits_ms,
        "dashboard_ms": {
            "first_200_skus_by_name": select_ms,
            "200_sku_views_total": grid_ms,
            "fleet_totals": totals_ms,
            "pool_count_metrics_only": pool_count_ms,
        },
        "checksum": checksum,
    }))
}

/// What a `StockBook` (the hub replica's state) costs per pool, on a sample.
fn book_sample(stores: usize, skus: usize) -> Result<serde_json::Value> {
    let channel = NodeId([0xcc; 32]);
    let mut rng = Rng(7);
    let before = status_kb("VmRSS:");
    let mut book = StockBook::new();
    for s in 0..stores {
        let loc = LocationId::new(format!("S{s:04}"))?;
        for k in 0..skus {
            let pool = PoolKey::new(loc.clone(), Sku::new(format!("SKU-{k:06}"))?);
            for (key, v) in pool_raises(&mut rng, &pool, channel) {
                book.raise(store_id(s), &key, v)?;
            }
        }
    }
    let after = status_kb("VmRSS:");
    let per_pool = (after.saturating_sub(before) * 1024) as f64 / (stores * skus) as f64;
    drop(book);
    Ok(json!({
        "pools": stores * skus,
        "book_bytes_per_pool": per_pool,
        "book_gb_at_500x20000": per_pool * 10e6 / 1e9,
    }))
}

fn req(id: String, loc: &LocationId, sku: &Sku, qty: u64, kind: EventKind) -> Result<EventRequest> {
    Ok(EventRequest::new(
        EventId::new(id)?,
        loc.clone(),
        sku.clone(),
        Quantity::new(qty)?,
        kind,
    ))
}

/// Real changes from `stores` store nodes reaching a hub node; `with_hub`
/// attaches the aggregate (SQLite store in `dir`). Returns (changes, raises, seconds).
fn real_ingest(
    stores: usize,
    skus: usize,
    sales: usize,
    with_hub: Option<&std::path::Path>,
) -> Result<(u64, u64, f64, Option<i64>)> {
    let mut m = Mesh::new(SyncConfig::default());
    let hq = LocationId::new("HQ")?;
    let hub_i = m.add([0xee; 32], MemoryStore::new(), move |id| NodeMeta {
        id,
        name: "hub".into(),
        location: hq,
        role: Role::Hub,
    })?;
    let hub = match with_hub {
        Some(dir) => Some(Hub::start(
            m.nodes[hub_i].node.clone(),
            SqliteAggregateStore::open(&dir.join("hub-aggregate.db"))?,
        )?),
        None => None,
    };
    let sku_names: Vec<Sku> = (0..skus)
        .map(|k| Sku::new(format!("SKU-{k:06}")))
        .collect::<Result<_, _>>()?;
    let mut rng = Rng(11);
    let (mut changes, mut raises) = (0u64, 0u64);
    let mut idx = Vec::new();
    for s in 0..stores {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(s as u64 + 1).to_le_bytes());
        let loc = LocationId::new(format!("S{s:04}"))?;
        let l2 = loc.clone();
        let i = m.add(seed, MemoryStore::new(), move |id| NodeMeta {
            id,
            name: format!("store-{s}"),
            location: l2,
            role: Role::Store,
        })?;
        for chunk in sku_names.chunks(100) {
            let reqs = chunk
                .iter()
                .map(|k| req(format!("r-{k}"), &loc, k, 50, EventKind::Receipt))
                .collect::<Result<Vec<_>>>()?;
            raises += reqs.len() as u64;
            m.group(i, reqs);
            changes += 1;
        }
        for n in 0..sales {
            let k = &sku_names[rng.below(skus as u64) as usize];
            m.event(i, req(format!("x{n}"), &loc, k, 1, EventKind::Sale)?)?;
            changes += 1;
            raises += 1;
        }
        idx.push(i);
    }
    let started = Instant::now();
    for i in idx {
        m.connect(hub_i, i);
    }
    m.settle();
    let secs = started.elapsed().as_secs_f64();
    let total = hub.and_then(|h| h.sku(&sku_names[0]).map(|v| v.total_on_hand));
    Ok((changes, raises, secs, total))
}

/// Runs the bench and prints its figures.
pub fn run(stores: usize, skus: usize, json_out: bool) -> Result<()> {
    anyhow::ensure!(
        stores > 0 && skus > 0,
        "--stores and --skus must be positive"
    );
    let book = book_sample(100, 1000)?;
    let dir = tempfile_dir()?;
    let (changes, raises, base_s, _) = real_ingest(20, 1000, 250, None)?;
    let (_, _, hub_s, total) = real_ingest(20, 1000, 250, Some(&dir))?;
    let _ = std::fs::remove_dir_all(&dir);
    let realistic = json!({
        "fleet": "20 stores x 1000 SKUs, real nodes over the in-memory mesh, caught up by the hub at once",
        "changes": changes,
        "raises": raises,
        "without_aggregate_s": base_s,
        "with_aggregate_s": hub_s,
        "changes_per_s_without": changes as f64 / base_s,
        "changes_per_s_with": changes as f64 / hub_s,
        "raises_per_s_with": raises as f64 / hub_s,
        "ratio_with_over_without": hub_s / base_s,
        "first_sku_total_on_hand": total,
    });
    let scale = generated(stores, skus)?;
    let out = json!({ "generated": scale, "realistic": realistic, "book_sample": book });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{out:#}");
    }
    Ok(())
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "stocksync-bench-hub-{}",
        super::events::fresh_id()?
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
