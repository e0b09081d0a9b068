//! The workload: groups of sales, returns, receipts, transfers, adjustments,
//! grants, reservations and online orders under `strict` and `record`, with
//! retries and repeated ids, all drawn from the run's seed.

use crate::escrow::{Holds, StockBook};
use crate::model::{
    EventId, EventKind, EventRequest, LocationId, NodeId, Policy, PoolKey, Quantity, ReasonCode,
    ReservationId, Role, Sku, TransferId,
};

use super::rng::SimRng;
use super::world::World;

/// SKUs every location stocks.
pub const SKUS: usize = 3;

/// Most events submitted together in one group.
pub const MAX_GROUP: u64 = 6;

fn sku(i: usize) -> Sku {
    // "K0".."K2" are valid names.
    Sku::new(format!("K{i}")).expect("valid sku")
}

/// Events one node submits together, so that they share one group commit.
pub struct Group {
    /// Acting node.
    pub node: usize,
    /// The requests, in submission order.
    pub requests: Vec<EventRequest>,
}

fn req(id: String, loc: &LocationId, sku: Sku, qty: u64, kind: EventKind) -> EventRequest {
    EventRequest::new(
        // Ids are "e<step>-<k>" or "T<step>-<k>": valid names.
        EventId::new(id).expect("valid id"),
        loc.clone(),
        sku,
        Quantity::new(qty.clamp(1, 1_000)).expect("valid qty"),
        kind,
    )
}

/// What the acting node sees, read once before its group.
struct Seen {
    me: NodeId,
    loc: LocationId,
    role: Role,
    book: StockBook,
    holds: Holds,
    peers: Vec<NodeId>,
    other_locs: Vec<LocationId>,
}

/// Draws the next group for a random live node (`None` if every node is down).
/// `retryable` holds, per node, requests its callers may send again.
pub fn next(world: &mut World, step: u64, retryable: &[Vec<EventRequest>]) -> Option<Group> {
    let live: Vec<usize> = (0..world.nodes.len())
        .filter(|&i| world.nodes[i].live.is_some())
        .collect();
    if live.is_empty() {
        return None;
    }
    let i = live[world.rng.pick(live.len())];
    let node = &world.nodes[i];
    let me = node.meta.id;
    let loc = node.meta.location.clone();
    // A copy of the node's view (the simulator's pools are small).
    let (book, holds) = node
        .live
        .as_ref()?
        .query(|r| (r.book().clone(), r.holds().clone()))
        .ok()?;
    let seen = Seen {
        me,
        role: node.meta.role,
        peers: world
            .nodes
            .iter()
            .filter(|n| n.meta.id != me && n.meta.location == loc)
            .map(|n| n.meta.id)
            .collect(),
        other_locs: world
            .nodes
            .iter()
            .filter(|n| n.meta.role == Role::Store && n.meta.location != loc)
            .map(|n| n.meta.location.clone())
            .collect(),
        loc,
        book,
        holds,
    };
    let rng = &mut world.rng;
    let size = rng.range(1, MAX_GROUP) as usize;
    let mut requests: Vec<EventRequest> = Vec::with_capacity(size);
    for k in 0..size {
        let r = if rng.chance(0.04) && !retryable[i].is_empty() {
            // A caller that did not hear back, or wants to be sure, sends again.
            retryable[i][rng.pick(retryable[i].len())].clone()
        } else if k > 0 && rng.chance(0.08) {
            // The same request twice in one group: applied once, then `replayed`.
            requests[rng.pick(requests.len())].clone()
        } else {
            draw(rng, &seen, format!("{step}-{k}"))
        };
        requests.push(r);
    }
    Some(Group { node: i, requests })
}

/// One new request from what the node sees.
fn draw(rng: &mut SimRng, seen: &Seen, tag: String) -> EventRequest {
    let id = format!("e{tag}");
    let loc = &seen.loc;
    let book = &seen.book;
    let k = sku(rng.pick(SKUS));
    let pool = PoolKey::new(loc.clone(), k.clone());
    let rights = book.rights(&pool, &seen.me).max(0) as u64;
    let mut transits: Vec<(TransferId, LocationId, Sku, i64)> = book
        .transits()
        .filter(|(leg, t)| leg.to == *loc && t.in_transit() > 0)
        .map(|(leg, t)| {
            (
                leg.transfer.clone(),
                leg.from.clone(),
                leg.sku.clone(),
                t.in_transit(),
            )
        })
        .collect();
    transits.sort();
    // Holds come from a hash map: sort them so that the draw is reproducible.
    let mut holds: Vec<_> = seen.holds.iter().collect();
    holds.sort_by(|a, b| a.0.cmp(b.0));
    let roll = rng.pick(100);
    let q = |rng: &mut SimRng, max: u64| rng.range(1, max.max(1));
    let role = seen.role;
    let peers = &seen.peers;
    let mut r = match role {
        Role::Store | Role::Hub if roll < 30 => {
            let n = q(rng, 20);
            req(id, loc, k, n, EventKind::Receipt)
        }
        Role::Store | Role::Hub | Role::Till
            if roll < 50 && !peers.is_empty() && (rights > 0 || rng.chance(0.1)) =>
        {
            // Now and then one more than the rights: the rule must refuse it.
            let to = peers[rng.pick(peers.len())];
            let n = q(rng, rights + 1);
            req(id, loc, k, n, EventKind::Grant { to })
        }
        Role::Store if roll < 60 && !seen.other_locs.is_empty() && rights > 0 => {
            let to = seen.other_locs[rng.pick(seen.other_locs.len())].clone();
            let n = q(rng, rights);
            // "T<step>-<k>" is a valid name.
            let transfer = TransferId::new(format!("T{tag}")).expect("valid id");
            let mut r = req(id, loc, k, n, EventKind::TransferOut { to, transfer });
            if rng.chance(0.1) {
                r.policy = Some(Policy::Record);
            }
            r
        }
        Role::Store if roll < 70 && !transits.is_empty() => {
            let (transfer, from, s, n) = transits[rng.pick(transits.len())].clone();
            req(
                id,
                loc,
                s,
                n as u64,
                EventKind::TransferIn { from, transfer },
            )
        }
        Role::Channel if roll < 20 && rights > 0 => {
            // "R<step>-<k>" is a valid name.
            let reservation = ReservationId::new(format!("R{tag}")).expect("valid id");
            req(id, loc, k, q(rng, 2), EventKind::Reserve { reservation })
        }
        Role::Channel if roll < 35 && !holds.is_empty() => {
            let (r, h) = holds[rng.pick(holds.len())];
            let kind = if rng.chance(0.5) {
                EventKind::Fulfil {
                    reservation: r.clone(),
                }
            } else {
                EventKind::Release {
                    reservation: r.clone(),
                }
            };
            // Part of the hold or all of it: a hold may be released in steps.
            let n = q(rng, h.outstanding as u64);
            req(id, &h.pool.location, h.pool.sku.clone(), n, kind)
        }
        _ if roll < 80 => {
            let n = q(rng, 3);
            if role == Role::Channel {
                let mut r = req(id, loc, k, n, EventKind::OnlineOrder);
                if rng.chance(0.03) {
                    // An order promises stock: `record` must be refused.
                    r.policy = Some(Policy::Record);
                }
                r
            } else {
                let mut r = req(id, loc, k, n, EventKind::Sale);
                let p = rng.pick(10);
                // Till sales of units in hand are sometimes recorded.
                if role == Role::Till && p < 3 {
                    r.policy = Some(Policy::Record);
                } else if p < 4 {
                    r.policy = Some(Policy::Strict);
                }
                r
            }
        }
        _ if roll < 90
            && book
                .pool(&pool)
                .is_some_and(|p| p.share(&seen.me).minted > 0) =>
        {
            req(id, loc, k, 1, EventKind::Return)
        }
        _ => {
            // A constant, valid reason code.
            let reason = ReasonCode::new("count").expect("valid reason");
            let kind = EventKind::Adjustment {
                increase: false,
                reason,
            };
            req(id, loc, k, 1, kind)
        }
    };
    if matches!(r.kind, EventKind::Adjustment { .. }) && rng.chance(0.2) {
        // A negative count defaults to `record`; sometimes the caller asks strict.
        r.policy = Some(Policy::Strict);
    }
    r
}
