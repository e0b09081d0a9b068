//! A LAN of network namespaces for tests that need real multicast.
//!
//! A "switch" namespace holds a Linux bridge; each host is a namespace with
//! `lo` up and a veth `lan0` whose other end is a port of the bridge, numbered
//! from 10.77.0.10/24. Nothing is created in, or sent from, the initial
//! namespace: every `ip` command runs with `-n NS` or inside `ip netns exec`.
//! Names carry the process id and a counter, so runs never collide; dropping
//! the [`Lan`] (also while unwinding from a panic) deletes every namespace it
//! made, and a new `Lan` removes ones left by dead processes.
//!
//! Tests using it run only when `STOCKSYNC_NETNS=1` and the process is root;
//! otherwise [`enabled`] prints why and the test passes.
#![allow(dead_code)]

pub mod node;

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Prefix of every namespace this harness creates.
const PREFIX: &str = "ssdisc";

/// The hosts' /24.
pub const SUBNET: [u8; 3] = [10, 77, 0];

/// The mDNS IPv4 group 224.0.0.251 as /proc/net/igmp writes it.
pub const MDNS_GROUP_HEX: &str = "FB0000E0";

/// The host-side interface name in every host namespace.
pub const HOST_IF: &str = "lan0";

static NEXT_LAN: AtomicUsize = AtomicUsize::new(0);

/// Whether namespace tests may run; prints the reason when they may not.
pub fn enabled(test: &str) -> bool {
    if std::env::var("STOCKSYNC_NETNS").as_deref() != Ok("1") {
        println!(
            "{test}: skipped (set STOCKSYNC_NETNS=1, as root, to run the network-namespace tests)"
        );
        return false;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("{test}: skipped (STOCKSYNC_NETNS=1 but not root: namespaces need root)");
        return false;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        println!("{test}: skipped (the `ip` command of iproute2 is missing)");
        return false;
    }
    true
}

/// Whether `nft` is installed (the partition helpers need it).
pub fn nft_available() -> bool {
    Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a command and fails with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> std::io::Result<String> {
    run_input(program, args, None)
}

fn run_input(program: &str, args: &[&str], input: Option<&str>) -> std::io::Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One host of the LAN.
#[derive(Clone, Debug)]
pub struct Host {
    /// Its namespace.
    pub ns: String,
    /// Its address on `lan0`.
    pub ip: Ipv4Addr,
    /// Its port on the bridge, in the switch namespace.
    pub port: String,
}

/// A bridge in a switch namespace and the host namespaces plugged into it.
pub struct Lan {
    name: String,
    switch: String,
    namespaces: Vec<String>,
    hosts: usize,
}

impl Lan {
    /// A switch namespace with a bridge `br0` (multicast snooping off: it floods).
    pub fn new() -> std::io::Result<Lan> {
        remove_stale();
        let name = format!(
            "{PREFIX}{}x{}",
            std::process::id(),
            NEXT_LAN.fetch_add(1, Ordering::Relaxed)
        );
        let switch = format!("{name}sw");
        let mut lan = Lan {
            name,
            switch: switch.clone(),
            namespaces: Vec::new(),
            hosts: 0,
        };
        lan.add_ns(&switch)?;
        run(
            "ip",
            &[
                "-n",
                &switch,
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
        )?;
        run("ip", &["-n", &switch, "link", "set", "br0", "up"])?;
        Ok(lan)
    }

    fn add_ns(&mut self, ns: &str) -> std::io::Result<()> {
        run("ip", &["netns", "add", ns])?;
        self.namespaces.push(ns.to_string());
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// A new host namespace with `lan0` on the bridge at the next address.
    pub fn add_host(&mut self) -> std::io::Result<Host> {
        let i = self.hosts;
        self.hosts += 1;
        let ns = format!("{}h{i}", self.name);
        let port = format!("p{i}");
        let ip = Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 10 + i as u8);
        self.add_ns(&ns)?;
        let sw = self.switch.clone();
        run(
            "ip",
            &[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", HOST_IF, "netns",
                &ns,
            ],
        )?;
        run(
            "ip",
            &["-n", &sw, "link", "set", &port, "master", "br0", "up"],
        )?;
        run(
            "ip",
            &[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                HOST_IF,
            ],
        )?;
        // No duplicate address detection: the IPv6 link-local address is usable
        // (and announced) at once instead of tentative for a second or more.
        run(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{HOST_IF}.accept_dad=0"),
            ],
        )?;
        run("ip", &["-n", &ns, "link", "set", HOST_IF, "up"])?;
        Ok(Host { ns, ip, port })
    }

    /// A second interface `side0` (10.78.0.1/24, IPv6 off) on `host`, wired to
    /// `spy0` in a spy namespace whose ingress counts IGMP and mDNS packets
    /// (needs nft). Returns the spy namespace.
    pub fn add_spy(&mut self, host: &Host) -> std::io::Result<String> {
        let spy = format!("{}spy{}", self.name, self.namespaces.len());
        self.add_ns(&spy)?;
        run(
            "ip",
            &[
                "-n", &spy, "link", "add", "spy0", "type", "veth", "peer", "name", "side0",
                "netns", &host.ns,
            ],
        )?;
        for (ns, dev) in [(&spy, "spy0"), (&host.ns, "side0")] {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
                ],
            )?;
        }
        run(
            "ip",
            &[
                "-n",
                &host.ns,
                "addr",
                "add",
                "10.78.0.1/24",
                "dev",
                "side0",
            ],
        )?;
        run(
            "ip",
            &["-n", &spy, "addr", "add", "10.78.0.2/24", "dev", "spy0"],
        )?;
        run_input(
            "ip",
            &["netns", "exec", &spy, "nft", "-f", "-"],
            Some(
                "table netdev spy {\n chain in {\n  type filter hook ingress device \"spy0\" priority 0;\n  \
                 ip protocol igmp counter\n  udp dport 5353 counter\n }\n}\n",
            ),
        )?;
        run("ip", &["-n", &spy, "link", "set", "spy0", "up"])?;
        run("ip", &["-n", &host.ns, "link", "set", "side0", "up"])?;
        Ok(spy)
    }

    /// The (IGMP, mDNS) packet counts the spy namespace `spy` received so far.
    pub fn spy_counts(&self, spy: &str) -> std::io::Result<(u64, u64)> {
        let out = run(
            "ip",
            &[
                "netns", "exec", spy, "nft", "list", "table", "netdev", "spy",
            ],
        )?;
        let count = |what: &str| {
            out.lines()
                .find(|l| l.contains(what))
                .and_then(|l| l.split("packets ").nth(1))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        Ok((count("igmp"), count("5353")))
    }

    /// `host`'s IPv4 multicast memberships, as (device, group in /proc/net/igmp hex).
    pub fn igmp_groups(&self, host: &Host) -> std::io::Result<Vec<(String, String)>> {
        let text = run("ip", &["netns", "exec", &host.ns, "cat", "/proc/net/igmp"])?;
        let mut dev = String::new();
        let mut out = Vec::new();
        for line in text.lines().skip(1) {
            if line.starts_with('\t') {
                if let Some(group) = line.split_whitespace().next() {
                    out.push((dev.clone(), group.to_string()));
                }
            } else if let Some(name) = line.split_whitespace().nth(1) {
                dev = name.to_string();
            }
        }
        Ok(out)
    }

    /// A command that runs `program` inside `host`'s namespace.
    pub fn command(&self, host: &Host, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &host.ns]).arg(program);
        c
    }

    /// Cuts `host` off the LAN (drops its bridge port both ways, in the switch
    /// namespace). `Ok(false)` when nft is missing.
    pub fn partition(&self, host: &Host) -> std::io::Result<bool> {
        if !nft_available() {
            return Ok(false);
        }
        let script = format!(
            "table bridge cut_{p} {{\n chain cut {{\n  type filter hook forward priority 0; policy accept;\n  \
             iifname \"{p}\" drop\n  oifname \"{p}\" drop\n }}\n}}\n",
            p = host.port
        );
        run_input(
            "ip",
            &["netns", "exec", &self.switch, "nft", "-f", "-"],
            Some(&script),
        )?;
        Ok(true)
    }

    /// Reconnects a partitioned `host` (deletes the table).
    pub fn heal(&self, host: &Host) -> std::io::Result<()> {
        let table = format!("cut_{}", host.port);
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.switch,
                "nft",
                "delete",
                "table",
                "bridge",
                &table,
            ],
        )
        .map(|_| ())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Hosts first, then the switch: deleting a namespace deletes its veth ends.
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = run("ip", &["netns", "del", ns]) {
                eprintln!("netns harness: cannot delete {ns}: {e}");
            }
        }
    }
}

/// Deletes namespaces of this harness whose creating process is gone.
fn remove_stale() {
    let Ok(list) = run("ip", &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = ns.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let alive = pid.is_empty() || std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

impl Lan {
    /// Cuts every host of `a` off every host of `b` (both ways) with one nft
    /// table `name` in the switch namespace; hosts within a group still reach
    /// each other. `Ok(false)` when nft is missing.
    pub fn partition_groups(&self, name: &str, a: &[&Host], b: &[&Host]) -> std::io::Result<bool> {
        if !nft_available() {
            return Ok(false);
        }
        let set = |g: &[&Host]| {
            g.iter()
                .map(|h| format!("\"{}\"", h.port))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (a, b) = (set(a), set(b));
        let script = format!(
            "table bridge {name} {{\n chain cut {{\n  type filter hook forward priority 0; policy accept;\n  \
             iifname {{ {a} }} oifname {{ {b} }} drop\n  iifname {{ {b} }} oifname {{ {a} }} drop\n }}\n}}\n"
        );
        run_input(
            "ip",
            &["netns", "exec", &self.switch, "nft", "-f", "-"],
            Some(&script),
        )?;
        Ok(true)
    }

    /// Removes the partition table `name` made by [`Lan::partition_groups`].
    pub fn heal_groups(&self, name: &str) -> std::io::Result<()> {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.switch,
                "nft",
                "delete",
                "table",
                "bridge",
                name,
            ],
        )
        .map(|_| ())
    }
}
