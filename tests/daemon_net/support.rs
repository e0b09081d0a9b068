//! Real `stocksync node` daemons on loopback: a fleet made with the command
//! line, daemons started with chosen peers, their API and status.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_stocksync");
/// How long anything awaited may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `stocksync ARGS...` to completion.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run stocksync")
}

/// Runs `stocksync ARGS...`, which must succeed; its standard output.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// A path as `&str`.
pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A free loopback UDP port: bound, read, released.
pub fn free_port() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr")
}

/// A fleet made by `fleet init` in a temporary directory, and its members.
pub struct Fleet {
    /// Holds every directory.
    pub tmp: tempfile::TempDir,
    /// The hub's data directory.
    pub hub: PathBuf,
}

impl Fleet {
    /// `fleet init` of a hub named `hub_name` at `location`.
    pub fn new(hub_name: &str, location: &str) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let hub = tmp.path().join(hub_name);
        ok(&[
            "fleet",
            "init",
            "--data",
            p(&hub),
            "--node",
            hub_name,
            "--location",
            location,
        ]);
        Self { tmp, hub }
    }

    /// A till named `name` at `location`, enrolled at once (`init --join`).
    pub fn join(&self, name: &str, location: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        ok(&[
            "init",
            "--data",
            p(&dir),
            "--node",
            name,
            "--location",
            location,
            "--role",
            "till",
            "--join",
            p(&self.hub),
        ]);
        dir
    }
}

/// A running daemon; killed (SIGKILL) on drop if still running.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Its data directory.
    pub dir: PathBuf,
    /// `http://ADDR` of its API.
    pub base: String,
    /// The bearer token.
    pub token: String,
    agent: ureq::Agent,
}

impl Daemon {
    /// Starts `stocksync node` on `dir` listening on `listen` and dialling
    /// `peers`; waits until its API answers.
    pub fn start(dir: &Path, listen: SocketAddr, peers: &[SocketAddr]) -> Daemon {
        Self::start_with(dir, listen, peers, &[])
    }

    /// [`Daemon::start`] with `extra` arguments to `stocksync node` (e.g. `--config FILE`).
    pub fn start_with(
        dir: &Path,
        listen: SocketAddr,
        peers: &[SocketAddr],
        extra: &[&str],
    ) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.with_extension("log"))
            .expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.arg("--data")
            .arg(dir)
            .args(["node", "--api", "127.0.0.1:0", "--no-mdns", "--listen"])
            .arg(listen.to_string())
            .args(extra);
        for peer in peers {
            cmd.arg("--peer").arg(peer.to_string());
        }
        let child = cmd
            .env("STOCKSYNC_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut d = Daemon {
            child,
            dir: dir.to_path_buf(),
            base: String::new(),
            token: String::new(),
            agent,
        };
        let end = Instant::now() + DEADLINE;
        loop {
            assert!(Instant::now() < end, "daemon did not start: {}", d.log());
            if let Some(status) = d.child.try_wait().expect("try_wait") {
                panic!("daemon exited with {status}: {}", d.log());
            }
            let info: Option<Value> = std::fs::read(dir.join("daemon.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(info) = info.filter(|i| i["pid"] == d.child.id()) {
                d.base = format!("http://{}", info["api"].as_str().expect("api"));
                d.token = std::fs::read_to_string(dir.join("api.token"))
                    .expect("token")
                    .trim()
                    .to_string();
                if d.get("/v1/health").0 == 200 {
                    return d;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
        let mut r = r.expect("HTTP request");
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// `GET path` with the token.
    pub fn get(&self, path: &str) -> (u16, Value) {
        let req = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token));
        Self::answer(req.call())
    }

    /// `POST /v1/events` with `body`: the status and the answer.
    pub fn post(&self, body: Value) -> (u16, Value) {
        let req = self
            .agent
            .post(format!("{}/v1/events", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .content_type("application/json");
        Self::answer(req.send(body.to_string()))
    }

    /// `POST path` with `body`; the status and the answer.
    #[allow(dead_code)] // used by some of the crates that include this file
    pub fn post_to(&self, path: &str, body: Value) -> (u16, Value) {
        let req = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .content_type("application/json");
        Self::answer(req.send(body.to_string()))
    }

    /// `POST /v1/events` with `body`; must answer 2xx; the answer.
    pub fn event(&self, body: Value) -> Value {
        let (status, v) = self.post(body);
        assert!((200..300).contains(&status), "{status}: {v}");
        v
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Value {
        let (status, v) = self.get("/v1/status");
        assert_eq!(status, 200, "{v}");
        v
    }

    /// The on-hand count of `sku` at `location` as this node sees it (0 if no row).
    pub fn on_hand(&self, sku: &str, location: &str) -> i64 {
        let (status, rows) = self.get(&format!("/v1/stock/{sku}"));
        assert_eq!(status, 200, "{rows}");
        rows.as_array()
            .expect("rows")
            .iter()
            .find(|r| r["location"] == location)
            .and_then(|r| r["on_hand"].as_i64())
            .unwrap_or(0)
    }

    /// The stock rows at `location`, all SKUs.
    pub fn rows_at(&self, location: &str) -> Vec<Value> {
        let (status, rows) = self.get("/v1/stock");
        assert_eq!(status, 200, "{rows}");
        rows.as_array()
            .expect("rows")
            .iter()
            .filter(|r| r["location"] == location)
            .cloned()
            .collect()
    }

    /// The node ids of the peers connected, per the status.
    pub fn connected(&self) -> Vec<String> {
        self.status()["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .filter(|p| p["connected"] == true)
            .filter_map(|p| p["node_id"].as_str().map(str::to_string))
            .collect()
    }

    /// The refusals the transport logged, per the status.
    pub fn refusals(&self) -> Vec<Value> {
        self.status()["network"]["refusals"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns its code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(Instant::now() < end, "daemon did not exit: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The node id of the node in `dir`.
pub fn node_id(dir: &Path) -> String {
    let v: Value = serde_json::from_str(&ok(&["info", "--data", p(dir), "--json"])).expect("JSON");
    v["node_id"].as_str().expect("node_id").to_string()
}

/// Polls `f` every 10 ms until it is true; panics with `what` (and `context()`) after [`DEADLINE`].
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool, context: impl Fn() -> String) {
    let end = Instant::now() + DEADLINE;
    while !f() {
        assert!(
            Instant::now() < end,
            "timed out after {DEADLINE:?} waiting for: {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
