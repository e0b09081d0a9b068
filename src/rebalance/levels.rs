//! A holder's pull settings, and the levels they give for one SKU: fixed, or
//! derived from the holder's own recent sales velocity.

use super::pull::PullLevels;
use super::rules::{AllocationRule, Reserve, SafetyStock};
use super::velocity::Velocity;

/// Milliseconds in an hour.
const HOUR_MS: f64 = 3_600_000.0;

/// How a node keeps its rights topped up and when it borrows (all pure
/// settings; [`crate::node::NodeOptions::rebalance`] carries them).
#[derive(Clone, Debug, PartialEq)]
pub struct RebalanceSettings {
    /// Ask connected peers for rights when below the low-water mark after a
    /// sale, and when a peer connects.
    pub auto_pull: bool,
    /// A fixed low-water mark; `None` derives it from sales velocity.
    pub low_water: Option<u64>,
    /// Derived low-water mark: the units sold in this long at the current
    /// velocity (never below `min_low_water`).
    pub cover_ms: u64,
    /// The least derived low-water mark.
    pub min_low_water: u64,
    /// A pull asks for enough to reach this many times the low-water mark.
    pub refill_factor: u64,
    /// A donor never gives below this; `None` means its own low-water mark (so
    /// giving never makes a donor ask back at once).
    pub floor: Option<u64>,
    /// After receiving rights, give none for this long (and never back to the giver).
    pub cool_down_ms: u64,
    /// Half-life of the velocity's decay.
    pub velocity_half_life_ms: u64,
    /// A strict consumption short of rights waits up to this long for a
    /// borrow from connected peers (0: refuse at once).
    pub borrow_deadline_ms: u64,
    /// An ask unanswered this long counts as no answer.
    pub answer_timeout_ms: u64,
    /// Units this node keeps per pool and never grants, to anyone (a hub's reserve).
    pub reserves: Vec<Reserve>,
    /// Channels' safety stock: a grant to a channel never leaves this node
    /// with less than it above its floor.
    pub safety_stocks: Vec<SafetyStock>,
    /// Who receives this node's rights above its reserve, and in what
    /// shares, on a receipt at its location and on request.
    pub allocation: Vec<AllocationRule>,
}

impl Default for RebalanceSettings {
    /// Off: no automatic pull, no borrowing (an embedder or the daemon turns
    /// them on; see [`RebalanceSettings::lan`]).
    fn default() -> Self {
        Self {
            auto_pull: false,
            borrow_deadline_ms: 0,
            ..Self::lan()
        }
    }
}

impl RebalanceSettings {
    /// The settings the daemon uses on a store LAN: automatic pull on, a
    /// borrow waits up to 250 ms, velocity over the last hour or so.
    pub fn lan() -> Self {
        Self {
            auto_pull: true,
            low_water: None,
            cover_ms: 15 * 60 * 1000,
            min_low_water: 1,
            refill_factor: 2,
            floor: None,
            cool_down_ms: 30_000,
            velocity_half_life_ms: 60 * 60 * 1000,
            borrow_deadline_ms: 250,
            answer_timeout_ms: 2_000,
            reserves: Vec::new(),
            safety_stocks: Vec::new(),
            allocation: Vec::new(),
        }
    }

    /// The levels for one SKU given the holder's velocity there at `now_ms`.
    pub fn levels(&self, velocity: &Velocity, now_ms: i64) -> PullLevels {
        let low = self.low_water.unwrap_or_else(|| {
            let per_hour = velocity.at(now_ms, self.velocity_half_life_ms as i64);
            let cover = (per_hour * self.cover_ms as f64 / HOUR_MS).ceil();
            // `cover` is finite and non-negative; the cast saturates.
            (cover as u64).max(self.min_low_water)
        });
        let low = low.min(i64::MAX as u64 / 4) as i64;
        let floor = self
            .floor
            .map_or(low, |f| f.min(i64::MAX as u64 / 4) as i64);
        PullLevels {
            low_water: low,
            refill_to: low.saturating_mul(self.refill_factor.max(1) as i64),
            floor,
            cool_down_ms: self.cool_down_ms.min(i64::MAX as u64) as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_seller_keeps_more_in_reserve_than_a_quiet_one() {
        let s = RebalanceSettings::lan();
        let quiet = s.levels(&Velocity::default(), 0);
        assert_eq!((quiet.low_water, quiet.refill_to, quiet.floor), (1, 2, 1));
        // 40 units an hour, 15 minutes of cover: 10.
        let fast = Velocity {
            per_hour: 40.0,
            at_ms: 0,
        };
        let l = s.levels(&fast, 0);
        assert_eq!((l.low_water, l.refill_to, l.floor), (10, 20, 10));
        let fixed = RebalanceSettings {
            low_water: Some(3),
            floor: Some(5),
            ..RebalanceSettings::lan()
        };
        let l = fixed.levels(&fast, 0);
        assert_eq!((l.low_water, l.refill_to, l.floor), (3, 6, 5));
    }
}
