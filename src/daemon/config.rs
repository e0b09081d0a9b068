//! The daemon's configuration: a TOML file (every option has a default; see
//! examples/node.toml) overridden by command-line flags, then checked.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stocksync::node::NodeOptions;
use stocksync::rebalance::{AllocationRule, NodeRef, PoolScope, RebalanceSettings, Reserve};
use stocksync::sync::SyncConfig;

pub use super::channels::config::ChannelsSection;

/// Largest request body the API may be configured to accept.
const MAX_BODY_LIMIT: usize = 16 << 20;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type...).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A value outside what the daemon accepts.
    #[error("config: {0}")]
    Invalid(String),
}

/// The whole configuration of `stocksync node`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The local HTTP/JSON API.
    pub api: ApiSection,
    /// The peer-to-peer network (carried by the transport).
    pub network: NetworkSection,
    /// The node's commit tunables.
    pub node: NodeSection,
    /// The sync protocol's tunables.
    pub sync: SyncSection,
    /// Automatic pull and borrowing of rights between peers.
    pub rebalance: RebalanceSection,
    /// Logging.
    pub log: LogSection,
    /// The online channels a hub runs (docs/hub.md, "Channels in the hub daemon").
    #[serde(skip_serializing_if = "ChannelsSection::is_empty")]
    pub channels: ChannelsSection,
}

/// `[api]`: where and how the API listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Address the API binds (loopback unless `allow_remote`).
    pub address: SocketAddr,
    /// Allow a non-loopback API address (the token is then the only guard).
    pub allow_remote: bool,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// How long shutdown waits for in-flight requests, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Serve `GET /metrics` without the bearer token (for a local scraper).
    pub metrics_without_token: bool,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([127, 0, 0, 1], 7480)),
            allow_remote: false,
            body_limit: 64 * 1024,
            shutdown_grace_ms: 10_000,
            metrics_without_token: false,
        }
    }
}

/// `[network]`: what the transport is given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSection {
    /// Address the transport listens on for peers.
    pub listen: SocketAddr,
    /// Peers to connect to, as `host:port`.
    pub peers: Vec<String>,
    /// The hub to connect to, as `host:port`, if any.
    pub hub: Option<String>,
    /// Discover peers on the local network by mDNS (only on `mdns_interfaces`).
    pub mdns: bool,
    /// Interfaces mDNS may use, by name; empty keeps mDNS off (no multicast sent).
    pub mdns_interfaces: Vec<String>,
    /// Also use IPv6 for mDNS on those interfaces.
    pub mdns_ipv6: bool,
    /// Keep-alive interval of peer connections, in milliseconds.
    pub keep_alive_ms: u64,
    /// A peer connection silent this long is closed, in milliseconds.
    pub idle_timeout_ms: u64,
}

impl Default for NetworkSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 7401)),
            peers: Vec::new(),
            hub: None,
            mdns: true,
            mdns_interfaces: Vec::new(),
            mdns_ipv6: false,
            // The transport's measured choice (docs/network.md, "Timers"): a
            // dead link is noticed within idle + keep-alive = 2.5 s.
            keep_alive_ms: 500,
            idle_timeout_ms: 2_000,
        }
    }
}

/// `[node]`: the node's commit tunables ([`NodeOptions`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Most events committed in one transaction.
    pub max_batch: usize,
    /// Changes per epoch of the own document before it rolls over.
    pub epoch_changes: u64,
}

impl Default for NodeSection {
    fn default() -> Self {
        let o = NodeOptions::default();
        Self {
            max_batch: o.max_batch,
            epoch_changes: o.epoch_changes,
        }
    }
}

/// `[sync]`: the [`SyncConfig`] knobs an operator may want to turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncSection {
    /// Anti-entropy period per peer, in milliseconds.
    pub probe_interval_ms: u64,
    /// Time after which unacknowledged bytes to a peer are resent, in milliseconds.
    pub ack_timeout_ms: u64,
    /// Coalescing delay of eager pushes, in milliseconds (0: push each change at once).
    pub push_delay_ms: u64,
    /// Most unacknowledged bytes in flight to one peer.
    pub window_bytes: usize,
    /// Most changes in one bundle.
    pub bundle_changes: usize,
    /// Most change bytes in one bundle.
    pub bundle_bytes: usize,
    /// Most bytes of out-of-order bundles held back, over all writers.
    pub max_parked_bytes: usize,
}

impl Default for SyncSection {
    fn default() -> Self {
        let s = SyncConfig::default();
        Self {
            probe_interval_ms: s.probe_interval_ms,
            ack_timeout_ms: s.ack_timeout_ms,
            push_delay_ms: s.push_delay_ms,
            window_bytes: s.window_bytes,
            bundle_changes: s.bundle_changes,
            bundle_bytes: s.bundle_bytes,
            max_parked_bytes: s.max_parked_bytes,
        }
    }
}

/// `[rebalance]`: how the node keeps its rights topped up from its peers
/// ([`RebalanceSettings`]; docs/rebalancing.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RebalanceSection {
    /// Ask connected peers for rights when below the low-water mark.
    pub auto_pull: bool,
    /// A fixed low-water mark in units; absent: derived from sales velocity.
    pub low_water: Option<u64>,
    /// Derived low-water mark: the units sold in this many minutes at the current velocity.
    pub cover_minutes: u64,
    /// The least derived low-water mark.
    pub min_low_water: u64,
    /// A pull asks for enough to reach this many times the low-water mark.
    pub refill_factor: u64,
    /// Never give below this many rights; absent: the node's own low-water mark.
    pub floor: Option<u64>,
    /// After receiving rights, give none for this long (ms).
    pub cool_down_ms: u64,
    /// Half-life of the sales velocity's decay (minutes).
    pub velocity_half_life_minutes: u64,
    /// A strict sale short of rights waits this long for a borrow (ms; 0: refuse at once).
    pub borrow_deadline_ms: u64,
    /// A request unanswered this long counts as no answer (ms).
    pub answer_timeout_ms: u64,
    /// Units this node keeps and never grants, per pool or location (a hub's reserve).
    pub reserve: Vec<ReserveEntry>,
    /// Who receives this node's rights above its reserve (on a receipt at its
    /// location, and by `stocksync allocate`), and in what shares.
    pub allocate: Vec<AllocateEntry>,
}

/// One `[rebalance] reserve` entry: `{ location = "WH", sku = "A", units = 20 }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveEntry {
    /// The location.
    pub location: stocksync::model::LocationId,
    /// One SKU; absent: every SKU at the location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<stocksync::model::Sku>,
    /// Units kept.
    pub units: u64,
}

/// One `[rebalance] allocate` entry: `{ node = "web", location = "WH", share = 1, target = 50 }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocateEntry {
    /// The receiver's roster name (a channel or a store node).
    pub node: String,
    /// The location.
    pub location: stocksync::model::LocationId,
    /// One SKU; absent: every SKU at the location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<stocksync::model::Sku>,
    /// Its weight in the split.
    #[serde(default = "one")]
    pub share: u64,
    /// Fill it up to this many rights at most; absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u64>,
}

fn one() -> u64 {
    1
}

impl Default for RebalanceSection {
    fn default() -> Self {
        let r = RebalanceSettings::lan();
        Self {
            auto_pull: r.auto_pull,
            low_water: r.low_water,
            cover_minutes: r.cover_ms / 60_000,
            min_low_water: r.min_low_water,
            refill_factor: r.refill_factor,
            floor: r.floor,
            cool_down_ms: r.cool_down_ms,
            velocity_half_life_minutes: r.velocity_half_life_ms / 60_000,
            borrow_deadline_ms: r.borrow_deadline_ms,
            answer_timeout_ms: r.answer_timeout_ms,
            reserve: Vec::new(),
            allocate: Vec::new(),
        }
    }
}

impl RebalanceSection {
    /// The settings the node runs with.
    pub fn settings(&self) -> RebalanceSettings {
        RebalanceSettings {
            auto_pull: self.auto_pull,
            low_water: self.low_water,
            cover_ms: self.cover_minutes.saturating_mul(60_000),
            min_low_water: self.min_low_water,
            refill_factor: self.refill_factor,
            floor: self.floor,
            cool_down_ms: self.cool_down_ms,
            velocity_half_life_ms: self.velocity_half_life_minutes.saturating_mul(60_000),
            borrow_deadline_ms: self.borrow_deadline_ms,
            answer_timeout_ms: self.answer_timeout_ms,
            reserves: self
                .reserve
                .iter()
                .map(|r| Reserve {
                    scope: PoolScope {
                        location: r.location.clone(),
                        sku: r.sku.clone(),
                    },
                    units: r.units,
                })
                .collect(),
            // A hub running channels: `node_options` sets these from the
            // `[channels]` section (`ChannelsConfig::safety_stocks`).
            safety_stocks: Vec::new(),
            allocation: self
                .allocate
                .iter()
                .map(|a| AllocationRule {
                    node: NodeRef::Name(a.node.clone()),
                    scope: PoolScope {
                        location: a.location.clone(),
                        sku: a.sku.clone(),
                    },
                    share: a.share,
                    target: a.target,
                })
                .collect(),
        }
    }
}

/// `[log]`: what the daemon logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// A `tracing` filter, e.g. `info` or `stocksync=debug,info`
    /// (the STOCKSYNC_LOG environment variable overrides it).
    pub filter: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            filter: "info".into(),
        }
    }
}

/// Command-line values that override the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--api ADDR`.
    pub api: Option<SocketAddr>,
    /// `--listen ADDR`.
    pub listen: Option<SocketAddr>,
    /// `--peer ADDR`, repeated: replaces the file's peers when given.
    pub peers: Vec<String>,
    /// `--no-mdns`.
    pub no_mdns: bool,
    /// `--hub ADDR`: replaces the file's hub.
    pub hub: Option<String>,
}

impl Config {
    /// Parses a configuration from TOML text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.into(),
            message: e.to_string(),
        })
    }

    /// The configuration in `path`, or the defaults without a file; then `flags`
    /// applied and the result checked.
    pub fn load(path: Option<&Path>, flags: &Overrides) -> Result<Self, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Self::parse(&text, &p.display().to_string())?
            }
            None => Self::default(),
        };
        cfg.apply(flags);
        cfg.check()?;
        Ok(cfg)
    }

    /// Applies command-line overrides.
    pub fn apply(&mut self, flags: &Overrides) {
        if let Some(a) = flags.api {
            self.api.address = a;
        }
        if let Some(l) = flags.listen {
            self.network.listen = l;
        }
        if !flags.peers.is_empty() {
            self.network.peers = flags.peers.clone();
        }
        if flags.no_mdns {
            self.network.mdns = false;
        }
        if let Some(h) = &flags.hub {
            self.network.hub = Some(h.clone());
        }
    }

    /// Refuses what the daemon must not run with.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !self.api.address.ip().is_loopback() && !self.api.allow_remote {
            return bad(format!(
                "api.address {} is not a loopback address: the API binds loopback only unless \
                 [api] allow_remote = true is set explicitly",
                self.api.address
            ));
        }
        if self.api.body_limit == 0 || self.api.body_limit > MAX_BODY_LIMIT {
            return bad(format!(
                "api.body_limit must be 1 to {MAX_BODY_LIMIT} bytes, not {}",
                self.api.body_limit
            ));
        }
        if self.node.max_batch == 0 || self.node.epoch_changes == 0 {
            return bad("node.max_batch and node.epoch_changes must be at least 1".into());
        }
        let s = &self.sync;
        if s.probe_interval_ms == 0
            || s.ack_timeout_ms == 0
            || s.window_bytes == 0
            || s.bundle_changes == 0
            || s.bundle_bytes == 0
        {
            return bad("sync: intervals, windows and bundle sizes must be non-zero".into());
        }
        let r = &self.rebalance;
        if r.refill_factor == 0 || r.answer_timeout_ms == 0 || r.velocity_half_life_minutes == 0 {
            return bad(
                "rebalance: refill_factor, answer_timeout_ms and velocity_half_life_minutes must be non-zero"
                    .into(),
            );
        }
        if r.borrow_deadline_ms > 60_000 {
            return bad(format!(
                "rebalance.borrow_deadline_ms is at most 60000 (a sale waits that long), not {}",
                r.borrow_deadline_ms
            ));
        }
        if self.network.keep_alive_ms == 0
            || self.network.idle_timeout_ms <= self.network.keep_alive_ms
        {
            return bad("network.idle_timeout_ms must exceed a non-zero keep_alive_ms".into());
        }
        self.channels.check().map_err(ConfigError::Invalid)?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return bad(format!("log.filter {:?}: {e}", self.log.filter));
        }
        Ok(())
    }

    /// The node options this configuration asks for.
    pub fn node_options(&self) -> NodeOptions {
        let s = &self.sync;
        NodeOptions {
            max_batch: self.node.max_batch,
            epoch_changes: self.node.epoch_changes,
            sync: SyncConfig {
                probe_interval_ms: s.probe_interval_ms,
                ack_timeout_ms: s.ack_timeout_ms,
                push_delay_ms: s.push_delay_ms,
                window_bytes: s.window_bytes,
                bundle_changes: s.bundle_changes,
                bundle_bytes: s.bundle_bytes,
                max_parked_bytes: s.max_parked_bytes,
                ..SyncConfig::default()
            },
            rebalance: RebalanceSettings {
                safety_stocks: self.channels.channels().safety_stocks(),
                ..self.rebalance.settings()
            },
            ..NodeOptions::default()
        }
    }

    /// How long shutdown waits for in-flight requests.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.api.shutdown_grace_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/node.toml");

    #[test]
    fn the_shipped_example_is_exactly_the_defaults() {
        let parsed = Config::parse(EXAMPLE, "examples/node.toml").unwrap();
        assert_eq!(parsed, Config::default());
        parsed.check().unwrap();
    }

    #[test]
    fn the_example_names_every_option() {
        // Every key the defaults serialize to appears, uncommented, in the example.
        let defaults = toml::to_string(&Config::default()).unwrap();
        let example: toml::Table = toml::from_str(EXAMPLE).unwrap();
        let full: toml::Table = toml::from_str(&defaults).unwrap();
        for (section, table) in &full {
            let have = example[section].as_table().unwrap();
            for key in table.as_table().unwrap().keys() {
                assert!(have.contains_key(key), "[{section}] {key} missing");
            }
        }
        assert!(EXAMPLE.contains("# hub ="), "hub is documented");
    }

    #[test]
    fn a_channels_safety_stock_reaches_the_hubs_desk() {
        let text = r#"
[rebalance]
reserve = [{ location = "S1", units = 10 }]
[[channels.channel]]
id = "web"
pools = [{ location = "S1", safety_stock = 8 }, { location = "S2" }]
url = "http://127.0.0.1:9000/hook"
secret = { inline = "s" }
"#;
        let cfg = Config::parse(text, "test").unwrap();
        let r = cfg.node_options().rebalance;
        assert_eq!(r.reserves.len(), 1, "the [rebalance] settings are kept");
        assert_eq!(r.safety_stocks.len(), 1, "{:?}", r.safety_stocks);
        let s = &r.safety_stocks[0];
        assert_eq!(s.units, 8);
        assert_eq!(s.channel, NodeRef::Name("web".into()));
        assert_eq!(s.scope.location.as_str(), "S1");
    }

    #[test]
    fn a_remote_api_needs_allow_remote() {
        let mut cfg = Config::default();
        cfg.apply(&Overrides {
            api: Some("0.0.0.0:7480".parse().unwrap()),
            ..Overrides::default()
        });
        let e = cfg.check().unwrap_err().to_string();
        assert!(e.contains("allow_remote"), "{e}");
        cfg.api.allow_remote = true;
        cfg.check().unwrap();
    }

    #[test]
    fn unknown_keys_and_flags_override() {
        let e = Config::parse("[api]\nadress = \"127.0.0.1:1\"\n", "x").unwrap_err();
        assert!(e.to_string().contains("adress"), "{e}");
        let mut cfg = Config::parse("[network]\npeers = [\"a:1\"]\nmdns = true\n", "x").unwrap();
        cfg.apply(&Overrides {
            peers: vec!["b:2".into()],
            no_mdns: true,
            ..Overrides::default()
        });
        assert_eq!(cfg.network.peers, ["b:2"]);
        assert!(!cfg.network.mdns);
    }
}
