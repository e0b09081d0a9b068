//! The invariants: the strict state of the true book (shared with the broken-rule
//! tests), and the checks the simulation runs after every step and at the end.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use stocksync::escrow::{PoolState, StockBook};
use stocksync::model::PoolKey;

use crate::sim::{own_counters, Sim};

/// The invariant that must hold in the true state when every consumption is strict:
/// no pool's on-hand count is negative, no node's rights are negative, nothing
/// is held negatively. Shared by the replica simulation and the bad-planner tests.
pub(crate) fn check_strict_state(truth: &StockBook) -> Result<(), String> {
    for (p, st) in truth.pools() {
        if st.on_hand() < 0 {
            return Err(format!("pool {p}: on_hand {} < 0", st.on_hand()));
        }
        for (n, s) in &st.shares {
            if s.rights() < 0 {
                return Err(format!("pool {p}: node {n} has rights {} < 0", s.rights()));
            }
            if s.held() < 0 {
                return Err(format!("pool {p}: node {n} holds {} < 0", s.held()));
            }
        }
    }
    Ok(())
}

impl Sim {
    /// The true state: every writer's counters at their latest values.
    pub(crate) fn truth(&self) -> StockBook {
        let mut b = StockBook::new();
        for (i, r) in self.replicas.iter().enumerate() {
            for (k, v) in r.book().counters_of(&self.ids[i]) {
                b.raise(self.ids[i], k, v).unwrap();
            }
        }
        b
    }

    /// The invariants after every step: views never above the truth, deficits only
    /// where recorded, no invented counter values (and the strict state if strict-only).
    pub(crate) fn check(&self) -> Result<(), TestCaseError> {
        let truth = self.truth();
        if self.strict_only {
            check_strict_state(&truth).map_err(TestCaseError::fail)?;
        }
        for (p, st) in truth.pools() {
            for (n, s) in &st.shares {
                let i = self.ids.iter().position(|id| id == n).unwrap();
                // A true deficit only after a Record consumption beyond rights.
                if s.deficit() > 0 {
                    prop_assert!(
                        self.recorded_deficit[i],
                        "{} has deficit {} in {} without a recorded one",
                        n,
                        s.deficit(),
                        p
                    );
                }
                prop_assert!(s.held() >= 0);
                // Own view of own rights never above the truth (and never negative
                // unless the node recorded a deficit).
                let own = self.replicas[i].book().rights(p, n);
                prop_assert!(
                    own <= s.rights(),
                    "{} sees rights {} in {} but has {}",
                    n,
                    own,
                    p,
                    s.rights()
                );
                if !self.recorded_deficit[i] {
                    prop_assert!(own >= 0);
                }
            }
        }
        // No replica knows a counter value its writer never reached.
        for r in &self.replicas {
            let b = r.book();
            for w in b.writers() {
                for (k, v) in b.counters_of(w) {
                    prop_assert!(
                        v <= truth.counter(w, k),
                        "{:?} invented {:?} of {:?}",
                        r.me(),
                        k,
                        w
                    );
                }
            }
        }
        Ok(())
    }

    /// After everything was delivered: every replica equals the truth.
    pub(crate) fn check_converged(&self) -> Result<(), TestCaseError> {
        let truth = self.truth();
        let true_pools: Vec<(PoolKey, PoolState)> =
            truth.pools().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (i, r) in self.replicas.iter().enumerate() {
            let pools: Vec<(PoolKey, PoolState)> = r
                .book()
                .pools()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            prop_assert_eq!(&pools, &true_pools, "replica {} differs from the truth", i);
            for (j, w) in self.ids.iter().enumerate() {
                prop_assert_eq!(own_counters(r.book(), w), own_counters(&truth, w));
                let latest = self.logs[j].last().map(|e| e.pos).unwrap_or_default();
                if i != j {
                    prop_assert_eq!(self.head(i, j), latest);
                }
            }
            for (p, st) in &true_pools {
                let mine = r.book().pool(p).unwrap();
                prop_assert_eq!(mine.on_hand(), st.on_hand());
                prop_assert_eq!(mine.deficit(), st.deficit());
            }
        }
        Ok(())
    }
}
