//! `stocksync bench net`: real QUIC with mutual TLS on loopback, in one
//! process, every node on SQLite in a temporary directory and certified by a
//! fleet authority made for the run. Figures: the QUIC round trip and the
//! handshake (the baseline), a sale on a till until a LAN peer and the hub
//! hold it, many tills selling at once, a till back after offline sales, and
//! the bytes on the wire per sale.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

mod fleet;
mod load;
pub mod rebalance;
mod rebalance_store;

use super::bench_local::{hist, summary};
use fleet::{loopback, start, Fleet, Live, Peer};
use stocksync::model::{EventId, EventKind, EventRequest, NodeId, Position, Quantity, Role, Sku};
use stocksync::net::probe::{Echo, Prober};
use stocksync::net::{LinkStats, Transport};
use stocksync::node::Node;
use stocksync::store::sqlite::Durability;

/// Pause between two polls of a replica's heads (the sleep itself lasts
/// longer: the measured poll period is reported).
const POLL: Duration = Duration::from_micros(10);
/// Fresh handshakes measured for the baseline.
const HANDSHAKES: usize = 50;
/// Echo round trips measured for the baseline (after as many unmeasured).
const PINGS: usize = 1000;
/// Bytes of each echoed message (a sale's bundle is a few hundred bytes).
const PING_BYTES: usize = 100;
/// Time between two sales of one till in the paced run (10 sales/s a till).
const PACED_GAP: Duration = Duration::from_millis(100);
/// The longest any wait for a replica may take before the bench fails.
const LIMIT: Duration = Duration::from_secs(60);

/// The bench's sizes.
pub struct Params {
    /// Sales timed one by one from a till to its LAN peer and the hub; also
    /// the total sold by the tills selling at once.
    pub sales: u64,
    /// Tills selling at once, each linked to the hub and to one LAN peer.
    pub tills: usize,
    /// Sales a till makes while its link to the hub is down.
    pub offline_sales: u64,
}

fn event(node: &Node, id: String, qty: u64, kind: EventKind) -> Result<Position> {
    let req = EventRequest::new(
        EventId::new(id)?,
        node.meta().location.clone(),
        Sku::new("BENCH")?,
        Quantity::new(qty)?,
        kind,
    );
    Ok(node.execute(req)?.position)
}

/// `writer`'s head as `node` holds it.
fn head(node: &Node, writer: &NodeId) -> Result<Option<Position>> {
    Ok(node.query(|r| r.heads().get(writer).map(|h| h.position))?)
}

/// Polls `done` every [`POLL`] until it holds; fails after [`LIMIT`] naming `what`.
fn wait_for(what: &str, mut done: impl FnMut() -> Result<bool>) -> Result<Duration> {
    let t0 = Instant::now();
    while !done()? {
        if t0.elapsed() > LIMIT {
            return Err(anyhow!("timed out after {LIMIT:?} waiting for {what}"));
        }
        std::thread::sleep(POLL);
    }
    Ok(t0.elapsed())
}

/// Waits until `at` holds `writer`'s own head.
fn wait_synced(at: &Node, writer: &Node) -> Result<Duration> {
    let w = writer.id();
    let own = head(writer, &w)?;
    wait_for("a replica to catch up", || Ok(head(at, &w)? >= own))
}

fn record(h: &mut Histogram<u64>, d: Duration) -> Result<()> {
    h.record((d.as_nanos() as u64).max(1))?;
    Ok(())
}

fn link_to(net: &Transport, peer: NodeId) -> Result<LinkStats> {
    net.link_stats()
        .into_iter()
        .find(|l| l.peer == peer)
        .ok_or(anyhow!("no live link to {peer}"))
}

/// Puts `prefix_samples`, `prefix_p50_us`, `prefix_p99_us`, `prefix_max_us`.
fn put(out: &mut Map<String, Value>, prefix: &str, h: &Histogram<u64>) {
    if let Value::Object(s) = summary(h) {
        for (k, v) in s {
            out.insert(format!("{prefix}_{k}"), v);
        }
    }
}

fn per(n: u64, d: u64) -> f64 {
    ((n as f64 / d.max(1) as f64) * 10.0).round() / 10.0
}

/// The baseline: fresh handshakes and echo round trips between two endpoints
/// with the fleet's TLS and the transport's QUIC settings.
fn baseline(
    rt: &tokio::runtime::Runtime,
    f: &Fleet,
    server: &Peer,
    client: &Peer,
    out: &mut Map<String, Value>,
) -> Result<()> {
    let (hs, rtt) = rt.block_on(async {
        let echo = Echo::start(&f.tls(server)?, f.roster_source(), loopback())?;
        let prober = Prober::new(f.tls(client)?, f.roster_source(), loopback())?;
        let (mut hs, mut rtt) = (hist(), hist());
        for i in 0..=HANDSHAKES {
            let (took, probe) = prober.connect(echo.local_addr(), server.id).await?;
            if i > 0 {
                record(&mut hs, took)?;
            }
            probe.close();
        }
        let (_, mut probe) = prober.connect(echo.local_addr(), server.id).await?;
        let message = vec![0x5a; PING_BYTES];
        for i in 0..PINGS * 2 {
            let took = probe.echo(&message).await?;
            if i >= PINGS {
                record(&mut rtt, took)?;
            }
        }
        probe.close();
        prober.close().await;
        echo.close().await;
        anyhow::Ok((hs, rtt))
    })?;
    put(out, "handshake", &hs);
    put(out, "quic_rtt", &rtt);
    out.insert("quic_rtt_message_bytes".into(), json!(PING_BYTES));
    Ok(())
}

/// One sale at a time on till-1, timed from its acknowledgement until
/// till-2 (LAN peer) and the hub hold it.
fn sale_path(
    rt: &tokio::runtime::Runtime,
    f: &Fleet,
    hub: &Live,
    t1: &Peer,
    t2: &Peer,
    sales: u64,
    out: &mut Map<String, Value>,
) -> Result<()> {
    let (n1, n2) = (f.open(t1, Durability::Full)?, f.open(t2, Durability::Full)?);
    event(&n1, "stock-in".into(), sales + 10, EventKind::Receipt)?;
    let hub_addr = hub.net.local_addr();
    let l2 = start(rt, f, t2, n2, vec![hub_addr])?;
    let t0 = Instant::now();
    let l1 = start(rt, f, t1, n1, vec![l2.net.local_addr(), hub_addr])?;
    wait_for("till-1's links", || {
        Ok(l1.net.peers().iter().all(|p| p.connected))
    })?;
    out.insert("link_up_us".into(), json!(t0.elapsed().as_micros() as u64));
    wait_synced(&hub.node, &l1.node)?;
    wait_synced(&l2.node, &l1.node)?;
    let (hub0, lan0) = (link_to(&l1.net, hub.node.id())?, link_to(&l1.net, t2.id)?);
    let (mut commit, mut lan, mut to_hub) = (hist(), hist(), hist());
    let (mut polls, mut polling) = (0u64, Duration::ZERO);
    let w = t1.id;
    for i in 0..sales {
        let t = Instant::now();
        let pos = Some(event(&l1.node, format!("s-{i}"), 1, EventKind::Sale)?);
        let ack = Instant::now();
        record(&mut commit, ack - t)?;
        let (mut seen_lan, mut seen_hub) = (None, None);
        while seen_lan.is_none() || seen_hub.is_none() {
            if seen_lan.is_none() && head(&l2.node, &w)? >= pos {
                seen_lan = Some(Instant::now());
            }
            if seen_hub.is_none() && head(&hub.node, &w)? >= pos {
                seen_hub = Some(Instant::now());
            }
            if ack.elapsed() > LIMIT {
                return Err(anyhow!("sale {i} did not reach both peers"));
            }
            std::thread::sleep(POLL);
            polls += 1;
        }
        polling += ack.elapsed();
        let (sl, sh) = (seen_lan.unwrap_or(ack), seen_hub.unwrap_or(ack));
        record(&mut lan, sl.saturating_duration_since(ack))?;
        record(&mut to_hub, sh.saturating_duration_since(ack))?;
    }
    let (hub1, lan1) = (link_to(&l1.net, hub.node.id())?, link_to(&l1.net, t2.id)?);
    put(out, "sale_commit", &commit);
    put(out, "sale_to_lan", &lan);
    put(out, "sale_to_hub", &to_hub);
    out.insert(
        "poll_period_us".into(),
        json!(per(polling.as_micros() as u64, polls)),
    );
    out.insert(
        "udp_bytes_per_sale_to_hub".into(),
        json!(per(hub1.udp_tx_bytes - hub0.udp_tx_bytes, sales)),
    );
    out.insert(
        "payload_bytes_per_sale_to_hub".into(),
        json!(per(hub1.payload_tx_bytes - hub0.payload_tx_bytes, sales)),
    );
    out.insert(
        "udp_bytes_per_sale_to_lan".into(),
        json!(per(lan1.udp_tx_bytes - lan0.udp_tx_bytes, sales)),
    );
    out.insert(
        "payload_bytes_per_sale_to_lan".into(),
        json!(per(lan1.payload_tx_bytes - lan0.payload_tx_bytes, sales)),
    );
    rt.block_on(async {
        l1.net.shutdown().await;
        l2.net.shutdown().await;
    });
    Ok(())
}

/// A till sells `sales` while its transport is down, then starts it again:
/// the time until the hub holds the till's head, and the bytes it took.
fn offline(
    rt: &tokio::runtime::Runtime,
    f: &Fleet,
    hub: &Live,
    p: &Peer,
    sales: u64,
    out: &mut Map<String, Value>,
) -> Result<()> {
    let hub_addr = hub.net.local_addr();
    {
        let node = f.open(p, Durability::Full)?;
        event(&node, "stock-in".into(), sales + 10, EventKind::Receipt)?;
        let l = start(rt, f, p, node, vec![hub_addr])?;
        wait_synced(&hub.node, &l.node)?;
        rt.block_on(l.net.shutdown());
    }
    // Offline, the sales are written with synchronous=NORMAL to save the
    // bench's time: the changes are the same; the node is reopened FULL
    // before it reconnects (a NORMAL node refuses to sync).
    let t0 = Instant::now();
    {
        let node = f.open(p, Durability::Normal)?;
        for i in 0..sales {
            event(&node, format!("o-{i}"), 1, EventKind::Sale)?;
        }
    }
    let selling = t0.elapsed();
    let node = f.open(p, Durability::Full)?;
    let own = head(&node, &p.id)?;
    let t0 = Instant::now();
    let l = start(rt, f, p, node, vec![hub_addr])?;
    let mut link_up = None;
    wait_for("the hub to catch up with the offline till", || {
        if link_up.is_none() && l.net.peers().iter().all(|p| p.connected) {
            link_up = Some(t0.elapsed());
        }
        Ok(head(&hub.node, &p.id)? >= own)
    })?;
    let converged = t0.elapsed();
    let s = link_to(&l.net, hub.node.id())?;
    out.insert("offline_sales".into(), json!(sales));
    let own = own.unwrap_or_default();
    out.insert("offline_head_epoch".into(), json!(own.epoch));
    out.insert("offline_changes_in_head_epoch".into(), json!(own.seq));
    out.insert(
        "offline_selling_s".into(),
        json!((selling.as_secs_f64() * 100.0).round() / 100.0),
    );
    out.insert(
        "offline_link_up_ms".into(),
        json!(link_up.map(|d| (d.as_secs_f64() * 1e4).round() / 10.0)),
    );
    out.insert(
        "offline_reconnect_to_converged_ms".into(),
        json!((converged.as_secs_f64() * 1e4).round() / 10.0),
    );
    out.insert("offline_udp_bytes_to_hub".into(), json!(s.udp_tx_bytes));
    out.insert(
        "offline_payload_bytes_to_hub".into(),
        json!(s.payload_tx_bytes),
    );
    out.insert("offline_udp_bytes_from_hub".into(), json!(s.udp_rx_bytes));
    out.insert(
        "offline_udp_bytes_per_sale".into(),
        json!(per(s.udp_tx_bytes, sales)),
    );
    rt.block_on(l.net.shutdown());
    Ok(())
}

/// Runs every measurement on a fresh fleet in a temporary directory.
fn measure(base: &Path, params: &Params) -> Result<Map<String, Value>> {
    let mut f = Fleet::new(base)?;
    let hub = f.add("hub", Role::Hub, "HQ")?;
    let t1 = f.add("till-1", Role::Till, "S1")?;
    let t2 = f.add("till-2", Role::Till, "S1")?;
    let tills = (0..params.tills.max(1))
        .map(|i| f.add(&format!("load-{i:02}"), Role::Till, "S1"))
        .collect::<Result<Vec<_>>>()?;
    let off = f.add("till-offline", Role::Till, "S1")?;
    f.seal()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("async runtime")?;
    let mut out = Map::new();
    out.insert("bench".into(), json!("net"));
    baseline(&rt, &f, &hub, &t1, &mut out)?;
    let hub = start(&rt, &f, &hub, f.open(&hub, Durability::Full)?, vec![])?;
    sale_path(&rt, &f, &hub, &t1, &t2, params.sales.max(1), &mut out)?;
    let sales = params.sales.max(1);
    load::load(&rt, &f, &hub, &tills, sales, None, "load", &mut out)?;
    load::load(
        &rt,
        &f,
        &hub,
        &tills,
        sales,
        Some(PACED_GAP),
        "paced",
        &mut out,
    )?;
    offline(&rt, &f, &hub, &off, params.offline_sales.max(1), &mut out)?;
    rt.block_on(hub.net.shutdown());
    let ratio = |a: &str, b: &str| {
        let (a, b) = (
            out[a].as_f64().unwrap_or(0.0),
            out[b].as_f64().unwrap_or(0.0),
        );
        (a / b.max(1e-9) * 10.0).round() / 10.0
    };
    let ratios = [
        (
            "sale_to_hub_p50_over_quic_rtt_p50",
            ratio("sale_to_hub_p50_us", "quic_rtt_p50_us"),
        ),
        (
            "sale_to_hub_p99_over_quic_rtt_p99",
            ratio("sale_to_hub_p99_us", "quic_rtt_p99_us"),
        ),
        (
            "load_sale_to_hub_p50_over_quic_rtt_p50",
            ratio("load_sale_to_hub_p50_us", "quic_rtt_p50_us"),
        ),
        (
            "paced_sale_to_hub_p99_over_quic_rtt_p99",
            ratio("paced_sale_to_hub_p99_us", "quic_rtt_p99_us"),
        ),
    ];
    for (k, v) in ratios {
        out.insert(k.into(), json!(v));
    }
    out.insert("goal_sale_to_hub_p99_us".into(), json!(5000));
    out.insert("goal_offline_reconnect_to_converged_ms".into(), json!(1000));
    Ok(out)
}

/// `bench net`: prints the figures as one JSON object, or as a table.
pub fn run(params: &Params, as_json: bool) -> Result<()> {
    let base = std::env::temp_dir().join(format!(
        "stocksync-bench-net-{}",
        super::events::fresh_id()?
    ));
    std::fs::create_dir_all(&base)?;
    let report = measure(&base, params);
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
