//! The workload: sales, returns, receipts, transfers, adjustments, grants,
//! reservations and online orders, drawn from the run's seed.

use crate::escrow::CounterKey;
use crate::model::{
    EventId, EventKind, EventRequest, LocationId, NodeId, Policy, PoolKey, Quantity, ReasonCode,
    ReservationId, Role, Sku, TransferId,
};

use super::world::World;

/// SKUs every location stocks.
pub const SKUS: usize = 3;

fn sku(i: usize) -> Sku {
    // "K0".."K2" are valid names.
    Sku::new(format!("K{i}")).expect("valid sku")
}

/// What one workload step asks for.
pub struct Step {
    /// Acting node.
    pub node: usize,
    /// The request.
    pub request: EventRequest,
    /// True when the checker's broken variant sells against the pool, not the rights.
    pub broken: bool,
}

fn req(id: u64, loc: &LocationId, sku: Sku, qty: u64, kind: EventKind) -> EventRequest {
    let mut r = EventRequest::new(
        EventId::new(format!("e{id}")).expect("valid id"),
        loc.clone(),
        sku,
        Quantity::new(qty.clamp(1, 1_000)).expect("valid qty"),
        kind,
    );
    r.policy = Some(Policy::Strict);
    r
}

/// Draws the next event for a random live node (`None` if every node is down).
pub fn next(world: &mut World, id: u64, broken_rule: bool) -> Option<Step> {
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
    let role = node.meta.role;
    // A copy of the node's view (the simulator's pools are small).
    let (book, holds) = node
        .live
        .as_ref()?
        .query(|r| (r.book().clone(), r.holds().clone()))
        .ok()?;
    let k = sku(world.rng.pick(SKUS));
    let pool = PoolKey::new(loc.clone(), k.clone());
    let rights = book.rights(&pool, &me).max(0) as u64;
    let on_hand = book.pool(&pool).map(|p| p.on_hand()).unwrap_or(0).max(0) as u64;
    let peers: Vec<NodeId> = world
        .nodes
        .iter()
        .filter(|n| n.meta.id != me && n.meta.location == loc)
        .map(|n| n.meta.id)
        .collect();
    let transits: Vec<(TransferId, LocationId, Sku, i64)> = book
        .transits()
        .filter(|(leg, t)| leg.to == loc && t.in_transit() > 0)
        .map(|(leg, t)| {
            (
                leg.transfer.clone(),
                leg.from.clone(),
                leg.sku.clone(),
                t.in_transit(),
            )
        })
        .collect();
    let other_locs: Vec<LocationId> = world
        .nodes
        .iter()
        .filter(|n| n.meta.role == Role::Store && n.meta.location != loc)
        .map(|n| n.meta.location.clone())
        .collect();
    let roll = world.rng.pick(100);
    let q = |rng: &mut super::rng::SimRng, max: u64| rng.range(1, max.max(1));
    let mut broken = false;
    let request = match role {
        Role::Store | Role::Hub if roll < 30 => {
            let n = q(&mut world.rng, 20);
            req(id, &loc, k, n, EventKind::Receipt)
        }
        Role::Store | Role::Hub | Role::Till if roll < 50 && !peers.is_empty() && rights > 0 => {
            let to = peers[world.rng.pick(peers.len())];
            let n = q(&mut world.rng, rights);
            req(id, &loc, k, n, EventKind::Grant { to })
        }
        Role::Store if roll < 60 && !other_locs.is_empty() && rights > 0 => {
            let to = other_locs[world.rng.pick(other_locs.len())].clone();
            let n = q(&mut world.rng, rights);
            req(
                id,
                &loc,
                k,
                n,
                EventKind::TransferOut {
                    to,
                    transfer: TransferId::new(format!("T{id}")).expect("valid id"),
                },
            )
        }
        Role::Store if roll < 70 && !transits.is_empty() => {
            let (transfer, from, s, n) = transits[world.rng.pick(transits.len())].clone();
            req(
                id,
                &loc,
                s,
                n as u64,
                EventKind::TransferIn { from, transfer },
            )
        }
        Role::Channel if roll < 20 && rights > 0 => {
            let reservation = ReservationId::new(format!("R{id}")).expect("valid id");
            req(
                id,
                &loc,
                k,
                q(&mut world.rng, 2),
                EventKind::Reserve { reservation },
            )
        }
        Role::Channel if roll < 35 => {
            // Sorted: the holds are a hash map, whose order is not the seed's.
            let mut holds: Vec<_> = holds.iter().map(|(r, h)| (r.clone(), h.clone())).collect();
            holds.sort_by(|a, b| a.0.cmp(&b.0));
            let (r, h) = holds.get(world.rng.pick(holds.len().max(1)))?.clone();
            let kind = if world.rng.chance(0.5) {
                EventKind::Fulfil { reservation: r }
            } else {
                EventKind::Release { reservation: r }
            };
            req(id, &h.pool.location, h.pool.sku, h.outstanding as u64, kind)
        }
        _ if roll < 80 => {
            let kind = if role == Role::Channel {
                EventKind::OnlineOrder
            } else {
                EventKind::Sale
            };
            let n = q(&mut world.rng, 3);
            let mut r = req(id, &loc, k, n, kind);
            if broken_rule && role == Role::Till && n <= on_hand {
                // The deliberately broken rule: a till trusts the pool's on-hand
                // count it sees instead of its own rights.
                r.kind = EventKind::Sale;
                r.policy = Some(Policy::Record);
                broken = true;
            }
            r
        }
        _ if roll < 90 && book.counter(&me, &CounterKey::Minted(pool.clone())) > 0 => {
            req(id, &loc, k, 1, EventKind::Return)
        }
        _ => {
            let reason = ReasonCode::new("count").expect("valid reason");
            req(
                id,
                &loc,
                k,
                1,
                EventKind::Adjustment {
                    increase: false,
                    reason,
                },
            )
        }
    };
    Some(Step {
        node: i,
        request,
        broken,
    })
}
