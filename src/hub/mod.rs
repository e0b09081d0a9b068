//! The hub's live aggregation: what HQ sees of the whole fleet, per SKU and
//! per node, kept up to date as the hub's replica applies changes.
//!
//! - `aggregate` (pure): [`Aggregate`], fed with counter raises, updates the
//!   figures of one pool, its SKU and its node in place.
//! - `view`: the read API ([`SkuView`], [`NodeView`], [`DeficitView`]).
//! - `store`: the storage seam [`AggregateStore`] and [`SqliteAggregateStore`].
//! - `names`, `records`: interned ids and the rows a store keeps.
//! - [`Hub`] (here): attaches an aggregate to a hub [`Node`] through the
//!   node's opt-in delta log, writes each batch to the store, and answers reads.

mod aggregate;
mod names;
mod records;
mod store;
mod view;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use thiserror::Error;
use tracing::error;

pub use aggregate::{Aggregate, AggregateError};
pub use records::{GrantKey, LegKey, LegRecord, NodeRecord, Records, ShareRecord};
pub use store::{AggregateStore, AggregateStoreError, SqliteAggregateStore};
pub use view::{
    DeficitView, FleetTotals, LegView, LocationView, NodeView, RightsView, SkuSummary, SkuView,
};

use crate::error::NodeError;
use crate::model::{NodeId, Role, Sku};
use crate::node::{DeltaSink, Node};
use crate::replica::{Deltas, Replica};

/// Why a hub could not start.
#[derive(Debug, Error)]
pub enum HubError {
    /// The node's role is not `hub`.
    #[error("node role is {0}, not hub")]
    NotAHub(&'static str),
    /// The aggregate store failed.
    #[error(transparent)]
    Store(#[from] AggregateStoreError),
    /// The stored aggregate does not hold together.
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
    /// The node refused.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// One node's status at the hub: its figures and its sync lag.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    /// The aggregate's figures.
    pub view: NodeView,
    /// True when the hub has a connection to it now.
    pub connected: bool,
    /// Connected: ms since it last acknowledged; otherwise ms since last heard
    /// (`None`: never heard).
    pub lag_ms: Option<u64>,
}

/// The aggregate and its store, behind one lock.
struct Inner {
    aggregate: Aggregate,
    store: Box<dyn AggregateStore>,
    /// The last store failure, if the store is behind memory.
    store_error: Option<String>,
    /// Store writes that failed since start.
    store_failures: u64,
}

/// The delta sink the node calls under its lock.
struct Sink {
    inner: Mutex<Inner>,
    me: NodeId,
    /// Bumped after every batch applied: readers poll it to see a change.
    generation: AtomicU64,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Brings every writer whose head in `replica` differs from the aggregate's
/// up to date from the book (counters are absolute: equal ones change nothing).
fn catch_up(agg: &mut Aggregate, replica: &Replica) -> Result<(), AggregateError> {
    for (writer, head) in replica.heads().iter() {
        if agg.position(writer) == head.position {
            continue;
        }
        for (k, v) in replica.book().counters_of(writer) {
            agg.raise(writer, k, v)?;
        }
        agg.set_position(writer, head.position)?;
    }
    if let Some(roster) = replica.roster() {
        for (id, m) in &roster.members {
            if agg.role(id) != Some(m.role) {
                agg.set_role(id, m.role)?;
            }
        }
    }
    Ok(())
}

impl DeltaSink for Sink {
    fn apply(&self, deltas: Deltas, replica: &Replica) {
        let mut g = self.lock();
        let Inner {
            aggregate, store, ..
        } = &mut *g;
        let mut result = Ok(());
        if aggregate.role(&self.me).is_none() {
            result = aggregate.set_role(&self.me, Role::Hub);
        }
        for r in &deltas.raises {
            result = result.and(aggregate.raise(&r.writer, &r.key, r.new).map(|_| ()));
        }
        for h in &deltas.heard {
            result = result.and(aggregate.heard(&h.writer, h.position, h.time_ms));
            if aggregate.role(&h.writer).is_none() {
                if let Some(m) = replica.roster().and_then(|r| r.member(&h.writer)) {
                    result = result.and(aggregate.set_role(&h.writer, m.role));
                }
            }
        }
        if deltas.reset {
            result = result.and(catch_up(aggregate, replica));
        }
        if let Err(e) = result {
            // Only a fleet with over 2^32 names gets here; the rest of the batch applied.
            error!(error = %e, "hub aggregate refused a raise");
        }
        let changes = aggregate.take_changes();
        match store.apply(&changes) {
            Ok(()) => g.store_error = None,
            Err(e) => {
                // Memory stays ahead; after a restart the lagging writers are
                // caught up from the replica's book.
                error!(error = %e, "writing the hub aggregate failed");
                g.store_error = Some(e.to_string());
                g.store_failures = g.store_failures.saturating_add(1);
            }
        }
        drop(g);
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// A hub node with its live aggregate.
#[derive(Clone)]
pub struct Hub {
    node: Node,
    sink: Arc<Sink>,
}

impl Hub {
    /// Loads the aggregate from `store`, catches up the writers it is behind
    /// on, and attaches it to `node` (which must have the `hub` role).
    pub fn start<S: AggregateStore + 'static>(node: Node, mut store: S) -> Result<Self, HubError> {
        if node.meta().role != Role::Hub {
            return Err(HubError::NotAHub(node.meta().role.as_str()));
        }
        let aggregate = Aggregate::restore(store.load()?)?;
        let sink = Arc::new(Sink {
            inner: Mutex::new(Inner {
                aggregate,
                store: Box::new(store),
                store_error: None,
                store_failures: 0,
            }),
            me: node.id(),
            generation: AtomicU64::new(0),
        });
        node.attach_delta_sink(sink.clone())?;
        Ok(Self { node, sink })
    }

    /// The hub's node.
    pub fn node_handle(&self) -> &Node {
        &self.node
    }

    /// Runs `f` on the aggregate (reads never wait for the node's commits).
    pub fn read<R>(&self, f: impl FnOnce(&Aggregate) -> R) -> R {
        f(&self.sink.lock().aggregate)
    }

    /// One SKU across the fleet.
    pub fn sku(&self, sku: &Sku) -> Option<SkuView> {
        self.read(|a| a.sku(sku))
    }

    /// Every uncovered deficit.
    pub fn deficits(&self) -> Vec<DeficitView> {
        self.read(Aggregate::deficits)
    }

    /// One node's figures and sync lag at `now_ms` (Unix ms).
    pub fn node(&self, id: &NodeId, now_ms: i64) -> Option<NodeStatus> {
        let view = self.read(|a| a.node(id))?;
        let lag = self.node.peer_lags().into_iter().find(|l| &l.peer == id);
        let lag_ms = match &lag {
            Some(l) => Some(l.since_progress_ms),
            None => view
                .last_heard_ms
                .map(|t| now_ms.saturating_sub(t).max(0) as u64),
        };
        Some(NodeStatus {
            connected: lag.is_some(),
            lag_ms,
            view,
        })
    }

    /// A number that changes after every batch the aggregate applied.
    pub fn generation(&self) -> u64 {
        self.sink.generation.load(Ordering::Acquire)
    }

    /// Store writes that failed since the hub started.
    pub fn store_failures(&self) -> u64 {
        self.sink.lock().store_failures
    }

    /// The last store failure, while the store is behind memory.
    pub fn store_error(&self) -> Option<String> {
        self.sink.lock().store_error.clone()
    }
}
