//! Sales velocity: a decaying average of units sold per hour, per node and SKU.
//!
//! Pure: time is an argument. Each sale adds its quantity; the rate decays
//! exponentially with a half-life, so a till that sold fast an hour ago and
//! nothing since ranks below one selling now.

use serde::{Deserialize, Serialize};

/// Milliseconds in an hour.
const HOUR_MS: f64 = 3_600_000.0;

/// A decaying rate of units per hour, as of `at_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Velocity {
    /// Units per hour at `at_ms`.
    pub per_hour: f64,
    /// When `per_hour` was last brought up to date.
    pub at_ms: i64,
}

impl Velocity {
    /// The rate decayed to `now_ms` (a time before `at_ms` counts as `at_ms`).
    pub fn at(&self, now_ms: i64, half_life_ms: i64) -> f64 {
        let dt = (now_ms - self.at_ms).max(0) as f64;
        let half = half_life_ms.max(1) as f64;
        self.per_hour * (0.5f64).powf(dt / half)
    }

    /// Records `qty` units sold at `now_ms`: the rate decays to now, then each
    /// unit adds 1/τ, τ being the mean lifetime of the decay (half-life / ln 2),
    /// so a steady rate of r units per hour is measured as r.
    pub fn record(&mut self, qty: u64, now_ms: i64, half_life_ms: i64) {
        let now = now_ms.max(self.at_ms);
        let decayed = self.at(now, half_life_ms);
        let window_hours = half_life_ms.max(1) as f64 / HOUR_MS / std::f64::consts::LN_2;
        self.per_hour = decayed + qty as f64 / window_hours;
        self.at_ms = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rate_is_measured_as_itself_and_decays_by_half_per_half_life() {
        let half = 3_600_000; // one hour
        let mut v = Velocity::default();
        // 10 units per hour, one unit every 6 minutes, for 10 hours.
        for i in 0..100 {
            v.record(1, i * 360_000, half);
        }
        let now = 99 * 360_000;
        let rate = v.at(now, half);
        assert!((rate - 10.0).abs() < 0.6, "{rate}");
        // One half-life later with no sale: half of it.
        let later = v.at(now + half, half);
        assert!((later - rate / 2.0).abs() < 1e-9, "{later} {rate}");
        // Time going backwards does not raise it.
        assert!((v.at(now - half, half) - rate).abs() < 1e-9);
    }
}
