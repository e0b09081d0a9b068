//! Equivocation: two validly signed histories of one writer that disagree.
//!
//! A writer's signature over a change covers, through the hash chain, every
//! earlier change of its epoch and the dependency of the first change of a
//! bundle. So a bundle *commits* to a hash at each position from the one
//! before its first change to its last. Two bundles of one writer that
//! verify and commit to different hashes at one position prove the writer's
//! key wrote two histories (a cloned device, a restored backup, a stolen
//! key): a [`ForkProof`]. Anyone can check one with the writer's public key
//! alone, in O(n) for n bytes, which is what lets a node relay it and every
//! other node believe it.

use serde::{Deserialize, Serialize};

use super::bundle::{self, BundleError};
use super::message::Bundle;
use crate::model::{NodeId, Position};
use crate::replica::raw_change::inspect;

/// Two signed bundles of one writer that commit to different changes at one
/// position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkProof {
    /// One branch.
    pub a: Bundle,
    /// The other.
    pub b: Bundle,
}

/// What a checked [`ForkProof`] shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fork {
    /// The writer whose key signed both branches.
    pub writer: NodeId,
    /// The first position both bundles commit to where they differ.
    pub position: Position,
}

/// Why a [`ForkProof`] proves nothing. The sender is refused; nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForkProofError {
    /// The two bundles are of different writers or epochs.
    #[error("the bundles are of different writers or epochs")]
    Unrelated,
    /// One bundle does not verify.
    #[error("branch {0} does not verify: {1}")]
    Invalid(char, BundleError),
    /// The bundles agree wherever both commit to a change.
    #[error("the bundles agree at every position both cover")]
    NoConflict,
}

/// The stored form of a proof (postcard).
pub fn encode(proof: &ForkProof) -> Vec<u8> {
    // Serializing plain structs into a Vec cannot fail.
    postcard::to_allocvec(proof).expect("fork proof serializes")
}

/// A proof from its stored form (checked again with [`check`] before use).
pub fn decode(bytes: &[u8]) -> Result<ForkProof, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// The hashes a verified bundle commits to, by sequence number, ascending:
/// the dependency of its first change (when it has one) and each change.
pub(super) fn committed(changes: &[Vec<u8>], first_seq: u64) -> Vec<(u64, [u8; 32])> {
    let mut out = Vec::with_capacity(changes.len() + 1);
    for (i, c) in changes.iter().enumerate() {
        // `bundle::verify` inspected every change already; one that fails here
        // is left out (it cannot: the bytes are the same).
        let Ok(raw) = inspect(c) else { continue };
        if i == 0 && first_seq > 1 {
            if let Some(dep) = raw.dep {
                out.push((first_seq - 1, dep));
            }
        }
        out.push((raw.seq, raw.hash));
    }
    out
}

/// The first sequence number where two ascending commitment lists disagree.
pub(super) fn first_conflict(a: &[(u64, [u8; 32])], b: &[(u64, [u8; 32])]) -> Option<u64> {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                if a[i].1 != b[j].1 {
                    return Some(a[i].0);
                }
                i += 1;
                j += 1;
            }
        }
    }
    None
}

/// Checks a proof: both bundles verify under their writer's key and commit to
/// different hashes at some position. O(n) for n bytes of bundles.
pub fn check(proof: &ForkProof) -> Result<Fork, ForkProofError> {
    let (a, b) = (&proof.a, &proof.b);
    if a.writer != b.writer || a.epoch != b.epoch {
        return Err(ForkProofError::Unrelated);
    }
    let (_, ca) = bundle::verify(a).map_err(|e| ForkProofError::Invalid('a', e))?;
    let (_, cb) = bundle::verify(b).map_err(|e| ForkProofError::Invalid('b', e))?;
    let seq = first_conflict(&committed(&ca, a.first_seq), &committed(&cb, b.first_seq))
        .ok_or(ForkProofError::NoConflict)?;
    Ok(Fork {
        writer: a.writer,
        position: Position {
            epoch: a.epoch,
            seq,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escrow::CounterKey;
    use crate::identity::Identity;
    use crate::model::{LocationId, PoolKey, Sku};
    use crate::replica::{CommittedChange, CounterWrite, OwnDoc};
    use crate::sync::signing::sign_head;

    fn key(sku: &str) -> CounterKey {
        CounterKey::Minted(PoolKey::new(
            LocationId::new("S").unwrap(),
            Sku::new(sku).unwrap(),
        ))
    }

    /// `n` changes of `id` writing `sku`, on a document that first took `common`.
    fn branch(id: &Identity, common: usize, sku: &str, n: usize) -> Vec<CommittedChange> {
        let mut doc = OwnDoc::new(&id.node_id(), 1);
        let mut out = Vec::new();
        for v in 0..common {
            let w = CounterWrite {
                key: key("COMMON"),
                old: v as i64,
                new: v as i64 + 1,
            };
            out.push(doc.commit(&[w], "[]", 0).unwrap());
        }
        for v in 0..n {
            let w = CounterWrite {
                key: key(sku),
                old: v as i64,
                new: v as i64 + 1,
            };
            out.push(doc.commit(&[w], "[]", 0).unwrap());
        }
        out
    }

    fn bundle_of(id: &Identity, changes: &[CommittedChange]) -> Bundle {
        let last = changes.last().unwrap();
        let sig = sign_head(id, last.position, &last.hash);
        bundle::pack(
            id.node_id(),
            1,
            changes.iter().map(|c| c.bytes.clone()).collect(),
            changes[0].position.seq,
            sig,
        )
    }

    #[test]
    fn two_branches_after_a_common_prefix_are_a_fork_at_the_first_difference() {
        let id = Identity::from_seed([7; 32]);
        let a = branch(&id, 3, "A", 2);
        let b = branch(&id, 3, "B", 4);
        // Bundles from position 3 (the common change) on: the fork is at 4.
        let proof = ForkProof {
            a: bundle_of(&id, &a[2..]),
            b: bundle_of(&id, &b[2..]),
        };
        let fork = check(&proof).unwrap();
        assert_eq!(fork.writer, id.node_id());
        assert_eq!(fork.position, Position { epoch: 1, seq: 4 });
        // A bundle that starts after the fork commits to it through its first
        // change's dependency: one change of each branch is enough.
        let short = ForkProof {
            a: bundle_of(&id, &a[4..]),
            b: bundle_of(&id, &b[4..5]),
        };
        assert_eq!(check(&short).unwrap().position.seq, 4);
    }

    #[test]
    fn agreeing_disjoint_forged_or_unrelated_bundles_prove_nothing() {
        let id = Identity::from_seed([7; 32]);
        let a = branch(&id, 3, "A", 2);
        let b = branch(&id, 3, "B", 2);
        // The same history twice.
        let same = ForkProof {
            a: bundle_of(&id, &a[..3]),
            b: bundle_of(&id, &a[1..4]),
        };
        assert_eq!(check(&same), Err(ForkProofError::NoConflict));
        // Branches that never cover a common position.
        let disjoint = ForkProof {
            a: bundle_of(&id, &a[..1]),
            b: bundle_of(&id, &b[3..]),
        };
        assert_eq!(check(&disjoint), Err(ForkProofError::NoConflict));
        // A branch signed by someone else is no evidence against the writer.
        let mallory = Identity::from_seed([8; 32]);
        let mut forged = bundle_of(&id, &b[3..]);
        let last = &b[4];
        forged.signature.0 = sign_head(&mallory, last.position, &last.hash);
        let proof = ForkProof {
            a: bundle_of(&id, &a[3..]),
            b: forged,
        };
        assert!(matches!(
            check(&proof),
            Err(ForkProofError::Invalid('b', BundleError::BadSignature))
        ));
        // Two writers.
        let other = branch(&mallory, 3, "B", 2);
        let unrelated = ForkProof {
            a: bundle_of(&id, &a[3..]),
            b: bundle_of(&mallory, &other[3..]),
        };
        assert_eq!(check(&unrelated), Err(ForkProofError::Unrelated));
    }
}
