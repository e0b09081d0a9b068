//! The fleet authority's key and its signed rosters.
//!
//! The authority (held by HQ) signs `b"stocksync-roster-v1" || body`, where the
//! body is the postcard encoding of a [`Roster`]. A node verifies with
//! `verify_strict` under the fleet id it was configured with, refusing weak
//! (small-order) keys, and parses the body only once the signature holds.

use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::roster::Roster;
use crate::error::{InputError, StoreError};
use crate::identity::Identity;

/// Domain separation: a roster signature can never pass for any other signature.
pub(super) const DOMAIN: &[u8] = b"stocksync-roster-v1";

/// Largest roster body accepted, in bytes (4 MiB, about 40,000 members): a
/// signed roster must fit in one wire message (`sync::message::MAX_MESSAGE`).
pub const MAX_ROSTER_BYTES: usize = 4 << 20;

/// A fleet's id: the public key of its authority.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FleetId(pub [u8; 32]);

impl FleetId {
    /// Lower-case hex of all 32 bytes.
    pub fn to_hex(&self) -> String {
        crate::model::NodeId(self.0).to_hex()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, InputError> {
        crate::model::NodeId::from_hex(s).map(|n| Self(n.0))
    }
}

impl fmt::Debug for FleetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FleetId({self})")
    }
}

/// Shows the first 8 bytes in hex.
impl fmt::Display for FleetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&crate::model::NodeId(self.0), f)
    }
}

/// Why a roster could not be signed or does not verify. Nothing was installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignedRosterError {
    /// The body is over [`MAX_ROSTER_BYTES`] (checked before any other work).
    #[error("roster of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// The body's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The fleet id is not a usable public key (not a curve point, or of small order).
    #[error("the fleet id is a weak or invalid public key")]
    WeakKey,
    /// The signature is not the fleet authority's over this body.
    #[error("the roster is not signed by this fleet's authority")]
    BadSignature,
    /// The body, though signed, does not decode as a roster.
    #[error("malformed roster body: {0}")]
    Malformed(String),
    /// The body names another fleet than the key that signed it.
    #[error("the roster names fleet {named}, signed by {signer}")]
    WrongFleet {
        /// The fleet the body names.
        named: FleetId,
        /// The key that signed it.
        signer: FleetId,
    },
}

/// A roster as the authority signed it: what travels and what is stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRoster {
    /// The postcard encoding of the [`Roster`].
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// The authority's ed25519 signature over `b"stocksync-roster-v1" || body`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl fmt::Debug for SignedRoster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedRoster")
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// The bytes the authority signs: the domain, then the body.
pub(super) fn signed_message(body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + body.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(body);
    m
}

impl SignedRoster {
    /// Checks the signature under `fleet`, then decodes the body.
    ///
    /// Bounded: a body over [`MAX_ROSTER_BYTES`] is refused before the
    /// signature is checked, and nothing is parsed before it holds.
    pub fn verify(&self, fleet: &FleetId) -> Result<VerifiedRoster, SignedRosterError> {
        if self.body.len() > MAX_ROSTER_BYTES {
            return Err(SignedRosterError::TooLarge {
                len: self.body.len(),
                max: MAX_ROSTER_BYTES,
            });
        }
        let key = VerifyingKey::from_bytes(&fleet.0).map_err(|_| SignedRosterError::WeakKey)?;
        if key.is_weak() {
            return Err(SignedRosterError::WeakKey);
        }
        let sig = <[u8; 64]>::try_from(self.signature.as_slice())
            .map_err(|_| SignedRosterError::BadSignature)?;
        key.verify_strict(&signed_message(&self.body), &Signature::from_bytes(&sig))
            .map_err(|_| SignedRosterError::BadSignature)?;
        let roster =
            Roster::decode(&self.body).map_err(|e| SignedRosterError::Malformed(e.to_string()))?;
        if roster.fleet != *fleet {
            return Err(SignedRosterError::WrongFleet {
                named: roster.fleet,
                signer: *fleet,
            });
        }
        Ok(VerifiedRoster {
            roster,
            signed: self.clone(),
        })
    }
}

/// A signed roster whose signature was checked under its fleet id; only
/// [`SignedRoster::verify`] makes one.
#[derive(Clone, Debug)]
pub struct VerifiedRoster {
    roster: Roster,
    signed: SignedRoster,
}

impl VerifiedRoster {
    /// The roster.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The signed form (to store and to send).
    pub fn signed(&self) -> &SignedRoster {
        &self.signed
    }

    /// Its version.
    pub fn version(&self) -> u64 {
        self.roster.version
    }
}

/// The fleet authority: the key that signs rosters (held by HQ).
pub struct FleetAuthority {
    key: Identity,
}

impl FleetAuthority {
    /// A fresh authority key from the operating system's random source.
    pub fn generate() -> Result<Self, StoreError> {
        Ok(Self {
            key: Identity::generate()?,
        })
    }

    /// The authority of a 32-byte secret seed (deterministic; for tests).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: Identity::from_seed(seed),
        }
    }

    /// The fleet id: the authority's public key.
    pub fn fleet(&self) -> FleetId {
        FleetId(self.key.node_id().0)
    }

    /// An empty roster of this fleet at version 0, to add members to.
    pub fn roster(&self) -> Roster {
        Roster::new(self.fleet())
    }

    /// Signs a DER `TBSCertificate` (see `net::cert`): `None` unless `tbs_der`
    /// starts as a DER SEQUENCE (0x30), so it can never pass for a roster
    /// signature, whose message starts with the domain `b"stocksync-roster-v1"`.
    pub fn sign_certificate(&self, tbs_der: &[u8]) -> Option<[u8; 64]> {
        (tbs_der.first() == Some(&0x30)).then(|| self.key.sign(tbs_der))
    }

    /// Signs `roster` as it is (its version included). Refused if it names
    /// another fleet or encodes to more than [`MAX_ROSTER_BYTES`].
    pub fn sign(&self, roster: &Roster) -> Result<SignedRoster, SignedRosterError> {
        if roster.fleet != self.fleet() {
            return Err(SignedRosterError::WrongFleet {
                named: roster.fleet,
                signer: self.fleet(),
            });
        }
        // Serializing plain structs of strings, integers and maps into a Vec cannot fail.
        let body = postcard::to_allocvec(roster).expect("roster serializes");
        if body.len() > MAX_ROSTER_BYTES {
            return Err(SignedRosterError::TooLarge {
                len: body.len(),
                max: MAX_ROSTER_BYTES,
            });
        }
        let signature = self.key.sign(&signed_message(&body)).to_vec();
        Ok(SignedRoster { body, signature })
    }
}
