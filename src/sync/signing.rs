//! Head signatures: a writer signs `(writer, epoch, seq, hash)` of its latest
//! change; since every change names the previous one's hash, the signature
//! authenticates the whole chain of that epoch up to it.

use crate::identity::{self, Identity};
use crate::model::{NodeId, Position};

const DOMAIN: &[u8] = b"stocksync/head/v1";

fn message(writer: &NodeId, position: Position, hash: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 32 + 4 + 8 + 32);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&writer.0);
    m.extend_from_slice(&position.epoch.to_le_bytes());
    m.extend_from_slice(&position.seq.to_le_bytes());
    m.extend_from_slice(hash);
    m
}

/// Signs the own head at `position` whose change hash is `hash`.
pub fn sign_head(identity: &Identity, position: Position, hash: &[u8; 32]) -> Vec<u8> {
    identity
        .sign(&message(&identity.node_id(), position, hash))
        .to_vec()
}

/// Checks `signature` is `writer`'s signature of its head at `position` with `hash`.
pub fn verify_head(writer: &NodeId, position: Position, hash: &[u8; 32], signature: &[u8]) -> bool {
    let Ok(sig) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    identity::verify(writer, &message(writer, position, hash), &sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_field() {
        let id = Identity::from_seed([3; 32]);
        let p = Position { epoch: 2, seq: 7 };
        let sig = sign_head(&id, p, &[1; 32]);
        assert!(verify_head(&id.node_id(), p, &[1; 32], &sig));
        assert!(!verify_head(
            &id.node_id(),
            Position { epoch: 3, seq: 7 },
            &[1; 32],
            &sig
        ));
        assert!(!verify_head(
            &id.node_id(),
            Position { epoch: 2, seq: 8 },
            &[1; 32],
            &sig
        ));
        assert!(!verify_head(&id.node_id(), p, &[2; 32], &sig));
        assert!(!verify_head(&NodeId([9; 32]), p, &[1; 32], &sig));
        assert!(!verify_head(&id.node_id(), p, &[1; 32], &sig[..63]));
    }
}
