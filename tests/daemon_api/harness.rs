//! Runs the real `stocksync node` on a fresh data directory, API on
//! 127.0.0.1:0 (the bound address read from `daemon.json`), and talks to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_stocksync");
/// How long the daemon may take to start or stop.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `stocksync --data DIR ARGS...` to completion.
pub fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data")
        .arg(dir)
        .args(args)
        .output()
        .expect("run stocksync")
}

/// A fresh node (till-1 at S1) in a temporary directory.
pub fn fresh() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("n");
    let out = Command::new(BIN)
        .args(["init", "--data"])
        .arg(&dir)
        .args(["--node", "till-1", "--location", "S1", "--role", "till"])
        .output()
        .expect("init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (tmp, dir)
}

/// A running daemon; killed on drop if still running.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Its data directory.
    pub dir: PathBuf,
    /// `http://ADDR`.
    pub base: String,
    /// The bearer token.
    pub token: String,
    agent: ureq::Agent,
}

impl Daemon {
    /// Starts `stocksync node` on `dir` and waits until its runtime file names
    /// this process and the API answers health.
    pub fn start(dir: &Path) -> Daemon {
        Self::start_with(dir, &[])
    }

    /// Like [`Daemon::start`], with `extra` arguments after `node` (e.g. `--config FILE`).
    pub fn start_with(dir: &Path, extra: &[&str]) -> Daemon {
        let log = std::fs::File::create(dir.with_extension("log")).expect("log file");
        let child = Command::new(BIN)
            .arg("--data")
            .arg(dir)
            .args(["node", "--api", "127.0.0.1:0", "--no-mdns"])
            .args(extra)
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
                if d.get("/v1/health", None).0 == 200 {
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

    /// `GET path` with `token` (none: no Authorization header).
    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        Self::answer(req.call())
    }

    /// `POST /v1/events` with `body` and `token`.
    pub fn post_with(&self, body: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.agent.post(format!("{}/v1/events", self.base));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        Self::answer(req.content_type("application/json").send(body))
    }

    /// `POST /v1/events` with the right token; `None` when no answer came
    /// (the connection was refused or closed).
    pub fn try_post(&self, body: &str) -> Option<u16> {
        let mut r = self
            .agent
            .post(format!("{}/v1/events", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .content_type("application/json")
            .send(body)
            .ok()?;
        let _ = r.body_mut().read_to_string();
        Some(r.status().as_u16())
    }

    /// `POST /v1/events` with the right token.
    pub fn post(&self, body: &str) -> (u16, Value) {
        self.post_with(body, Some(&self.token.clone()))
    }

    /// The stock rows of SKU `sku` as the API gives them.
    pub fn stock(&self, sku: &str) -> Value {
        let (status, rows) = self.get(&format!("/v1/stock/{sku}"), Some(&self.token.clone()));
        assert_eq!(status, 200, "{rows}");
        rows
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns its code.
    pub fn terminate(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
        self.wait()
    }

    /// Waits (bounded) for the process to exit; returns its code.
    pub fn wait(&mut self) -> Option<i32> {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(Instant::now() < end, "daemon did not exit: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// The `on_hand` of the single row in `rows`.
pub fn on_hand(rows: &Value) -> i64 {
    rows[0]["on_hand"].as_i64().expect("one row with on_hand")
}

/// The event ids in the journal of `sku`, read from the database (no lock needed).
pub fn history_ids(dir: &Path, sku: &str) -> Vec<String> {
    let out = cli(dir, &["history", sku, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).expect("history JSON");
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}
