//! What a revoked writer's refused changes spent: decoded for the report only,
//! never applied (see docs/escrow.md, "Retiring a node").

use std::collections::BTreeMap;

use automerge::{legacy, Change, ScalarValue};

use super::remote::MAX_CHANGE_BYTES;
use super::Replica;
use crate::escrow::CounterKey;
use crate::model::{NodeId, PoolKey};

impl Replica {
    /// Units `writer`'s `changes` (verified as its own, refused) consumed or
    /// granted beyond the counters this replica holds for it, per pool. A
    /// change that does not parse, is over the size limit, or is by another
    /// actor is skipped; only puts of counter values are read. Counters are
    /// absolute, so the spending is the largest value put minus the value held.
    pub fn spending_beyond(&self, writer: &NodeId, changes: &[Vec<u8>]) -> Vec<(PoolKey, i64)> {
        let mut top: BTreeMap<CounterKey, i64> = BTreeMap::new();
        for bytes in changes {
            if bytes.len() > MAX_CHANGE_BYTES || super::raw_change::inspect(bytes).is_err() {
                continue;
            }
            let Ok(change) = Change::try_from(&bytes[..]) else {
                continue;
            };
            if change.actor_id().to_bytes() != writer.0 {
                continue;
            }
            for op in &change.decode().operations {
                let (legacy::Key::Map(name), legacy::OpType::Put(ScalarValue::Counter(c))) =
                    (&op.key, &op.action)
                else {
                    continue;
                };
                let Ok(key) = CounterKey::parse(name) else {
                    continue;
                };
                if matches!(key, CounterKey::Consumed(_) | CounterKey::Granted(..)) {
                    let v = i64::from(c);
                    let t = top.entry(key).or_insert(v);
                    *t = (*t).max(v);
                }
            }
        }
        let mut spent: BTreeMap<PoolKey, i64> = BTreeMap::new();
        for (key, v) in top {
            let d = v.saturating_sub(self.book().counter(writer, &key)).max(0);
            if let (Some(pool), true) = (key.pool(), d > 0) {
                let s = spent.entry(pool.clone()).or_default();
                *s = s.saturating_add(d);
            }
        }
        spent.into_iter().collect()
    }
}
