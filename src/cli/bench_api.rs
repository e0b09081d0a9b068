//! `stocksync bench api`: durable sales through the daemon's API
//! (`POST /v1/events` over loopback HTTP, N clients in a closed loop) against
//! `Node::execute` called directly by N threads, each on a fresh node, in one
//! run: the ratio is the API's overhead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::watch;

use super::bench_local::{hist, summary};
use crate::daemon::{auth, network::NetworkHandle, runtime_file::RuntimeInfo, server};
use stocksync::data_dir::{self, NodeSpec};
use stocksync::model::{EventId, EventKind, EventRequest, Quantity, Sku};
use stocksync::node::{system_clock, Node, NodeOptions};

/// Units received before the sales (more than any run sells).
const STOCK: u64 = 1_000_000_000;

fn fresh_node(dir: &Path) -> Result<Node> {
    let spec = NodeSpec::parse("bench-api", "S1", "till")?;
    data_dir::init(dir, &spec)?;
    let node = data_dir::open(dir, NodeOptions::default(), system_clock())?;
    let m = node.meta().clone();
    node.execute(EventRequest::new(
        EventId::new("stock-in")?,
        m.location,
        Sku::new("BENCH")?,
        Quantity::new(STOCK)?,
        EventKind::Receipt,
    ))?;
    Ok(node)
}

/// Runs `clients` threads, each doing `per_client` calls of `call(client, i)`;
/// returns the latency histogram and the wall time.
fn closed_loop(
    clients: usize,
    per_client: u64,
    call: impl Fn(usize, u64) -> Result<()> + Sync,
) -> Result<(Histogram<u64>, Duration)> {
    let start = Instant::now();
    let hists = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let call = &call;
                s.spawn(move || -> Result<Histogram<u64>> {
                    let mut h = hist();
                    for i in 0..per_client {
                        let t = Instant::now();
                        call(c, i)?;
                        h.record(t.elapsed().as_nanos() as u64)?;
                    }
                    Ok(h)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("a bench client panicked"))?)
            .collect::<Result<Vec<_>>>()
    })?;
    let wall = start.elapsed();
    let mut all = hist();
    for h in hists {
        all.add(h)?;
    }
    Ok((all, wall))
}

fn figures(h: &Histogram<u64>, wall: Duration) -> serde_json::Value {
    let mut v = summary(h);
    v["sales_per_s"] = json!((h.len() as f64 / wall.as_secs_f64()).round());
    v
}

/// Durable one-unit sales by `Node::execute`, client `c`'s `i`th of round `r`.
fn direct_sale(node: &Node, r: usize, c: usize, i: u64) -> Result<()> {
    let req = EventRequest::new(
        EventId::new(format!("d-{r}-{c}-{i}"))?,
        node.meta().location.clone(),
        Sku::new("BENCH")?,
        Quantity::new(1)?,
        EventKind::Sale,
    );
    node.execute(req)?;
    Ok(())
}

/// A node served by the API on a loopback port, with one HTTP agent per client.
struct Served {
    rt: tokio::runtime::Runtime,
    stop: watch::Sender<bool>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    url: String,
    bearer: String,
    agents: Vec<ureq::Agent>,
}

impl Served {
    fn start(dir: &Path, clients: usize) -> Result<Self> {
        let node = fresh_node(dir)?;
        let token = auth::load_or_create(dir)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("async runtime")?;
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let info = RuntimeInfo {
            api: addr,
            pid: std::process::id(),
            node_id: node.id().to_hex(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        let network = Arc::new(NetworkHandle::default());
        let app = server::app(&node, dir, token.clone(), 64 * 1024, info, network);
        let (stop, stop_rx) = watch::channel(false);
        let served = rt.spawn(server::serve(listener, app, stop_rx));
        let agents = (0..clients)
            .map(|_| {
                ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(60)))
                    .build()
                    .into()
            })
            .collect();
        Ok(Self {
            rt,
            stop,
            served,
            url: format!("http://{addr}/v1/events"),
            bearer: format!("Bearer {}", token.as_str()),
            agents,
        })
    }

    /// Posts client `c`'s `i`th sale of round `r`; anything but 201 fails.
    fn sale(&self, r: usize, c: usize, i: u64) -> Result<()> {
        let body = format!(r#"{{"kind":"sell","sku":"BENCH","qty":1,"id":"a-{r}-{c}-{i}"}}"#);
        let resp = self.agents[c]
            .post(&self.url)
            .header("Authorization", &self.bearer)
            .content_type("application/json")
            .send(body)?;
        if resp.status() != 201 {
            return Err(anyhow!("unexpected status {}", resp.status()));
        }
        Ok(())
    }

    fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.rt.block_on(self.served)??;
        Ok(())
    }
}

/// Sales per client in the unmeasured warm-up round of each path.
const WARM_UP: u64 = 20;
/// Measured rounds per path, alternating between the paths to spread drift.
const ROUNDS: usize = 2;

/// `bench api`: prints the figures of both paths and their ratios.
pub fn run(clients: usize, sales: u64, dir: Option<PathBuf>, as_json: bool) -> Result<()> {
    let clients = clients.max(1);
    let per_client = (sales / (clients * ROUNDS) as u64).max(1);
    let temporary = dir.is_none();
    let base = match dir {
        Some(d) => d,
        None => {
            std::env::temp_dir().join(format!("stocksync-bench-{}", super::events::fresh_id()?))
        }
    };
    std::fs::create_dir_all(&base)?;
    let node = fresh_node(&base.join("direct"))?;
    let api = Served::start(&base.join("api"), clients)?;
    closed_loop(clients, WARM_UP, |c, i| direct_sale(&node, 0, c, i))?;
    closed_loop(clients, WARM_UP, |c, i| api.sale(0, c, i))?;
    let (mut dh, mut ah) = (hist(), hist());
    let (mut dw, mut aw) = (Duration::ZERO, Duration::ZERO);
    for r in 1..=ROUNDS {
        let (h, w) = closed_loop(clients, per_client, |c, i| direct_sale(&node, r, c, i))?;
        dh.add(h)?;
        dw += w;
        let (h, w) = closed_loop(clients, per_client, |c, i| api.sale(r, c, i))?;
        ah.add(h)?;
        aw += w;
    }
    api.stop()?;
    drop(node);
    if temporary {
        let _ = std::fs::remove_dir_all(&base);
    }
    let d = figures(&dh, dw);
    let a = figures(&ah, aw);
    let ratio = |k: &str| a[k].as_f64().unwrap_or(0.0) / d[k].as_f64().unwrap_or(1.0).max(1e-9);
    let report = json!({
        "bench": "api",
        "clients": clients,
        "sales_per_path": per_client * clients as u64 * ROUNDS as u64,
        "rounds": ROUNDS,
        "direct_node_execute": d,
        "api_post_events": a,
        "api_over_direct": {
            "sales_per_s": ratio("sales_per_s"),
            "p50": ratio("p50_us"),
            "p99": ratio("p99_us"),
        }
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report:#}");
    }
    Ok(())
}
