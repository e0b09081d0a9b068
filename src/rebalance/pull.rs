//! Automatic pull, the pure policy: when a holder asks peers for rights, and
//! how a donor answers concurrent requests.
//!
//! A requester below its low-water mark asks for enough to reach its refill
//! level, one request at a time. A donor answers a batch of requests from its
//! own surplus above its floor (and above what it has already promised), in
//! the order the requests arrived, and tells each requester what it got and
//! why: granted in full, in part, or refused. Two rules stop rights from
//! bouncing between two starving holders: a holder never gives within a
//! cool-down after it received, and never gives to a holder it received from
//! within that cool-down.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::NodeId;

/// A holder's pull settings for one SKU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PullLevels {
    /// Below this many rights, ask.
    pub low_water: i64,
    /// Ask for enough to come back to this many.
    pub refill_to: i64,
    /// Never give below this many.
    pub floor: i64,
    /// After receiving, give nothing for this long (and never back to the giver).
    pub cool_down_ms: i64,
}

/// How much to ask for, if anything: `None` above the low-water mark or
/// while an earlier request is still unanswered.
pub fn should_pull(rights: i64, levels: &PullLevels, request_pending: bool) -> Option<i64> {
    if request_pending || rights >= levels.low_water {
        return None;
    }
    let want = levels.refill_to.max(levels.low_water) - rights;
    (want > 0).then_some(want)
}

/// One request a donor received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    /// Who asks.
    pub from: NodeId,
    /// How many rights.
    pub qty: i64,
}

/// Why a request got less than it asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shortfall {
    /// The donor's surplus above its floor ran out.
    NoSurplus,
    /// The donor received rights within its cool-down.
    CoolingDown,
    /// The requester gave this donor rights within the cool-down.
    WouldBounce,
    /// The request asked for nothing.
    Empty,
    /// The fleet roster forbids a grant to the requester in that pool.
    NotPermitted,
    /// The donor has too many of the requester's requests open.
    Busy,
    /// The donor could not commit the grant (storage, or its own history).
    Failed,
}

impl Shortfall {
    /// A short snake_case name for logs, errors and JSON.
    pub fn label(self) -> &'static str {
        match self {
            Shortfall::NoSurplus => "no_surplus",
            Shortfall::CoolingDown => "cooling_down",
            Shortfall::WouldBounce => "would_bounce",
            Shortfall::Empty => "empty",
            Shortfall::NotPermitted => "not_permitted",
            Shortfall::Busy => "busy",
            Shortfall::Failed => "failed",
        }
    }
}

/// What a donor answers one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PullAnswer {
    /// The requester.
    pub to: NodeId,
    /// What it asked.
    pub asked: i64,
    /// What the donor grants (a grant of its own rights).
    pub granted: i64,
    /// Why it got less, if it did.
    pub shortfall: Option<Shortfall>,
}

/// A donor's state for one SKU: its rights, what it already promised, and
/// when it last received from whom.
#[derive(Clone, Debug, Default)]
pub struct Donor {
    /// Rights the donor holds.
    pub rights: i64,
    /// Rights promised in answers not yet committed as grants.
    pub promised: i64,
    /// Per giver, when the donor last received rights from it.
    pub received_from: BTreeMap<NodeId, i64>,
}

impl Donor {
    /// Answers `requests`, in order, at time `now_ms`. What it grants is
    /// added to `promised` (the caller commits the grants, then lowers
    /// `rights` and `promised` together): the sum granted never exceeds the
    /// surplus above the floor, whatever the batches.
    pub fn answer(
        &mut self,
        requests: &[PullRequest],
        levels: &PullLevels,
        now_ms: i64,
    ) -> Vec<PullAnswer> {
        let cooling = self
            .received_from
            .values()
            .any(|&at| now_ms < at.saturating_add(levels.cool_down_ms));
        requests
            .iter()
            .map(|r| {
                let bounce = self
                    .received_from
                    .get(&r.from)
                    .is_some_and(|&at| now_ms < at.saturating_add(levels.cool_down_ms));
                let surplus = (self.rights - self.promised - levels.floor).max(0);
                let (granted, shortfall) = if r.qty <= 0 {
                    (0, Some(Shortfall::Empty))
                } else if bounce {
                    (0, Some(Shortfall::WouldBounce))
                } else if cooling {
                    (0, Some(Shortfall::CoolingDown))
                } else {
                    let g = r.qty.min(surplus);
                    (g, (g < r.qty).then_some(Shortfall::NoSurplus))
                };
                self.promised += granted;
                PullAnswer {
                    to: r.from,
                    asked: r.qty.max(0),
                    granted,
                    shortfall,
                }
            })
            .collect()
    }

    /// The donor received `qty` rights from `from` at `now_ms`.
    pub fn received(&mut self, from: NodeId, qty: i64, now_ms: i64) {
        self.rights += qty;
        self.received_from.insert(from, now_ms);
    }

    /// A promised grant of `qty` was committed.
    pub fn granted(&mut self, qty: i64) {
        self.rights -= qty;
        self.promised = (self.promised - qty).max(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEVELS: PullLevels = PullLevels {
        low_water: 3,
        refill_to: 10,
        floor: 5,
        cool_down_ms: 30_000,
    };

    fn n(i: u8) -> NodeId {
        NodeId([i; 32])
    }

    #[test]
    fn a_holder_asks_once_below_its_low_water_mark_for_its_refill() {
        assert_eq!(should_pull(5, &LEVELS, false), None);
        assert_eq!(should_pull(2, &LEVELS, false), Some(8));
        assert_eq!(should_pull(-1, &LEVELS, false), Some(11));
        assert_eq!(should_pull(2, &LEVELS, true), None);
    }

    #[test]
    fn concurrent_requests_never_get_more_than_the_surplus_and_each_is_told_why() {
        let mut d = Donor {
            rights: 12,
            ..Donor::default()
        };
        let asks = [
            PullRequest { from: n(1), qty: 4 },
            PullRequest { from: n(2), qty: 4 },
            PullRequest { from: n(3), qty: 4 },
        ];
        let a = d.answer(&asks, &LEVELS, 0);
        assert_eq!(a.iter().map(|x| x.granted).collect::<Vec<_>>(), [4, 3, 0]);
        assert_eq!(a[1].shortfall, Some(Shortfall::NoSurplus));
        assert_eq!(a[2].shortfall, Some(Shortfall::NoSurplus));
        // A second batch before the grants commit finds nothing left.
        let b = d.answer(&asks[..1], &LEVELS, 1);
        assert_eq!(b[0].granted, 0);
    }

    #[test]
    fn rights_do_not_bounce_between_two_holders() {
        let mut d = Donor {
            rights: 20,
            ..Donor::default()
        };
        d.received(n(1), 6, 1_000);
        let a = d.answer(&[PullRequest { from: n(1), qty: 3 }], &LEVELS, 2_000);
        assert_eq!(a[0].shortfall, Some(Shortfall::WouldBounce));
        let b = d.answer(&[PullRequest { from: n(2), qty: 3 }], &LEVELS, 2_000);
        assert_eq!(b[0].shortfall, Some(Shortfall::CoolingDown));
        let c = d.answer(&[PullRequest { from: n(1), qty: 3 }], &LEVELS, 40_000);
        assert_eq!(c[0].granted, 3);
    }
}
