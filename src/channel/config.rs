//! A channel's configuration: what it sells from, when it publishes, where and
//! how it delivers. Plain serde data (TOML-friendly), checked by [`ChannelConfig::validate`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::{LocationId, PoolKey, Sku};

/// Why a channel configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A channel id that is empty, too long or has a character outside `A-Z a-z 0-9 - _ .`.
    #[error("channel id {0:?}: 1 to 64 characters of A-Z a-z 0-9 - _ . expected")]
    BadId(String),
    /// Two channels with the same id.
    #[error("channel {0} is configured twice")]
    DuplicateId(String),
    /// A channel that sells from no pool.
    #[error("channel {0}: no pools to sell from")]
    NoPools(String),
    /// A webhook URL that cannot be used.
    #[error("webhook url {url:?}: {reason}")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A time of day that is not `HH:MM` (UTC, 00:00 to 23:59).
    #[error("batch time {0:?}: HH:MM (UTC) expected")]
    BadTime(String),
    /// A batch mode with no time of day.
    #[error("channel {0}: batch mode needs at least one time in `at`")]
    NoBatchTimes(String),
    /// A number outside its allowed range.
    #[error("channel {channel}: {what} must be {range}")]
    OutOfRange {
        /// The channel.
        channel: String,
        /// The setting.
        what: &'static str,
        /// The allowed range, in words.
        range: &'static str,
    },
    /// An inline secret that is empty.
    #[error("channel {0}: the webhook secret is empty")]
    EmptySecret(String),
}

/// A channel's name: 1 to 64 characters of `A-Z a-z 0-9 - _ .` (no `:`, which
/// separates the parts of an idempotency key).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChannelId(String);

impl ChannelId {
    /// Validates and wraps a channel name.
    pub fn new(s: impl Into<String>) -> Result<Self, ConfigError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if ok {
            Ok(Self(s))
        } else {
            Err(ConfigError::BadId(s))
        }
    }
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ChannelId {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, ConfigError> {
        Self::new(s)
    }
}

impl From<ChannelId> for String {
    fn from(v: ChannelId) -> String {
        v.0
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Pools a channel sells from: one SKU at a location, or every SKU there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSelector {
    /// The location.
    pub location: LocationId,
    /// One SKU; none selects every SKU at the location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<Sku>,
    /// Units of each selected pool never granted to the channel: every donor
    /// keeps this many of its own rights above its floor when it grants to
    /// the channel (enforced by escrow at the donor's desk, not subtracted
    /// when publishing).
    #[serde(default)]
    pub safety_stock: u64,
}

impl PoolSelector {
    /// Whether `pool` is one of the selected pools.
    pub fn matches(&self, pool: &PoolKey) -> bool {
        self.location == pool.location && self.sku.as_ref().is_none_or(|s| *s == pool.sku)
    }
}

impl ChannelsConfig {
    /// Every channel's safety stock, as the rules of the donor's desk: the
    /// channel node is named by its roster name, the channel's id (enrol the
    /// channel node under that name).
    pub fn safety_stocks(&self) -> Vec<crate::rebalance::SafetyStock> {
        self.channel
            .iter()
            .flat_map(|c| {
                c.pools.iter().filter(|p| p.safety_stock > 0).map(|p| {
                    crate::rebalance::SafetyStock {
                        channel: crate::rebalance::NodeRef::Name(c.id.as_str().to_string()),
                        scope: crate::rebalance::PoolScope {
                            location: p.location.clone(),
                            sku: p.sku.clone(),
                        },
                        units: p.safety_stock,
                    }
                })
            })
            .collect()
    }
}

/// A UTC time of day, `HH:MM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeOfDay {
    /// Minutes after midnight UTC, 0 to 1439.
    minutes: u16,
}

impl TimeOfDay {
    /// Milliseconds after midnight UTC.
    pub fn ms_of_day(self) -> u64 {
        u64::from(self.minutes) * 60_000
    }
}

impl TryFrom<String> for TimeOfDay {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, ConfigError> {
        let bad = || ConfigError::BadTime(s.clone());
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        if h > 23 || m > 59 {
            return Err(bad());
        }
        Ok(Self {
            minutes: h * 60 + m,
        })
    }
}

impl From<TimeOfDay> for String {
    fn from(t: TimeOfDay) -> String {
        format!("{:02}:{:02}", t.minutes / 60, t.minutes % 60)
    }
}

/// When a channel publishes a changed value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PublishMode {
    /// As changes come, a burst per pool collapsed into one update `coalesce_ms`
    /// after its first change.
    Realtime {
        /// Coalescing window, in milliseconds.
        #[serde(default = "default_coalesce_ms")]
        coalesce_ms: u64,
    },
    /// At most one update per pool per interval, at multiples of `every_s` seconds.
    Interval {
        /// The interval, in seconds.
        every_s: u64,
    },
    /// At set UTC times of day.
    Batch {
        /// The times, `HH:MM` UTC.
        at: Vec<TimeOfDay>,
    },
}

const DAY_MS: u64 = 86_400_000;

impl PublishMode {
    /// When a pool first changed at `now_ms` is due to be published.
    pub fn due_after_change(&self, now_ms: u64) -> u64 {
        match self {
            Self::Realtime { coalesce_ms } => now_ms.saturating_add(*coalesce_ms),
            Self::Interval { every_s } => {
                let p = every_s.saturating_mul(1000).max(1);
                (now_ms / p).saturating_add(1).saturating_mul(p)
            }
            Self::Batch { at } => {
                let day = now_ms / DAY_MS * DAY_MS;
                let tod = now_ms - day;
                let next_today = at.iter().map(|t| t.ms_of_day()).filter(|&t| t > tod).min();
                match next_today {
                    Some(t) => day + t,
                    // Validation guarantees at least one time; an empty list waits a day.
                    None => day + DAY_MS + at.iter().map(|t| t.ms_of_day()).min().unwrap_or(0),
                }
            }
        }
    }
}

impl Default for PublishMode {
    fn default() -> Self {
        Self::Realtime {
            coalesce_ms: default_coalesce_ms(),
        }
    }
}

/// Where the webhook secret comes from.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretSource {
    /// The secret itself, as UTF-8 text.
    Inline(String),
    /// A file holding the secret (trailing newline ignored), read when the channel starts.
    File(PathBuf),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("Inline(<redacted>)"),
            Self::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// Retry and dead-letter tunables of a channel's outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Failed attempts after which a delivery goes to the dead letters.
    pub max_attempts: u32,
    /// First backoff ceiling, in milliseconds (doubled per failure).
    pub backoff_base_ms: u64,
    /// Largest backoff ceiling, and the cap on a receiver's `Retry-After`, in milliseconds.
    pub backoff_max_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            backoff_base_ms: default_backoff_base_ms(),
            backoff_max_ms: default_backoff_max_ms(),
        }
    }
}

/// One channel: a node holding rights that publishes them to a webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// The channel's name (in payloads and idempotency keys).
    pub id: ChannelId,
    /// The pools it sells from.
    pub pools: Vec<PoolSelector>,
    /// When it publishes.
    #[serde(default)]
    pub mode: PublishMode,
    /// The receiver's URL: `http://` to a loopback address unless `allow_insecure_http`.
    pub url: String,
    /// Allow plain `http://` to a non-loopback host (the HMAC still signs every request).
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// The HMAC-SHA256 secret.
    pub secret: SecretSource,
    /// Failed attempts before a delivery goes to the dead letters.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First backoff ceiling, in milliseconds.
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    /// Largest backoff ceiling (and `Retry-After` cap), in milliseconds.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Time limit of one request, in milliseconds.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
}

fn default_coalesce_ms() -> u64 {
    100
}
fn default_max_attempts() -> u32 {
    12
}
fn default_backoff_base_ms() -> u64 {
    1_000
}
fn default_backoff_max_ms() -> u64 {
    300_000
}
fn default_request_timeout_ms() -> u64 {
    10_000
}

impl ChannelConfig {
    /// A realtime channel with every default, for `url` and an inline `secret`.
    pub fn new(id: ChannelId, pools: Vec<PoolSelector>, url: &str, secret: &str) -> Self {
        Self {
            id,
            pools,
            mode: PublishMode::default(),
            url: url.to_string(),
            allow_insecure_http: false,
            secret: SecretSource::Inline(secret.to_string()),
            max_attempts: default_max_attempts(),
            backoff_base_ms: default_backoff_base_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            request_timeout_ms: default_request_timeout_ms(),
        }
    }

    /// The outbox's retry tunables.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            backoff_base_ms: self.backoff_base_ms,
            backoff_max_ms: self.backoff_max_ms,
        }
    }

    /// Whether the channel sells from `pool`.
    pub fn sells_from(&self, pool: &PoolKey) -> bool {
        self.pools.iter().any(|s| s.matches(pool))
    }

    /// Checks every value; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let id = self.id.as_str().to_string();
        let range = |what, range| ConfigError::OutOfRange {
            channel: id.clone(),
            what,
            range,
        };
        if self.pools.is_empty() {
            return Err(ConfigError::NoPools(id));
        }
        match &self.mode {
            PublishMode::Realtime { coalesce_ms } if *coalesce_ms > 60_000 => {
                return Err(range("coalesce_ms", "at most 60000"));
            }
            PublishMode::Interval { every_s } if *every_s == 0 || *every_s > 86_400 => {
                return Err(range("every_s", "1 to 86400"));
            }
            PublishMode::Batch { at } if at.is_empty() => {
                return Err(ConfigError::NoBatchTimes(id));
            }
            _ => {}
        }
        super::url::check_url(&self.url, self.allow_insecure_http)?;
        if matches!(&self.secret, SecretSource::Inline(s) if s.is_empty()) {
            return Err(ConfigError::EmptySecret(id));
        }
        if self.max_attempts == 0 || self.max_attempts > 1000 {
            return Err(range("max_attempts", "1 to 1000"));
        }
        if self.backoff_base_ms == 0 || self.backoff_base_ms > self.backoff_max_ms {
            return Err(range(
                "backoff_base_ms",
                "at least 1 and at most backoff_max_ms",
            ));
        }
        if self.backoff_max_ms > DAY_MS {
            return Err(range("backoff_max_ms", "at most one day"));
        }
        if self.request_timeout_ms == 0 || self.request_timeout_ms > 300_000 {
            return Err(range("request_timeout_ms", "1 to 300000"));
        }
        Ok(())
    }
}

/// Every channel of a hub: `[[channel]]` tables in TOML.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    /// The channels.
    pub channel: Vec<ChannelConfig>,
}

impl ChannelsConfig {
    /// Checks every channel, and that ids are unique.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = BTreeSet::new();
        for c in &self.channel {
            c.validate()?;
            if !seen.insert(c.id.clone()) {
                return Err(ConfigError::DuplicateId(c.id.to_string()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch() -> ChannelConfig {
        ChannelConfig::new(
            ChannelId::new("web").unwrap(),
            vec![PoolSelector {
                location: LocationId::new("WH").unwrap(),
                sku: None,
                safety_stock: 0,
            }],
            "http://127.0.0.1:9000/hook",
            "s3cret",
        )
    }

    #[test]
    fn validation() {
        assert!(ch().validate().is_ok());
        let mut c = ch();
        c.pools.clear();
        assert!(matches!(c.validate(), Err(ConfigError::NoPools(_))));
        let mut c = ch();
        c.backoff_base_ms = c.backoff_max_ms + 1;
        assert!(matches!(c.validate(), Err(ConfigError::OutOfRange { .. })));
        let mut c = ch();
        c.mode = PublishMode::Batch { at: vec![] };
        assert!(matches!(c.validate(), Err(ConfigError::NoBatchTimes(_))));
        let mut c = ch();
        c.secret = SecretSource::Inline(String::new());
        assert!(matches!(c.validate(), Err(ConfigError::EmptySecret(_))));
        assert!(ChannelId::new("a:b").is_err());
        let all = ChannelsConfig {
            channel: vec![ch(), ch()],
        };
        assert!(matches!(all.validate(), Err(ConfigError::DuplicateId(_))));
    }

    #[test]
    fn modes() {
        let rt = PublishMode::Realtime { coalesce_ms: 100 };
        assert_eq!(rt.due_after_change(1_000), 1_100);
        let iv = PublishMode::Interval { every_s: 5 };
        assert_eq!(iv.due_after_change(0), 5_000);
        assert_eq!(iv.due_after_change(4_999), 5_000);
        assert_eq!(iv.due_after_change(5_000), 10_000);
        let t = |s: &str| TimeOfDay::try_from(s.to_string()).unwrap();
        let b = PublishMode::Batch {
            at: vec![t("18:00"), t("06:30")],
        };
        let day = 3 * DAY_MS;
        assert_eq!(b.due_after_change(day), day + 6 * 3_600_000 + 1_800_000);
        assert_eq!(
            b.due_after_change(day + 7 * 3_600_000),
            day + 18 * 3_600_000
        );
        assert_eq!(
            b.due_after_change(day + 19 * 3_600_000),
            day + DAY_MS + 6 * 3_600_000 + 1_800_000
        );
        assert!(TimeOfDay::try_from("24:00".to_string()).is_err());
        assert!(TimeOfDay::try_from("7:00".to_string()).is_err());
        assert_eq!(String::from(t("07:05")), "07:05");
    }
}
