//! The simulated network: links that can be cut, and messages that are
//! delayed, reordered, dropped, duplicated and replayed, all from one seed.

use std::collections::{BTreeMap, BTreeSet};

use super::rng::SimRng;

/// Fault rates and delays of the simulated network.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Least one-way delay.
    pub min_latency_ms: u64,
    /// Most one-way delay (messages overtake each other within the spread).
    pub max_latency_ms: u64,
    /// Probability a message is lost.
    pub drop: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Probability a message is kept and replayed much later.
    pub replay: f64,
}

/// A message in flight.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Sender.
    pub from: usize,
    /// Receiver.
    pub to: usize,
    /// Encoded message.
    pub bytes: Vec<u8>,
}

/// Links and messages in flight, ordered by delivery time.
pub struct Network {
    config: NetConfig,
    links: BTreeSet<(usize, usize)>,
    cut: BTreeSet<(usize, usize)>,
    queue: BTreeMap<(u64, u64), Delivery>,
    replays: Vec<Delivery>,
    next: u64,
    /// Bytes handed to the network.
    pub bytes_sent: u64,
}

fn key(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Network {
    /// A network with no links.
    pub fn new(config: NetConfig) -> Self {
        Self {
            config,
            links: BTreeSet::new(),
            cut: BTreeSet::new(),
            queue: BTreeMap::new(),
            replays: Vec::new(),
            next: 0,
            bytes_sent: 0,
        }
    }

    /// Adds a link between two nodes.
    pub fn link(&mut self, a: usize, b: usize) {
        self.links.insert(key(a, b));
    }

    /// Every link, cut or not.
    pub fn links(&self) -> impl Iterator<Item = &(usize, usize)> {
        self.links.iter()
    }

    /// True when `a` and `b` are linked and the link is not cut.
    pub fn up(&self, a: usize, b: usize) -> bool {
        let k = key(a, b);
        self.links.contains(&k) && !self.cut.contains(&k)
    }

    /// Cuts a link; returns false if it was cut already.
    pub fn cut(&mut self, a: usize, b: usize) -> bool {
        self.cut.insert(key(a, b))
    }

    /// Heals a link; returns false if it was not cut.
    pub fn heal(&mut self, a: usize, b: usize) -> bool {
        self.cut.remove(&key(a, b))
    }

    /// Cut links.
    pub fn cut_links(&self) -> Vec<(usize, usize)> {
        self.cut.iter().copied().collect()
    }

    /// Hands a message to the network at `now`.
    pub fn send(&mut self, rng: &mut SimRng, now: u64, d: Delivery) {
        self.bytes_sent += d.bytes.len() as u64;
        if rng.chance(self.config.drop) {
            return;
        }
        if rng.chance(self.config.replay) {
            self.replays.push(d.clone());
        }
        let copies = if rng.chance(self.config.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = now + rng.range(self.config.min_latency_ms, self.config.max_latency_ms);
            self.next += 1;
            self.queue.insert((at, self.next), d.clone());
        }
    }

    /// Schedules every kept message for delivery again at `at`.
    pub fn replay_all(&mut self, at: u64) {
        for d in std::mem::take(&mut self.replays) {
            self.next += 1;
            self.queue.insert((at, self.next), d);
        }
    }

    /// When the next message is due.
    pub fn next_due(&self) -> Option<u64> {
        self.queue.keys().next().map(|(t, _)| *t)
    }

    /// The next message due at or before `now`, if its link is up.
    pub fn pop_due(&mut self, now: u64) -> Option<Option<Delivery>> {
        let (&k, _) = self.queue.iter().next()?;
        if k.0 > now {
            return None;
        }
        let d = self.queue.remove(&k)?;
        Some(self.up(d.from, d.to).then_some(d))
    }
}
