//! Online channels: publishing a channel's available quantities to a webhook.
//!
//! A channel (web shop, marketplace) is a node holding rights; what it
//! publishes as available for a pool is the rights it holds there, never more
//! (safety stock is enforced by escrow, nothing is subtracted here). This
//! module takes "the channel's available for (location, SKU) is N at time t"
//! to "the receiver's webhook got it, in order, signed, the newest value
//! eventually". See docs/hub.md, "Channels and webhooks".
//!
//! # Layout
//! - [`config`]: per channel: pools, publishing mode, webhook, retries (serde, validated).
//! - [`publisher`]: observations to updates, coalesced, with sequence numbers (pure).
//! - [`outbox`]: pending, in flight, backoff with jitter, dead letters (pure).
//! - [`store`]: the durable outbox in SQLite (`channels.db`).
//! - [`url`]: webhook URL checks.
//! - [`webhook`]: the JSON body, signature and answer classification (pure).
//! - `http` (feature `channel`): the HTTP client that posts a request.
//! - `runner` (feature `channel`): one worker thread per channel, with the real clock.

pub mod config;
#[cfg(feature = "channel")]
pub mod http;
pub mod outbox;
#[cfg(test)]
mod outbox_props;
pub mod publisher;
#[cfg(feature = "channel")]
pub mod runner;
pub mod store;
pub mod url;
pub mod webhook;

pub use config::{
    ChannelConfig, ChannelId, ChannelsConfig, ConfigError, PoolSelector, PublishMode,
};
pub use outbox::{DeadLetter, Failure, Outbox, Redrive, RedriveReport};
pub use publisher::{Publisher, Update};
pub use store::{OutboxStore, OutboxStoreError, CHANNELS_DB};

use crate::model::PoolKey;

/// Where a channel's available quantities come from: the hub implements it
/// over the channel node's rights (what the channel holds per pool, never more).
pub trait AvailableSource {
    /// The channel's available quantity in each pool of `pools` it holds rights in.
    fn available(&self, pools: &[PoolSelector]) -> Vec<(PoolKey, u64)>;
}
