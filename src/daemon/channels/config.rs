//! `[channels]` of the daemon configuration: the channels a hub runs (the
//! library's [`ChannelsConfig`] entries) and where each channel's node lives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stocksync::channel::{ChannelConfig, ChannelId, ChannelsConfig};

/// Where a channel's node lives when `node_dirs` does not say: `channels/<id>`.
pub const DEFAULT_NODE_DIRS: &str = "channels";

/// `[channels]`: `[[channels.channel]]` tables and, optionally, each
/// channel's node data directory (relative to the hub's data directory).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsSection {
    /// A channel's node data directory by channel id; absent: `channels/<id>`.
    pub node_dirs: BTreeMap<String, PathBuf>,
    /// The channels (see docs/hub.md, "Channels and webhooks").
    pub channel: Vec<ChannelConfig>,
}

impl ChannelsSection {
    /// True when no channel is configured (the section is then left out).
    pub fn is_empty(&self) -> bool {
        self.channel.is_empty() && self.node_dirs.is_empty()
    }

    /// The library's view of the channels.
    pub fn channels(&self) -> ChannelsConfig {
        ChannelsConfig {
            channel: self.channel.clone(),
        }
    }

    /// The node data directory of channel `id`, under the hub's `hub_dir`.
    pub fn node_dir(&self, hub_dir: &Path, id: &ChannelId) -> PathBuf {
        match self.node_dirs.get(id.as_str()) {
            Some(d) if d.is_absolute() => d.clone(),
            Some(d) => hub_dir.join(d),
            None => hub_dir.join(DEFAULT_NODE_DIRS).join(id.as_str()),
        }
    }

    /// Checks the channels, and that `node_dirs` names only configured ones.
    pub fn check(&self) -> Result<(), String> {
        self.channels().validate().map_err(|e| e.to_string())?;
        for id in self.node_dirs.keys() {
            if !self.channel.iter().any(|c| c.id.as_str() == id) {
                return Err(format!("channels.node_dirs names no channel: {id:?}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_parses_and_places_the_nodes() {
        let text = r#"
            node_dirs = { b = "/srv/b" }
            [[channel]]
            id = "web"
            pools = [{ location = "S1" }]
            url = "http://127.0.0.1:9000/hook"
            secret = { inline = "s" }
            [[channel]]
            id = "b"
            pools = [{ location = "S1", sku = "A" }]
            mode = { kind = "interval", every_s = 60 }
            url = "http://127.0.0.1:9000/b"
            secret = { file = "b.secret" }
        "#;
        let s: ChannelsSection = toml::from_str(text).unwrap();
        s.check().unwrap();
        let hub = Path::new("/data/hub");
        let web = ChannelId::new("web").unwrap();
        let b = ChannelId::new("b").unwrap();
        assert_eq!(s.node_dir(hub, &web), Path::new("/data/hub/channels/web"));
        assert_eq!(s.node_dir(hub, &b), Path::new("/srv/b"));
        let mut bad = s.clone();
        bad.node_dirs.insert("nope".into(), "x".into());
        assert!(bad.check().unwrap_err().contains("nope"));
    }
}
