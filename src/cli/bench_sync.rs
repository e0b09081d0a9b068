//! `stocksync bench sync`: the protocol's own cost over a zero-latency in-memory
//! network: wire bytes per sale, anti-entropy bytes when replicas are equal,
//! and the time for a store to catch up with 20,000 offline sales from 5 tills.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;

use stocksync::identity::Identity;
use stocksync::model::{
    EventId, EventKind, EventRequest, LocationId, NodeId, NodeMeta, Quantity, Role, Sku,
};
use stocksync::node::{NodeOptions, Writer};
use stocksync::store::memory::MemoryStore;
use stocksync::store::sqlite::{Durability, SqliteStore};
use stocksync::store::Store;
use stocksync::sync::{Effect, Input, SyncConfig, SyncEngine};

struct Peer {
    id: NodeId,
    writer: Writer,
    engine: SyncEngine,
}

/// Nodes joined by a lossless, zero-latency network; messages are delivered in order.
struct Mesh {
    nodes: Vec<Peer>,
    queue: VecDeque<(usize, NodeId, Vec<u8>)>,
    now: u64,
    bytes: u64,
}

impl Mesh {
    fn add(
        &mut self,
        seed: u8,
        store: Box<dyn Store>,
        meta_for: impl FnOnce(NodeId) -> NodeMeta,
        config: &SyncConfig,
    ) -> Result<usize> {
        let identity = Identity::from_seed([seed; 32]);
        let id = identity.node_id();
        let writer = Writer::new(meta_for(id), store, &NodeOptions::default(), Arc::new(|| 0))?;
        self.nodes.push(Peer {
            id,
            writer,
            engine: SyncEngine::new(identity, config.clone()),
        });
        Ok(self.nodes.len() - 1)
    }

    fn input(&mut self, i: usize, input: Input) {
        let now = self.now;
        let p = &mut self.nodes[i];
        let from = p.id;
        for e in p.writer.sync(&mut p.engine, now, input) {
            if let Effect::Send { to, message } = e {
                if let Some(j) = self.nodes.iter().position(|n| n.id == to) {
                    self.bytes += message.len() as u64;
                    self.queue.push_back((j, from, message));
                }
            }
        }
    }

    fn connect(&mut self, a: usize, b: usize) {
        let (ia, ib) = (self.nodes[a].id, self.nodes[b].id);
        self.input(a, Input::PeerUp(ib));
        self.input(b, Input::PeerUp(ia));
    }

    fn settle(&mut self) {
        while let Some((to, from, message)) = self.queue.pop_front() {
            self.input(to, Input::Received { from, message });
        }
    }

    /// Moves time to `t`, running due timers and delivering everything.
    fn advance(&mut self, t: u64) {
        self.now = t;
        for i in 0..self.nodes.len() {
            if self.nodes[i].engine.poll_timeout().is_some_and(|d| d <= t) {
                self.input(i, Input::Tick);
            }
        }
        self.settle();
    }

    fn sell(&mut self, i: usize, n: u64) -> Result<()> {
        let p = &mut self.nodes[i];
        let loc = LocationId::new("S1")?;
        let req = EventRequest::new(
            EventId::new(format!("s{n}"))?,
            loc,
            Sku::new("SKU-1")?,
            Quantity::new(1)?,
            EventKind::Sale,
        );
        p.writer
            .commit_group(vec![req])
            .pop()
            .context("no answer")??;
        for c in p.writer.take_committed() {
            self.input(i, Input::LocalCommitted(c));
        }
        Ok(())
    }

    fn receive(&mut self, i: usize, qty: u64) -> Result<()> {
        let p = &mut self.nodes[i];
        let req = EventRequest::new(
            EventId::new("rcv")?,
            LocationId::new("S1")?,
            Sku::new("SKU-1")?,
            Quantity::new(qty)?,
            EventKind::Receipt,
        );
        p.writer
            .commit_group(vec![req])
            .pop()
            .context("no answer")??;
        for c in p.writer.take_committed() {
            self.input(i, Input::LocalCommitted(c));
        }
        Ok(())
    }

    fn head(&self, i: usize, writer: NodeId) -> Option<stocksync::model::Position> {
        self.nodes[i]
            .writer
            .replica()?
            .heads()
            .get(&writer)
            .map(|h| h.position)
    }
}

fn meta(role: Role) -> impl FnOnce(NodeId) -> NodeMeta {
    move |id| NodeMeta {
        id,
        name: role.as_str().into(),
        location: LocationId::new("S1").expect("valid"),
        role,
    }
}

fn mesh() -> Mesh {
    Mesh {
        nodes: Vec::new(),
        queue: VecDeque::new(),
        now: 0,
        bytes: 0,
    }
}

/// Bytes on the wire per sale between a till and its store, with `sales` sales one
/// change each, `gap_ms` apart, pushed after `push_delay_ms`.
fn steady(sales: u64, gap_ms: u64, push_delay_ms: u64) -> Result<serde_json::Value> {
    let config = SyncConfig {
        push_delay_ms,
        ..SyncConfig::default()
    };
    let mut m = mesh();
    let till = m.add(1, Box::new(MemoryStore::new()), meta(Role::Till), &config)?;
    let store = m.add(2, Box::new(MemoryStore::new()), meta(Role::Store), &config)?;
    m.receive(till, sales + 1)?;
    m.connect(till, store);
    m.settle();
    let start_bytes = m.bytes;
    for n in 0..sales {
        m.sell(till, n)?;
        m.advance(m.now + gap_ms);
    }
    m.advance(m.now + push_delay_ms + 1);
    let tid = m.nodes[till].id;
    anyhow::ensure!(
        m.head(store, tid) == m.head(till, tid),
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
    let mut m = mesh();
    let till = m.add(3, Box::new(MemoryStore::new()), meta(Role::Till), &config)?;
    let store = m.add(4, Box::new(MemoryStore::new()), meta(Role::Store), &config)?;
    m.receive(till, history + 1)?;
    m.connect(till, store);
    for n in 0..history {
        m.sell(till, n)?;
    }
    m.settle();
    let before = m.bytes;
    // Past the probe interval: both sides send a digest; equal replicas answer nothing.
    m.advance(m.now + config.probe_interval_ms + 1);
    let round = m.bytes - before;
    Ok(json!({ "history_changes": history, "bytes_per_probe_round_both_ways": round }))
}

/// Five tills with `per_till` offline sales each meet a store on SQLite (FULL).
fn catch_up(dir: &Path, per_till: u64) -> Result<serde_json::Value> {
    let config = SyncConfig::default();
    let mut m = mesh();
    let store_id = Identity::from_seed([50; 32]).node_id();
    std::fs::create_dir_all(dir)?;
    let sqlite = SqliteStore::create(dir, &meta(Role::Store)(store_id), Durability::Full)?;
    let store = m.add(50, Box::new(sqlite), meta(Role::Store), &config)?;
    let mut tills = Vec::new();
    for t in 0..5u8 {
        let i = m.add(
            60 + t,
            Box::new(MemoryStore::new()),
            meta(Role::Till),
            &config,
        )?;
        m.receive(i, per_till + 1)?;
        for n in 0..per_till {
            m.sell(i, n)?;
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
        let tid = m.nodes[t].id;
        anyhow::ensure!(
            m.head(store, tid) == m.head(t, tid),
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
