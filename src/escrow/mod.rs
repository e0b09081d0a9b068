//! Escrow counters: the book of every writer's grow-only counters and the rule that
//! keeps every pool's on-hand count non-negative.

mod book;
mod counter_key;
#[cfg(feature = "sim")]
pub mod flaw;
mod inherit;
mod rule;

pub use book::{PoolState, Raise, Share, StockBook, TransitState, MAX_COUNTER};
pub use counter_key::{CounterKey, TransferLeg};
pub use inherit::{Inheritance, MAX_HEIR_DEPTH};
pub use rule::{apply, counter_deltas, plan, Hold, Holds, Plan};
