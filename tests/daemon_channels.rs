//! Channels inside a real hub daemon (scenarios 2 and 9): each channel is its
//! own enrolled node (role `channel`) opened by the hub's process and linked
//! to the hub over QUIC on loopback; a local HTTP receiver checks every
//! webhook's HMAC signature and records what it got. Time is compressed:
//! backoff 50 ms to 400 ms, an outage of 3 s, an interval of 2 s.

#[path = "http_server/mod.rs"]
mod http_server;
#[path = "daemon_net/support.rs"]
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use http_server::Restartable;
use serde_json::{json, Value};
use sha2::Sha256;
use support::{free_port, node_id, p, wait_for, Daemon, Fleet};

const SECRET: &str = "channel-test-secret";

/// One webhook request as the receiver got it (signature checked).
#[derive(Clone, Debug)]
struct Got {
    channel: String,
    sku: String,
    available: u64,
    sequence: u64,
    at: Instant,
    at_ms: u64,
}

#[derive(Default)]
struct Inner {
    got: Vec<Got>,
    bad_signatures: usize,
}

/// A webhook receiver on 127.0.0.1 that can go down and come back on its port.
struct Receiver {
    server: Restartable,
    inner: Arc<Mutex<Inner>>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn hook(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let ts = h("x-stocksync-timestamp");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(&body);
    let expected = format!("sha256={}", hex(&mac.finalize().into_bytes()));
    let mut s = inner.lock().unwrap();
    if ts.is_empty() || h("x-stocksync-signature") != expected {
        s.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    s.got.push(Got {
        channel: v["channel"].as_str().unwrap().to_string(),
        sku: v["sku"].as_str().unwrap().to_string(),
        available: v["available"].as_u64().unwrap(),
        sequence: v["sequence"].as_u64().unwrap(),
        at: Instant::now(),
        at_ms: unix_ms(),
    });
    StatusCode::OK
}

impl Receiver {
    fn start() -> Self {
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(inner.clone());
        Self {
            server: Restartable::start(app),
            inner,
        }
    }

    /// Listens again, on the same port.
    fn up(&mut self) {
        self.server.up();
    }

    /// Goes down as a process would: the listener and every connection close.
    fn down(&mut self) {
        self.server.down();
    }

    fn url(&self) -> String {
        self.server.url("/hook")
    }

    /// What `channel` got, in arrival order.
    fn got(&self, channel: &str) -> Vec<Got> {
        let s = self.inner.lock().unwrap();
        s.got
            .iter()
            .filter(|g| g.channel == channel)
            .cloned()
            .collect()
    }

    /// The newest value `channel` got for `sku`.
    fn last(&self, channel: &str, sku: &str) -> Option<u64> {
        self.got(channel)
            .iter()
            .rev()
            .find(|g| g.sku == sku)
            .map(|g| g.available)
    }

    fn bad_signatures(&self) -> usize {
        self.inner.lock().unwrap().bad_signatures
    }
}

/// Per SKU, sequences strictly increase in arrival order (a repeat is the
/// same request again, same value), and the newest value is `last[sku]`.
fn check_order(got: &[Got], last: &BTreeMap<&str, u64>) {
    let mut per: BTreeMap<&str, Vec<&Got>> = BTreeMap::new();
    for g in got {
        per.entry(g.sku.as_str()).or_default().push(g);
    }
    for (sku, gs) in &per {
        for w in gs.windows(2) {
            assert!(
                w[0].sequence < w[1].sequence
                    || (w[0].sequence == w[1].sequence && w[0].available == w[1].available),
                "{sku}: sequence {} ({}) after {} ({})",
                w[1].sequence,
                w[1].available,
                w[0].sequence,
                w[0].available
            );
        }
    }
    for (sku, v) in last {
        let newest = per.get(sku).and_then(|g| g.last()).map(|g| g.available);
        assert_eq!(newest, Some(*v), "{sku}: the newest value is not the truth");
    }
}

/// One channel of the hub's configuration.
struct Chan {
    id: &'static str,
    mode: &'static str,
}

/// Enrols each channel's node (`init --role channel --join HUB`) at S1 in the
/// hub's `channels/<id>` and writes the hub's configuration; its path.
fn configure(fleet: &Fleet, chans: &[Chan], url: &str, rebalance: &str) -> PathBuf {
    let mut text = format!("{rebalance}\n[channels]\n");
    for c in chans {
        let dir = fleet.hub.join("channels").join(c.id);
        support::ok(&[
            "init",
            "--data",
            p(&dir),
            "--node",
            c.id,
            "--location",
            "S1",
            "--role",
            "channel",
            "--join",
            p(&fleet.hub),
        ]);
        text.push_str(&format!(
            "[[channels.channel]]\nid = \"{}\"\npools = [{{ location = \"S1\" }}]\nmode = {}\n\
             url = \"{url}\"\nsecret = {{ inline = \"{SECRET}\" }}\nbackoff_base_ms = 50\n\
             backoff_max_ms = 400\nmax_attempts = 1000\nrequest_timeout_ms = 2000\n",
            c.id, c.mode
        ));
    }
    let path = fleet.tmp.path().join("hub.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start_hub(fleet: &Fleet, listen: SocketAddr, config: &Path) -> Daemon {
    Daemon::start_with(&fleet.hub, listen, &[], &["--config", p(config)])
}

/// `GET /v1/hub/channels`: the channel named `id`.
/// The first snapshot of the hub's dashboard stream that `want` accepts.
fn snapshot_where(hub: &Daemon, want: impl Fn(&Value) -> bool) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut r = agent
        .get(format!("{}/v1/hub/events", hub.base))
        .header("Authorization", format!("Bearer {}", hub.token))
        .call()
        .expect("the dashboard's event stream");
    std::io::BufRead::lines(std::io::BufReader::new(r.body_mut().as_reader()))
        .map_while(Result::ok)
        .filter_map(|l| l.strip_prefix("data:").map(|d| d.trim().to_string()))
        .filter_map(|d| serde_json::from_str::<Value>(&d).ok())
        .find(|s| want(s))
        .expect("the stream ended before a snapshot with the channels' rows")
}

fn channel(hub: &Daemon, id: &str) -> Value {
    let (code, v) = hub.get("/v1/hub/channels");
    assert_eq!(code, 200, "{v}");
    v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

fn held(hub: &Daemon, id: &str, sku: &str) -> u64 {
    channel(hub, id)["rights"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["sku"] == sku))
        .and_then(|x| x["rights"].as_u64())
        .unwrap_or(0)
}

fn order(hub: &Daemon, channel: &str, id: &str, sku: &str, qty: u64) -> (u16, Value) {
    hub.post_to(
        &format!("/v1/hub/channels/{channel}/orders"),
        json!({"id": id, "sku": sku, "qty": qty}),
    )
}

fn wait_connected(hub: &Daemon, chans: &[&str]) {
    for c in chans {
        wait_for(
            "the channel node links to the hub",
            || channel(hub, c)["node"]["connected_to_hub"] == true,
            || format!("{}\n{}", channel(hub, c), hub.log()),
        );
    }
}

#[test]
fn a_realtime_channel_publishes_within_a_second_and_an_interval_channel_once_per_interval() {
    let fleet = Fleet::new("hub", "HQ");
    let rx = Receiver::start();
    let chans = [
        Chan {
            id: "web",
            mode: "{ kind = \"realtime\", coalesce_ms = 20 }",
        },
        Chan {
            id: "mkt",
            mode: "{ kind = \"interval\", every_s = 2 }",
        },
    ];
    let config = configure(&fleet, &chans, &rx.url(), "");
    // Enrolled after the channels: its roster lists them.
    let till = fleet.join("till-1", "S1");
    let (web_id, mkt_id) = (
        node_id(&fleet.hub.join("channels/web")),
        node_id(&fleet.hub.join("channels/mkt")),
    );
    let (ph, pt) = (free_port(), free_port());
    let hub = start_hub(&fleet, ph, &config);
    let dt = Daemon::start(&till, pt, &[ph]);
    wait_connected(&hub, &["web", "mkt"]);
    dt.event(json!({"kind": "receive", "sku": "TEE", "qty": 20, "id": "r1"}));

    // A grant from the till reaches each channel node through the hub and is published.
    let t = Instant::now();
    dt.event(json!({"kind": "grant", "sku": "TEE", "qty": 8, "to": web_id, "id": "g-web"}));
    dt.event(json!({"kind": "grant", "sku": "TEE", "qty": 8, "to": mkt_id, "id": "g-mkt"}));
    wait_for(
        "the web channel publishes the granted 8",
        || rx.last("web", "TEE") == Some(8),
        || format!("{:?}\n{}", rx.got("web"), hub.log()),
    );
    println!("till grant → web webhook: {:?}", t.elapsed());
    assert_eq!(held(&hub, "web", "TEE"), 8);

    // Real time: each online order's new available is at the webhook within a second.
    let mut available = 8;
    for i in 0..5 {
        let t = Instant::now();
        let (code, body) = order(&hub, "web", &format!("w{i}"), "TEE", 1);
        assert_eq!(code, 201, "{body}");
        available -= 1;
        wait_for(
            "the web webhook gets the new available",
            || rx.last("web", "TEE") == Some(available),
            || format!("{:?}", rx.got("web")),
        );
        let got = rx.got("web");
        let at = got.last().unwrap().at;
        let latency = at.duration_since(t);
        println!("order → web webhook: {latency:?}");
        assert!(latency < Duration::from_secs(1), "{latency:?}");
    }
    // The same id again is a replay: 200, nothing changes.
    let (code, body) = order(&hub, "web", "w0", "TEE", 1);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["replayed"], true, "{body}");
    assert_eq!(held(&hub, "web", "TEE"), 3);

    // The dashboard's event stream shows both channels and the web's last delivery.
    let snap = snapshot_where(&hub, |s| {
        let rows = s["channels"].as_array().cloned().unwrap_or_default();
        let ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
        ids == ["mkt", "web"]
            && rows
                .iter()
                .any(|r| r["id"] == "web" && r["last_delivery_ms"].as_i64().is_some())
    });
    assert!(
        snap["channels"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["dead_letters"] == 0),
        "{snap}"
    );

    // Interval: right after a boundary, three orders; one update at the next
    // boundary, with the final value, and nothing in between.
    wait_for(
        "the interval channel publishes the granted 8",
        || rx.last("mkt", "TEE") == Some(8),
        || format!("{:?}", rx.got("mkt")),
    );
    let period = 2_000;
    let boundary = (unix_ms() / period + 1) * period;
    std::thread::sleep(Duration::from_millis(boundary + 100 - unix_ms()));
    let before = rx.got("mkt").len();
    for i in 0..3 {
        let (code, body) = order(&hub, "mkt", &format!("m{i}"), "TEE", 1);
        assert_eq!(code, 201, "{body}");
    }
    let next = boundary + period;
    wait_for(
        "the interval channel publishes once",
        || rx.last("mkt", "TEE") == Some(5),
        || format!("{:?}", rx.got("mkt")),
    );
    std::thread::sleep(Duration::from_millis(2 * period + 200));
    let after: Vec<Got> = rx.got("mkt")[before..].to_vec();
    assert_eq!(
        after.len(),
        1,
        "one coalesced update per interval: {after:?}"
    );
    assert_eq!(after[0].available, 5);
    assert!(
        after[0].at_ms >= next,
        "published at {} before the interval's end {next}",
        after[0].at_ms
    );
    assert_eq!(rx.bad_signatures(), 0);
}

#[test]
fn an_endpoint_down_for_a_while_gets_every_newest_value_after_it_returns_in_order() {
    let fleet = Fleet::new("hub", "HQ");
    let mut rx = Receiver::start();
    let chans = [Chan {
        id: "web",
        mode: "{ kind = \"realtime\", coalesce_ms = 20 }",
    }];
    let config = configure(&fleet, &chans, &rx.url(), "");
    // Enrolled after the channels: its roster lists them.
    let till = fleet.join("till-1", "S1");
    let web_id = node_id(&fleet.hub.join("channels/web"));
    let (ph, pt) = (free_port(), free_port());
    let hub = start_hub(&fleet, ph, &config);
    let dt = Daemon::start(&till, pt, &[ph]);
    wait_connected(&hub, &["web"]);
    for sku in ["A", "B"] {
        dt.event(json!({"kind": "receive", "sku": sku, "qty": 30, "id": format!("r-{sku}")}));
        dt.event(
            json!({"kind": "grant", "sku": sku, "qty": 10, "to": web_id, "id": format!("g-{sku}")}),
        );
    }
    wait_for(
        "both SKUs published",
        || rx.last("web", "A") == Some(10) && rx.last("web", "B") == Some(10),
        || format!("{:?}\n{}", rx.got("web"), hub.log()),
    );

    // The receiver goes away; sales and a grant change both SKUs meanwhile.
    rx.down();
    let mut truth = BTreeMap::from([("A", 10u64), ("B", 10u64)]);
    let steps: [(&str, u64); 5] = [("A", 1), ("B", 3), ("A", 2), ("B", 1), ("A", 1)];
    for (i, (sku, qty)) in steps.into_iter().enumerate() {
        let (code, body) = order(&hub, "web", &format!("o{i}"), sku, qty);
        assert_eq!(code, 201, "{body}");
        *truth.get_mut(sku).unwrap() -= qty;
        std::thread::sleep(Duration::from_millis(300));
    }
    dt.event(json!({"kind": "grant", "sku": "A", "qty": 2, "to": web_id, "id": "g-A2"}));
    *truth.get_mut("A").unwrap() += 2;
    std::thread::sleep(Duration::from_secs(3));
    let st = channel(&hub, "web")["status"].clone();
    assert!(st["failed_attempts"].as_u64() > Some(0), "{st}");
    assert!(st["last_error"].is_string(), "{st}");
    assert!(st["outbox_depth"].as_u64() >= Some(1), "{st}");

    // Back: the newest value of each SKU arrives, in order, signed; nothing dead.
    rx.up();
    wait_for(
        "the newest values arrive",
        || truth.iter().all(|(s, v)| rx.last("web", s) == Some(*v)),
        || format!("{truth:?}\n{:?}", rx.got("web")),
    );
    check_order(&rx.got("web"), &truth);
    assert_eq!(rx.bad_signatures(), 0);
    for (sku, v) in &truth {
        assert_eq!(held(&hub, "web", sku), *v, "{sku}");
    }
    wait_for(
        "the outbox drains",
        || channel(&hub, "web")["status"]["outbox_depth"] == 0,
        || channel(&hub, "web").to_string(),
    );
    let (code, dead) = hub.get("/v1/hub/channels/web/dead-letters");
    assert_eq!(code, 200, "{dead}");
    assert_eq!(dead["dead_letters"], json!([]), "{dead}");
    let (code, m) = hub.get("/metrics");
    assert_eq!(code, 200);
    let m = m.as_str().unwrap_or_default().to_string();
    assert!(
        m.contains("stocksync_channel_rights_held{channel=\"web\",location=\"S1\"} 14"),
        "{m}"
    );
    assert!(
        m.contains("stocksync_channel_outbox_depth{channel=\"web\"} 0"),
        "{m}"
    );
    let (code, r) = hub.post_to("/v1/hub/channels/web/redrive", json!({}));
    assert_eq!(code, 202, "{r}");
    let (code, r) = order(&hub, "nope", "x", "A", 1);
    assert_eq!(code, 404, "{r}");
}

/// The stock rows of the channel node in `dir`, read from its files.
fn channel_rows(dir: &Path, sku: &str) -> Vec<Value> {
    let out = support::ok(&["--data", p(dir), "--json", "stock", sku]);
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn row(rows: &[Value]) -> (i64, i64) {
    rows.iter()
        .find(|r| r["location"] == "S1")
        .map(|r| {
            (
                r["on_hand"].as_i64().unwrap_or(0),
                r["deficit"].as_i64().unwrap_or(0),
            )
        })
        .unwrap_or((0, 0))
}

/// Scenario 2: the last unit, a till partitioned from the hub and the web
/// channel try to sell it at once. `at_web`: the till granted its right to
/// the web channel before the partition (through the hub), else the till
/// keeps it.
fn last_unit_race(at_web: bool) {
    let fleet = Fleet::new("hub", "HQ");
    let rx = Receiver::start();
    let chans = [Chan {
        id: "web",
        mode: "{ kind = \"realtime\", coalesce_ms = 20 }",
    }];
    let config = configure(&fleet, &chans, &rx.url(), "");
    // Enrolled after the channels: its roster lists them.
    let till = fleet.join("till-1", "S1");
    let web_id = node_id(&fleet.hub.join("channels/web"));
    let (ph, pt) = (free_port(), free_port());
    let hub = start_hub(&fleet, ph, &config);
    let dt = Daemon::start(&till, pt, &[ph]);
    wait_connected(&hub, &["web"]);
    dt.event(json!({"kind": "receive", "sku": "LAST", "qty": 1, "id": "r1"}));
    if at_web {
        dt.event(json!({"kind": "grant", "sku": "LAST", "qty": 1, "to": web_id, "id": "g1"}));
    }
    wait_for(
        "the hub sees the unit",
        || hub.on_hand("LAST", "S1") == 1,
        || hub.log(),
    );
    if at_web {
        wait_for(
            "the till's right reaches the web channel",
            || held(&hub, "web", "LAST") == 1,
            || format!("{}\n{}", channel(&hub, "web"), hub.log()),
        );
    }

    // The store's link goes: the till runs alone.
    dt.kill9();
    let alone = Daemon::start(&till, pt, &[]);
    let (till_code, web_code) = std::thread::scope(|s| {
        let a =
            s.spawn(|| alone.post(json!({"kind": "sell", "sku": "LAST", "qty": 1, "id": "s1"})));
        let b = s.spawn(|| order(&hub, "web", "o1", "LAST", 1));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        println!("till: {} {}\nweb: {} {}", a.0, a.1, b.0, b.1);
        for (code, body) in [&a, &b] {
            if *code != 201 {
                assert_eq!(*code, 409, "{body}");
                assert_eq!(body["error"]["code"], "insufficient_rights", "{body}");
            }
        }
        (a.0, b.0)
    });
    let sold = [till_code, web_code].iter().filter(|c| **c == 201).count();
    assert_eq!(
        sold, 1,
        "exactly one sale: till {till_code}, web {web_code}"
    );
    // Who held the right sold it.
    assert_eq!(web_code == 201, at_web);
    if !at_web {
        // The web's refusal carries the borrow report: it asked the hub.
        let (code, body) = order(&hub, "web", "o1", "LAST", 1);
        assert_eq!(code, 409, "{body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("asked peers"), "{msg}");
    }

    // The link returns: every replica agrees on 0 on hand, no deficit.
    alone.terminate();
    let dt = Daemon::start(&till, pt, &[ph]);
    let web_dir = fleet.hub.join("channels/web");
    wait_for(
        "every replica agrees: 0 on hand, no deficit",
        || {
            let h = hub.rows_at("S1");
            let t = dt.rows_at("S1");
            let c = channel_rows(&web_dir, "LAST");
            [row(&h), row(&t), row(&c)] == [(0, 0); 3]
                && !h.is_empty()
                && !t.is_empty()
                && !c.is_empty()
        },
        || {
            format!(
                "hub {:?}\ntill {:?}\nweb {:?}",
                hub.rows_at("S1"),
                dt.rows_at("S1"),
                channel_rows(&web_dir, "LAST")
            )
        },
    );
    assert_eq!(held(&hub, "web", "LAST"), 0);
    if at_web {
        wait_for(
            "the web channel publishes 0",
            || rx.last("web", "LAST") == Some(0),
            || format!("{:?}", rx.got("web")),
        );
    }
    assert_eq!(rx.bad_signatures(), 0);
}

#[test]
fn the_last_unit_held_by_the_partitioned_till_is_sold_once() {
    last_unit_race(false);
}

#[test]
fn the_last_unit_granted_to_the_web_channel_is_sold_once() {
    last_unit_race(true);
}
