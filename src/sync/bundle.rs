//! Checking a received bundle before anything of it is applied: the changes
//! form one chain and the writer signed its last change.

use automerge::Change;

use super::message::Bundle;
use super::signing::verify_head;
use crate::model::Position;

/// Why a bundle is refused. Nothing of it was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// No changes.
    #[error("empty bundle")]
    Empty,
    /// A change does not parse.
    #[error("change {0} of the bundle does not parse: {1}")]
    Unparsable(usize, String),
    /// A change does not follow the one before it.
    #[error("change {0} of the bundle does not follow the one before it")]
    Broken(usize),
    /// The signature is not the writer's over the last change.
    #[error("the bundle's signature is not its writer's")]
    BadSignature,
}

/// The positions a verified bundle covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The first change's position.
    pub first: Position,
    /// The last change's position (the signed head).
    pub last: Position,
    /// The last change's hash.
    pub last_hash: [u8; 32],
}

/// The position of the bundle's last change, read without checking anything.
pub fn last_position(bundle: &Bundle) -> Option<Position> {
    let last = Change::try_from(&bundle.changes.last()?.0[..]).ok()?;
    Some(Position {
        epoch: bundle.epoch,
        seq: last.seq(),
    })
}

/// Verifies chain and signature of `bundle`.
pub fn verify(bundle: &Bundle) -> Result<Span, BundleError> {
    let mut prev: Option<Change> = None;
    let mut first = None;
    for (i, bytes) in bundle.changes.iter().enumerate() {
        let c = Change::try_from(&bytes.0[..])
            .map_err(|e| BundleError::Unparsable(i, e.to_string()))?;
        if let Some(p) = &prev {
            if c.seq() != p.seq() + 1 || c.deps() != [p.hash()] {
                return Err(BundleError::Broken(i));
            }
        } else {
            first = Some(c.seq());
        }
        prev = Some(c);
    }
    let (Some(last), Some(first)) = (prev, first) else {
        return Err(BundleError::Empty);
    };
    let pos = |seq| Position {
        epoch: bundle.epoch,
        seq,
    };
    let last_hash = last.hash().0;
    if !verify_head(
        &bundle.writer,
        pos(last.seq()),
        &last_hash,
        &bundle.signature.0,
    ) {
        return Err(BundleError::BadSignature);
    }
    Ok(Span {
        first: pos(first),
        last: pos(last.seq()),
        last_hash,
    })
}
