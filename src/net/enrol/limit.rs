//! A token bucket per source address for enrolment attempts: `burst`
//! attempts at once, refilled at `per_second`. The caller passes the time, so
//! the limiter is plain data and its tests need no clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Per-address token buckets, bounded in the number of addresses tracked.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    max_addresses: usize,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    /// `burst` attempts at once per address, refilled at `per_second`; at
    /// most `max_addresses` addresses tracked (when full, full buckets are
    /// forgotten; if none is, a new address is refused).
    pub fn new(per_second: f64, burst: u32, max_addresses: usize) -> Self {
        Self {
            per_second,
            burst: f64::from(burst),
            max_addresses,
            buckets: HashMap::new(),
        }
    }

    fn level(&self, tokens: f64, since: Instant, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        (tokens + elapsed * self.per_second).min(self.burst)
    }

    /// Takes one attempt for `ip` at `now`; false if its bucket is empty.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.max_addresses {
            let (rate, burst) = (self.per_second, self.burst);
            self.buckets.retain(|_, (t, since)| {
                let elapsed = now.saturating_duration_since(*since).as_secs_f64();
                (*t + elapsed * rate).min(burst) < burst
            });
            if self.buckets.len() >= self.max_addresses {
                return false;
            }
        }
        let (tokens, since) = self.buckets.get(&ip).copied().unwrap_or((self.burst, now));
        let level = self.level(tokens, since, now);
        if level < 1.0 {
            self.buckets.insert(ip, (level, now));
            return false;
        }
        self.buckets.insert(ip, (level - 1.0, now));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_refill_rate_per_address() {
        let mut l = RateLimiter::new(2.0, 3, 16);
        let (a, b): (IpAddr, IpAddr) = ([127, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let t0 = Instant::now();
        assert!((0..3).all(|_| l.allow(a, t0)), "the burst passes");
        assert!(!l.allow(a, t0), "then a is refused");
        assert!(l.allow(b, t0), "b has its own bucket");
        assert!(
            !l.allow(a, t0 + Duration::from_millis(400)),
            "0.8 of a token"
        );
        assert!(
            l.allow(a, t0 + Duration::from_millis(500)),
            "one token after 0.5 s"
        );
        assert!(!l.allow(a, t0 + Duration::from_millis(500)));
        let later = t0 + Duration::from_secs(60);
        assert!(
            (0..3).all(|_| l.allow(a, later)),
            "refilled to the burst, no more"
        );
        assert!(!l.allow(a, later));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut l = RateLimiter::new(1.0, 1, 2);
        let t0 = Instant::now();
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        assert!(l.allow(ip(1), t0) && l.allow(ip(2), t0));
        assert!(
            !l.allow(ip(3), t0),
            "full of active buckets: a new address waits"
        );
        assert!(
            l.allow(ip(3), t0 + Duration::from_secs(2)),
            "refilled ones are forgotten"
        );
        assert!(l.buckets.len() <= 2);
    }
}
