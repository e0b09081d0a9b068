//! Online enrolment with a one-time token over real QUIC on loopback: a hub
//! daemon makes a token, `init --hub --token` enrols a new till, which then
//! syncs with the hub; a used, expired, mismatched, unknown or foreign token
//! is refused with a clear error and leaves the new node's directory
//! untouched; a token pinning another fleet fails before the secret is
//! sent; a sync connection without a client certificate is still refused.

#[allow(dead_code)]
#[path = "daemon_net/support.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use stocksync::fleet::{FleetId, Member, Roster};
use stocksync::model::{NodeId, Role};
use stocksync::net::verify::{PeerVerifier, RefusalLog};
use stocksync::net::ALPN;
use support::{free_port, node_id, ok, p, run, wait_for, Daemon, Fleet};

/// `fleet token` on `hub` (through its daemon when one runs): the token text.
fn make_token(hub: &Path, name: &str, location: &str, ttl: &str) -> String {
    let out: Value = serde_json::from_str(&ok(&[
        "fleet",
        "token",
        "--data",
        p(hub),
        "--node",
        name,
        "--location",
        location,
        "--role",
        "till",
        "--ttl",
        ttl,
        "--json",
    ]))
    .expect("token JSON");
    out["token"].as_str().expect("token").to_string()
}

/// `init --hub ADDR --token TOKEN` for a till `name` at `location` in `dir`.
fn init_online(
    dir: &Path,
    name: &str,
    location: &str,
    hub: SocketAddr,
    token: &str,
) -> std::process::Output {
    run(&[
        "init",
        "--data",
        p(dir),
        "--node",
        name,
        "--location",
        location,
        "--role",
        "till",
        "--hub",
        &hub.to_string(),
        "--token",
        token,
        "--json",
    ])
}

/// Asserts `out` failed with exit code 2 and `needle` in its error, and
/// that nothing was created in `dir`.
#[track_caller]
fn refused(out: &std::process::Output, dir: &Path, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!dir.join("stocksync.db").exists() && !dir.join("node.key").exists());
}

fn tokens(hub: &Path) -> Vec<Value> {
    let v: Value =
        serde_json::from_str(&ok(&["fleet", "token", "list", "--data", p(hub), "--json"]))
            .expect("JSON");
    v["tokens"].as_array().expect("tokens").clone()
}

#[test]
fn a_till_enrols_with_a_token_and_syncs_and_bad_tokens_are_refused() {
    let fleet = Fleet::new("hub", "HQ");
    let ph = free_port();
    let hub = Daemon::start(&fleet.hub, ph, &[]);
    let token = make_token(&fleet.hub, "till-9", "S2", "1h");
    assert!(token.starts_with("ssenrol1."), "{token}");

    // A token whose pinned fleet and hub are another fleet's, with this
    // hub's real secret: the hub's certificate is refused before anything is
    // sent, so the secret stays unused and works afterwards.
    let other = Fleet::new("hub-b", "HQ-B");
    let foreign = make_token(&other.hub, "till-9", "S2", "1h");
    let parts: Vec<&str> = token.split('.').collect();
    let fparts: Vec<&str> = foreign.split('.').collect();
    let forged = format!("ssenrol1.{}.{}.{}", fparts[1], fparts[2], parts[3]);
    let t9 = fleet.tmp.path().join("till-9");
    let out = init_online(&t9, "till-9", "S2", ph, &forged);
    refused(&out, &t9, "not the hub of the token's fleet");
    refused(
        &init_online(&t9, "till-9", "S2", ph, &foreign),
        &t9,
        "not the hub of the token's fleet",
    );
    assert!(
        !hub.log().contains("enrolment refused"),
        "the hub saw no request"
    );
    assert_eq!(tokens(&fleet.hub)[0]["state"], "unused");

    // The real token enrols the till.
    let out = init_online(&t9, "till-9", "S2", ph, &token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        (v["name"].as_str(), v["roster_version"].as_u64()),
        (Some("till-9"), Some(2)),
        "{v}"
    );
    for f in ["fleet.id", "node-cert.pem", "fleet-ca.pem", "node.key"] {
        assert!(t9.join(f).exists(), "{f}");
    }
    let id9 = node_id(&t9);
    let listed = tokens(&fleet.hub);
    assert_eq!(listed[0]["state"], "used");
    assert_eq!(listed[0]["used_by"], id9.as_str());

    // It syncs with the hub: a sale on the till reaches it.
    let d9 = Daemon::start(&t9, free_port(), &[ph]);
    d9.event(json!({"kind": "receive", "sku": "TSHIRT-M", "qty": 10, "id": "r1"}));
    d9.event(json!({"kind": "sell", "sku": "TSHIRT-M", "qty": 3, "id": "s1"}));
    wait_for(
        "the hub sees the new till's sale",
        || hub.on_hand("TSHIRT-M", "S2") == 7,
        || format!("{}\n{}", hub.status(), d9.log()),
    );
    assert!(hub.connected().contains(&id9));

    // The same token a second time (another key): refused, nothing made.
    let again = fleet.tmp.path().join("till-9b");
    refused(
        &init_online(&again, "till-9", "S2", ph, &token),
        &again,
        "token_used",
    );

    // A token for another name.
    let t10 = make_token(&fleet.hub, "till-10", "S2", "1h");
    let t11 = fleet.tmp.path().join("till-11");
    refused(
        &init_online(&t11, "till-11", "S2", ph, &t10),
        &t11,
        "mismatch",
    );
    // An unknown secret.
    let mut unknown: Vec<&str> = t10.split('.').collect();
    let zero = "A".repeat(43);
    unknown[3] = &zero;
    refused(
        &init_online(&t11, "till-10", "S2", ph, &unknown.join(".")),
        &t11,
        "unknown_token",
    );
    // An expired token.
    let short = make_token(&fleet.hub, "till-12", "S2", "1s");
    std::thread::sleep(Duration::from_millis(2100));
    let t12 = fleet.tmp.path().join("till-12");
    refused(
        &init_online(&t12, "till-12", "S2", ph, &short),
        &t12,
        "token_expired",
    );
    // A revoked token.
    let t13 = make_token(&fleet.hub, "till-13", "S2", "1h");
    let id13 = tokens(&fleet.hub)
        .iter()
        .find(|t| t["name"] == "till-13")
        .expect("listed")["id"]
        .as_str()
        .expect("id")
        .to_string();
    ok(&["fleet", "token", "revoke", "--data", p(&fleet.hub), &id13]);
    let d13 = fleet.tmp.path().join("till-13");
    refused(
        &init_online(&d13, "till-13", "S2", ph, &t13),
        &d13,
        "token_revoked",
    );
    // The mismatched one still works for its own name.
    let d10 = fleet.tmp.path().join("till-10");
    assert!(init_online(&d10, "till-10", "S2", ph, &t10)
        .status
        .success());
    assert_eq!(hub.status()["sync"]["roster_version"], 3);

    // A till does not serve enrolment; nothing listens: not reachable (exit 1).
    let t14 = make_token(&fleet.hub, "till-14", "S2", "1h");
    let d14 = fleet.tmp.path().join("till-14");
    let till_addr: SocketAddr = d9.status()["network"]["listen"]
        .as_str()
        .expect("listen")
        .parse()
        .expect("addr");
    refused(
        &init_online(&d14, "till-14", "S2", till_addr, &t14),
        &d14,
        "does not serve enrolment",
    );
    let out = init_online(&d14, "till-14", "S2", free_port(), &t14);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not reachable"));
    assert!(!d14.join("node.key").exists());
}

/// A client that authenticates the hub properly but presents no
/// certificate, asking for the sync protocol: the hub (which makes client
/// certificates optional to serve enrolment) closes it before its node hears
/// of it, and records the refusal.
#[test]
fn a_sync_connection_without_a_client_certificate_is_still_refused() {
    let fleet = Fleet::new("hub", "HQ");
    let ph = free_port();
    let hub = Daemon::start(&fleet.hub, ph, &[]);
    let fleet_id = FleetId::from_hex(
        std::fs::read_to_string(fleet.hub.join("fleet.id"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let hub_id = NodeId::from_hex(&node_id(&fleet.hub)).unwrap();

    let roster =
        Arc::new(Roster::new(fleet_id).with_member(hub_id, Member::new("hub", Role::Hub, [])));
    let verifier = PeerVerifier::new(
        NodeId([1; 32]),
        fleet_id,
        Arc::new(move || Some(roster.clone())),
        Some(hub_id),
        ph,
        Arc::new(RefusalLog::default()),
    );
    let mut tls = rustls::ClientConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(verifier))
    .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).unwrap();
    let config = quinn::ClientConfig::new(Arc::new(crypto));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let closed = rt.block_on(async {
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = endpoint
            .connect_with(config, ph, "stocksync")
            .unwrap()
            .await
            .expect("the TLS handshake itself completes");
        // Try to start the sync stream: the hub closes the connection.
        if let Ok((mut send, _recv)) = conn.open_bi().await {
            let _ = send.write_all(&[0, 0, 0, 0]).await;
        }
        tokio::time::timeout(Duration::from_secs(5), conn.closed()).await
    });
    match closed {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(
                c.error_code,
                quinn::VarInt::from_u32(stocksync::net::close::PROTOCOL),
                "{c:?}"
            )
        }
        other => panic!(
            "the hub did not close the connection: {other:?}\n{}",
            hub.log()
        ),
    }
    wait_for(
        "the hub records the refusal",
        || {
            hub.refusals()
                .iter()
                .any(|r| r["reason"] == "no client certificate")
        },
        || hub.status().to_string(),
    );
    assert!(hub.connected().is_empty(), "{}", hub.status());
}
