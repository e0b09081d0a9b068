//! Quota rebalancing, the pure part: sales velocity per node and SKU, and the
//! plan that splits a pool's rights among its holders (see issue "Quota
//! rebalancing"; the protocol that carries requests and grants builds on it).

mod plan;
mod pull;
mod velocity;

pub use plan::{plan, Holder, Move, Plan, Strategy};
pub use pull::{should_pull, Donor, PullAnswer, PullLevels, PullRequest, Shortfall};
pub use velocity::Velocity;
