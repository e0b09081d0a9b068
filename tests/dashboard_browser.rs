//! The hub's HTTP API and its dashboard, on a hub daemon and a till daemon
//! over loopback QUIC. The browser test drives Debian's `chromium` through
//! `chromedriver` (W3C WebDriver over HTTP): the page loads, a sale on the
//! till shows within 2 s, the till stopped shows offline. Without chromium or
//! chromedriver it passes with a message, unless `STOCKSYNC_BROWSER=1`.
//! `STOCKSYNC_DASHBOARD_PNG=<file>` saves a screenshot of the page there.

#[path = "daemon_net/support.rs"]
#[allow(dead_code)]
mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{free_port, node_id, wait_for, Daemon, Fleet, DEADLINE};

/// A hub and one till linked to it; the till received 10 SHOE-42.
fn hub_and_till() -> (Fleet, Daemon, Daemon, String) {
    let fleet = Fleet::new("hub", "HQ");
    let till = fleet.join("till-1", "S1");
    let till_id = node_id(&till);
    let (ph, pt) = (free_port(), free_port());
    let hub = Daemon::start(&fleet.hub, ph, &[]);
    let t = Daemon::start(&till, pt, &[ph]);
    wait_for(
        "the till links the hub",
        || hub.connected().contains(&till_id),
        || format!("{}\n{}", hub.status(), t.log()),
    );
    t.event(json!({"kind": "receive", "sku": "SHOE-42", "qty": 10, "id": "r1"}));
    (fleet, hub, t, till_id)
}

/// The hub's row of `name` in `GET /v1/hub/nodes`.
fn node_row(hub: &Daemon, name: &str) -> Value {
    let (code, v) = hub.get("/v1/hub/nodes");
    assert_eq!(code, 200, "{v}");
    v["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|r| r["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .build()
        .into()
}

#[test]
fn the_hub_api_answers_and_a_till_does_not() {
    let (_fleet, hub, till, till_id) = hub_and_till();
    wait_for(
        "the hub's aggregate sees the receipt",
        || hub.get("/v1/hub/stock/SHOE-42").1["total_on_hand"] == 10,
        || hub.get("/v1/hub/stock/SHOE-42").1.to_string(),
    );
    till.event(json!({"kind": "sell", "sku": "SHOE-42", "qty": 3, "id": "s1"}));
    wait_for(
        "the hub sees the sale",
        || hub.get("/v1/hub/stock?sku_prefix=SHOE").1["skus"][0]["total_on_hand"] == 7,
        || hub.get("/v1/hub/stock").1.to_string(),
    );
    let (code, sku) = hub.get("/v1/hub/stock/SHOE-42");
    assert_eq!(code, 200, "{sku}");
    assert_eq!(sku["per_location"][0]["location"], "S1", "{sku}");
    assert_eq!(sku["per_location"][0]["on_hand"], 7, "{sku}");
    assert_eq!(sku["rights"][0]["node"], till_id, "{sku}");
    assert_eq!(sku["rights"][0]["rights"], 7, "{sku}");
    // The event stream: a snapshot at once (up to 250 ms old: read on until
    // it has the sale), then each change on the same stream. A stream that
    // stops sending fails at the agent's 30 s timeout.
    let agent = agent();
    let mut r = agent
        .get(format!("{}/v1/hub/events", hub.base))
        .header("Authorization", format!("Bearer {}", hub.token))
        .call()
        .expect("events");
    assert_eq!(r.status().as_u16(), 200);
    let mut lines = BufReader::new(r.body_mut().as_reader()).lines();
    let mut next_snapshot = |want: &dyn Fn(&Value) -> bool, what: &str| -> Value {
        lines
            .by_ref()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("data:").map(|d| d.trim().to_string()))
            .map(|d| serde_json::from_str::<Value>(&d).expect("snapshot JSON"))
            .find(|s| want(s))
            .unwrap_or_else(|| panic!("the stream ended before {what}"))
    };
    let snap = next_snapshot(
        &|s| s["fleet"]["stock"]["rows"][0]["on_hand"]["S1"] == 7,
        "the sale",
    );
    assert_eq!(
        snap["fleet"]["stock"]["rows"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(snap["channels"], Value::Null, "{snap}");

    // Paging, bounds and typed errors.
    till.event(json!({"kind": "receive", "sku": "SHOE-43", "qty": 1, "id": "r2"}));
    wait_for(
        "the hub sees SHOE-43",
        || hub.get("/v1/hub/stock/SHOE-43").0 == 200,
        || hub.get("/v1/hub/stock").1.to_string(),
    );
    let (_, page) = hub.get("/v1/hub/stock?limit=1");
    assert_eq!(page["skus"][0]["sku"], "SHOE-42", "{page}");
    assert_eq!(page["next"], "SHOE-42", "{page}");
    let (_, page) = hub.get("/v1/hub/stock?limit=1&after=SHOE-42");
    assert_eq!(page["skus"][0]["sku"], "SHOE-43", "{page}");
    assert_eq!(page["next"], Value::Null, "{page}");
    assert_eq!(hub.get("/v1/hub/stock?after=SHOE-43").1["skus"], json!([]));
    let snap = next_snapshot(
        &|s| s["fleet"]["stock"]["rows"][1]["sku"] == "SHOE-43",
        "the SKU added",
    );
    assert_eq!(
        snap["fleet"]["stock"]["rows"][1]["on_hand"]["S1"], 1,
        "{snap}"
    );
    assert_eq!(
        hub.get("/v1/hub/stock?sku_prefix=SHOE-43").1["skus"][0]["total_on_hand"],
        1
    );
    for bad in [
        "/v1/hub/stock?limit=0",
        "/v1/hub/stock?limit=5000",
        "/v1/hub/stock?bogus=1",
        "/v1/hub/transfers?state=lost",
    ] {
        let (code, v) = hub.get(bad);
        assert_eq!(
            (code, &v["error"]["code"]),
            (422, &json!("invalid_input")),
            "{bad}: {v}"
        );
    }
    let (code, v) = hub.get("/v1/hub/stock/NEVER-SEEN");
    assert_eq!(
        (code, &v["error"]["code"]),
        (404, &json!("not_found")),
        "{v}"
    );
    let (code, v) = hub.get("/v1/hub/deficits");
    assert_eq!((code, &v["count"]), (200, &json!(0)), "{v}");
    let (code, v) = hub.get("/v1/hub/transfers?state=in_transit");
    assert_eq!((code, &v["legs"]), (200, &json!([])), "{v}");
    let row = node_row(&hub, "till-1");
    assert_eq!(row["online"], true, "{row}");
    assert_eq!(row["offline_exposure"], 0, "{row}");
    assert_eq!(node_row(&hub, "hub")["role"], "hub");
    // HQ's rebalance goes the node's way: a dry run of a location.
    let (code, v) = hub.post_to(
        "/v1/hub/rebalance",
        json!({"location": "S1", "dry_run": true, "wait_ms": 100}),
    );
    assert_eq!(code, 200, "{v}");
    // The hub's metrics.
    let metrics = agent
        .get(format!("{}/metrics", hub.base))
        .header("Authorization", format!("Bearer {}", hub.token))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("text");
    assert!(metrics.contains("stocksync_hub_skus 2\n"), "{metrics}");
    assert!(
        metrics.contains("stocksync_hub_nodes{state=\"online\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("stocksync_hub_store_failures_total 0\n"),
        "{metrics}"
    );

    let unauth = agent
        .get(format!("{}/v1/hub/events", hub.base))
        .call()
        .expect("events");
    assert_eq!(unauth.status().as_u16(), 401);

    // The page is public; `?token=` sets the cookie, which reads but never writes.
    let page = agent.get(format!("{}/", hub.base)).call().expect("page");
    assert_eq!(page.status().as_u16(), 200);
    let r = agent
        .get(format!("{}/?token={}", hub.base, hub.token))
        .call()
        .expect("token");
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("pair").to_string();
    let read = agent
        .get(format!("{}/v1/hub/nodes", hub.base))
        .header("Cookie", &pair)
        .call()
        .expect("nodes");
    assert_eq!(read.status().as_u16(), 200);
    let write = agent
        .post(format!("{}/v1/hub/rebalance", hub.base))
        .header("Cookie", &pair)
        .content_type("application/json")
        .send(r#"{"location":"S1","dry_run":true}"#)
        .expect("rebalance");
    assert_eq!(write.status().as_u16(), 401);

    // A till is no hub.
    for path in ["/v1/hub/nodes", "/v1/hub/stock", "/"] {
        let (code, v) = till.get(path);
        assert_eq!(
            (code, &v["error"]["code"]),
            (409, &json!("not_a_hub")),
            "{path}: {v}"
        );
    }

    // The till stopped: offline, its rights (7 + 1) its offline exposure.
    assert_eq!(till.terminate(), Some(0));
    wait_for(
        "the hub shows the till offline",
        || node_row(&hub, "till-1")["online"] == false,
        || node_row(&hub, "till-1").to_string(),
    );
    assert_eq!(node_row(&hub, "till-1")["offline_exposure"], 8);
    assert_eq!(hub.get("/v1/hub/nodes").1["offline_exposure"], 8);

    // SIGTERM with the event stream still open: the hub ends the stream, so
    // the API closes without waiting out its 10 s grace period.
    let log = hub.dir.with_extension("log");
    assert_eq!(hub.terminate(), Some(0));
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(log.contains("every request answered"), "{log}");
}

/// `name` on the PATH, if there.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A chromedriver process and one headless chromium session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(driver: &Path, chromium: &Path) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut b = Browser {
            driver: child,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            agent: agent(),
            _profile: profile,
        };
        wait_for(
            "chromedriver answers",
            || {
                b.agent
                    .get(format!("{}/status", b.base))
                    .call()
                    .is_ok_and(|r| r.status().as_u16() == 200)
            },
            String::new,
        );
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", b._profile.path().display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {"binary": chromium.to_str(), "args": args}
        }}});
        let v = b.call("post", "/session", Some(caps));
        b.session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let r = match method {
            "post" => self
                .agent
                .post(url)
                .content_type("application/json")
                .send(body.unwrap_or(json!({})).to_string()),
            "delete" => self.agent.delete(url).call(),
            _ => self.agent.get(url).call(),
        };
        let text = r
            .expect("WebDriver request")
            .body_mut()
            .read_to_string()
            .expect("WebDriver answer");
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("WebDriver answer: {text}"))
    }

    fn go(&self, url: &str) {
        let path = format!("/session/{}/url", self.session);
        self.call("post", &path, Some(json!({ "url": url })));
    }

    /// Runs `script` in the page; its return value.
    fn eval(&self, script: &str) -> Value {
        let path = format!("/session/{}/execute/sync", self.session);
        self.call("post", &path, Some(json!({"script": script, "args": []})))["value"].clone()
    }

    /// The text of the first element matching `css` (null: none).
    fn text(&self, css: &str) -> Value {
        let css = serde_json::to_string(css).expect("string");
        self.eval(&format!(
            "const e = document.querySelector({css}); return e ? e.textContent : null;"
        ))
    }

    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let path = format!("/session/{}/screenshot", self.session);
        let v = self.call("get", &path, None);
        base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().expect("screenshot"))
            .expect("base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.agent.delete(format!("{}{path}", self.base)).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_dashboard_shows_a_sale_and_a_till_going_offline() {
    let required = std::env::var("STOCKSYNC_BROWSER").is_ok_and(|v| v == "1");
    let tools = (
        which("chromedriver"),
        which("chromium").or_else(|| which("chromium-browser")),
    );
    let (Some(driver), Some(chromium)) = tools else {
        assert!(
            !required,
            "STOCKSYNC_BROWSER=1 but chromium or chromedriver is missing"
        );
        eprintln!("skipped: chromium and chromedriver are needed (apt-get install chromium chromium-driver)");
        return;
    };
    let (_fleet, hub, till, _) = hub_and_till();
    let browser = Browser::start(&driver, &chromium);
    browser.go(&format!("{}/?token={}", hub.base, hub.token));
    let cell = r#"td[data-sku="SHOE-42"][data-location="S1"]"#;
    let till_state = r#"tr[data-node="till-1"] td.state"#;
    wait_for(
        "the page shows the receipt and the till online",
        || browser.text(cell) == "10" && browser.text(till_state) == "online",
        || browser.eval("return document.body.innerText;").to_string(),
    );

    // A sale on the till: on the page within 2 s.
    till.event(json!({"kind": "sell", "sku": "SHOE-42", "qty": 3, "id": "s1"}));
    let sold = Instant::now();
    while browser.text(cell) != "7" {
        assert!(
            sold.elapsed() < Duration::from_secs(2),
            "the sale is not on the page after 2 s: {}",
            browser.eval("return document.body.innerText;")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "sale on the page {:?} after the till answered",
        sold.elapsed()
    );
    if let Some(png) = std::env::var_os("STOCKSYNC_DASHBOARD_PNG") {
        std::fs::write(&png, browser.screenshot()).expect("write the screenshot");
    }

    // The till stopped: offline on the page, its rights the offline exposure.
    assert_eq!(till.terminate(), Some(0));
    let end = Instant::now() + DEADLINE;
    while browser.text(till_state) != "offline" {
        assert!(
            Instant::now() < end,
            "the till is not offline on the page: {}",
            browser.eval("return document.body.innerText;")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let row = browser.text(r#"tr[data-node="till-1"]"#);
    assert!(row.as_str().is_some_and(|r| r.ends_with('7')), "{row}");
}
