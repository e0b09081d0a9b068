//! stocksync: an offline-first stock sync engine for retail store devices.
//!
//! Stock is held as escrow counters: per location and SKU (a *pool*), each node
//! holds rights it may consume alone. Under the `strict` policy a node never
//! consumes beyond its own view of its rights, and that view never exceeds its
//! true rights, so no pool's on-hand count goes negative whatever the network
//! does. Under `record` (allowed for units physically in hand, and the default
//! for negative count adjustments) a shortfall is accepted and shown as a
//! *deficit*: the on-hand count can then go below zero by at most the deficits
//! recorded, visibly, until a rebalance covers them. See docs/architecture.md
//! and docs/escrow.md.
//!
//! # An embedded till
//!
//! ```
//! use stocksync::{data_dir, system_clock, EventId, EventKind, EventRequest, NodeOptions, NodeSpec, Quantity, Sku};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("stocksync-doctest-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&dir);
//! // Once per device: a key pair and an empty database in the data directory.
//! let meta = data_dir::init(&dir, &NodeSpec::parse("till-1", "STORE-7", "till")?)?;
//! // Every start: lock the directory, load the replica.
//! let node = data_dir::open(&dir, NodeOptions::default(), system_clock())?;
//!
//! let event = |id: &str, qty: u64, kind| -> Result<EventRequest, Box<dyn std::error::Error>> {
//!     Ok(EventRequest::new(EventId::new(id)?, meta.location.clone(), Sku::new("SHOE-42")?, Quantity::new(qty)?, kind))
//! };
//! node.execute(event("receipt-1", 6, EventKind::Receipt)?)?;
//! // Acknowledged only once the SQLite transaction committed.
//! let sold = node.execute(event("sale-1", 2, EventKind::Sale)?)?;
//! assert_eq!((sold.rights_after, sold.on_hand_after), (4, 4));
//! // Beyond the till's rights: refused under the default `strict` policy.
//! assert!(node.execute(event("sale-2", 9, EventKind::Sale)?).unwrap_err().is_refusal());
//! // The same event id again is applied once; the first answer comes back.
//! assert!(node.execute(event("sale-1", 2, EventKind::Sale)?)?.replayed);
//! # drop(node);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! A transport connects the node to its peers through the same handle:
//! [`Node::peer_up`], [`Node::receive`], [`Node::tick`] when
//! [`Node::poll_timeout`] is due, and [`Node::take_sends`] for what to send.
//!
//! # Features
//! - `cli` (default): the `stocksync` binary and its dependencies; implies `sim`.
//! - `sim`: the deterministic fleet simulator ([`sim`]).
//! - `net` (in `cli`): the QUIC transport with mutual TLS bound to the fleet roster (`net`).
//! - `mdns` (in `cli`): mDNS peer discovery (`discovery::mdns`).
//!
//! An embedder depends on the library alone with `default-features = false`.
//!
//! # Layout
//! - [`model`]: ids, quantities, events and node metadata (plain data).
//! - [`escrow`]: the stock book of grow-only counters and the escrow rule (pure).
//! - [`fleet`]: the signed fleet roster: who may write, where, in which role (pure).
//! - [`replica`]: the book plus the own Automerge document, and validation of other writers' changes (pure).
//! - [`hub`]: the hub's live aggregate of the fleet (per SKU, per node) behind a storage seam.
//! - [`sync`]: the sync protocol: wire messages, head signatures, the gossip state machine (pure).
//! - [`store`]: the storage trait, its SQLite and in-memory implementations.
//! - [`node`]: the node handle: group commit, idempotency, the sync engine, the outbox.
//! - [`data_dir`]: creating, opening and reading a node's data directory.
//! - [`discovery`]: candidate peers (mDNS, static, in-memory), hints for the transport.
//! - [`identity`]: the node's ed25519 key pair.
//! - [`verify`]: re-derives counts from the journal and the changes and checks the invariant.
//! - [`error`]: one error enum per kind of operation.
//! - `sim` (feature `sim`): the deterministic fleet simulator and its checker.
//! - `net` (feature `net`): the QUIC transport (docs/network.md).

pub mod channel;
pub mod data_dir;
pub mod discovery;
pub mod error;
pub mod escrow;
pub mod fleet;
pub mod hub;
pub mod identity;
pub mod model;
#[cfg(feature = "net")]
pub mod net;
pub mod node;
pub mod rebalance;
pub mod replica;
#[cfg(feature = "sim")]
pub mod sim;
pub mod store;
pub mod sync;
pub mod verify;

pub use data_dir::{NodeSpec, Reader, SetupError};
pub use error::{EventError, InputError, NodeError, StoreError};
pub use identity::Identity;
pub use model::{
    EventId, EventKind, EventOutcome, EventRequest, LocationId, NodeId, NodeMeta, Policy, PoolKey,
    Quantity, ReasonCode, ReservationId, Role, Sku, TransferId,
};
pub use node::{system_clock, Clock, Node, NodeOptions, Outgoing, SyncStatus, Ticket};
pub use store::StockRow;
pub use sync::{RejectReason, SyncConfig, SyncEvent};
