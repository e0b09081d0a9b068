//! Keep-alive and idle timeout on loopback through a relay that can be cut:
//! a healthy link stays up, a dead one is noticed within 3 s on both sides
//! (idle timeout 2 s plus one keep-alive period), and the dialler reconnects
//! once packets flow again.

mod quic_support;

use std::time::{Duration, Instant};

use quic_support::{config, eventually, logs, Relay, TestFleet};
use stocksync::net::Transport;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_link_is_noticed_and_redialled() {
    logs();
    let f = TestFleet::new(1);
    let (pa, pb) = (f.init("till-a"), f.init("till-b"));
    let roster = f.roster(&[&pa, &pb]);
    let (a, b) = (f.open(&pa, &roster), f.open(&pb, &roster));
    let ta = Transport::start(a.clone(), f.tls(&pa), config(vec![]))
        .await
        .unwrap();
    let relay = Relay::start(ta.local_addr()).await;
    let tb = Transport::start(b.clone(), f.tls(&pb), config(vec![]))
        .await
        .unwrap();
    tb.add_peer(relay.addr, Some(pa.id));
    let limit = Duration::from_secs(10);
    eventually("linked through the relay", limit, || {
        a.sync_status().peers.len() == 1 && b.sync_status().peers.len() == 1
    })
    .await;
    let since = tb.peers()[0].since;

    // Longer than the idle timeout: the link stays the same one.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let p = &tb.peers()[0];
    assert!(p.connected && p.since == since, "{p:?}");

    relay.set_cut(true);
    let cut = Instant::now();
    eventually("both sides notice the dead link", limit, || {
        a.sync_status().peers.is_empty() && b.sync_status().peers.is_empty()
    })
    .await;
    let noticed = cut.elapsed();
    println!("dead link noticed after {noticed:?}");
    // At most the idle timeout (2 s) plus one keep-alive period (0.5 s): the
    // requirement is 3 s.
    assert!(noticed < Duration::from_secs(3), "{noticed:?}");

    relay.set_cut(false);
    eventually("b redials through the relay", limit, || {
        tb.peers()[0].connected && a.sync_status().peers.len() == 1
    })
    .await;
    assert!(tb.peers()[0].reconnects >= 1);
    tb.shutdown().await;
    ta.shutdown().await;
}
