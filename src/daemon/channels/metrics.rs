//! The channels' `/metrics` families, labelled by channel id (a configured,
//! bounded set); rights held are summed per channel and location.

use std::collections::BTreeMap;

use super::super::metrics::text::{Exposition, Kind};
use super::ChannelServices;
use stocksync::channel::runner::ChannelStatus;

/// A per-channel family: name, type, help, and its value in a status.
type Family = (&'static str, Kind, &'static str, fn(&ChannelStatus) -> u64);

/// The families' text.
pub fn render(s: &ChannelServices) -> String {
    let rows: Vec<_> = s
        .channels()
        .map(|c| {
            let id = c.config.id.to_string();
            let status = s.status(&c.config.id).unwrap_or_default();
            let mut held: BTreeMap<String, u64> = BTreeMap::new();
            for (pool, n) in c.held() {
                *held.entry(pool.location.to_string()).or_default() += n;
            }
            (id, status, held)
        })
        .collect();
    let mut e = Exposition::default();
    let families: [Family; 4] = [
        (
            "stocksync_channel_outbox_depth",
            Kind::Gauge,
            "Values queued or in flight to the channel's webhook.",
            |st| st.outbox_depth as u64,
        ),
        (
            "stocksync_channel_dead_letters",
            Kind::Gauge,
            "Dead letters waiting for a re-drive.",
            |st| st.dead_letters as u64,
        ),
        (
            "stocksync_channel_deliveries_total",
            Kind::Counter,
            "Webhook deliveries that succeeded since start.",
            |st| st.delivered,
        ),
        (
            "stocksync_channel_failed_attempts_total",
            Kind::Counter,
            "Webhook attempts that failed since start.",
            |st| st.failed_attempts,
        ),
    ];
    for (name, kind, help, value) in families {
        let mut f = e.family(name, kind, help);
        for (id, st, _) in &rows {
            f.sample(&[("channel", id)], value(st));
        }
    }
    let mut f = e.family(
        "stocksync_channel_rights_held",
        Kind::Gauge,
        "Rights the channel's node holds (what it publishes), summed per location.",
    );
    for (id, _, held) in &rows {
        for (location, n) in held {
            f.sample(&[("channel", id), ("location", location)], *n);
        }
    }
    e.finish()
}
