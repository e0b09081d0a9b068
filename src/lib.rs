//! stocksync: an offline-first stock sync engine for retail store devices.
//!
//! Stock is held as escrow counters: per location and SKU, each node holds rights
//! it may consume alone, so no pool's on-hand count can go negative whatever the
//! network does. See docs/architecture.md and docs/escrow.md.
//!
//! # Layout
//! - [`model`]: ids, quantities, events and node metadata (plain data).
//! - [`escrow`]: the stock book of grow-only counters and the escrow rule (pure).
//! - [`replica`]: the book plus the own Automerge document, and validation of other writers' changes (pure).
//! - [`store`]: the storage trait, its SQLite and in-memory implementations.
//! - [`node`]: the node handle and its writer: leader/follower group commit, idempotency.
//! - [`sync`]: the sync protocol: wire messages, head signatures, the gossip state machine (pure).
//! - [`sim`]: the deterministic fleet simulator and its checker (seeded faults, pure).
//! - [`identity`]: the node's ed25519 key pair.
//! - [`verify`]: re-derives counts from the journal and the changes and checks the invariant.
//! - [`error`]: one error enum per kind of operation.

pub mod error;
pub mod escrow;
pub mod identity;
pub mod model;
pub mod node;
pub mod replica;
pub mod sim;
pub mod store;
pub mod sync;
pub mod verify;
