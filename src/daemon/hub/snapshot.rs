//! The fleet as the hub sees it now: one row per node (online, lag, offline
//! exposure) and the dashboard's compact snapshot, rebuilt at most every
//! [`SNAPSHOT_EVERY`] and published only when it changed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::warn;

use super::super::hub_api::SNAPSHOT_EVERY;
use stocksync::hub::{Aggregate, FleetTotals, Hub};
use stocksync::model::{NodeId, Role, Sku};

/// SKUs the dashboard shows (the first ones by name); the API pages the rest.
pub const DASHBOARD_SKUS: usize = 200;
/// Nodes the dashboard shows.
pub const DASHBOARD_NODES: usize = 1_000;

/// Now, Unix ms.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One fleet node as HQ sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeRow {
    /// Node id (hex).
    pub node: String,
    /// Its name in the roster (`None`: not in the roster this hub holds).
    pub name: Option<String>,
    /// Its role, once known.
    pub role: Option<&'static str>,
    /// The locations it may write (from the roster).
    pub locations: Vec<String>,
    /// Connected to the hub now (the hub itself and channel nodes run here: always).
    pub online: bool,
    /// Time of its newest change the hub applied (Unix ms).
    pub last_heard_ms: Option<i64>,
    /// Online: ms since it last acknowledged; offline: ms since last heard.
    pub lag_ms: Option<u64>,
    /// Pools where it holds positive rights.
    pub pools_held: u64,
    /// Its rights over every pool (deficits count negative).
    pub rights_total: i64,
    /// Its uncovered deficits.
    pub deficit_total: i64,
    /// Offline: the positive rights it holds, which it may sell unseen; online: 0.
    pub offline_exposure: i64,
}

/// Every node of the roster and of the aggregate, by name then id, at `now_ms`.
pub fn node_rows(hub: &Hub, now_ms: i64) -> Vec<NodeRow> {
    let node = hub.node_handle();
    let me = node.id();
    let lags = node.peer_lags();
    let roster = node.roster();
    let views: BTreeMap<NodeId, _> = hub
        .read(|a| a.nodes())
        .into_iter()
        .map(|v| (v.node, v))
        .collect();
    let mut ids: BTreeSet<NodeId> = views.keys().copied().collect();
    if let Some(r) = &roster {
        ids.extend(
            r.members
                .iter()
                .filter(|(_, m)| m.revoked.is_none())
                .map(|(id, _)| *id),
        );
    }
    ids.insert(me);
    let mut rows: Vec<NodeRow> = ids
        .into_iter()
        .map(|id| {
            let member = roster.as_ref().and_then(|r| r.member(&id));
            let view = views.get(&id);
            let role = member.map(|m| m.role).or(view.and_then(|v| v.role));
            let lag = lags.iter().find(|l| l.peer == id);
            let online = id == me || lag.is_some() || role == Some(Role::Channel);
            let last_heard_ms = view.and_then(|v| v.last_heard_ms);
            let lag_ms = match lag {
                Some(l) => Some(l.since_progress_ms),
                None if id == me => Some(0),
                None => last_heard_ms.map(|t| now_ms.saturating_sub(t).max(0) as u64),
            };
            let rights_total = view.map_or(0, |v| v.rights_total);
            let deficit_total = view.map_or(0, |v| v.deficit_total);
            // Σ rights + Σ deficits = the sum of the positive rights.
            let positive = rights_total.saturating_add(deficit_total).max(0);
            NodeRow {
                node: id.to_hex(),
                name: member.map(|m| m.name.clone()),
                role: role.map(|r| r.as_str()),
                locations: member
                    .map(|m| m.locations.iter().map(|l| l.as_str().to_string()).collect())
                    .unwrap_or_default(),
                online,
                last_heard_ms,
                lag_ms,
                pools_held: view.map_or(0, |v| v.pools_held),
                rights_total,
                deficit_total,
                offline_exposure: if online { 0 } else { positive },
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.name, &a.node).cmp(&(&b.name, &b.node)));
    rows
}

/// The first `n` SKU names in order, and how many SKUs there are: a
/// selection, not a sort of every name.
pub fn first_skus(a: &Aggregate, n: usize) -> (Vec<Sku>, usize) {
    first_skus_where(a, n, |_| true)
}

/// The first `n` SKU names in order among those `keep` accepts, and how many
/// it accepts.
pub fn first_skus_where(a: &Aggregate, n: usize, keep: impl Fn(&Sku) -> bool) -> (Vec<Sku>, usize) {
    let mut names: Vec<&Sku> = a.sku_names().filter(|k| keep(k)).collect();
    let total = names.len();
    if names.len() > n && n > 0 {
        names.select_nth_unstable(n - 1);
    }
    names.truncate(n);
    names.sort();
    (names.into_iter().cloned().collect(), total)
}

/// The dashboard's first SKUs by name, kept while no SKU is added (SKU
/// names are never removed, so the same count means the same names).
#[derive(Default)]
struct FirstSkus {
    count: usize,
    names: Vec<Sku>,
}

impl FirstSkus {
    /// The first [`DASHBOARD_SKUS`] names, selected again only when SKUs were added.
    fn get(&mut self, hub: &Hub) -> (Vec<Sku>, usize) {
        let fresh = hub.read(|a| {
            let count = a.sku_count();
            (count != self.count).then(|| first_skus(a, DASHBOARD_SKUS))
        });
        if let Some((names, count)) = fresh {
            *self = FirstSkus { count, names };
        }
        (self.names.clone(), self.count)
    }
}

/// The dashboard's stock grid: the first [`DASHBOARD_SKUS`] SKUs by name,
/// on hand per location. Each SKU is read under the aggregate's lock on its
/// own, so the node's commits wait for one SKU's read at most.
fn stock_grid(hub: &Hub, first: &mut FirstSkus) -> Value {
    let (names, total) = first.get(hub);
    let mut locations = BTreeSet::new();
    let rows: Vec<Value> = names
        .iter()
        .filter_map(|sku| hub.sku(sku))
        .map(|v| {
            let on_hand: BTreeMap<&str, i64> = v
                .per_location
                .iter()
                .map(|l| {
                    locations.insert(l.location.as_str().to_string());
                    (l.location.as_str(), l.on_hand)
                })
                .collect();
            json!({
                "sku": v.sku.as_str(),
                "total": v.total_on_hand,
                "deficit": v.total_deficit,
                "in_transit": v.total_in_transit,
                "on_hand": on_hand,
            })
        })
        .collect();
    json!({ "skus_total": total, "locations": locations, "rows": rows })
}

/// The dashboard's snapshot: hub, totals, nodes (lag in whole seconds, so an
/// idle fleet's snapshot changes at most once a second) and the stock grid.
fn build(hub: &Hub, stock: &Value, totals: &FleetTotals) -> Value {
    let mut nodes = node_rows(hub, unix_ms());
    let nodes_total = nodes.len();
    nodes.truncate(DASHBOARD_NODES);
    let nodes: Vec<Value> = nodes
        .iter()
        .map(|r| {
            json!({
                "node": r.node, "name": r.name, "role": r.role, "locations": r.locations,
                "online": r.online, "lag_s": r.lag_ms.map(|l| l / 1000),
                "deficit": r.deficit_total, "rights": r.rights_total,
                "offline_exposure": r.offline_exposure,
            })
        })
        .collect();
    let meta = hub.node_handle().meta();
    json!({
        "hub": { "node": meta.id.to_hex(), "name": meta.name },
        "totals": totals,
        "nodes_total": nodes_total,
        "nodes": nodes,
        "stock": stock,
        "store_error": hub.store_error(),
    })
}

/// Rebuilds the snapshot every [`SNAPSHOT_EVERY`] (the stock grid only when
/// the aggregate changed) and publishes it on `tx` when it differs, until `stop`.
pub async fn produce(hub: Hub, tx: watch::Sender<Arc<str>>, mut stop: watch::Receiver<bool>) {
    let mut generation = None;
    let mut stock = Value::Null;
    let mut totals = FleetTotals::default();
    let mut first = FirstSkus::default();
    loop {
        let h = hub.clone();
        let g = hub.generation();
        let fresh = generation != Some(g);
        let (prev_stock, prev_totals) = (stock.clone(), totals);
        let mut names = std::mem::take(&mut first);
        let built = tokio::task::spawn_blocking(move || {
            let (stock, totals) = if fresh {
                (stock_grid(&h, &mut names), h.read(|a| a.totals()))
            } else {
                (prev_stock, prev_totals)
            };
            let text = build(&h, &stock, &totals).to_string();
            (stock, totals, text, names)
        })
        .await;
        match built {
            Ok((s, t, text, names)) => {
                generation = Some(g);
                stock = s;
                totals = t;
                first = names;
                tx.send_if_modified(|cur| {
                    if **cur == *text {
                        return false;
                    }
                    *cur = Arc::from(text);
                    true
                });
            }
            Err(e) => warn!(error = %e, "building the dashboard snapshot failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(SNAPSHOT_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
