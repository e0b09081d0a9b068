//! `stocksync bench net --json` with tiny parameters: one JSON object with
//! every figure, sane values. Times are printed, never asserted.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_stocksync");

/// Every field the bench promises, by prefix for the latency summaries.
const SUMMARIES: &[&str] = &[
    "handshake",
    "quic_rtt",
    "sale_commit",
    "sale_to_lan",
    "sale_to_hub",
    "load_sale_commit",
    "load_sale_to_hub",
    "paced_sale_commit",
    "paced_sale_to_hub",
];
const FIGURES: &[&str] = &[
    "quic_rtt_message_bytes",
    "link_up_us",
    "poll_period_us",
    "udp_bytes_per_sale_to_hub",
    "payload_bytes_per_sale_to_hub",
    "udp_bytes_per_sale_to_lan",
    "payload_bytes_per_sale_to_lan",
    "load_tills",
    "load_sales",
    "load_sales_per_s",
    "load_poll_period_us",
    "load_udp_bytes_per_sale_to_hub",
    "load_payload_bytes_per_sale_to_hub",
    "paced_ms_between_sales_per_till",
    "paced_sales_per_s",
    "paced_udp_bytes_per_sale_to_hub",
    "paced_payload_bytes_per_sale_to_hub",
    "paced_sale_to_hub_p99_over_quic_rtt_p99",
    "offline_sales",
    "offline_head_epoch",
    "offline_changes_in_head_epoch",
    "offline_selling_s",
    "offline_reconnect_to_converged_ms",
    "offline_udp_bytes_to_hub",
    "offline_payload_bytes_to_hub",
    "offline_udp_bytes_from_hub",
    "offline_udp_bytes_per_sale",
    "sale_to_hub_p50_over_quic_rtt_p50",
    "sale_to_hub_p99_over_quic_rtt_p99",
    "load_sale_to_hub_p50_over_quic_rtt_p50",
];

fn num(report: &serde_json::Value, key: &str) -> f64 {
    report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {report:#}"))
}

#[test]
fn bench_net_reports_every_figure() {
    let out = Command::new(BIN)
        .args(["bench", "net", "--sales", "20", "--tills", "2"])
        .args(["--offline-sales", "200", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench net failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("{report:#}");
    assert_eq!(report["bench"], "net");
    for s in SUMMARIES {
        let (n, p50, p99, max) = (
            num(&report, &format!("{s}_samples")),
            num(&report, &format!("{s}_p50_us")),
            num(&report, &format!("{s}_p99_us")),
            num(&report, &format!("{s}_max_us")),
        );
        assert!(n > 0.0, "{s}: no samples");
        assert!(
            p50 > 0.0 && p50 <= p99 && p99 <= max,
            "{s}: {p50} {p99} {max}"
        );
    }
    for f in FIGURES {
        assert!(num(&report, f) > 0.0, "{f} is not positive");
    }
    assert_eq!(num(&report, "sale_to_hub_samples"), 20.0);
    assert_eq!(num(&report, "sale_to_lan_samples"), 20.0);
    assert_eq!(num(&report, "load_tills"), 2.0);
    assert_eq!(num(&report, "load_sales"), 20.0);
    assert_eq!(num(&report, "load_sale_to_hub_samples"), 20.0);
    assert_eq!(num(&report, "paced_sale_to_hub_samples"), 20.0);
    assert_eq!(num(&report, "offline_sales"), 200.0);
    // Not a timing goal, a bound: a sale cannot be held by another replica
    // sooner than half a round trip after its acknowledgement (a bench
    // watching the wrong replica would report ~0).
    let half_rtt = num(&report, "quic_rtt_p50_us") / 2.0;
    for s in [
        "sale_to_lan",
        "sale_to_hub",
        "load_sale_to_hub",
        "paced_sale_to_hub",
    ] {
        assert!(
            num(&report, &format!("{s}_p50_us")) > half_rtt,
            "{s} below half a round trip"
        );
    }
    // A sale's bundle is on the wire: more UDP bytes than payload, and some payload.
    assert!(
        num(&report, "udp_bytes_per_sale_to_hub") > num(&report, "payload_bytes_per_sale_to_hub")
    );
    assert!(num(&report, "payload_bytes_per_sale_to_hub") > 50.0);
}

/// `stocksync bench rebalance --samples 20 --skus 200 --json`: every timed
/// sale borrowed and succeeded, every move of the store's rebalance granted,
/// with sane summaries (times printed, never asserted).
#[test]
fn bench_rebalance_reports_every_borrowed_sale() {
    let out = Command::new(BIN)
        .args([
            "bench",
            "rebalance",
            "--samples",
            "20",
            "--skus",
            "200",
            "--json",
        ])
        .output()
        .expect("run bench rebalance");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    println!("{v}");
    assert_eq!(v["bench"], "rebalance");
    assert_eq!(v["borrow_failed"], 0, "{v}");
    assert_eq!(v["borrow_sale_samples"], 20, "{v}");
    assert_eq!(v["asks_sent"], 20, "{v}");
    assert_eq!(v["rights_received"], 20, "{v}");
    for p in ["borrow_sale", "local_sale"] {
        let f = |k: &str| v[format!("{p}_{k}")].as_f64().unwrap_or(-1.0);
        assert!(f("p50_us") > 0.0 && f("p50_us") <= f("p99_us"), "{v}");
    }
    // The store's rebalance: 60 of each SKU, 30 on the store and 30 on
    // till-1, evened to 10 a holder: 4 moves of 10 per SKU, all granted.
    assert_eq!(v["store_skus"], 200, "{v}");
    assert_eq!(v["store_rebalance_moves"], 800, "{v}");
    assert_eq!(v["store_rebalance_moves_not_granted"], 0, "{v}");
    assert_eq!(v["store_rebalance_units"], 8000, "{v}");
    for k in [
        "store_rebalance_settle_ms",
        "store_rebalance_udp_bytes",
        "baseline_grants_udp_bytes",
    ] {
        assert!(v[k].as_f64().unwrap_or(0.0) > 0.0, "{k}: {v}");
    }
}
