//! The requester's side of the rights exchange, pure: a round per pool asks
//! connected peers, largest visible holder first, until what it wanted is
//! granted or no peer is left to ask; each ask ends answered or unanswered
//! (timed out, or its peer went away). Time and request ids are inputs.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

use super::pull::Shortfall;
use super::wire::{RightsAnswer, RightsRequest};
use crate::model::{NodeId, PoolKey, Position};

/// How one ask ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AskOutcome {
    /// The peer answered.
    Answered {
        /// Rights it granted.
        granted: u64,
        /// Why less than asked.
        shortfall: Option<Shortfall>,
        /// Its change carrying the grant.
        grant_at: Option<Position>,
    },
    /// No answer within the timeout, or the peer disconnected first.
    NoAnswer,
}

/// One request sent to one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    /// The peer asked.
    pub peer: NodeId,
    /// The request's id.
    pub id: u64,
    /// Rights asked.
    pub qty: u64,
    /// When it was sent.
    pub sent_ms: u64,
    /// How it ended (`None`: still open).
    pub outcome: Option<AskOutcome>,
}

impl Ask {
    /// Rights this ask obtained.
    pub fn granted(&self) -> u64 {
        match self.outcome {
            Some(AskOutcome::Answered { granted, .. }) => granted,
            _ => 0,
        }
    }
}

/// A requester's attempt to obtain rights in one pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    /// The pool.
    pub pool: PoolKey,
    /// Rights wanted in all.
    pub wanted: u64,
    /// When it started.
    pub started_ms: u64,
    /// Every ask sent, in order.
    pub asks: Vec<Ask>,
    /// Peers not asked yet, with the rights this replica last saw them hold.
    candidates: VecDeque<(NodeId, i64)>,
}

impl Round {
    /// Rights granted so far.
    pub fn granted(&self) -> u64 {
        self.asks.iter().map(Ask::granted).sum()
    }

    /// Rights asked and not yet answered.
    fn outstanding(&self) -> u64 {
        self.asks
            .iter()
            .filter(|a| a.outcome.is_none())
            .map(|a| a.qty)
            .sum()
    }

    /// True while an ask is open or more peers could still be asked.
    pub fn is_open(&self) -> bool {
        self.asks.iter().any(|a| a.outcome.is_none())
    }

    /// The grants obtained: donor and the change carrying each.
    pub fn grants(&self) -> impl Iterator<Item = (NodeId, Position)> + '_ {
        self.asks.iter().filter_map(|a| match a.outcome {
            Some(AskOutcome::Answered {
                granted,
                grant_at: Some(at),
                ..
            }) if granted > 0 => Some((a.peer, at)),
            _ => None,
        })
    }
}

/// Tunables of the requester side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundsConfig {
    /// An ask unanswered this long counts as no answer.
    pub answer_timeout_ms: u64,
    /// Most asks open at once in one round.
    pub max_open_asks: usize,
}

impl Default for RoundsConfig {
    fn default() -> Self {
        Self {
            answer_timeout_ms: 2_000,
            max_open_asks: 4,
        }
    }
}

/// Every pool's latest round.
#[derive(Debug, Default)]
pub struct Rounds {
    config: RoundsConfig,
    rounds: BTreeMap<PoolKey, Round>,
    by_id: HashMap<u64, PoolKey>,
    /// Answers that matched no open ask (late, duplicated, or made up).
    pub stray_answers: u64,
}

impl Rounds {
    /// No rounds yet.
    pub fn new(config: RoundsConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Starts a round for `want` rights in `pool` among `candidates` (peers
    /// and the rights this replica sees them hold), unless one is open.
    /// Returns the requests to send.
    pub fn start(
        &mut self,
        pool: &PoolKey,
        want: u64,
        candidates: Vec<(NodeId, i64)>,
        now_ms: u64,
        next_id: &mut dyn FnMut() -> u64,
    ) -> Vec<(NodeId, RightsRequest)> {
        if want == 0 || self.rounds.get(pool).is_some_and(Round::is_open) {
            return Vec::new();
        }
        let mut candidates: Vec<(NodeId, i64)> =
            candidates.into_iter().filter(|(_, r)| *r > 0).collect();
        candidates.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        self.rounds.insert(
            pool.clone(),
            Round {
                pool: pool.clone(),
                wanted: want,
                started_ms: now_ms,
                asks: Vec::new(),
                candidates: candidates.into(),
            },
        );
        self.fill(pool, now_ms, next_id)
    }

    /// Asks further candidates for what is neither granted nor asked yet.
    fn fill(
        &mut self,
        pool: &PoolKey,
        now_ms: u64,
        next_id: &mut dyn FnMut() -> u64,
    ) -> Vec<(NodeId, RightsRequest)> {
        let mut out = Vec::new();
        let Some(round) = self.rounds.get_mut(pool) else {
            return out;
        };
        loop {
            let need = round
                .wanted
                .saturating_sub(round.granted())
                .saturating_sub(round.outstanding());
            let open = round.asks.iter().filter(|a| a.outcome.is_none()).count();
            if need == 0 || open >= self.config.max_open_asks {
                break;
            }
            let Some((peer, seen)) = round.candidates.pop_front() else {
                break;
            };
            // The last candidate is asked for everything still needed: this
            // replica's view of its rights may be stale.
            let qty = if round.candidates.is_empty() {
                need
            } else {
                need.min(seen.max(1) as u64)
            };
            let id = next_id();
            round.asks.push(Ask {
                peer,
                id,
                qty,
                sent_ms: now_ms,
                outcome: None,
            });
            self.by_id.insert(id, pool.clone());
            out.push((
                peer,
                RightsRequest {
                    id,
                    pool: pool.clone(),
                    qty,
                    to: None,
                },
            ));
        }
        out
    }

    /// `from` answered; returns further requests to send for what is still short.
    pub fn answered(
        &mut self,
        from: NodeId,
        answer: &RightsAnswer,
        now_ms: u64,
        next_id: &mut dyn FnMut() -> u64,
    ) -> Vec<(NodeId, RightsRequest)> {
        let Some(pool) = self.by_id.get(&answer.id).cloned() else {
            self.stray_answers += 1;
            return Vec::new();
        };
        let Some(ask) = self.rounds.get_mut(&pool).and_then(|r| {
            r.asks
                .iter_mut()
                .find(|a| a.id == answer.id && a.peer == from && a.outcome.is_none())
        }) else {
            self.stray_answers += 1;
            return Vec::new();
        };
        if answer.pool != pool {
            self.stray_answers += 1;
            return Vec::new();
        }
        ask.outcome = Some(AskOutcome::Answered {
            // What the round counts on is never more than it asked.
            granted: answer.granted.min(ask.qty),
            shortfall: answer.shortfall,
            grant_at: answer.grant_at,
        });
        self.by_id.remove(&answer.id);
        self.fill(&pool, now_ms, next_id)
    }

    /// Ends asks open for longer than the timeout; asks others instead.
    pub fn tick(
        &mut self,
        now_ms: u64,
        next_id: &mut dyn FnMut() -> u64,
    ) -> Vec<(NodeId, RightsRequest)> {
        let timeout = self.config.answer_timeout_ms;
        self.end_asks(
            |a| now_ms >= a.sent_ms.saturating_add(timeout),
            now_ms,
            next_id,
        )
    }

    /// `peer` disconnected: its open asks end unanswered, others are asked instead.
    pub fn peer_down(
        &mut self,
        peer: NodeId,
        now_ms: u64,
        next_id: &mut dyn FnMut() -> u64,
    ) -> Vec<(NodeId, RightsRequest)> {
        for round in self.rounds.values_mut() {
            round.candidates.retain(|(p, _)| *p != peer);
        }
        self.end_asks(|a| a.peer == peer, now_ms, next_id)
    }

    fn end_asks(
        &mut self,
        ends: impl Fn(&Ask) -> bool,
        now_ms: u64,
        next_id: &mut dyn FnMut() -> u64,
    ) -> Vec<(NodeId, RightsRequest)> {
        let mut touched = Vec::new();
        for (pool, round) in self.rounds.iter_mut() {
            for a in round.asks.iter_mut() {
                if a.outcome.is_none() && ends(a) {
                    a.outcome = Some(AskOutcome::NoAnswer);
                    self.by_id.remove(&a.id);
                    touched.push(pool.clone());
                }
            }
        }
        touched.dedup();
        touched
            .iter()
            .flat_map(|p| self.fill(p, now_ms, next_id))
            .collect()
    }

    /// The latest round of `pool`.
    pub fn round(&self, pool: &PoolKey) -> Option<&Round> {
        self.rounds.get(pool)
    }

    /// When [`Rounds::tick`] next has something to do.
    pub fn next_due(&self) -> Option<u64> {
        self.rounds
            .values()
            .flat_map(|r| r.asks.iter())
            .filter(|a| a.outcome.is_none())
            .map(|a| a.sent_ms.saturating_add(self.config.answer_timeout_ms))
            .min()
    }

    /// Drops finished rounds older than `before_ms` (bounds memory).
    pub fn forget_finished(&mut self, before_ms: u64) {
        self.rounds
            .retain(|_, r| r.is_open() || r.started_ms >= before_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LocationId, Sku};

    fn pool() -> PoolKey {
        PoolKey::new(LocationId::new("S1").unwrap(), Sku::new("A").unwrap())
    }

    fn n(i: u8) -> NodeId {
        NodeId([i; 32])
    }

    fn ids() -> impl FnMut() -> u64 {
        let mut i = 0;
        move || {
            i += 1;
            i
        }
    }

    fn answer(req: &RightsRequest, granted: u64, at: u64) -> RightsAnswer {
        RightsAnswer {
            id: req.id,
            pool: req.pool.clone(),
            asked: req.qty,
            granted,
            shortfall: (granted < req.qty).then_some(Shortfall::NoSurplus),
            grant_at: (granted > 0).then_some(Position { epoch: 0, seq: at }),
        }
    }

    #[test]
    fn the_largest_holder_is_asked_first_and_a_shortfall_goes_to_the_next() {
        let mut r = Rounds::new(RoundsConfig::default());
        let mut id = ids();
        let sent = r.start(
            &pool(),
            8,
            vec![(n(1), 3), (n(2), 20), (n(3), 0)],
            0,
            &mut id,
        );
        // n(2) holds enough: one ask; n(3) shows nothing and is never asked.
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].0, sent[0].1.qty), (n(2), 8));
        let more = r.answered(n(2), &answer(&sent[0].1, 5, 7), 10, &mut id);
        assert_eq!(more.len(), 1);
        assert_eq!((more[0].0, more[0].1.qty), (n(1), 3));
        assert!(r.round(&pool()).unwrap().is_open());
        r.answered(n(1), &answer(&more[0].1, 3, 2), 20, &mut id);
        let round = r.round(&pool()).unwrap();
        assert!(!round.is_open());
        assert_eq!(round.granted(), 8);
        assert_eq!(round.grants().count(), 2);
    }

    #[test]
    fn answers_from_the_wrong_peer_or_twice_count_for_nothing() {
        let mut r = Rounds::new(RoundsConfig::default());
        let mut id = ids();
        let sent = r.start(&pool(), 4, vec![(n(1), 9)], 0, &mut id);
        r.answered(n(2), &answer(&sent[0].1, 4, 1), 1, &mut id);
        assert_eq!(r.round(&pool()).unwrap().granted(), 0);
        let mut big = answer(&sent[0].1, 4, 1);
        big.granted = 1_000;
        r.answered(n(1), &big, 1, &mut id);
        r.answered(n(1), &big, 2, &mut id);
        assert_eq!(r.round(&pool()).unwrap().granted(), 4);
        assert_eq!(r.stray_answers, 2);
    }

    #[test]
    fn a_silent_or_departed_peer_ends_unanswered_and_others_are_asked() {
        let mut r = Rounds::new(RoundsConfig {
            answer_timeout_ms: 100,
            max_open_asks: 1,
        });
        let mut id = ids();
        let sent = r.start(
            &pool(),
            5,
            vec![(n(1), 9), (n(2), 9), (n(3), 9)],
            0,
            &mut id,
        );
        assert_eq!(sent.len(), 1);
        assert!(r.tick(99, &mut id).is_empty());
        let next = r.tick(100, &mut id);
        assert_eq!(next[0].0, n(2));
        let last = r.peer_down(n(2), 120, &mut id);
        assert_eq!(last[0].0, n(3));
        assert_eq!(r.next_due(), Some(220));
        let round = r.round(&pool()).unwrap();
        assert_eq!(round.asks[0].outcome, Some(AskOutcome::NoAnswer));
        assert_eq!(round.asks[1].outcome, Some(AskOutcome::NoAnswer));
        // A second start while one is open does nothing.
        assert!(r
            .start(&pool(), 5, vec![(n(4), 9)], 130, &mut id)
            .is_empty());
    }
}
