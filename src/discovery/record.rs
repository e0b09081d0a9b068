//! The announcement record: its TXT fields, encoded and checked (pure).
//!
//! Service type `_stocksync._udp.local.`; TXT fields `id` (node id, 64 hex),
//! `loc` (location), `role`, `fleet` (fleet id, 64 hex) and `v` (protocol
//! version). Every value is length-checked before it is parsed.

use super::{Announcement, Claim};
use crate::fleet::FleetId;
use crate::model::{LocationId, NodeId, Role};

/// The DNS-SD service type nodes announce and browse.
pub const SERVICE_TYPE: &str = "_stocksync._udp.local.";

/// The discovery record version this build writes and accepts.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest TXT value read, in bytes (ids are 64 hex digits, names at most 64 bytes).
pub const MAX_TXT_VALUE: usize = 64;

/// Why a record is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// A required field is absent or has no value.
    #[error("TXT field {0:?} is missing")]
    Missing(&'static str),
    /// A field longer than its limit.
    #[error("TXT field {key:?} is {len} bytes; the limit is {max}")]
    TooLong {
        /// The field.
        key: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field that does not parse.
    #[error("TXT field {key:?} is malformed: {reason}")]
    Bad {
        /// The field.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// A record of a protocol version this build does not speak.
    #[error("record version {0:?} is not supported (this build speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(String),
}

/// The TXT properties announcing `a`, as key/value pairs.
pub fn encode(a: &Announcement) -> Vec<(String, String)> {
    vec![
        ("id".into(), a.node.to_hex()),
        ("loc".into(), a.location.as_str().into()),
        ("role".into(), a.role.as_str().into()),
        ("fleet".into(), a.fleet.to_hex()),
        ("v".into(), PROTOCOL_VERSION.to_string()),
    ]
}

/// The DNS-SD instance name of `node`: the hex of its first 16 bytes (a DNS
/// label holds at most 63 bytes; the full id is in the TXT record).
pub fn instance_name(node: &NodeId) -> String {
    let hex = node.to_hex();
    hex[..32].to_string()
}

/// Reads a claim from TXT properties; `get(key)` returns a field's raw value.
pub fn decode<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> Result<Claim, RecordError> {
    let field = |key: &'static str, max: usize| -> Result<&'a str, RecordError> {
        let raw = get(key).ok_or(RecordError::Missing(key))?;
        if raw.len() > max {
            return Err(RecordError::TooLong {
                key,
                len: raw.len(),
                max,
            });
        }
        std::str::from_utf8(raw).map_err(|_| RecordError::Bad {
            key,
            reason: "not UTF-8".into(),
        })
    };
    let v = field("v", 8)?;
    if v.parse::<u32>().ok() != Some(PROTOCOL_VERSION) {
        return Err(RecordError::UnsupportedVersion(v.to_string()));
    }
    let bad = |key: &'static str| {
        move |e: crate::error::InputError| RecordError::Bad {
            key,
            reason: e.to_string(),
        }
    };
    let node = NodeId::from_hex(field("id", MAX_TXT_VALUE)?).map_err(bad("id"))?;
    let fleet = FleetId::from_hex(field("fleet", MAX_TXT_VALUE)?).map_err(bad("fleet"))?;
    let location = LocationId::new(field("loc", MAX_TXT_VALUE)?).map_err(bad("loc"))?;
    let role = field("role", 16)?.parse::<Role>().map_err(bad("role"))?;
    Ok(Claim {
        node,
        location,
        role,
        fleet,
    })
}

/// [`decode`] over key/value pairs (the form [`encode`] gives, and the memory LAN carries).
pub fn decode_pairs(pairs: &[(String, String)]) -> Result<Claim, RecordError> {
    decode(|key| {
        pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> Announcement {
        Announcement {
            node: NodeId([1; 32]),
            location: LocationId::new("STORE-1").unwrap(),
            role: Role::Till,
            fleet: FleetId([2; 32]),
            port: 7401,
        }
    }

    fn with(key: &str, value: &str) -> Vec<(String, String)> {
        let mut p = encode(&ann());
        p.retain(|(k, _)| k != key);
        p.push((key.into(), value.into()));
        p
    }

    #[test]
    fn round_trips() {
        let c = decode_pairs(&encode(&ann())).unwrap();
        assert_eq!(c.node, NodeId([1; 32]));
        assert_eq!(c.fleet, FleetId([2; 32]));
        assert_eq!(c.location.as_str(), "STORE-1");
        assert_eq!(c.role, Role::Till);
        assert_eq!(instance_name(&c.node).len(), 32);
    }

    #[test]
    fn malformed_fields_are_refused() {
        let mut p = encode(&ann());
        p.retain(|(k, _)| k != "id");
        assert_eq!(decode_pairs(&p), Err(RecordError::Missing("id")));
        assert!(matches!(
            decode_pairs(&with("id", &"a".repeat(65))),
            Err(RecordError::TooLong { key: "id", .. })
        ));
        assert!(matches!(
            decode_pairs(&with("id", &"g".repeat(64))),
            Err(RecordError::Bad { key: "id", .. })
        ));
        assert!(matches!(
            decode_pairs(&with("loc", "a b")),
            Err(RecordError::Bad { key: "loc", .. })
        ));
        assert!(matches!(
            decode_pairs(&with("loc", &"x".repeat(200))),
            Err(RecordError::TooLong { key: "loc", .. })
        ));
        assert!(matches!(
            decode_pairs(&with("role", "king")),
            Err(RecordError::Bad { key: "role", .. })
        ));
        assert!(matches!(
            decode_pairs(&with("fleet", "00")),
            Err(RecordError::Bad { key: "fleet", .. })
        ));
        assert_eq!(
            decode_pairs(&with("v", "2")),
            Err(RecordError::UnsupportedVersion("2".into()))
        );
        assert!(decode(|_| Some(&[0xff, 0xfe][..])).is_err());
    }
}
