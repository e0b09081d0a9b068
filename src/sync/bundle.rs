//! Bundles on the wire: consecutive changes of one writer's epoch, packed with
//! each change's single dependency left out after the first (it is the hash of
//! the change before it, which the receiver computes), and checked before
//! anything of them is applied: the changes form one chain and the writer
//! signed its last change.

use super::message::{Bundle, ChangeBytes, HeadSignature};
use super::signing::verify_head;
use crate::model::{NodeId, Position};
use crate::replica::raw_change::{inspect, RawChange};

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
    /// A change's author is not the bundle's writer.
    #[error("change {0} of the bundle is not by the bundle's writer")]
    WrongAuthor(usize),
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
}

const HASH: usize = 32;

fn leb128(bytes: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in bytes.get(at..)?.iter().take(10).enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, at + i + 1));
        }
    }
    None
}

/// Offset of the first dependency hash of a change chunk holding exactly one.
///
/// Layout: magic (4), checksum (4), chunk type (1), body length (LEB128), then
/// the body, which opens with the number of dependencies (LEB128) and the hashes.
fn single_dep_offset(bytes: &[u8]) -> Option<usize> {
    if bytes.get(8) != Some(&1) {
        return None;
    }
    let (_, body) = leb128(bytes, 9)?;
    let (n, deps) = leb128(bytes, body)?;
    (n == 1).then_some(deps)
}

/// Packs consecutive changes: from the second on, the dependency is left out.
pub fn pack(
    writer: NodeId,
    epoch: u32,
    changes: Vec<Vec<u8>>,
    first_seq: u64,
    signature: Vec<u8>,
) -> Bundle {
    let changes = changes
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            if i > 0 {
                if let Some(at) = single_dep_offset(&c) {
                    if c.len() >= at + HASH {
                        c.drain(at..at + HASH);
                    }
                }
            }
            ChangeBytes(c)
        })
        .collect();
    Bundle {
        writer,
        epoch,
        first_seq,
        changes,
        signature: HeadSignature(signature),
    }
}

/// The position of the bundle's last change, as the bundle states it (for a
/// cheap staleness test; [`verify`] checks it).
pub fn last_position(bundle: &Bundle) -> Option<Position> {
    let n = bundle.changes.len() as u64;
    Some(Position {
        epoch: bundle.epoch,
        seq: bundle.first_seq.checked_add(n.checked_sub(1)?)?,
    })
}

/// Restores the changes of `bundle`, checks they form one chain from
/// `first_seq` on, and checks the writer's signature over the last one.
///
/// Works on the raw bytes alone ([`inspect`]): nothing reaches automerge's
/// parser before the chain and the signature are checked. O(n) work for a
/// bundle of n bytes; memory: the restored changes (n plus 32 bytes per change).
pub fn verify(bundle: &Bundle) -> Result<(Span, Vec<Vec<u8>>), BundleError> {
    let mut restored: Vec<Vec<u8>> = Vec::with_capacity(bundle.changes.len());
    let mut prev: Option<RawChange> = None;
    for (i, ChangeBytes(packed)) in bundle.changes.iter().enumerate() {
        let bytes = match &prev {
            None => packed.clone(),
            Some(p) => {
                let at = single_dep_offset(packed).ok_or(BundleError::Broken(i))?;
                if packed.len() < at {
                    return Err(BundleError::Broken(i));
                }
                let mut b = Vec::with_capacity(packed.len() + HASH);
                b.extend_from_slice(&packed[..at]);
                b.extend_from_slice(&p.hash);
                b.extend_from_slice(&packed[at..]);
                b
            }
        };
        let c = inspect(&bytes).map_err(|e| BundleError::Unparsable(i, e.to_string()))?;
        let want_seq = bundle.first_seq.checked_add(i as u64);
        let follows = match &prev {
            Some(p) => c.dep == Some(p.hash),
            None => true,
        };
        if c.actor != bundle.writer.0 {
            return Err(BundleError::WrongAuthor(i));
        }
        if Some(c.seq) != want_seq || !follows {
            return Err(BundleError::Broken(i));
        }
        prev = Some(c);
        restored.push(bytes);
    }
    let last = prev.ok_or(BundleError::Empty)?;
    let pos = |seq| Position {
        epoch: bundle.epoch,
        seq,
    };
    if !verify_head(
        &bundle.writer,
        pos(last.seq),
        &last.hash,
        &bundle.signature.0,
    ) {
        return Err(BundleError::BadSignature);
    }
    Ok((
        Span {
            first: pos(bundle.first_seq),
            last: pos(last.seq),
        },
        restored,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escrow::CounterKey;
    use crate::identity::Identity;
    use crate::model::{LocationId, PoolKey, Sku};
    use crate::replica::{CounterWrite, OwnDoc};
    use crate::sync::signing::sign_head;

    fn chain(id: &Identity, n: i64) -> Vec<crate::replica::CommittedChange> {
        let mut doc = OwnDoc::new(&id.node_id(), 1);
        let key = CounterKey::Minted(PoolKey::new(
            LocationId::new("S").unwrap(),
            Sku::new("A").unwrap(),
        ));
        (1..=n)
            .map(|v| {
                let w = CounterWrite {
                    key: key.clone(),
                    old: v - 1,
                    new: v,
                };
                doc.commit(&[w], "[]", 0).unwrap()
            })
            .collect()
    }

    #[test]
    fn packing_leaves_out_dependencies_and_verify_restores_them() {
        let id = Identity::from_seed([1; 32]);
        let changes = chain(&id, 5);
        let last = changes.last().unwrap();
        let sig = sign_head(&id, last.position, &last.hash);
        let bytes: Vec<Vec<u8>> = changes.iter().map(|c| c.bytes.clone()).collect();
        let bundle = pack(id.node_id(), 1, bytes.clone(), 1, sig);
        for (packed, full) in bundle.changes.iter().zip(&bytes).skip(1) {
            assert_eq!(packed.0.len() + HASH, full.len());
        }
        let (span, restored) = verify(&bundle).unwrap();
        assert_eq!(restored, bytes);
        assert_eq!(span.last, last.position);
        assert_eq!(last_position(&bundle), Some(last.position));
    }

    #[test]
    fn tampering_is_refused() {
        let id = Identity::from_seed([1; 32]);
        let changes = chain(&id, 3);
        let last = changes.last().unwrap();
        let sig = sign_head(&id, last.position, &last.hash);
        let bytes: Vec<Vec<u8>> = changes.iter().map(|c| c.bytes.clone()).collect();
        let good = pack(id.node_id(), 1, bytes.clone(), 1, sig.clone());
        // Another writer's name on the bundle: its changes are not that writer's.
        let mut b = good.clone();
        b.writer = NodeId([7; 32]);
        assert_eq!(verify(&b).unwrap_err(), BundleError::WrongAuthor(0));
        // A change dropped from the middle.
        let mut b = good.clone();
        b.changes.remove(1);
        assert!(verify(&b).is_err());
        // The wrong first sequence number.
        let mut b = good.clone();
        b.first_seq = 2;
        assert_eq!(verify(&b).unwrap_err(), BundleError::Broken(0));
        // A signature by someone else over the same head.
        let other = Identity::from_seed([2; 32]);
        let b = pack(
            id.node_id(),
            1,
            bytes,
            1,
            sign_head(&other, last.position, &last.hash),
        );
        assert_eq!(verify(&b).unwrap_err(), BundleError::BadSignature);
        let mut b = good;
        b.changes.clear();
        assert_eq!(verify(&b).unwrap_err(), BundleError::Empty);
    }

    /// A packed bundle of a 2-change chain, and the offset of the second
    /// change's dependency count.
    fn packed_pair() -> (Bundle, usize) {
        let id = Identity::from_seed([1; 32]);
        let changes = chain(&id, 2);
        let last = changes.last().unwrap();
        let sig = sign_head(&id, last.position, &last.hash);
        let bytes = changes.iter().map(|c| c.bytes.clone()).collect();
        let bundle = pack(id.node_id(), 1, bytes, 1, sig);
        let count_at = single_dep_offset(&bundle.changes[1].0).unwrap() - 1;
        assert_eq!(bundle.changes[1].0[count_at], 1);
        (bundle, count_at)
    }

    #[test]
    fn a_later_change_declaring_more_than_one_dependency_is_broken() {
        let (mut b, at) = packed_pair();
        // 129 dependencies, in two LEB128 bytes whose low byte reads 1.
        b.changes[1].0.splice(at..at + 1, [0x81, 0x01]);
        assert_eq!(verify(&b).unwrap_err(), BundleError::Broken(1));
    }

    #[test]
    fn a_later_change_cut_after_its_dependency_count_does_not_parse() {
        let (mut b, at) = packed_pair();
        b.changes[1].0.truncate(at + 1);
        assert!(matches!(
            verify(&b).unwrap_err(),
            BundleError::Unparsable(1, _)
        ));
    }
}
