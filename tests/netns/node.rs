//! A discovery node as a child process in a host namespace, and its parent's view.
//!
//! The child is the test binary re-executed with `ip netns exec NS <binary>
//! --exact child_node`; [`CHILD_ENV`] tells it its part. It refuses to run in
//! its parent's network namespace, starts mDNS on `lan0` only, prints every
//! event as a JSON line after [`MARK`], and unregisters when its parent writes
//! `stop` (or closes its stdin).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use stocksync::discovery::mdns::{current_netns, MdnsConfig, MdnsDiscovery};
use stocksync::discovery::{Announcement, Discovery, DiscoveryEvent, DiscoveryStats};
use stocksync::fleet::FleetId;
use stocksync::{LocationId, NodeId, Role};

use super::{Host, Lan, HOST_IF};

/// The fleet of most test nodes.
pub const FLEET: FleetId = FleetId([0xf1; 32]);

/// Set in a child's environment: its part, as `NODEHEX,FLEETHEX,LOC,ROLE,PARENT_NETNS,IPV6`.
const CHILD_ENV: &str = "STOCKSYNC_DISCOVERY_CHILD";
/// Prefix of the lines a child reports on.
pub const MARK: &str = "SSDISC ";
/// The port every node announces.
pub const PORT: u16 = 7401;
/// A child stops by itself after this long, whatever the parent does.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn emit(v: Value) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{v}").unwrap();
    out.flush().unwrap();
}

fn stats_json(s: DiscoveryStats) -> Value {
    json!({
        "found": s.found, "updated": s.updated, "lost": s.lost,
        "ignored_self": s.ignored_self, "ignored_other_fleet": s.ignored_other_fleet,
        "malformed": s.malformed, "over_capacity": s.over_capacity,
    })
}

fn event_json(e: &DiscoveryEvent) -> Value {
    let (ev, peer) = match e {
        DiscoveryEvent::Found(p) => ("found", p),
        DiscoveryEvent::Updated(p) => ("updated", p),
        DiscoveryEvent::Lost(key) => {
            let node = match key {
                stocksync::discovery::PeerKey::Node(n) => n.to_hex(),
                stocksync::discovery::PeerKey::Configured(s) => s.clone(),
            };
            return json!({"ev": "lost", "t": now_ms(), "node": node});
        }
    };
    let claim = peer.claim.as_ref().expect("mDNS peers carry a claim");
    json!({
        "ev": ev, "t": now_ms(), "node": claim.node.to_hex(),
        "addrs": peer.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "loc": claim.location.as_str(), "role": claim.role.as_str(), "fleet": claim.fleet.to_hex(),
    })
}

/// The child's body: runs only when the parent set [`CHILD_ENV`]; a no-op otherwise.
pub fn run_child() {
    let Ok(part) = std::env::var(CHILD_ENV) else {
        return;
    };
    let f: Vec<&str> = part.split(',').collect();
    assert_eq!(f.len(), 6, "bad {CHILD_ENV}: {part}");
    // f[4]: the namespace the parent runs in (the initial one): never run mDNS there.
    let here = current_netns().expect("read /proc/self/ns/net");
    assert_ne!(
        here, f[4],
        "refusing to run mDNS in the parent's network namespace"
    );
    let me = NodeId::from_hex(f[0]).unwrap();
    let fleet = FleetId::from_hex(f[1]).unwrap();
    let announcement = Announcement {
        node: me,
        location: LocationId::new(f[2]).unwrap(),
        role: f[3].parse::<Role>().unwrap(),
        fleet,
        port: PORT,
    };
    emit(json!({"ev": "started", "t": now_ms()}));
    let cfg = MdnsConfig {
        interfaces: vec![HOST_IF.into()],
        ipv6: f[5] == "1",
        max_peers: 64,
        refuse_netns: Some(f[4].to_string()),
    };
    let mut d = MdnsDiscovery::start(me, fleet, &cfg).expect("start mDNS");
    d.announce(&announcement).expect("announce");

    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if line.map_or(true, |l| l.trim() == "stop") {
                break;
            }
        }
        let _ = stop_tx.send(());
    });
    let deadline = Instant::now() + CHILD_LIFETIME;
    while Instant::now() < deadline && matches!(stop_rx.try_recv(), Err(mpsc::TryRecvError::Empty))
    {
        if let Some(e) = d.wait_event(Duration::from_millis(50)) {
            emit(event_json(&e));
        }
    }
    d.shutdown().expect("shutdown");
    emit(json!({"ev": "stopped", "t": now_ms(), "stats": stats_json(d.stats())}));
}

/// What a child node is told to be.
#[derive(Clone, Copy)]
pub struct Part {
    pub node: NodeId,
    pub fleet: FleetId,
    pub loc: &'static str,
    pub role: &'static str,
    pub ipv6: bool,
}

/// A till of `FLEET` at `loc`, IPv4 only.
pub fn till(node: NodeId, loc: &'static str) -> Part {
    Part {
        node,
        fleet: FLEET,
        loc,
        role: "till",
        ipv6: false,
    }
}

/// A child node seen from the parent.
pub struct ChildNode {
    /// Its name in the test's output.
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    /// Every line received so far.
    pub seen: Vec<Value>,
}

impl ChildNode {
    pub fn spawn(lan: &Lan, host: &Host, name: &str, part: Part) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut child = lan
            .command(host, &exe)
            .args(["--exact", "child_node", "--nocapture", "--test-threads=1"])
            .env(
                CHILD_ENV,
                format!(
                    "{},{},{},{},{},{}",
                    part.node.to_hex(),
                    part.fleet.to_hex(),
                    part.loc,
                    part.role,
                    current_netns().unwrap(),
                    u8::from(part.ipv6)
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let tag = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print "test child_node ... " before the first line.
                if let Some(j) = line.find(MARK).map(|i| &line[i + MARK.len()..]) {
                    match serde_json::from_str::<Value>(j) {
                        Ok(v) => {
                            if tx.send(v).is_err() {
                                break;
                            }
                        }
                        Err(e) => eprintln!("{tag}: bad line {line:?}: {e}"),
                    }
                }
            }
        });
        ChildNode {
            name: name.into(),
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line (seen before or arriving within `timeout`) matching `pred`.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        self.wait_from(0, timeout, pred)
    }

    /// The first line from the `from`-th on (arriving within `timeout`) matching `pred`.
    pub fn wait_from(
        &mut self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        let mut checked = from.min(self.seen.len());
        loop {
            if let Some(v) = self.seen[checked..].iter().find(|v| pred(v)) {
                return Some(v.clone());
            }
            checked = self.seen.len();
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    println!("  {}: {v}", self.name);
                    self.seen.push(v);
                }
                Err(_) => return None,
            }
        }
    }

    /// Collects lines for `d`.
    pub fn collect(&mut self, d: Duration) {
        let _ = self.wait_for(d, |_| false);
    }

    /// Asks the child to stop; its `stopped` line (with stats).
    pub fn stop(&mut self) -> Value {
        if let Some(mut s) = self.stdin.take() {
            let _ = s.write_all(b"stop\n");
        }
        let stopped = self
            .wait_for(Duration::from_secs(10), |v| v["ev"] == "stopped")
            .unwrap_or_else(|| panic!("{} did not stop", self.name));
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{} exited with {status}", self.name);
        stopped
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn id(b: u8) -> NodeId {
    NodeId([b; 32])
}

pub fn is(ev: &'static str, node: NodeId) -> impl Fn(&Value) -> bool {
    let hex = node.to_hex();
    move |v| v["ev"] == ev && v["node"] == hex.as_str()
}

pub fn addrs(v: &Value) -> Vec<String> {
    v["addrs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
