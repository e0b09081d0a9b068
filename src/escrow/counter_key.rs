//! The grow-only counters a node writes, and their text form in the replica.
//!
//! Every counter belongs to one writer (the node whose document holds it), so the
//! writer is not part of the key. Names never contain `|` (see [`crate::model::ids`]),
//! which makes the text form unambiguous.

use std::fmt;

use crate::error::InputError;
use crate::model::{LocationId, NodeId, PoolKey, Sku, TransferId};

/// One grow-only counter of one writer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CounterKey {
    /// Units the writer brought into the pool.
    Minted(PoolKey),
    /// Units the writer took out of the pool.
    Consumed(PoolKey),
    /// Units the writer put on hold.
    Reserved(PoolKey),
    /// Held units the writer released (or fulfilled).
    Released(PoolKey),
    /// Rights the writer handed to another node.
    Granted(PoolKey, NodeId),
    /// Units the writer shipped under a transfer.
    Shipped(TransferLeg),
    /// Units the writer received under a transfer.
    Received(TransferLeg),
}

/// The identity of a transfer: id, SKU and both ends.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferLeg {
    /// Transfer id.
    pub transfer: TransferId,
    /// Origin.
    pub from: LocationId,
    /// Destination.
    pub to: LocationId,
    /// Article.
    pub sku: Sku,
}

impl CounterKey {
    /// The pool whose rights or on-hand count this counter changes, if any.
    pub fn pool(&self) -> Option<&PoolKey> {
        match self {
            CounterKey::Minted(p)
            | CounterKey::Consumed(p)
            | CounterKey::Reserved(p)
            | CounterKey::Released(p)
            | CounterKey::Granted(p, _) => Some(p),
            CounterKey::Shipped(_) | CounterKey::Received(_) => None,
        }
    }

    /// Parses the text form written by `Display`.
    pub fn parse(s: &str) -> Result<Self, InputError> {
        let parts: Vec<&str> = s.split('|').collect();
        let bad = || InputError::BadCounterKey(s.chars().take(80).collect());
        let pool = |loc: &str, sku: &str| -> Result<PoolKey, InputError> {
            Ok(PoolKey::new(LocationId::new(loc)?, Sku::new(sku)?))
        };
        let leg = |t: &str, f: &str, to: &str, sku: &str| -> Result<TransferLeg, InputError> {
            Ok(TransferLeg {
                transfer: TransferId::new(t)?,
                from: LocationId::new(f)?,
                to: LocationId::new(to)?,
                sku: Sku::new(sku)?,
            })
        };
        match parts.as_slice() {
            ["m", l, k] => Ok(CounterKey::Minted(pool(l, k)?)),
            ["c", l, k] => Ok(CounterKey::Consumed(pool(l, k)?)),
            ["r", l, k] => Ok(CounterKey::Reserved(pool(l, k)?)),
            ["l", l, k] => Ok(CounterKey::Released(pool(l, k)?)),
            ["g", l, k, n] => Ok(CounterKey::Granted(pool(l, k)?, NodeId::from_hex(n)?)),
            ["s", t, f, to, k] => Ok(CounterKey::Shipped(leg(t, f, to, k)?)),
            ["v", t, f, to, k] => Ok(CounterKey::Received(leg(t, f, to, k)?)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for CounterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CounterKey::Minted(p) => write!(f, "m|{}|{}", p.location, p.sku),
            CounterKey::Consumed(p) => write!(f, "c|{}|{}", p.location, p.sku),
            CounterKey::Reserved(p) => write!(f, "r|{}|{}", p.location, p.sku),
            CounterKey::Released(p) => write!(f, "l|{}|{}", p.location, p.sku),
            CounterKey::Granted(p, n) => write!(f, "g|{}|{}|{}", p.location, p.sku, n.to_hex()),
            CounterKey::Shipped(t) => write!(f, "s|{}|{}|{}|{}", t.transfer, t.from, t.to, t.sku),
            CounterKey::Received(t) => {
                write!(f, "v|{}|{}|{}|{}", t.transfer, t.from, t.to, t.sku)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> PoolKey {
        PoolKey::new(LocationId::new("S1").unwrap(), Sku::new("A-1").unwrap())
    }

    #[test]
    fn text_form_round_trips() {
        let leg = TransferLeg {
            transfer: TransferId::new("T9").unwrap(),
            from: LocationId::new("S1").unwrap(),
            to: LocationId::new("S2").unwrap(),
            sku: Sku::new("A-1").unwrap(),
        };
        for k in [
            CounterKey::Minted(pool()),
            CounterKey::Consumed(pool()),
            CounterKey::Reserved(pool()),
            CounterKey::Released(pool()),
            CounterKey::Granted(pool(), NodeId([3; 32])),
            CounterKey::Shipped(leg.clone()),
            CounterKey::Received(leg),
        ] {
            assert_eq!(CounterKey::parse(&k.to_string()).unwrap(), k);
        }
    }

    #[test]
    fn garbage_is_rejected() {
        for s in ["", "m", "m|a", "x|a|b", "g|a|b|zz", "m|a|b|c", "m||b"] {
            assert!(CounterKey::parse(s).is_err(), "{s}");
        }
    }
}
