//! Static peers and the hub from the configuration, as a [`Discovery`] source.
//!
//! The fallback where shop routers drop multicast. An entry is `HOST:PORT`
//! (an IP literal, `[v6]:PORT`, or a host name), optionally prefixed with the
//! node id the handshake must show: `NODEHEX@HOST:PORT`. IP literals are found
//! at once; host names are resolved on the first [`Discovery::tick`] and again
//! every `refresh_ms`, and a changed answer is an `Updated` event. A failed
//! resolution keeps the last known addresses (counted in `resolve_failures`);
//! an answer with no usable address is `Lost`.

use std::collections::{BTreeSet, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};

use tracing::{debug, warn};

use super::{
    clean_addrs, Announcement, Discovery, DiscoveryError, DiscoveryEvent, DiscoveryStats, Peer,
    PeerKey, DEFAULT_MAX_PEERS,
};
use crate::model::NodeId;

/// Default period between re-resolutions of host names, in milliseconds.
pub const DEFAULT_REFRESH_MS: u64 = 60_000;

/// Longest host name accepted, in bytes.
const MAX_HOST_LEN: usize = 253;

/// Turns a host name and port into addresses.
pub trait Resolver: Send {
    /// The addresses of `host` at `port`.
    fn resolve(&mut self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The operating system's resolver (blocking: call [`Discovery::tick`] off any
/// latency-sensitive thread).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&mut self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok((host, port).to_socket_addrs()?.collect())
    }
}

/// What the configuration gives this source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticConfig {
    /// Peer entries (`[NODEHEX@]HOST:PORT`).
    pub peers: Vec<String>,
    /// The hub entry, if any (same form).
    pub hub: Option<String>,
    /// Period between re-resolutions of host names, in milliseconds.
    pub refresh_ms: u64,
    /// Most entries accepted.
    pub max_peers: usize,
}

impl Default for StaticConfig {
    fn default() -> Self {
        Self {
            peers: Vec::new(),
            hub: None,
            refresh_ms: DEFAULT_REFRESH_MS,
            max_peers: DEFAULT_MAX_PEERS,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Addr(SocketAddr),
    Name { host: String, port: u16 },
}

#[derive(Clone, Debug)]
struct Entry {
    text: String,
    target: Target,
    pinned: Option<NodeId>,
    hub: bool,
    current: Option<Vec<SocketAddr>>,
}

impl Entry {
    fn peer(&self, addrs: Vec<SocketAddr>) -> Peer {
        Peer {
            key: PeerKey::Configured(self.text.clone()),
            addrs,
            claim: None,
            pinned: self.pinned,
            hub: self.hub,
        }
    }
}

fn bad(entry: &str, reason: &str) -> DiscoveryError {
    DiscoveryError::BadEntry {
        entry: entry.to_string(),
        reason: reason.to_string(),
    }
}

/// Parses one entry: `[NODEHEX@]HOST:PORT`.
fn parse_entry(text: &str, hub: bool) -> Result<Entry, DiscoveryError> {
    let (pinned, rest) = match text.split_once('@') {
        Some((id, rest)) => (
            Some(NodeId::from_hex(id).map_err(|_| bad(text, "the node id is not 64 hex digits"))?),
            rest,
        ),
        None => (None, text),
    };
    let target = if let Ok(addr) = rest.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(bad(text, "port 0"));
        }
        Target::Addr(addr)
    } else {
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad(text, "expected HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(text, "the port is not 1 to 65535"))?;
        let host_ok = !host.is_empty()
            && host.len() <= MAX_HOST_LEN
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !host_ok {
            return Err(bad(text, "the host is not an IP address or a host name"));
        }
        Target::Name {
            host: host.to_string(),
            port,
        }
    };
    Ok(Entry {
        text: text.to_string(),
        target,
        pinned,
        hub,
        current: None,
    })
}

/// Static peers and the hub as a discovery source.
pub struct StaticPeers<R: Resolver = SystemResolver> {
    entries: Vec<Entry>,
    resolver: R,
    refresh_ms: u64,
    next_due: Option<u64>,
    pending: VecDeque<DiscoveryEvent>,
    stats: DiscoveryStats,
    shut: bool,
}

impl StaticPeers<SystemResolver> {
    /// The source for `cfg`, resolving names with the system resolver.
    pub fn new(cfg: &StaticConfig) -> Result<Self, DiscoveryError> {
        Self::with_resolver(cfg, SystemResolver)
    }
}

impl<R: Resolver> StaticPeers<R> {
    /// The source for `cfg`, resolving names with `resolver`. Entries are
    /// checked here; IP literals are reported at once.
    pub fn with_resolver(cfg: &StaticConfig, resolver: R) -> Result<Self, DiscoveryError> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut seen = BTreeSet::new();
        let all = cfg
            .hub
            .iter()
            .map(|h| (h, true))
            .chain(cfg.peers.iter().map(|p| (p, false)));
        for (text, hub) in all {
            let text = text.trim();
            if !seen.insert(text.to_string()) {
                continue;
            }
            if entries.len() >= cfg.max_peers {
                return Err(bad(text, "more entries than max_peers"));
            }
            entries.push(parse_entry(text, hub)?);
        }
        let mut this = Self {
            entries,
            resolver,
            refresh_ms: cfg.refresh_ms.max(1),
            next_due: None,
            pending: VecDeque::new(),
            stats: DiscoveryStats::default(),
            shut: false,
        };
        for i in 0..this.entries.len() {
            match this.entries[i].target.clone() {
                Target::Addr(a) => this.update(i, Ok(vec![a])),
                Target::Name { .. } => this.next_due = Some(0),
            }
        }
        Ok(this)
    }

    /// Records entry `i`'s resolution result and queues the event it causes.
    fn update(&mut self, i: usize, result: std::io::Result<Vec<SocketAddr>>) {
        let entry = &mut self.entries[i];
        let addrs = match result {
            Ok(a) => clean_addrs(a),
            Err(e) => {
                self.stats.resolve_failures += 1;
                warn!(entry = %entry.text, error = %e, "static peer does not resolve; keeping the last known addresses");
                return;
            }
        };
        let event = match (&entry.current, addrs.is_empty()) {
            (None, true) => {
                self.stats.no_address += 1;
                None
            }
            (Some(_), true) => {
                entry.current = None;
                self.stats.lost += 1;
                Some(DiscoveryEvent::Lost(PeerKey::Configured(
                    entry.text.clone(),
                )))
            }
            (Some(old), false) if *old == addrs => None,
            (old, false) => {
                let found = old.is_none();
                entry.current = Some(addrs.clone());
                if found {
                    self.stats.found += 1;
                    Some(DiscoveryEvent::Found(entry.peer(addrs)))
                } else {
                    self.stats.updated += 1;
                    Some(DiscoveryEvent::Updated(entry.peer(addrs)))
                }
            }
        };
        if let Some(e) = event {
            debug!(entry = %self.entries[i].text, event = ?e, "static peer");
            self.pending.push_back(e);
        }
    }
}

impl<R: Resolver> Discovery for StaticPeers<R> {
    fn announce(&mut self, _announcement: &Announcement) -> Result<(), DiscoveryError> {
        // Configured peers are dialled, not told: nothing to announce.
        if self.shut {
            return Err(DiscoveryError::Shutdown);
        }
        Ok(())
    }

    fn poll_event(&mut self) -> Option<DiscoveryEvent> {
        self.pending.pop_front()
    }

    fn tick(&mut self, now_ms: u64) {
        if self.shut || self.next_due.is_none_or(|due| now_ms < due) {
            return;
        }
        for i in 0..self.entries.len() {
            if let Target::Name { host, port } = self.entries[i].target.clone() {
                let result = self.resolver.resolve(&host, port);
                self.update(i, result);
            }
        }
        self.next_due = Some(now_ms.saturating_add(self.refresh_ms));
    }

    fn next_tick_ms(&self) -> Option<u64> {
        if self.shut {
            None
        } else {
            self.next_due
        }
    }

    fn stats(&self) -> DiscoveryStats {
        self.stats
    }

    fn shutdown(&mut self) -> Result<(), DiscoveryError> {
        self.shut = true;
        self.pending.clear();
        Ok(())
    }
}
