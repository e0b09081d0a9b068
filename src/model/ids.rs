//! Identifiers: node ids, SKUs, locations, pools, event ids.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::InputError;

/// Longest SKU, location, event id or reason accepted, in bytes.
pub const MAX_NAME_LEN: usize = 64;

fn check_name(what: &'static str, s: &str) -> Result<(), InputError> {
    if s.is_empty() {
        return Err(InputError::Empty { what });
    }
    if s.len() > MAX_NAME_LEN {
        return Err(InputError::TooLong {
            what,
            len: s.len(),
            max: MAX_NAME_LEN,
        });
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.:/#+".contains(*c)))
    {
        return Err(InputError::BadChar { what, ch: c });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps a name: 1 to 64 bytes of `A-Z a-z 0-9 - _ . : / # +`.
            pub fn new(s: impl Into<String>) -> Result<Self, InputError> {
                let s = s.into();
                check_name($what, &s)?;
                Ok(Self(s))
            }
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = InputError;
            fn try_from(s: String) -> Result<Self, InputError> {
                Self::new(s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $name {
            type Err = InputError;
            fn from_str(s: &str) -> Result<Self, InputError> {
                Self::new(s)
            }
        }
    };
}

name_type!(
    /// A stock-keeping unit code.
    Sku,
    "SKU"
);
name_type!(
    /// A place where units physically sit: a store or a warehouse.
    LocationId,
    "location"
);
name_type!(
    /// A caller-supplied idempotency key of an event.
    EventId,
    "event id"
);
name_type!(
    /// The id of a transfer between two locations.
    TransferId,
    "transfer id"
);
name_type!(
    /// The id of a reservation (a hold on units for an order).
    ReservationId,
    "reservation id"
);
name_type!(
    /// A reason code for an adjustment (count, damage, shrinkage...).
    ReasonCode,
    "reason"
);

/// The stock of one SKU at one location: the unit the escrow rule is kept for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PoolKey {
    /// Where the units sit.
    pub location: LocationId,
    /// Which article.
    pub sku: Sku,
}

impl PoolKey {
    /// The pool of `sku` at `location`.
    pub fn new(location: LocationId, sku: Sku) -> Self {
        Self { location, sku }
    }
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.sku, self.location)
    }
}

/// A node's identity: its ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// Lower-case hex of all 32 bytes.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, InputError> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(InputError::BadNodeId);
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair).map_err(|_| InputError::BadNodeId)?;
            out[i] = u8::from_str_radix(hex, 16).map_err(|_| InputError::BadNodeId)?;
        }
        Ok(Self(out))
    }

    /// Parses a 32-byte slice.
    pub fn from_slice(b: &[u8]) -> Result<Self, InputError> {
        let arr: [u8; 32] = b.try_into().map_err(|_| InputError::BadNodeId)?;
        Ok(Self(arr))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// Shows the first 8 bytes in hex, enough to tell nodes of a fleet apart in logs.
impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(Sku::new("ABC-123_x.y").is_ok());
        assert!(matches!(Sku::new(""), Err(InputError::Empty { .. })));
        assert!(matches!(
            Sku::new("a".repeat(65)),
            Err(InputError::TooLong { .. })
        ));
        assert!(matches!(Sku::new("a|b"), Err(InputError::BadChar { .. })));
        assert!(matches!(Sku::new("é"), Err(InputError::BadChar { .. })));
    }

    #[test]
    fn node_id_hex_round_trips() {
        let id = NodeId([7u8; 32]);
        assert_eq!(NodeId::from_hex(&id.to_hex()).unwrap(), id);
        assert!(NodeId::from_hex("zz").is_err());
        assert!(NodeId::from_hex(&"g".repeat(64)).is_err());
    }
}
