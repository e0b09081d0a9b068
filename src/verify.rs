//! `verify`: re-derives every count from the stored changes and the journal, and
//! checks them against the materialized tables and the escrow invariant.

use std::collections::{BTreeMap, HashMap};

use automerge::{Automerge, ReadDoc, ROOT};
use serde::Serialize;

use crate::error::StoreError;
use crate::escrow::{CounterKey, StockBook};
use crate::model::{NodeId, NodeMeta, PoolKey};
use crate::store::sqlite::ReadOnly;
use crate::store::StockRow;

/// One named check and what it found.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Whether it held.
    pub ok: bool,
    /// Counts, or the first mismatches.
    pub detail: String,
}

/// The result of `verify`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// True when every check held.
    pub ok: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

fn check(name: &'static str, problems: Vec<String>, ok_detail: String) -> Check {
    Check {
        name,
        ok: problems.is_empty(),
        detail: if problems.is_empty() {
            ok_detail
        } else {
            let n = problems.len();
            let mut shown: Vec<String> = problems.into_iter().take(5).collect();
            if n > 5 {
                shown.push(format!("... {} more", n - 5));
            }
            shown.join("; ")
        },
    }
}

/// Counter values replayed from each writer's stored Automerge changes (max over epochs).
/// Counter values by `(writer, key text)`.
type CounterValues = HashMap<(NodeId, String), i64>;

/// The last stored position of every writer.
fn stored_heads(db: &ReadOnly<'_>) -> Result<HashMap<NodeId, crate::model::Position>, StoreError> {
    let mut heads: HashMap<NodeId, crate::model::Position> = HashMap::new();
    for (w, c) in db.all_changes()? {
        let h = heads.entry(w).or_default();
        *h = (*h).max(c.position);
    }
    Ok(heads)
}

fn replay_changes(db: &ReadOnly<'_>) -> Result<(CounterValues, usize), StoreError> {
    let mut by_epoch: BTreeMap<(NodeId, u32), Vec<Vec<u8>>> = BTreeMap::new();
    let mut n = 0;
    for (w, c) in db.all_changes()? {
        by_epoch
            .entry((w, c.position.epoch))
            .or_default()
            .push(c.bytes);
        n += 1;
    }
    let mut values = CounterValues::new();
    for ((w, epoch), changes) in by_epoch {
        let mut doc = Automerge::new();
        let mut parsed = Vec::with_capacity(changes.len());
        for b in &changes {
            parsed.push(
                automerge::Change::try_from(&b[..])
                    .map_err(|e| StoreError::Replica(format!("writer {w} epoch {epoch}: {e}")))?,
            );
        }
        doc.apply_changes(parsed)
            .map_err(|e| StoreError::Replica(format!("writer {w} epoch {epoch}: {e}")))?;
        for key in doc.keys(ROOT) {
            if let Ok(Some((v, _))) = doc.get(ROOT, key.as_str()) {
                let v = v.as_i64().unwrap_or(i64::MIN);
                let e = values.entry((w, key)).or_insert(v);
                *e = (*e).max(v);
            }
        }
    }
    Ok((values, n))
}

/// Runs every check on the database behind `db`, for node `meta`.
pub(crate) fn verify(db: &ReadOnly<'_>, meta: &NodeMeta) -> Result<Report, StoreError> {
    let mut checks = Vec::new();
    checks.push(match db.integrity() {
        Ok(()) => check("sqlite_integrity", vec![], "ok".into()),
        Err(e) => check("sqlite_integrity", vec![e.to_string()], String::new()),
    });

    // 1. The counters table (other writers) equals what their Automerge changes say.
    let stored = db.counters()?;
    let (replayed, n_changes) = replay_changes(db)?;
    let mut problems = Vec::new();
    for (w, k, v) in &stored {
        match replayed.get(&(*w, k.clone())) {
            Some(r) if r == v => {}
            other => problems.push(format!("{w} {k}: table {v}, changes {other:?}")),
        }
    }
    let others = replayed.keys().filter(|(w, _)| *w != meta.id).count();
    if others != stored.len() {
        problems.push(format!(
            "{others} counters of other writers in changes, {} in table",
            stored.len()
        ));
    }
    checks.push(check(
        "counters_match_changes",
        problems,
        format!(
            "{} counters replayed from {} changes",
            stored.len(),
            n_changes
        ),
    ));

    // 2. The own counters (replayed from the own changes) equal the sums of the own journal.
    let mut book = StockBook::new();
    let mut problems = Vec::new();
    for ((w, k), v) in &replayed {
        match CounterKey::parse(k) {
            Ok(key) => {
                if let Err(e) = book.raise(*w, &key, *v) {
                    problems.push(format!("{k}: {e}"));
                }
            }
            Err(e) => problems.push(format!("{k}: {e}")),
        }
    }
    let mut journal_events = 0;
    let mut recorded: HashMap<(String, String), i64> = HashMap::new();
    for t in db.journal_totals()? {
        journal_events += t.count;
        *recorded
            .entry((t.location.clone(), t.sku.clone()))
            .or_default() += t.deficit;
    }
    // Replay every journal event through the rule's own event → counter mapping.
    let mut expect: HashMap<CounterKey, i64> = HashMap::new();
    db.journal_requests(|req, agree| {
        if !agree {
            problems.push(format!(
                "event {}: its columns disagree with its request",
                req.id
            ));
        }
        for (k, d) in crate::escrow::counter_deltas(&req) {
            *expect.entry(k).or_default() += d;
        }
    })?;
    let own: HashMap<CounterKey, i64> = book
        .counters_of(&meta.id)
        .map(|(k, v)| (k.clone(), v))
        .collect();
    for key in expect
        .keys()
        .chain(own.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (want, have) = (
            expect.get(key).copied().unwrap_or(0),
            own.get(key).copied().unwrap_or(0),
        );
        if want != have {
            problems.push(format!("{key}: journal {want}, counter {have}"));
        }
    }
    checks.push(check(
        "journal_matches_counters",
        problems,
        format!("{journal_events} journal events"),
    ));

    // Retired writers' rights count as their heirs' as the node derives it:
    // from the stored roster, once the writer's history reaches its revocation point.
    if let Some(roster) = db
        .roster()?
        .and_then(|s| crate::fleet::Roster::decode(&s.body).ok())
    {
        let heads = stored_heads(db)?;
        let direct: BTreeMap<NodeId, NodeId> = roster
            .retirements()
            .filter(|(id, _, after)| heads.get(id).copied().unwrap_or_default() >= *after)
            .map(|(id, heir, _)| (id, heir))
            .collect();
        book.set_inheritance(&direct);
    }

    // 3. The materialized stock rows equal the book, and the invariant holds.
    let mut problems = Vec::new();
    let rows: HashMap<(String, String), StockRow> = db
        .stock(None)?
        .into_iter()
        .map(|r| ((r.location.clone(), r.sku.clone()), r))
        .collect();
    let mut pools = 0;
    for r in rows.values() {
        let known = crate::model::LocationId::new(r.location.as_str())
            .and_then(|l| Ok(PoolKey::new(l, crate::model::Sku::new(r.sku.as_str())?)))
            .map(|p| book.pool(&p).is_some())
            .unwrap_or(false);
        if !known {
            problems.push(format!(
                "stock row {}@{} has no counters behind it",
                r.sku, r.location
            ));
        }
    }
    for (pool, state) in book.pools() {
        pools += 1;
        let want = StockRow::of(&book, &meta.id, pool);
        match rows.get(&(want.location.clone(), want.sku.clone())) {
            Some(r) if *r == want => {}
            other => problems.push(format!("{pool}: table {other:?}, derived {want:?}")),
        }
        let sum_rights: i64 = state.shares.values().map(|s| s.rights()).sum();
        if sum_rights != state.on_hand() - state.held() {
            problems.push(format!(
                "{pool}: sum of rights {sum_rights} != on_hand - held"
            ));
        }
        // The rule: this node's rights go below zero only by deficits it recorded.
        let own_deficit = book.rights(pool, &meta.id).saturating_neg().max(0);
        // A retired node's deficit is inherited with its rights.
        let inherited: i64 = book
            .inheritance()
            .estate_of(&meta.id)
            .iter()
            .map(|r| state.share(r).deficit())
            .sum();
        let allowed = recorded
            .get(&(pool.location.to_string(), pool.sku.to_string()))
            .copied()
            .unwrap_or(0)
            + inherited;
        if own_deficit > allowed {
            problems.push(format!(
                "{pool}: own deficit {own_deficit} exceeds the {allowed} units recorded under policy record"
            ));
        }
        if state.on_hand() + book.deficit(pool) < state.held() {
            problems.push(format!(
                "{pool}: on_hand {} below held {} beyond the reported deficit",
                state.on_hand(),
                state.held()
            ));
        }
    }
    checks.push(check(
        "stock_rows_and_invariant",
        problems,
        format!("{pools} pools"),
    ));

    // 4. Open holds add up to the own reserved − released.
    let mut problems = Vec::new();
    let mut held: HashMap<PoolKey, i64> = HashMap::new();
    for (pool, outstanding) in db.holds()? {
        *held.entry(pool).or_default() += outstanding;
    }
    for pool in held.keys() {
        if book.pool(pool).is_none() {
            problems.push(format!("open reservation in {pool}, which has no counters"));
        }
    }
    for (pool, state) in book.pools() {
        let own = state.share(&meta.id).held();
        let open = held.get(pool).copied().unwrap_or(0);
        if own != open {
            problems.push(format!(
                "{pool}: counters hold {own}, open reservations {open}"
            ));
        }
    }
    checks.push(check(
        "holds_match",
        problems,
        format!("{} pools with holds", held.len()),
    ));

    Ok(Report {
        ok: checks.iter().all(|c| c.ok),
        checks,
    })
}
