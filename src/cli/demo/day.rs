//! What every act uses: the fleet, the demo's tally, the narrator, events
//! with their ids, and waits for the replicas to converge.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::fleet::Fleet;
use super::narrate::Narrator;
use super::tally::Tally;
use stocksync::error::NodeError;
use stocksync::model::{
    EventId, EventKind, EventOutcome, EventRequest, LocationId, Policy, PoolKey, Quantity, Sku,
};

/// The longest any wait may take before the demo fails.
pub const LIMIT: Duration = Duration::from_secs(30);
/// Pause between two looks at the replicas.
const POLL: Duration = Duration::from_millis(5);

/// The two articles of the day.
pub const TSHIRT: &str = "TSHIRT-M";
/// The second article.
pub const MUG: &str = "MUG";

/// The day in progress.
pub struct Day {
    /// The running fleet.
    pub fleet: Fleet,
    /// The demo's own truth.
    pub tally: Tally,
    /// The progress display.
    pub out: Narrator,
    n: u32,
}

/// `sku` at `location`.
pub fn pool(location: &LocationId, sku: &str) -> Result<PoolKey> {
    Ok(PoolKey::new(location.clone(), Sku::new(sku)?))
}

/// `sku` at the location named `location`.
pub fn pool_at(location: &str, sku: &str) -> Result<PoolKey> {
    pool(&LocationId::new(location)?, sku)
}

/// Polls `done` until it holds; fails after [`LIMIT`] naming `what`.
pub fn wait_for(what: &str, mut done: impl FnMut() -> Result<bool>) -> Result<Duration> {
    let t0 = Instant::now();
    while !done()? {
        if t0.elapsed() > LIMIT {
            return Err(anyhow!("timed out after {LIMIT:?} waiting for {what}"));
        }
        std::thread::sleep(POLL);
    }
    Ok(t0.elapsed())
}

impl Day {
    /// A day on `fleet` of `steps` steps.
    pub fn new(fleet: Fleet, steps: usize) -> Self {
        Self {
            fleet,
            tally: Tally::default(),
            out: Narrator::new(steps),
            n: 0,
        }
    }

    /// Node `who` records `qty` of `sku` as `kind` at its home location;
    /// the tally follows what is accepted. The outer error is the demo's own.
    pub fn try_event(
        &mut self,
        who: usize,
        sku: &str,
        qty: u64,
        kind: EventKind,
        policy: Option<Policy>,
    ) -> Result<Result<EventOutcome, NodeError>> {
        self.n += 1;
        let at = pool(&self.fleet.location(who)?, sku)?;
        let mut req = EventRequest::new(
            EventId::new(format!("demo-{:03}", self.n))?,
            at.location.clone(),
            at.sku.clone(),
            Quantity::new(qty)?,
            kind.clone(),
        );
        req.policy = policy;
        let answer = self.fleet.node(who)?.execute(req);
        if let Ok(o) = &answer {
            if !o.replayed {
                self.tally.apply(&at, qty as i64, &kind);
            }
        }
        Ok(answer)
    }

    /// Like [`Day::try_event`], for an event that must be accepted.
    pub fn event(
        &mut self,
        who: usize,
        sku: &str,
        qty: u64,
        kind: EventKind,
    ) -> Result<EventOutcome> {
        let name = self.fleet.name(who);
        self.try_event(who, sku, qty, kind, None)?
            .map_err(|e| anyhow!("{name}: {qty} x {sku} refused: {e}"))
    }

    /// Node `who` sells `qty` of `sku` one unit at a time (`sales` sales of `qty / sales`).
    pub fn sell(&mut self, who: usize, sku: &str, sales: u64, each: u64) -> Result<()> {
        for _ in 0..sales {
            self.event(who, sku, each, EventKind::Sale)?;
        }
        Ok(())
    }

    /// Node `at`'s rights in `pool`, as it sees them.
    pub fn rights(&self, at: usize, pool: &PoolKey) -> Result<i64> {
        let node = self.fleet.node(at)?;
        let me = node.id();
        Ok(node.query(|r| r.book().rights(pool, &me))?)
    }

    /// Node `at`'s on hand in `pool`.
    pub fn on_hand(&self, at: usize, pool: &PoolKey) -> Result<i64> {
        Ok(self
            .fleet
            .node(at)?
            .query(|r| r.book().pool(pool).map_or(0, |p| p.on_hand()))?)
    }

    /// Whether every node in `nodes` holds every writer's newest change among `nodes`.
    pub fn synced(&self, nodes: &[usize]) -> Result<bool> {
        for &w in nodes {
            let writer = self.fleet.node(w)?.id();
            let own = self.fleet.head(w, &writer)?;
            for &at in nodes {
                if at != w && self.fleet.head(at, &writer)? < own {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Waits until every node in `nodes` holds everyone's changes; returns how long it took.
    pub fn settle(&self, nodes: &[usize]) -> Result<Duration> {
        wait_for("the replicas to converge", || self.synced(nodes))
    }

    /// Waits until the whole fleet holds everyone's changes.
    pub fn settle_all(&self) -> Result<Duration> {
        let all: Vec<usize> = self.fleet.all().collect();
        self.settle(&all)
    }

    /// Pools where node `at` disagrees with the tally: `(pool, replica, tally)`.
    pub fn off_tally(&self, at: usize) -> Result<Vec<(PoolKey, i64, i64)>> {
        let mut off = Vec::new();
        for (p, want) in &self.tally.on_hand {
            let got = self.on_hand(at, p)?;
            if got != *want {
                off.push((p.clone(), got, *want));
            }
        }
        Ok(off)
    }

    /// "STORE-1 T 17 M 11" style figures of `location` as node `at` sees them.
    pub fn figures(&self, at: usize, location: &str) -> Result<String> {
        let t = self.on_hand(at, &pool_at(location, TSHIRT)?)?;
        let m = self.on_hand(at, &pool_at(location, MUG)?)?;
        Ok(format!("{location} {t} {TSHIRT}, {m} {MUG}"))
    }
}
