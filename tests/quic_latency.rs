//! Measurement, not a check (run with `--ignored --nocapture`): connection
//! setup time and a sale's propagation latency between two nodes on loopback,
//! printed as one JSON line. No timing is asserted.

mod quic_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use quic_support::{config, event, eventually, on_hand, TestFleet};
use stocksync::model::EventKind;
use stocksync::net::{transport_config, RefusalLog, Transport};

const SALES: usize = 200;
const HANDSHAKES: usize = 50;

/// `(p50, p99, max)` in milliseconds.
fn summary(mut v: Vec<Duration>) -> serde_json::Value {
    v.sort();
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    serde_json::json!({
        "n": v.len(),
        "p50_ms": ms(v[v.len() / 2]),
        "p99_ms": ms(v[(v.len() * 99 / 100).min(v.len() - 1)]),
        "max_ms": ms(v[v.len() - 1]),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: run with --ignored --nocapture"]
async fn loopback_setup_and_sale_latency() {
    let f = TestFleet::new(1);
    let (pa, pb) = (f.init("till-a"), f.init("till-b"));
    let roster = f.roster(&[&pa, &pb]);
    let (a, b) = (f.open(&pa, &roster), f.open(&pb, &roster));
    let ta = Transport::start(a.clone(), f.tls(&pa), config(vec![]))
        .await
        .unwrap();

    // QUIC + mutual TLS 1.3 handshakes from b's key to a, fresh each time.
    let tls = f.tls(&pb);
    let shared = Arc::new(roster.clone());
    let transport =
        Arc::new(transport_config(Duration::from_secs(1), Duration::from_secs(3)).unwrap());
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut handshakes = Vec::new();
    for _ in 0..HANDSHAKES {
        let r = shared.clone();
        let client = tls
            .client_config(
                Arc::new(move || Some(r.clone())),
                Some(pa.id),
                ta.local_addr(),
                Arc::new(RefusalLog::default()),
                transport.clone(),
            )
            .unwrap();
        let t0 = Instant::now();
        let conn = endpoint
            .connect_with(client, ta.local_addr(), "stocksync")
            .unwrap()
            .await
            .unwrap();
        handshakes.push(t0.elapsed());
        conn.close(quinn::VarInt::from_u32(0), b"");
    }
    endpoint.close(quinn::VarInt::from_u32(0), b"");

    // The transport's own setup: start to link up (handshake, stream, peer_up).
    let t0 = Instant::now();
    let tb = Transport::start(b.clone(), f.tls(&pb), config(vec![ta.local_addr()]))
        .await
        .unwrap();
    while !tb.peers().first().is_some_and(|p| p.connected) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "b never linked to a"
        );
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    let link_up = t0.elapsed();

    event(&a, "r", (SALES * 2) as u64, EventKind::Receipt)
        .await
        .unwrap();
    let start = (SALES * 2) as i64;
    eventually("b sees the receipt", Duration::from_secs(10), || {
        on_hand(&b) == start
    })
    .await;

    // Each sale: durable on a (acknowledged), then visible on b.
    let (mut commit, mut propagation) = (Vec::new(), Vec::new());
    for i in 0..SALES {
        let t0 = Instant::now();
        event(&a, &format!("s{i}"), 1, EventKind::Sale)
            .await
            .unwrap();
        let acked = Instant::now();
        commit.push(acked - t0);
        let (b2, want) = (b.clone(), start - i as i64 - 1);
        tokio::task::spawn_blocking(move || {
            while on_hand(&b2) != want {
                assert!(
                    acked.elapsed() < Duration::from_secs(10),
                    "sale {i} never reached b"
                );
                std::thread::sleep(Duration::from_micros(100));
            }
        })
        .await
        .unwrap();
        propagation.push(acked.elapsed());
    }
    let report = serde_json::json!({
        "bench": "quic_loopback",
        "handshake": summary(handshakes),
        "link_up_ms": (link_up.as_secs_f64() * 1e6).round() / 1e3,
        "sale_commit": summary(commit),
        "sale_propagation_after_ack": summary(propagation),
    });
    println!("{report}");
    tb.shutdown().await;
    ta.shutdown().await;
}
