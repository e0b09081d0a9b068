//! Deliberate flaws in the escrow rule, for the simulator's self-test only.
//!
//! This module exists only with the `sim` feature. [`super::plan`] consults the
//! flaw set on the current thread; nothing sets one except the simulator, for
//! the duration of a `--broken-rule` run, whose checker must then fail.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

use crate::model::EventKind;

/// A deliberate mistake [`super::plan`] makes while it is set on this thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleFlaw {
    /// Under `strict`, a consumption, grant or reservation of one unit more
    /// than the node's rights is accepted (with no deficit).
    OverConsume,
    /// A grant is accepted whatever the granting node's rights.
    GrantUnheld,
}

impl RuleFlaw {
    /// Every flaw, in a fixed order.
    pub const ALL: [RuleFlaw; 2] = [RuleFlaw::OverConsume, RuleFlaw::GrantUnheld];

    /// The flaw's command-line name.
    pub fn name(&self) -> &'static str {
        match self {
            RuleFlaw::OverConsume => "over-consume",
            RuleFlaw::GrantUnheld => "grant-unheld",
        }
    }
}

impl fmt::Display for RuleFlaw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A flaw name that is not one of [`RuleFlaw::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rule flaw {0:?}: use over-consume or grant-unheld")]
pub struct UnknownFlaw(pub String);

impl FromStr for RuleFlaw {
    type Err = UnknownFlaw;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RuleFlaw::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFlaw(s.to_string()))
    }
}

thread_local! {
    static FLAW: Cell<Option<RuleFlaw>> = const { Cell::new(None) };
}

/// True when `flaw` is set on this thread.
pub fn active(flaw: RuleFlaw) -> bool {
    FLAW.with(|f| f.get()) == Some(flaw)
}

/// True when the flaw set on this thread accepts a `strict` event of `qty`
/// units of `kind` that `rights` do not cover.
pub(crate) fn lets_through(kind: &EventKind, qty: i64, rights: i64) -> bool {
    match FLAW.with(|f| f.get()) {
        Some(RuleFlaw::OverConsume) => qty == rights + 1,
        Some(RuleFlaw::GrantUnheld) => matches!(kind, EventKind::Grant { .. }),
        None => false,
    }
}

/// Sets `flaw` on this thread until the returned guard is dropped.
pub fn set(flaw: Option<RuleFlaw>) -> FlawGuard {
    FlawGuard(FLAW.with(|f| f.replace(flaw)))
}

/// Restores the previous flaw (usually none) when dropped.
#[must_use = "the flaw is cleared when the guard is dropped"]
pub struct FlawGuard(Option<RuleFlaw>);

impl Drop for FlawGuard {
    fn drop(&mut self) {
        FLAW.with(|f| f.set(self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_guard_restores() {
        for f in RuleFlaw::ALL {
            assert_eq!(f.name().parse::<RuleFlaw>(), Ok(f));
        }
        assert!("nope".parse::<RuleFlaw>().is_err());
        {
            let _g = set(Some(RuleFlaw::GrantUnheld));
            assert!(active(RuleFlaw::GrantUnheld));
        }
        assert!(!active(RuleFlaw::GrantUnheld));
    }
}
