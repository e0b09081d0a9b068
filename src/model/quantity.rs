//! Quantities: strictly positive unit counts with a hard upper bound.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::InputError;

/// Largest quantity one event may carry (keeps every sum far from `i64` overflow).
pub const MAX_QUANTITY: u64 = 1_000_000_000;

/// A strictly positive number of units, at most [`MAX_QUANTITY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Quantity(u64);

impl Quantity {
    /// Validates `n`: zero and values above [`MAX_QUANTITY`] are errors.
    pub fn new(n: u64) -> Result<Self, InputError> {
        if n == 0 {
            return Err(InputError::ZeroQuantity);
        }
        if n > MAX_QUANTITY {
            return Err(InputError::QuantityTooLarge {
                value: n.to_string(),
                max: MAX_QUANTITY,
            });
        }
        Ok(Self(n))
    }

    /// Parses user text: rejects signs, zero, non-digits and overflow with distinct errors.
    pub fn parse(s: &str) -> Result<Self, InputError> {
        let t = s.trim();
        if t.starts_with('-') {
            return Err(InputError::NegativeQuantity(t.to_string()));
        }
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InputError::NotANumber(t.to_string()));
        }
        match t.parse::<u64>() {
            Ok(n) => Self::new(n),
            Err(_) => Err(InputError::QuantityTooLarge {
                value: t.to_string(),
                max: MAX_QUANTITY,
            }),
        }
    }

    /// The count as `u64`.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The count as `i64` (always exact: bounded by [`MAX_QUANTITY`]).
    pub fn as_i64(self) -> i64 {
        // MAX_QUANTITY < i64::MAX, checked in `new`.
        self.0 as i64
    }
}

impl TryFrom<u64> for Quantity {
    type Error = InputError;
    fn try_from(n: u64) -> Result<Self, InputError> {
        Self::new(n)
    }
}

impl From<Quantity> for u64 {
    fn from(q: Quantity) -> u64 {
        q.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Parses a signed, non-zero adjustment delta such as `-3` or `+5`.
pub fn parse_delta(s: &str) -> Result<(bool, Quantity), InputError> {
    let t = s.trim();
    let (increase, digits) = match t.as_bytes().first() {
        Some(b'-') => (false, &t[1..]),
        Some(b'+') => (true, &t[1..]),
        _ => (true, t),
    };
    if digits.starts_with(['-', '+']) {
        return Err(InputError::NotANumber(t.to_string()));
    }
    Ok((increase, Quantity::parse(digits)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_bad_text() {
        assert_eq!(Quantity::parse("5").unwrap().get(), 5);
        assert!(matches!(
            Quantity::parse("0"),
            Err(InputError::ZeroQuantity)
        ));
        assert!(matches!(
            Quantity::parse("-1"),
            Err(InputError::NegativeQuantity(_))
        ));
        assert!(matches!(
            Quantity::parse("1.5"),
            Err(InputError::NotANumber(_))
        ));
        assert!(matches!(
            Quantity::parse("99999999999999999999999"),
            Err(InputError::QuantityTooLarge { .. })
        ));
        assert!(matches!(
            Quantity::parse("1000000001"),
            Err(InputError::QuantityTooLarge { .. })
        ));
    }

    #[test]
    fn deltas_carry_a_sign() {
        assert_eq!(
            parse_delta("-3").unwrap(),
            (false, Quantity::new(3).unwrap())
        );
        assert_eq!(
            parse_delta("+3").unwrap(),
            (true, Quantity::new(3).unwrap())
        );
        assert!(parse_delta("--3").is_err());
        assert!(parse_delta("0").is_err());
    }
}
