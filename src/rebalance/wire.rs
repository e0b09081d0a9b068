//! The messages of the rights exchange: a holder asks a connected peer for
//! rights in one pool, and the peer answers with what it granted and why not
//! more. The grant itself is an ordinary escrow `grant` event of the donor's
//! own rights, committed before the answer leaves and synced like any change.

use serde::{Deserialize, Serialize};

use super::pull::Shortfall;
use crate::model::{NodeId, PoolKey, Position};

/// A holder asks a peer for `qty` rights in `pool`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RightsRequest {
    /// The requester's id for this request (random: unique across restarts).
    pub id: u64,
    /// The pool.
    pub pool: PoolKey,
    /// Rights asked for.
    pub qty: u64,
    /// `None`: grant them to the sender. `Some(node)`: a manager's order to
    /// grant them to `node` (a rebalance); only a store or hub member at the
    /// pool's location may order, and the donor still keeps its floor.
    pub to: Option<NodeId>,
}

/// A donor's answer to a [`RightsRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RightsAnswer {
    /// The request's id.
    pub id: u64,
    /// The pool.
    pub pool: PoolKey,
    /// Rights asked for.
    pub asked: u64,
    /// Rights granted (the donor's grant event is durable before this is sent).
    pub granted: u64,
    /// Why less than asked, if so.
    pub shortfall: Option<Shortfall>,
    /// The donor's change that carries the grant (when `granted > 0`): the
    /// requester holds the rights once it holds the donor's history up to it.
    pub grant_at: Option<Position>,
}

/// What one peer made of a borrow (for the error a refused sale returns).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BorrowAnswer {
    /// The peer (its roster name when known, else its id).
    pub peer: String,
    /// Rights asked of it.
    pub asked: u64,
    /// Rights it granted.
    pub granted: u64,
    /// `granted`, a shortfall's label (`no_surplus`, `cooling_down`...), or `no_answer`.
    pub outcome: String,
}

/// Why a strict consumption stayed short after borrowing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BorrowReport {
    /// The pool.
    pub pool: PoolKey,
    /// Rights the node had when it retried.
    pub available: i64,
    /// Units the event needed.
    pub requested: u64,
    /// Rights asked of peers in all.
    pub asked: u64,
    /// Rights peers granted (some may still be on their way).
    pub granted: u64,
    /// How long the event waited.
    pub waited_ms: u64,
    /// Each peer asked and its answer.
    pub answers: Vec<BorrowAnswer>,
}

impl std::fmt::Display for BorrowReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "insufficient rights for {}: {} available, {} requested; asked peers for {} and got {} in {} ms",
            self.pool,
            self.available.max(0),
            self.requested,
            self.asked,
            self.granted,
            self.waited_ms
        )?;
        if self.answers.is_empty() {
            return write!(f, " (no connected peer holds rights there)");
        }
        write!(f, " (")?;
        for (i, a) in self.answers.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{}: {} of {}, {}", a.peer, a.granted, a.asked, a.outcome)?;
        }
        write!(f, ")")
    }
}
