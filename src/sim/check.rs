//! The checker: runs each group of events through the model, resolves the
//! groups of nodes that died before answering, and compares every replica
//! and journal with the model.

use std::collections::{BTreeSet, HashMap};

use super::adversary::Adversary;
use super::effect::Tally;
use super::grants::GrantCheck;
use super::model::{Answered, Model, View};
use super::world::World;
use crate::error::{EventError, NodeError};
use crate::model::{EventId, EventOutcome, EventRequest, NodeId, PoolKey, Position, ReservationId};

/// What the checker counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    /// Events acknowledged and applied.
    pub acked: usize,
    /// Events refused by the rule or the event model.
    pub refused: usize,
    /// Events that failed in storage.
    pub failed: usize,
    /// Groups of two or more events applied in one commit.
    pub multi_groups: usize,
    /// Repeats of an event id inside one group, answered `replayed`.
    pub repeats_replayed: usize,
    /// Events durable but never acknowledged (the node died after the commit).
    pub durable_unacked: usize,
    /// Events that recorded a deficit.
    pub deficits: usize,
}

/// A group whose node died before answering: the view before it and its requests.
struct Pending {
    view: View,
    requests: Vec<EventRequest>,
}

/// The model and what the run submitted.
pub struct Checker {
    /// The independent model.
    pub model: Model,
    pending: Vec<Vec<Pending>>,
    submitted: Vec<BTreeSet<EventId>>,
    /// Per node, requests a caller may send again (acknowledged or failed).
    pub retryable: Vec<Vec<EventRequest>>,
    /// What was counted.
    pub counts: Counts,
    /// The grants nodes made by themselves, learned and checked.
    pub grants: GrantCheck,
    /// Strict consumptions refused for want of rights since the last look:
    /// node, request, units short (the run may borrow and retry them).
    pub short: Vec<(usize, EventRequest, u64)>,
}

impl Checker {
    /// A checker for `world`'s nodes.
    pub fn new(world: &World) -> Self {
        let n = world.nodes.len();
        let names = world
            .nodes
            .iter()
            .map(|n| (n.meta.id, n.meta.name.clone()))
            .collect();
        Self {
            model: Model::new(names),
            pending: (0..n).map(|_| Vec::new()).collect(),
            submitted: vec![BTreeSet::new(); n],
            retryable: vec![Vec::new(); n],
            counts: Counts::default(),
            grants: GrantCheck::new(n, super::rebalancing::floor(&world.options.rebalance)),
            short: Vec::new(),
        }
    }

    /// Node `i`'s view of its share of every pool `reqs` touch.
    fn view(world: &World, i: usize, reqs: &[EventRequest]) -> Result<View, String> {
        let node = &world.nodes[i];
        let me = node.meta.id;
        let live = node.live.as_ref().ok_or("node down")?;
        let pools = live
            .query(|r| {
                reqs.iter()
                    .map(|q| {
                        let share = r.book().pool(&q.pool).map(|p| p.share(&me));
                        let t = share.map(|s| Tally::of(&s)).unwrap_or_default();
                        (q.pool.clone(), t)
                    })
                    .collect()
            })
            .map_err(|e| format!("{}: {e}", node.meta.name))?;
        Ok(View {
            node: me,
            name: node.meta.name.clone(),
            pools,
        })
    }

    /// Submits `reqs` to node `i` as one group and checks every answer.
    pub fn group(
        &mut self,
        world: &mut World,
        i: usize,
        reqs: Vec<EventRequest>,
    ) -> Result<(), String> {
        self.learn(world)?;
        if world.nodes[i].live.is_none() {
            return Ok(());
        }
        let mut view = Self::view(world, i, &reqs)?;
        self.submitted[i].extend(reqs.iter().map(|r| r.id.clone()));
        let Some(answers) = world.submit_group(i, &reqs) else {
            // Died before answering: whatever it committed counts once it restarts.
            self.pending[i].push(Pending {
                view,
                requests: reqs,
            });
            return Ok(());
        };
        let mut positions: Vec<Position> = Vec::new();
        let mut first_in_group: HashMap<EventId, Answered> = HashMap::new();
        for (req, answer) in reqs.iter().zip(&answers) {
            if answer.is_err() && first_in_group.get(&req.id) == Some(&Answered::Failed) {
                // A repeat of an event whose commit failed shares its failure.
                self.counts.failed += 1;
                continue;
            }
            let verdict = self
                .model
                .answer(&mut view, req, answer)
                .map_err(|e| format!("{e}\n  in the group {}", describe(&reqs, &answers)))?;
            match verdict {
                Answered::Applied => {
                    self.counts.acked += 1;
                    if let Ok(o) = answer {
                        positions.push(o.position);
                        self.counts.deficits += usize::from(o.deficit_created > 0);
                    }
                }
                Answered::Replayed => {
                    let earlier = first_in_group.get(&req.id);
                    self.counts.repeats_replayed += usize::from(earlier.is_some());
                }
                Answered::Refused => {
                    self.counts.refused += 1;
                    if let Err(NodeError::Event(EventError::InsufficientRights {
                        available,
                        requested,
                        ..
                    })) = answer
                    {
                        let need = requested.saturating_sub((*available).max(0) as u64);
                        self.short.push((i, req.clone(), need));
                    }
                }
                Answered::Failed => self.counts.failed += 1,
            }
            if matches!(verdict, Answered::Applied | Answered::Failed) {
                self.retryable[i].push(req.clone());
            }
            first_in_group.entry(req.id.clone()).or_insert(verdict);
        }
        positions.dedup();
        if positions.len() > 1 {
            return Err(format!(
                "{}: one group was committed as {} changes {positions:?}",
                world.nodes[i].meta.name,
                positions.len()
            ));
        }
        let applied = answers
            .iter()
            .filter(|a| a.as_ref().is_ok_and(|o| !o.replayed))
            .count();
        self.counts.multi_groups += usize::from(applied > 1);
        Ok(())
    }

    /// Learns the grants the nodes made by themselves since the last call.
    pub fn learn(&mut self, world: &mut World) -> Result<(), String> {
        self.grants.learn(&mut self.model, world)
    }

    /// Node `i` restarted: counts what its dead groups (and the grants of its
    /// last life) made durable, then checks it holds exactly what it committed.
    pub fn restarted(&mut self, world: &World, i: usize) -> Result<(), String> {
        self.grants.restarted(&mut self.model, world, i)?;
        let node = &world.nodes[i];
        for Pending { mut view, requests } in std::mem::take(&mut self.pending[i]) {
            let context = |e: String| {
                let ids: Vec<_> = requests.iter().map(|r| r.id.to_string()).collect();
                format!(
                    "{e}\n  (durable but unacknowledged: the group [{}] of {} before it died, read from its journal at restart)",
                    ids.join(", "),
                    node.meta.name
                )
            };
            for (k, req) in requests.iter().enumerate() {
                if self.model.applied(&node.meta.id, &req.id).is_some() {
                    continue;
                }
                let repeated = requests[k + 1..].iter().any(|r| r.id == req.id);
                match node.journal(&req.id)? {
                    None if repeated => {}
                    None => self.retryable[i].push(req.clone()),
                    Some((stored, outcome)) if stored == *req => {
                        let taken = self
                            .model
                            .durable(&mut view, req, &outcome, repeated)
                            .map_err(context)?;
                        if taken {
                            self.counts.durable_unacked += 1;
                            self.retryable[i].push(req.clone());
                        }
                    }
                    Some((stored, _)) => {
                        return Err(context(format!(
                            "journal holds {stored:?} under the id of {req:?}"
                        )))
                    }
                }
            }
        }
        self.own_state(world, i)
    }

    /// Node `i` (if up) holds exactly its own counters and holds as the model has them.
    pub fn own_state(&self, world: &World, i: usize) -> Result<(), String> {
        let node = &world.nodes[i];
        let me = node.meta.id;
        let Some(live) = &node.live else {
            return Ok(());
        };
        let (mine, holds) = live
            .query(|r| {
                let mine: Vec<_> = r
                    .book()
                    .pools()
                    .map(|(p, s)| (p.clone(), Tally::of(&s.share(&me))))
                    .collect();
                let mut holds: Vec<_> = r
                    .holds()
                    .iter()
                    .map(|(id, h)| (id.clone(), (h.pool.clone(), h.outstanding)))
                    .collect();
                holds.sort();
                (mine, holds)
            })
            .map_err(|e| format!("{}: {e}", node.meta.name))?;
        let name = &node.meta.name;
        for (pool, t) in &mine {
            let want = self.model.tally(pool, &me);
            if t.own() != want.own() {
                return Err(format!(
                    "{name} holds own counters {:?} in {pool} (minted, consumed, reserved, released, granted), the model {:?}",
                    t.own(),
                    want.own()
                ));
            }
        }
        for (pool, nodes) in self.model.pools() {
            let t = nodes.get(&me).copied().unwrap_or_default();
            if t.own() != [0; 5] && !mine.iter().any(|(p, _)| p == pool) {
                return Err(format!(
                    "{name} lost its counters in {pool}: the model has {:?}",
                    t.own()
                ));
            }
        }
        let want: Vec<_> = self.model.holds(&me).into_iter().collect();
        if holds != want {
            let show = |h: &[(ReservationId, (PoolKey, i64))]| {
                h.iter()
                    .map(|(r, (p, n))| format!("{r} {n} of {p}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(format!(
                "{name} holds [{}], the model [{}]",
                show(&holds),
                show(&want)
            ));
        }
        Ok(())
    }

    /// Names of nodes down or missing some writer's latest change.
    pub fn lagging(world: &World) -> Vec<String> {
        let latest: Vec<(NodeId, Position)> = world
            .nodes
            .iter()
            .filter_map(|n| {
                let p = n.live.as_ref()?.query(|r| r.own_position()).ok()?;
                (p.seq > 0).then_some((n.meta.id, p))
            })
            .collect();
        let mut out = Vec::new();
        for node in &world.nodes {
            let Some(live) = &node.live else {
                out.push(format!("{} is down", node.meta.name));
                continue;
            };
            let behind = live.query(|r| {
                latest.iter().any(|(w, p)| {
                    *w != node.meta.id && r.heads().get(w).map(|h| h.position) != Some(*p)
                })
            });
            if behind.unwrap_or(true) {
                out.push(format!("{} lags", node.meta.name));
            }
        }
        out
    }

    /// Every live replica's pool sums and transfers equal the model's.
    pub fn replicas_match(&self, world: &World) -> Result<(), String> {
        for node in &world.nodes {
            let Some(live) = &node.live else { continue };
            let name = &node.meta.name;
            let diff = live
                .query(|r| self.replica_diff(r.book()))
                .map_err(|e| format!("{name}: {e}"))?;
            if let Some(d) = diff {
                return Err(format!("{name} converged to a different stock: {d}"));
            }
        }
        Ok(())
    }

    fn replica_diff(&self, book: &crate::escrow::StockBook) -> Option<String> {
        let mut pools: BTreeSet<_> = self.model.pools().keys().cloned().collect();
        // The attacker's own location is its business (it may mint there, and
        // each side holds another history of it); every other pool is exact.
        pools.extend(
            book.pools()
                .map(|(p, _)| p.clone())
                .filter(|p| p.location.as_str() != super::adversary::LOCATION),
        );
        for pool in pools {
            let model = self.model.pools().get(&pool).cloned().unwrap_or_default();
            let state = book.pool(&pool).cloned().unwrap_or_default();
            let on_hand: i64 = model.values().map(|t| t.minted - t.consumed).sum();
            let held: i64 = model.values().map(Tally::held).sum();
            let deficit: i64 = model.values().map(|t| (-t.rights()).max(0)).sum();
            let have = (state.on_hand(), state.held(), state.deficit());
            if have != (on_hand, held, deficit) {
                return Some(format!(
                    "{pool} (on hand, held, deficit) {have:?}, the model {:?}",
                    (on_hand, held, deficit)
                ));
            }
            let mut nodes: BTreeSet<NodeId> = model.keys().copied().collect();
            nodes.extend(state.shares.keys().copied());
            for n in nodes {
                let want = model.get(&n).copied().unwrap_or_default().rights();
                let got = state.share(&n).rights();
                if got != want {
                    return Some(format!("{pool}: rights of {n} {got}, the model {want}"));
                }
            }
        }
        let mut legs: BTreeSet<_> = self.model.legs().keys().cloned().collect();
        legs.extend(book.transits().map(|(l, _)| l.clone()));
        legs.into_iter().find_map(|leg| {
            let want = self.model.legs().get(&leg).copied().unwrap_or_default();
            let have = book
                .transits()
                .find(|(l, _)| **l == leg)
                .map(|(_, t)| (t.shipped, t.received))
                .unwrap_or_default();
            (have != want).then(|| {
                format!(
                    "transfer {} {} {}->{}: (shipped, received) {have:?}, the model {want:?}",
                    leg.transfer, leg.sku, leg.from, leg.to
                )
            })
        })
    }

    /// Every live node's parked bundles stay within the configured bounds,
    /// whatever the attacker floods.
    pub fn bounded(&self, world: &World) -> Result<(), String> {
        let sync = &world.options.sync;
        for node in &world.nodes {
            let Some(live) = &node.live else { continue };
            let s = live.sync_status();
            if s.parked_bytes > sync.max_parked_bytes || s.parked_bundles > sync.max_parked {
                return Err(format!(
                    "{} parks {} bundles, {} bytes: over its bounds ({}, {})",
                    node.meta.name,
                    s.parked_bundles,
                    s.parked_bytes,
                    sync.max_parked,
                    sync.max_parked_bytes
                ));
            }
        }
        Ok(())
    }

    /// Every live node knows exactly the forks the run made: the attacker's,
    /// once it showed each side another history, and no other.
    pub fn forks(&self, world: &World, attacker: Option<&Adversary>) -> Result<(), String> {
        let want: BTreeSet<NodeId> = attacker
            .filter(|a| a.equivocated())
            .map(|a| a.id)
            .into_iter()
            .collect();
        for node in &world.nodes {
            let Some(live) = &node.live else { continue };
            let have: BTreeSet<NodeId> = live.forks().iter().map(|f| f.writer).collect();
            if have != want {
                return Err(format!(
                    "{} knows forks of {:?}, the run made {:?}",
                    node.meta.name, have, want
                ));
            }
        }
        Ok(())
    }

    /// Every node's journal holds exactly the events the model applied on it,
    /// each with its first answer (the nodes must be up).
    pub fn journals(&self, world: &World) -> Result<(), String> {
        for (i, node) in world.nodes.iter().enumerate() {
            for id in &self.submitted[i] {
                let stored = node.journal(id)?;
                let applied = self.model.applied(&node.meta.id, id);
                let same = match (&stored, applied) {
                    (None, None) => true,
                    (Some((r, o)), Some((ar, ao))) => {
                        r == ar
                            && (o.position, o.deficit_created, o.rights_after)
                                == (ao.position, ao.deficit_created, ao.rights_after)
                    }
                    _ => false,
                };
                if !same {
                    return Err(format!(
                        "{}: journal holds {:?} for {id}, the model applied {:?}",
                        node.meta.name,
                        stored.map(|(_, o)| o),
                        applied.map(|(_, o)| o)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One line per event of a group and its answer, for failure messages.
fn describe(reqs: &[EventRequest], answers: &[Result<EventOutcome, NodeError>]) -> String {
    reqs.iter()
        .zip(answers)
        .map(|(r, a)| {
            let answer = match a {
                Ok(o) => format!(
                    "ok deficit {} rights after {}{}",
                    o.deficit_created,
                    o.rights_after,
                    if o.replayed { " replayed" } else { "" }
                ),
                Err(e) => format!("error: {e}"),
            };
            format!(
                "\n    {} {} {} of {} ({:?}): {answer}",
                r.id,
                r.kind.label(),
                r.qty,
                r.pool,
                r.policy
            )
        })
        .collect()
}
