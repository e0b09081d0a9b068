//! Discovery in the daemon: the configured peers and hub (`StaticPeers`) and,
//! when asked for on listed interfaces, mDNS (`MdnsDiscovery`), polled on one
//! thread whose events a [`DialPlan`] turns into `Transport::add_peer` and
//! `remove_peer` calls.
//!
//! The thread owns the sources (host-name resolution blocks, so it stays off
//! the async runtime) and enters the runtime only to call the transport.
//! [`DiscoveryRunner::stop`] makes it unregister every source (mDNS goodbyes)
//! and waits for it: the daemon calls it before the transport shuts down.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use stocksync::discovery::dial::{DialAction, DialPlan};
use stocksync::discovery::mdns::{MdnsConfig, MdnsDiscovery};
use stocksync::discovery::static_peers::{StaticConfig, StaticPeers};
use stocksync::discovery::{Announcement, Discovery, DiscoveryEvent, DiscoveryStats, PeerKey};
use stocksync::net::Transport;
use tracing::{debug, info, info_span, warn};

use super::config::NetworkSection;

/// How often the thread polls its sources when nothing wakes it.
const POLL: Duration = Duration::from_millis(50);

/// The transport, shared by the network handle and the discovery thread.
pub type SharedTransport = Arc<Mutex<Option<Transport>>>;

/// One source as the status shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SourceView {
    /// `static` or `mdns`.
    pub source: &'static str,
    /// Whether it is running (false once stopped).
    pub running: bool,
    /// Peers it reported found.
    pub found: u64,
    /// Peers it reported lost.
    pub lost: u64,
    /// Records of another fleet it ignored.
    pub ignored_other_fleet: u64,
    /// Malformed records it ignored (bad field or unsupported version).
    pub malformed: u64,
    /// Records of this node itself it ignored.
    pub ignored_self: u64,
    /// Records with no usable address, or over the peer limit, it ignored.
    pub ignored_other: u64,
    /// Configured entries that failed to resolve (each attempt).
    pub resolve_failures: u64,
}

impl SourceView {
    fn new(source: &'static str, s: &DiscoveryStats, running: bool) -> Self {
        Self {
            source,
            running,
            found: s.found,
            lost: s.lost,
            ignored_other_fleet: s.ignored_other_fleet,
            malformed: s.malformed + s.unsupported_version,
            ignored_self: s.ignored_self,
            ignored_other: s.no_address + s.over_capacity,
            resolve_failures: s.resolve_failures,
        }
    }
}

/// A peer discovery currently has the transport dial.
#[derive(Clone, Debug, Serialize)]
pub struct FoundView {
    /// `static` or `mdns`.
    pub source: &'static str,
    /// The configured entry, or the node id the record claims (hex).
    pub key: String,
    /// The address dialled.
    pub address: String,
}

#[derive(Default)]
struct View {
    sources: Vec<SourceView>,
    found: Vec<FoundView>,
}

/// The running discovery thread, or why mDNS is off.
pub struct DiscoveryRunner {
    view: Arc<Mutex<View>>,
    mdns_note: Option<String>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Source {
    name: &'static str,
    src: Box<dyn Discovery>,
}

/// Why mDNS will not start with `cfg`, if it will not.
fn mdns_off(cfg: &NetworkSection) -> Option<String> {
    if !cfg.mdns {
        Some("mDNS is off (network.mdns = false or --no-mdns)".into())
    } else if cfg.mdns_interfaces.is_empty() {
        Some(
            "mDNS is off until network.mdns_interfaces lists the interfaces to use \
             (no multicast is sent by default)"
                .into(),
        )
    } else {
        None
    }
}

impl DiscoveryRunner {
    /// Builds the sources for `cfg`, announces `me` on them, and starts the
    /// thread feeding `transport`. A static entry that does not parse, or mDNS
    /// that cannot start on the listed interfaces, is an error. Must be called
    /// inside the daemon's runtime (the thread enters it to call the transport).
    pub fn start(
        cfg: &NetworkSection,
        me: &Announcement,
        transport: SharedTransport,
    ) -> anyhow::Result<Self> {
        let span = info_span!("discovery", node = %me.node);
        let _enter = span.enter();
        let mut sources = Vec::new();
        let mut stat = StaticPeers::new(&StaticConfig {
            peers: cfg.peers.clone(),
            hub: cfg.hub.clone(),
            ..StaticConfig::default()
        })?;
        stat.announce(me)?;
        sources.push(Source {
            name: "static",
            src: Box::new(stat),
        });
        let mdns_note = mdns_off(cfg);
        match &mdns_note {
            Some(note) if cfg.mdns => info!("{note}"),
            Some(_) => {}
            None => {
                let mut m = MdnsDiscovery::start(
                    me.node,
                    me.fleet,
                    &MdnsConfig {
                        interfaces: cfg.mdns_interfaces.clone(),
                        ipv6: cfg.mdns_ipv6,
                        ..MdnsConfig::default()
                    },
                )?;
                if let Err(e) = m.announce(me) {
                    if let Err(e2) = m.shutdown() {
                        debug!(error = %e2, "mDNS shutdown after a failed announce");
                    }
                    return Err(e.into());
                }
                sources.push(Source {
                    name: "mdns",
                    src: Box::new(m),
                });
            }
        }
        let view = Arc::new(Mutex::new(View::default()));
        let (stop, stopped) = mpsc::channel();
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|e| anyhow::anyhow!("discovery needs the daemon's runtime: {e}"))?;
        let v = view.clone();
        let node = me.node;
        drop(_enter);
        let thread = std::thread::Builder::new()
            .name("stocksync-discovery".into())
            .spawn(move || {
                let _g = rt.enter();
                let _s = info_span!("discovery", node = %node).entered();
                run(sources, transport, v, stopped);
            })
            .map_err(|e| anyhow::anyhow!("cannot start the discovery thread: {e}"))?;
        Ok(Self {
            view,
            mdns_note,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The `discovery` object of the status: sources, peers found and why mDNS is off.
    pub fn summary(&self) -> Value {
        let v = self.view.lock().unwrap_or_else(|e| e.into_inner());
        json!({
            "sources": v.sources,
            "found": v.found,
            "mdns_off": self.mdns_note,
        })
    }

    /// Unregisters every source (mDNS says goodbye) and ends the thread.
    pub async fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            if tokio::task::spawn_blocking(move || t.join()).await.is_err() {
                warn!("the discovery thread did not end cleanly");
            }
        }
    }
}

fn now_ms(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

fn key_text(k: &PeerKey) -> String {
    match k {
        PeerKey::Node(id) => id.to_hex(),
        PeerKey::Configured(t) => t.clone(),
    }
}

/// The thread: polls and ticks the sources, applies the plan, until told to stop.
fn run(
    mut sources: Vec<Source>,
    transport: SharedTransport,
    view: Arc<Mutex<View>>,
    stop: mpsc::Receiver<()>,
) {
    let start = Instant::now();
    // One plan for every source: keys never collide across sources (configured
    // text vs claimed node id), and an address two sources name is refcounted.
    let mut plan = DialPlan::new();
    let mut owner: std::collections::BTreeMap<PeerKey, &'static str> = Default::default();
    loop {
        let now = now_ms(start);
        for s in &mut sources {
            if s.src.next_tick_ms().is_some_and(|t| t <= now) {
                s.src.tick(now);
            }
            while let Some(ev) = s.src.poll_event() {
                debug!(source = s.name, event = ?ev, "discovery event");
                match &ev {
                    DiscoveryEvent::Found(p) | DiscoveryEvent::Updated(p) => {
                        owner.insert(p.key.clone(), s.name);
                    }
                    DiscoveryEvent::Lost(k) => {
                        owner.remove(k);
                    }
                }
                let actions = plan.apply(&ev);
                let t = transport.lock().unwrap_or_else(|e| e.into_inner());
                let Some(t) = t.as_ref() else { continue };
                for a in actions {
                    match a {
                        DialAction::Add { addr, expected } => {
                            info!(source = s.name, peer = %addr, expected = ?expected.map(|e| e.to_hex()), "dialling a discovered peer");
                            t.add_peer(addr, expected);
                        }
                        DialAction::Remove { addr } => {
                            info!(source = s.name, peer = %addr, "no longer dialling");
                            t.remove_peer(addr);
                        }
                    }
                }
            }
        }
        {
            let mut v = view.lock().unwrap_or_else(|e| e.into_inner());
            v.sources = sources
                .iter()
                .map(|s| SourceView::new(s.name, &s.src.stats(), true))
                .collect();
            v.found = plan
                .dialled()
                .map(|(k, a)| FoundView {
                    source: owner.get(k).copied().unwrap_or("static"),
                    key: key_text(k),
                    address: a.to_string(),
                })
                .collect();
        }
        match stop.recv_timeout(POLL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    for s in &mut sources {
        if let Err(e) = s.src.shutdown() {
            warn!(source = s.name, error = %e, "discovery source did not shut down cleanly");
        }
    }
    let mut v = view.lock().unwrap_or_else(|e| e.into_inner());
    v.sources = sources
        .iter()
        .map(|s| SourceView::new(s.name, &s.src.stats(), false))
        .collect();
    info!("discovery stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mdns_needs_both_the_switch_and_interfaces() {
        let mut cfg = NetworkSection::default();
        assert!(cfg.mdns, "on by default");
        let off = mdns_off(&cfg).unwrap();
        assert!(off.contains("mdns_interfaces"), "{off}");
        cfg.mdns_interfaces = vec!["eth0".into()];
        assert_eq!(mdns_off(&cfg), None);
        cfg.mdns = false;
        assert!(mdns_off(&cfg).unwrap().contains("--no-mdns"));
    }
}
