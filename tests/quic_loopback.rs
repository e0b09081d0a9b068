//! The QUIC transport on loopback between nodes on SQLite data directories:
//! sync both ways, refusals at the handshake (foreign fleet, revoked member,
//! unexpected id), reconnection after a restart, and the frame limit.

mod quic_support;

use std::sync::Arc;
use std::time::Duration;

use quic_support::{config, event, eventually, logs, on_hand, TestFleet};
use stocksync::model::EventKind;
use stocksync::net::{close, transport_config, Refusal, RefusalLog, Transport};

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sync_sales_both_ways() {
    logs();
    let f = TestFleet::new(1);
    let (pa, pb) = (f.init("till-a"), f.init("till-b"));
    let roster = f.roster(&[&pa, &pb]);
    let (a, b) = (f.open(&pa, &roster), f.open(&pb, &roster));
    let ta = Transport::start(a.clone(), f.tls(&pa), config(vec![]))
        .await
        .unwrap();
    let tb = Transport::start(b.clone(), f.tls(&pb), config(vec![ta.local_addr()]))
        .await
        .unwrap();

    event(&a, "ra", 10, EventKind::Receipt).await.unwrap();
    event(&a, "sa", 3, EventKind::Sale).await.unwrap();
    event(&b, "rb", 5, EventKind::Receipt).await.unwrap();
    event(&b, "sb", 1, EventKind::Sale).await.unwrap();
    eventually("both sides at 11 on hand", LIMIT, || {
        on_hand(&a) == 11 && on_hand(&b) == 11
    })
    .await;

    let peers = tb.peers();
    assert_eq!(peers.len(), 1, "{peers:?}");
    let p = &peers[0];
    assert!(p.connected && p.dialled && p.since.is_some(), "{p:?}");
    assert_eq!((p.id, p.addr), (Some(pa.id), ta.local_addr()));
    let seen_by_a = ta.peers();
    assert_eq!(seen_by_a.len(), 1, "{seen_by_a:?}");
    assert_eq!(seen_by_a[0].id, Some(pb.id));
    assert!(ta.refusals().is_empty() && tb.refusals().is_empty());

    tb.shutdown().await;
    assert!(b.sync_status().peers.is_empty(), "b's node saw the link go");
    eventually("a sees b go", LIMIT, || a.sync_status().peers.is_empty()).await;
    ta.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_fleet_is_refused() {
    logs();
    let f = TestFleet::new(1);
    let other = TestFleet::new(2);
    let pa = f.init("till-a");
    let pc = other.init("till-c");
    // Each roster lists both nodes: only the certificate's signer keeps them apart.
    let a = f.open(&pa, &f.roster(&[&pa, &pc]));
    let c = other.open(&pc, &other.roster(&[&pa, &pc]));
    event(&c, "rc", 7, EventKind::Receipt).await.unwrap();
    event(&c, "sc", 2, EventKind::Sale).await.unwrap();
    let tc = Transport::start(c.clone(), other.tls(&pc), config(vec![]))
        .await
        .unwrap();
    let ta = Transport::start(a.clone(), f.tls(&pa), config(vec![tc.local_addr()]))
        .await
        .unwrap();

    eventually("a refuses c's certificate twice", LIMIT, || {
        ta.refusals()
            .iter()
            .filter(|r| r.reason == Refusal::NotSignedByFleet && r.claimed == Some(pc.id))
            .count()
            >= 2
    })
    .await;
    assert_eq!(on_hand(&a), 0, "nothing of c applied");
    assert!(a.sync_status().peers.is_empty());
    let p = &ta.peers()[0];
    assert!(
        !p.connected && p.last_error.is_some() && p.reconnects >= 1,
        "{p:?}"
    );
    ta.shutdown().await;
    tc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_member_is_refused() {
    logs();
    let f = TestFleet::new(1);
    let (pa, pd) = (f.init("till-a"), f.init("till-d"));
    let v1 = f.roster(&[&pa, &pd]);
    let mut v2 = v1.clone();
    v2.revoke(&pd.id, Default::default(), "lost device")
        .unwrap();
    // d still holds the roster from before its revocation; a holds the new one.
    let (a, d) = (f.open(&pa, &v2), f.open(&pd, &v1));
    event(&d, "rd", 4, EventKind::Receipt).await.unwrap();
    let ta = Transport::start(a.clone(), f.tls(&pa), config(vec![]))
        .await
        .unwrap();
    let td = Transport::start(d.clone(), f.tls(&pd), config(vec![ta.local_addr()]))
        .await
        .unwrap();

    eventually("a refuses revoked d twice", LIMIT, || {
        ta.refusals()
            .iter()
            .filter(|r| matches!(r.reason, Refusal::Revoked { .. }) && r.claimed == Some(pd.id))
            .count()
            >= 2
    })
    .await;
    assert_eq!(on_hand(&a), 0, "nothing of d applied");
    assert!(ta.peers().is_empty(), "{:?}", ta.peers());
    assert!(!td.peers()[0].connected);
    td.shutdown().await;
    ta.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_connected_member_closes_its_link() {
    logs();
    let f = TestFleet::new(1);
    let (pa, pd) = (f.init("till-a"), f.init("till-d"));
    let v1 = f.roster(&[&pa, &pd]);
    let (a, d) = (f.open(&pa, &v1), f.open(&pd, &v1));
    let ta = Transport::start(a.clone(), f.tls(&pa), config(vec![]))
        .await
        .unwrap();
    let td = Transport::start(d.clone(), f.tls(&pd), config(vec![ta.local_addr()]))
        .await
        .unwrap();
    eventually("a and d connected", LIMIT, || {
        a.sync_status().peers.len() == 1
    })
    .await;

    let mut v2 = v1.clone();
    v2.revoke(&pd.id, Default::default(), "lost device")
        .unwrap();
    a.install_roster(f.hq.sign(&v2).unwrap()).unwrap();
    eventually("a drops d and refuses it from then on", LIMIT, || {
        a.sync_status().peers.is_empty()
            && ta
                .refusals()
                .iter()
                .any(|r| matches!(r.reason, Refusal::Revoked { .. }))
    })
    .await;
    td.shutdown().await;
    ta.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialling_an_unexpected_node_is_refused() {
    logs();
    let f = TestFleet::new(1);
    let (pa, pb, px) = (f.init("till-a"), f.init("till-b"), f.init("till-x"));
    let roster = f.roster(&[&pa, &pb, &px]);
    let (a, b) = (f.open(&pa, &roster), f.open(&pb, &roster));
    event(&a, "ra", 9, EventKind::Receipt).await.unwrap();
    let ta = Transport::start(a.clone(), f.tls(&pa), config(vec![]))
        .await
        .unwrap();
    let tb = Transport::start(b.clone(), f.tls(&pb), config(vec![]))
        .await
        .unwrap();
    // b was told x is at a's address: a member, but not the one expected.
    tb.add_peer(ta.local_addr(), Some(px.id));

    eventually("b refuses a in place of x twice", LIMIT, || {
        tb.refusals()
            .iter()
            .filter(|r| {
                r.reason
                    == Refusal::Unexpected {
                        expected: px.id,
                        found: pa.id,
                    }
            })
            .count()
            >= 2
    })
    .await;
    assert_eq!(on_hand(&b), 0, "nothing of a applied");
    let p = &tb.peers()[0];
    assert!(!p.connected && p.id == Some(px.id), "{p:?}");
    tb.shutdown().await;
    ta.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_transport_reconnects_and_nothing_is_lost() {
    logs();
    let f = TestFleet::new(1);
    let (pa, pb) = (f.init("till-a"), f.init("till-b"));
    let roster = f.roster(&[&pa, &pb]);
    let (a, b) = (f.open(&pa, &roster), f.open(&pb, &roster));
    let ta = Transport::start(a.clone(), f.tls(&pa), config(vec![]))
        .await
        .unwrap();
    let addr = ta.local_addr();
    let tb = Transport::start(b.clone(), f.tls(&pb), config(vec![addr]))
        .await
        .unwrap();
    event(&a, "ra", 100, EventKind::Receipt).await.unwrap();
    event(&b, "rb", 100, EventKind::Receipt).await.unwrap();

    // Sales on both sides while a's transport goes down and comes back.
    let mut sold = 0;
    let mut ta = Some(ta);
    for i in 0..30 {
        event(&a, &format!("sa{i}"), 1, EventKind::Sale)
            .await
            .unwrap();
        event(&b, &format!("sb{i}"), 1, EventKind::Sale)
            .await
            .unwrap();
        sold += 2;
        if i == 10 {
            ta.take().unwrap().shutdown().await;
        }
        if i == 20 {
            let mut c = config(vec![]);
            c.listen = addr;
            ta = Some(Transport::start(a.clone(), f.tls(&pa), c).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expected = 200 - sold;
    eventually("both sides converge after the restart", LIMIT, || {
        on_hand(&a) == expected && on_hand(&b) == expected
    })
    .await;
    let p = &tb.peers()[0];
    assert!(p.connected && p.reconnects >= 1, "{p:?}");
    tb.shutdown().await;
    ta.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_closes_the_connection() {
    logs();
    let f = TestFleet::new(1);
    let (pa, pe) = (f.init("till-a"), f.init("till-e"));
    let roster = f.roster(&[&pa, &pe]);
    let a = f.open(&pa, &roster);
    let ta = Transport::start(a.clone(), f.tls(&pa), config(vec![]))
        .await
        .unwrap();

    // e is an authenticated member speaking raw QUIC.
    let tls = f.tls(&pe);
    let r = Arc::new(roster.clone());
    let source: stocksync::net::RosterSource = Arc::new(move || Some(r.clone()));
    let transport =
        Arc::new(transport_config(Duration::from_secs(1), Duration::from_secs(3)).unwrap());
    let client = tls
        .client_config(
            source,
            Some(pa.id),
            ta.local_addr(),
            Arc::new(RefusalLog::default()),
            transport,
        )
        .unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = endpoint
        .connect_with(client, ta.local_addr(), "stocksync")
        .unwrap()
        .await
        .unwrap();
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(&[0, 0, 0, 0]).await.unwrap();
    eventually("a sees e", LIMIT, || a.sync_status().peers.len() == 1).await;
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();

    let closed = tokio::time::timeout(LIMIT, conn.closed())
        .await
        .expect("a closes the connection");
    match closed {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(
                c.error_code,
                quinn::VarInt::from_u32(close::FRAME_TOO_LARGE)
            )
        }
        other => panic!("closed otherwise: {other}"),
    }
    eventually("a sees e go", LIMIT, || a.sync_status().peers.is_empty()).await;
    endpoint.close(quinn::VarInt::from_u32(0), b"");
    ta.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_dialling_each_other_keep_one_link() {
    logs();
    let f = TestFleet::new(1);
    let (pa, pb) = (f.init("till-a"), f.init("till-b"));
    let roster = f.roster(&[&pa, &pb]);
    let (a, b) = (f.open(&pa, &roster), f.open(&pb, &roster));
    let ta = Transport::start(a.clone(), f.tls(&pa), config(vec![]))
        .await
        .unwrap();
    let tb = Transport::start(b.clone(), f.tls(&pb), config(vec![ta.local_addr()]))
        .await
        .unwrap();
    ta.add_peer(tb.local_addr(), Some(pb.id));
    event(&a, "ra", 6, EventKind::Receipt).await.unwrap();
    event(&b, "rb", 4, EventKind::Receipt).await.unwrap();
    eventually("both at 10 over one link each", LIMIT, || {
        on_hand(&a) == 10
            && on_hand(&b) == 10
            && ta.peers().iter().all(|p| p.connected)
            && tb.peers().iter().all(|p| p.connected)
    })
    .await;
    // Each side lists the other once (as its dial target) and the engine saw one peer.
    assert_eq!(ta.peers().len(), 1, "{:?}", ta.peers());
    assert_eq!(tb.peers().len(), 1, "{:?}", tb.peers());
    assert_eq!(a.sync_status().peers.len(), 1);
    assert_eq!(b.sync_status().peers.len(), 1);
    event(&b, "sb", 1, EventKind::Sale).await.unwrap();
    eventually("a sees b's sale", LIMIT, || on_hand(&a) == 9).await;
    tb.shutdown().await;
    ta.shutdown().await;
    assert!(a.sync_status().peers.is_empty() && b.sync_status().peers.is_empty());
}

/// Presents a fixed certificate with a fixed key, whether or not they match.
#[derive(Debug)]
struct Impostor(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Impostor {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_certificate_without_its_key_is_refused() {
    use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
    logs();
    let f = TestFleet::new(1);
    let (pa, pm) = (f.init("till-a"), f.init("till-m"));
    let roster = f.roster(&[&pa, &pm]);
    let a = f.open(&pa, &roster);
    let ta = Transport::start(a.clone(), f.tls(&pa), config(vec![]))
        .await
        .unwrap();

    // m's genuine certificate (public), presented with another key.
    let stolen = stocksync::net::issue(&f.hq, pm.id, "till-m").unwrap();
    let thief = stocksync::identity::Identity::from_seed([77; 32]);
    let key =
        rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(thief.to_pkcs8_der()))
            .unwrap();
    let certified =
        rustls::sign::CertifiedKey::new(vec![CertificateDer::from(stolen.der().to_vec())], key);
    let r = Arc::new(roster.clone());
    let verifier = stocksync::net::PeerVerifier::new(
        pm.id,
        f.hq.fleet(),
        Arc::new(move || Some(r.clone())),
        Some(pa.id),
        ta.local_addr(),
        Arc::new(RefusalLog::default()),
    );
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(verifier))
    .with_client_cert_resolver(Arc::new(Impostor(Arc::new(certified))));
    tls.alpn_protocols = vec![stocksync::net::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let attempt = endpoint
        .connect_with(
            quinn::ClientConfig::new(Arc::new(crypto)),
            ta.local_addr(),
            "stocksync",
        )
        .unwrap()
        .await;
    if let Ok(conn) = attempt {
        // The client may finish before the server checks its signature.
        let _ = tokio::time::timeout(LIMIT, conn.closed()).await;
    }
    eventually(
        "a refuses the impostor's handshake signature",
        LIMIT,
        || {
            ta.refusals()
                .iter()
                .any(|r| r.reason == Refusal::BadSignature && r.claimed == Some(pm.id))
        },
    )
    .await;
    assert!(a.sync_status().peers.is_empty() && ta.peers().is_empty());
    endpoint.close(quinn::VarInt::from_u32(0), b"");
    ta.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_transport_stops_it() {
    logs();
    let f = TestFleet::new(1);
    let (pa, pb) = (f.init("till-a"), f.init("till-b"));
    let roster = f.roster(&[&pa, &pb]);
    let (a, b) = (f.open(&pa, &roster), f.open(&pb, &roster));
    let ta = Transport::start(a.clone(), f.tls(&pa), config(vec![]))
        .await
        .unwrap();
    let tb = Transport::start(b.clone(), f.tls(&pb), config(vec![ta.local_addr()]))
        .await
        .unwrap();
    eventually("linked", LIMIT, || {
        a.sync_status().peers.len() == 1 && b.sync_status().peers.len() == 1
    })
    .await;
    drop(tb);
    eventually("both nodes see the link go", LIMIT, || {
        a.sync_status().peers.is_empty() && b.sync_status().peers.is_empty()
    })
    .await;
    ta.shutdown().await;
}
