//! `stocksync bench channel`: a change to a channel's rights → the webhook
//! delivered at a local receiver, over real daemons on loopback.
//!
//! A fleet is made in a temporary directory (a hub, a web channel node
//! enrolled with `init --role channel --join`, a till); the hub daemon runs
//! the channel (real time, no coalescing window), the till daemon dials the
//! hub over QUIC. Timed one at a time: an online order posted to the hub's
//! API until the receiver has the new available, and a grant from the till to
//! the channel (till → hub → channel node over QUIC) until the receiver has
//! it. The baseline, in the same run: a plain HTTP POST round trip from this
//! process to the same receiver.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::bench_local::{hist, summary};

/// How long one awaited step may take.
const STEP: Duration = Duration::from_secs(30);

/// The newest available the receiver got, and how many requests.
#[derive(Default)]
struct Seen {
    available: Option<u64>,
    requests: u64,
}

/// A minimal HTTP/1.1 receiver on 127.0.0.1 (keep-alive, Content-Length bodies).
struct Receiver {
    addr: SocketAddr,
    seen: Arc<(Mutex<Seen>, Condvar)>,
}

fn serve_conn(stream: TcpStream, seen: &(Mutex<Seen>, Condvar)) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len.min(1 << 20)];
        r.read_exact(&mut body)?;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        {
            let mut s = seen.0.lock().unwrap_or_else(|e| e.into_inner());
            s.requests += 1;
            if let Some(a) = v["available"].as_u64() {
                s.available = Some(a);
            }
        }
        seen.1.notify_all();
        out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
    }
}

impl Receiver {
    fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let seen: Arc<(Mutex<Seen>, Condvar)> = Arc::default();
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve_conn(conn, &s);
                });
            }
        });
        Ok(Self { addr, seen })
    }

    /// Waits until the newest available is `want`.
    fn wait(&self, want: u64) -> Result<()> {
        let (m, c) = &*self.seen;
        let end = Instant::now() + STEP;
        let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
        while s.available != Some(want) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("the webhook never got {want} (newest {:?})", s.available);
            }
            s = c
                .wait_timeout(s, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        Ok(())
    }
}

/// `stocksync ARGS...` (this executable), which must succeed.
fn run(args: &[&str]) -> Result<String> {
    let out = Command::new(std::env::current_exe()?).args(args).output()?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn s(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", p.display()))
}

/// A daemon child process and its API.
struct Daemon {
    child: Child,
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Daemon {
    fn start(dir: &Path, listen: SocketAddr, extra: &[&str]) -> Result<Self> {
        let child = Command::new(std::env::current_exe()?)
            .args([
                "--data",
                s(dir)?,
                "node",
                "--api",
                "127.0.0.1:0",
                "--no-mdns",
            ])
            .args(["--listen", &listen.to_string()])
            .args(extra)
            .env("STOCKSYNC_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(STEP))
            .http_status_as_error(false)
            .build()
            .into();
        let mut d = Self {
            child,
            base: String::new(),
            token: String::new(),
            agent,
        };
        let end = Instant::now() + STEP;
        while Instant::now() < end {
            let info: Option<Value> = std::fs::read(dir.join("daemon.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(api) = info
                .filter(|i| i["pid"] == d.child.id())
                .and_then(|i| i["api"].as_str().map(str::to_string))
            {
                d.base = format!("http://{api}");
                d.token = std::fs::read_to_string(dir.join("api.token"))?
                    .trim()
                    .to_string();
                return Ok(d);
            }
            if let Some(st) = d.child.try_wait()? {
                bail!("the daemon in {} exited: {st}", dir.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("the daemon in {} did not start", dir.display())
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let mut r = match body {
            Some(b) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .content_type("application/json")
                .send(b.to_string())?,
            None if method == "get" => {
                self.agent.get(&url).header("Authorization", &auth).call()?
            }
            None => bail!("no body"),
        };
        let code = r.status().as_u16();
        let text = r.body_mut().read_to_string()?;
        Ok((code, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    fn post_ok(&self, path: &str, body: Value) -> Result<Value> {
        let (code, v) = self.call("post", path, Some(&body))?;
        if !(200..300).contains(&code) {
            bail!("POST {path}: {code} {v}");
        }
        Ok(v)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<SocketAddr> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?)
}

/// The fleet: hub, web channel node, till; the hub's configuration file.
fn make_fleet(root: &Path, hook: &str) -> Result<(PathBuf, PathBuf, PathBuf, String)> {
    let hub = root.join("hub");
    let web = hub.join("channels").join("web");
    let till = root.join("till-1");
    run(&[
        "fleet",
        "init",
        "--data",
        s(&hub)?,
        "--node",
        "hub",
        "--location",
        "HQ",
    ])?;
    for (dir, name, role) in [(&web, "web", "channel"), (&till, "till-1", "till")] {
        run(&[
            "init",
            "--data",
            s(dir)?,
            "--node",
            name,
            "--location",
            "S1",
            "--role",
            role,
            "--join",
            s(&hub)?,
        ])?;
    }
    let cfg = root.join("hub.toml");
    std::fs::write(
        &cfg,
        format!(
            "[channels]\n[[channels.channel]]\nid = \"web\"\npools = [{{ location = \"S1\" }}]\n\
             mode = {{ kind = \"realtime\", coalesce_ms = 0 }}\nurl = \"{hook}\"\n\
             secret = {{ inline = \"bench-secret\" }}\n"
        ),
    )?;
    let info: Value = serde_json::from_str(&run(&["info", "--data", s(&web)?, "--json"])?)?;
    let web_id = info["node_id"]
        .as_str()
        .ok_or_else(|| anyhow!("no node id"))?
        .to_string();
    Ok((hub, till, cfg, web_id))
}

fn record(h: &mut Histogram<u64>, t: Instant) -> Result<()> {
    h.record(t.elapsed().as_nanos() as u64)?;
    Ok(())
}

/// Runs the bench with `samples` timed changes per path; prints JSON or a table.
pub fn run_bench(samples: u64, json_out: bool) -> Result<()> {
    let root = std::env::temp_dir().join(format!(
        "stocksync-bench-channel-{}",
        super::events::fresh_id()?
    ));
    std::fs::create_dir_all(&root)?;
    let result = measure(&root, samples);
    let _ = std::fs::remove_dir_all(&root);
    let out = result?;
    if json_out {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

fn measure(root: &Path, samples: u64) -> Result<Value> {
    let rx = Receiver::start()?;
    let hook = format!("http://{}/hook", rx.addr);
    let (hub_dir, till_dir, cfg, web_id) = make_fleet(root, &hook)?;
    let (ph, pt) = (free_port()?, free_port()?);
    let hub = Daemon::start(&hub_dir, ph, &["--config", s(&cfg)?])?;
    let till = Daemon::start(&till_dir, pt, &["--peer", &ph.to_string()])?;
    let stock = 4 * samples + 100;
    till.post_ok(
        "/v1/events",
        json!({"kind": "receive", "sku": "BENCH", "qty": stock, "id": "r"}),
    )?;
    let mut available = 2 * samples + 10;
    till.post_ok(
        "/v1/events",
        json!({"kind": "grant", "sku": "BENCH", "qty": available, "to": web_id, "id": "g0"}),
    )?;
    rx.wait(available).context("the first grant is published")?;

    let warm = 10;
    let (mut order_h, mut answer_h, mut grant_h, mut base_h) = (hist(), hist(), hist(), hist());
    for i in 0..samples + warm {
        let t = Instant::now();
        hub.post_ok(
            "/v1/hub/channels/web/orders",
            json!({"id": format!("o{i}"), "sku": "BENCH", "qty": 1}),
        )?;
        let answered = t.elapsed();
        available -= 1;
        rx.wait(available)?;
        if i >= warm {
            record(&mut order_h, t)?;
            answer_h.record(answered.as_nanos() as u64)?;
        }
    }
    for i in 0..samples + warm {
        let t = Instant::now();
        till.post_ok(
            "/v1/events",
            json!({"kind": "grant", "sku": "BENCH", "qty": 1, "to": web_id, "id": format!("g{}", i + 1)}),
        )?;
        available += 1;
        rx.wait(available)?;
        if i >= warm {
            record(&mut grant_h, t)?;
        }
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(STEP))
        .build()
        .into();
    let body =
        json!({"channel": "web", "sku": "BENCH", "location": "S1", "available": 0, "sequence": 0})
            .to_string();
    for i in 0..samples + warm {
        let t = Instant::now();
        agent
            .post(&hook)
            .content_type("application/json")
            .send(body.as_str())?;
        if i >= warm {
            record(&mut base_h, t)?;
        }
    }
    let p50 = |h: &Histogram<u64>| h.value_at_quantile(0.5) as f64;
    let ratio = |h: &Histogram<u64>| p50(h) / p50(&base_h).max(1.0);
    let out = json!({
        "bench": "channel",
        "samples": samples,
        "coalesce_ms": 0,
        "online_order_to_webhook": summary(&order_h),
        "online_order_answer": summary(&answer_h),
        "till_grant_to_webhook_over_quic": summary(&grant_h),
        "baseline_http_post_round_trip": summary(&base_h),
        "p50_ratio_order_to_baseline": ratio(&order_h),
        "p50_ratio_grant_to_baseline": ratio(&grant_h),
    });
    drop(till);
    drop(hub);
    Ok(out)
}
