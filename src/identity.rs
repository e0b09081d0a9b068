//! Node identity: an ed25519 key pair whose public key is the node id.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::error::StoreError;
use crate::model::NodeId;

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "node.key";

/// A node's key pair.
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// A fresh key pair from the operating system's random source.
    pub fn generate() -> Result<Self, StoreError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        Ok(Self::from_seed(seed))
    }

    /// The key pair of a 32-byte secret seed (deterministic; for tests and the simulator).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The node id: the public key.
    pub fn node_id(&self) -> NodeId {
        NodeId(self.key.verifying_key().to_bytes())
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// The secret as a PKCS#8 v1 document (RFC 8410), for TLS; the caller holds a secret.
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }
        const PREFIX: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let mut der = Vec::with_capacity(PREFIX.len() + 32);
        der.extend_from_slice(&PREFIX);
        der.extend_from_slice(&self.key.to_bytes());
        der
    }

    /// Writes the secret to `dir/node.key` with mode 0600; refuses to overwrite.
    pub fn save(&self, dir: &Path) -> Result<(), StoreError> {
        let path = dir.join(KEY_FILE);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(&self.key.to_bytes())?;
        f.sync_all()?;
        Ok(())
    }

    /// Writes the secret to `dir/node.key`, replacing a key left by an `init` that
    /// never created its database (no event was ever acknowledged with it).
    pub fn replace(&self, dir: &Path) -> Result<(), StoreError> {
        let tmp = dir.join(format!("{KEY_FILE}.new"));
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&self.key.to_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(KEY_FILE))?;
        // Make the rename itself durable.
        fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// Reads `dir/node.key`; refuses a key readable by others or of the wrong size.
    pub fn load(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(KEY_FILE);
        let meta = fs::metadata(&path)
            .map_err(|_| StoreError::NotInitialized(dir.display().to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(StoreError::Corrupt(format!(
                "{KEY_FILE} is readable by others; chmod 600 it"
            )));
        }
        let bytes = fs::read(&path)?;
        let seed: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("{KEY_FILE} is not a 32-byte key")))?;
        Ok(Self::from_seed(seed))
    }
}

/// Checks that `sig` is `node`'s signature of `msg`.
pub fn verify(node: &NodeId, msg: &[u8], sig: &[u8; 64]) -> bool {
    match VerifyingKey::from_bytes(&node.0) {
        Ok(k) => k.verify(msg, &Signature::from_bytes(sig)).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::generate().unwrap();
        id.save(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Identity::load(dir.path()).unwrap().node_id(), id.node_id());
        assert!(id.save(dir.path()).is_err(), "never overwrites a key");
        let sig = id.sign(b"hello");
        assert!(verify(&id.node_id(), b"hello", &sig));
        assert!(!verify(&id.node_id(), b"hellO", &sig));
        let der = id.to_pkcs8_der();
        assert_eq!((der.len(), &der[16..]), (48, &id.key.to_bytes()[..]));
    }
}
