//! Validation of another writer's change before anything of it is applied.
//!
//! A change is accepted only if it is a well-formed Automerge change by the writer
//! it is filed under, it follows that writer's last change (or opens a newer
//! epoch), and every operation puts one of the writer's counters
//! without ever lowering it. Every operation must be a `put` of a counter value:
//! the value a receiver ends with then depends on the change alone. Given a
//! fleet roster, the writer must also be a member, not revoked before the
//! change, and permitted every counter it writes.

use std::collections::HashMap;

use automerge::{legacy, Change, ScalarValue};
use serde::{Deserialize, Serialize};

use super::own_doc::MessageHeader;
use super::raw_change::RawChangeError;
use crate::error::ChangeError;
use crate::escrow::{CounterKey, StockBook, MAX_COUNTER};
use crate::fleet::{Roster, RosterError};
use crate::model::{NodeId, Position};

/// The last change this replica holds from one writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WriterHead {
    /// Its position.
    pub position: Position,
    /// Its Automerge hash.
    pub hash: [u8; 32],
}

/// What a validated change does, ready to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The replica already holds this change or a newer epoch: nothing to do.
    Stale,
    /// Apply these counter values.
    Apply(ValidChange),
}

/// A validated change of another writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidChange {
    /// The writer's head once it is applied.
    pub head: WriterHead,
    /// `(counter, new absolute value)`, in the change's order.
    pub writes: Vec<(CounterKey, i64)>,
    /// The change's time (the writer's clock, Unix milliseconds).
    pub time_ms: i64,
}

/// Largest change accepted, in bytes.
pub const MAX_CHANGE_BYTES: usize = 4 << 20;

/// The typed change error of a roster refusal of a change at `got`.
fn refused(e: RosterError, got: Position) -> ChangeError {
    match e {
        RosterError::NotMember => ChangeError::NotMember,
        RosterError::Revoked { after, .. } => ChangeError::Revoked { after, got },
        other => ChangeError::NotPermitted(other),
    }
}

/// Checks `bytes`, filed under `writer` and `epoch`, against the replica's
/// state and, unless in open mode (`roster` is `None`), the fleet roster.
///
/// Bounded: at most [`MAX_CHANGE_BYTES`] are parsed, and a writer the roster
/// does not list is refused before any parsing.
pub fn validate(
    book: &StockBook,
    head: Option<&WriterHead>,
    roster: Option<&Roster>,
    writer: &NodeId,
    epoch: u32,
    bytes: &[u8],
) -> Result<Verdict, ChangeError> {
    if roster.is_some_and(|r| r.member(writer).is_none()) {
        return Err(ChangeError::NotMember);
    }
    if bytes.len() > MAX_CHANGE_BYTES {
        return Err(ChangeError::Malformed(format!(
            "{} bytes is over the limit",
            bytes.len()
        )));
    }
    // The raw header first: checksum (automerge does not check it, so a flipped
    // bit could rename a counter), no compression, and no more declared rows than
    // bytes, so automerge's parser below does O(n) work.
    let wrong_author = |actual: String| ChangeError::WrongAuthor {
        claimed: writer.to_string(),
        actual,
    };
    let raw = super::raw_change::inspect(bytes).map_err(|e| match e {
        RawChangeError::OtherActors(n) => wrong_author(format!("{n} other actors")),
        e => ChangeError::Malformed(e.to_string()),
    })?;
    if raw.actor != writer.0 {
        return Err(wrong_author(NodeId(raw.actor).to_hex()));
    }
    let change = Change::try_from(bytes).map_err(|e| ChangeError::Malformed(e.to_string()))?;
    let header: MessageHeader = change
        .message()
        .and_then(|m| serde_json::from_str(m).ok())
        .ok_or_else(|| ChangeError::Malformed("message carries no epoch".into()))?;
    if header.epoch != epoch {
        return Err(ChangeError::Forbidden(format!(
            "change of epoch {} filed under epoch {epoch}",
            header.epoch
        )));
    }
    if change.actor_id().to_bytes() != writer.0 || !change.other_actor_ids().is_empty() {
        return Err(ChangeError::WrongAuthor {
            claimed: writer.to_string(),
            actual: change.actor_id().to_hex_string(),
        });
    }
    let got = Position {
        epoch,
        seq: change.seq(),
    };
    let have = head.map(|h| h.position).unwrap_or_default();
    if got.epoch < have.epoch || (got.epoch == have.epoch && got.seq <= have.seq) {
        return Ok(Verdict::Stale);
    }
    if let Some(r) = roster {
        r.admits(writer, Some(got)).map_err(|e| refused(e, got))?;
    }
    let follows = if got.seq == 1 {
        change.deps().is_empty()
    } else {
        got.epoch == have.epoch
            && got.seq == have.seq + 1
            && head
                .map(|h| change.deps() == [automerge::ChangeHash(h.hash)])
                .unwrap_or(false)
    };
    if !follows {
        return Err(ChangeError::OutOfOrder { have, got });
    }
    let expanded = change.decode();
    let mut values: HashMap<CounterKey, i64> = HashMap::new();
    let mut writes = Vec::with_capacity(expanded.operations.len());
    for op in &expanded.operations {
        let forbidden = |why: &str| ChangeError::Forbidden(why.to_string());
        if op.obj != legacy::ObjectId::Root || op.insert {
            return Err(forbidden("operation outside the root map"));
        }
        let legacy::Key::Map(name) = &op.key else {
            return Err(forbidden("sequence key"));
        };
        let key = CounterKey::parse(name).map_err(|e| ChangeError::Forbidden(e.to_string()))?;
        if let Some(r) = roster {
            r.check_received(writer, got, &key)
                .map_err(|e| refused(e, got))?;
        }
        let current = values
            .get(&key)
            .copied()
            .unwrap_or_else(|| book.counter(writer, &key));
        let next = match &op.action {
            legacy::OpType::Put(ScalarValue::Counter(c)) => {
                let v = i64::from(c);
                if v < current {
                    return Err(forbidden("put lowers a counter"));
                }
                v
            }
            // Writers put absolute values; an increment would make the result depend
            // on what the receiver held before, so it is never accepted.
            _ => return Err(forbidden("only puts of counter values are allowed")),
        };
        if next > MAX_COUNTER {
            return Err(crate::error::EventError::Overflow.into());
        }
        values.insert(key.clone(), next);
        writes.push((key, next));
    }
    Ok(Verdict::Apply(ValidChange {
        head: WriterHead {
            position: got,
            hash: change.hash().0,
        },
        writes,
        time_ms: change.timestamp(),
    }))
}
