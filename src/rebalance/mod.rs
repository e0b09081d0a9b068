//! Quota rebalancing, the pure part: sales velocity per node and SKU, the
//! levels that decide when a holder pulls, how a donor answers, the
//! requester's rounds of asks, the messages that carry them, and the plan
//! that splits a pool's rights among its holders; a hub's reserve, channels'
//! safety stock and the allocation of a hub's rights. The node's rights desk
//! (`node::rights`) drives them; see docs/rebalancing.md.

mod allocate;
mod levels;
mod plan;
mod pull;
mod rounds;
mod rules;
mod velocity;
mod wire;

pub use allocate::{allocate, AllocGrant, Allocation, AllocationInput, Recipient};
pub use levels::RebalanceSettings;
pub use plan::{plan, Holder, Move, Plan, Strategy};
pub use pull::{should_pull, Donor, PullAnswer, PullLevels, PullRequest, Shortfall};
pub use rounds::{Ask, AskOutcome, Round, Rounds, RoundsConfig};
pub use rules::{
    donor_floor, reserve_in, safety_stock_in, AllocationRule, NodeRef, PoolScope, Reserve,
    SafetyStock,
};
pub use velocity::Velocity;
pub use wire::{BorrowAnswer, BorrowReport, RightsAnswer, RightsRequest};
