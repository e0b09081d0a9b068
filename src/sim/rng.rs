//! The simulator's one source of randomness, seeded.

use rand_core::{Rng, SeedableRng};
use rand_xorshift::XorShiftRng;

/// A seeded generator with the few draws the simulator needs.
pub struct SimRng(XorShiftRng);

impl SimRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(XorShiftRng::seed_from_u64(seed))
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.0.next_u64() % (hi - lo + 1)
    }

    /// An index below `n` (`n` > 0).
    pub fn pick(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        let x = (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }
}
