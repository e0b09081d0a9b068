//! Online enrolment with a one-time token (docs/network.md, "Enrolment with
//! a token"): the token's text form, its hash (all the hub stores), the
//! proof of possession a new node signs, the two wire messages, and the
//! hub's decision on a request. Everything here is pure: no clock, no disk,
//! no socket; [`client`] and [`server`] carry it over QUIC.
//!
//! - [`Token`]: `ssenrol1.<fleet id>.<hub node id>.<secret>` (base64url, no
//!   padding): the fleet pins the CA, the hub id pins the one node that may
//!   receive the secret.
//! - [`pop_message`]: what the node signs with its new key.
//! - [`admit`]: the hub's checks of a request against the stored token.

pub mod client;
mod limit;
pub mod server;

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fleet::FleetId;
use crate::identity::Identity;
use crate::model::NodeId;

pub use limit::RateLimiter;

/// The application protocol of the enrolment exchange (on the hub's QUIC port).
pub const ENROL_ALPN: &[u8] = b"stocksync-enrol/1";

/// A token's text starts with this, then a dot.
pub const TOKEN_PREFIX: &str = "ssenrol1";

/// Largest enrolment request accepted, in bytes (its length prefix is checked first).
pub const MAX_REQUEST: usize = 4096;

/// Largest answer a node accepts from the hub (the roster grows with the fleet).
pub const MAX_RESPONSE: usize = 4 << 20;

/// Domain separation of the stored hash of a token's secret.
const HASH_DOMAIN: &[u8] = b"stocksync-enrol-token-v1\0";

/// Domain separation of the proof of possession.
const POP_DOMAIN: &[u8] = b"stocksync-enrol-pop-v1\0";

/// Why a token's text cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not `ssenrol1.` and three dot-separated parts.
    #[error("not an enrolment token (expected ssenrol1.<fleet>.<hub>.<secret>)")]
    Format,
    /// A part is not 32 bytes of base64url.
    #[error("enrolment token: the {0} part is not 32 bytes of base64url")]
    Part(&'static str),
}

/// A one-time enrolment token: which fleet and hub to trust, and the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The fleet (its authority's public key: the CA the hub's certificate must chain to).
    pub fleet: FleetId,
    /// The hub that made the token: the only node the secret is sent to.
    pub hub: NodeId,
    /// The secret (256 random bits).
    pub secret: [u8; 32],
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("fleet", &self.fleet)
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

/// The token's text form (holds the secret: print it only to its operator).
impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TOKEN_PREFIX}.{}.{}.{}",
            URL_SAFE_NO_PAD.encode(self.fleet.0),
            URL_SAFE_NO_PAD.encode(self.hub.0),
            URL_SAFE_NO_PAD.encode(self.secret)
        )
    }
}

impl FromStr for Token {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, TokenError> {
        let mut parts = s.trim().split('.');
        if parts.next() != Some(TOKEN_PREFIX) {
            return Err(TokenError::Format);
        }
        let mut next = |what: &'static str| -> Result<[u8; 32], TokenError> {
            let part = parts.next().ok_or(TokenError::Format)?;
            // 32 bytes are 43 characters: refuse anything longer before decoding.
            if part.len() != 43 {
                return Err(TokenError::Part(what));
            }
            let bytes = URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| TokenError::Part(what))?;
            bytes.try_into().map_err(|_| TokenError::Part(what))
        };
        let (fleet, hub, secret) = (next("fleet")?, next("hub")?, next("secret")?);
        if parts.next().is_some() {
            return Err(TokenError::Format);
        }
        Ok(Self {
            fleet: FleetId(fleet),
            hub: NodeId(hub),
            secret,
        })
    }
}

impl Token {
    /// The hash the hub stores for this token.
    pub fn hash(&self) -> [u8; 32] {
        secret_hash(&self.secret)
    }
}

/// The stored hash of a token's secret: SHA-256 over a domain tag and the secret.
pub fn secret_hash(secret: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(HASH_DOMAIN);
    h.update(secret);
    h.finalize().into()
}

/// Who asks to join: the roster entry the token was made for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applicant {
    /// The node's name.
    pub name: String,
    /// Its home location.
    pub location: String,
    /// Its role (till, store, hub, channel).
    pub role: String,
}

/// The message a new node signs to prove it holds the key it enrols: it
/// binds the fleet, the token (its hash, never the secret), the key and the
/// entry asked for, each field length-prefixed after a domain tag.
pub fn pop_message(
    fleet: &FleetId,
    token_hash: &[u8; 32],
    node: &NodeId,
    who: &Applicant,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(POP_DOMAIN.len() + 96 + 64);
    m.extend_from_slice(POP_DOMAIN);
    m.extend_from_slice(&fleet.0);
    m.extend_from_slice(token_hash);
    m.extend_from_slice(&node.0);
    for field in [&who.name, &who.location, &who.role] {
        // Fields are bounded by the request size, far below u32::MAX.
        m.extend_from_slice(&(field.len() as u32).to_be_bytes());
        m.extend_from_slice(field.as_bytes());
    }
    m
}

/// What a new node sends on the enrolment stream (postcard, at most [`MAX_REQUEST`] bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolRequest {
    /// The new node's id (its public key).
    pub node: NodeId,
    /// The roster entry asked for.
    pub who: Applicant,
    /// The token's secret.
    pub secret: [u8; 32],
    /// Ed25519 signature by `node` over [`pop_message`] (64 bytes).
    #[serde(with = "serde_bytes")]
    pub proof: Vec<u8>,
}

impl EnrolRequest {
    /// The request of `identity` for `who` with `token`, signed.
    pub fn new(identity: &Identity, who: Applicant, token: &Token) -> Self {
        let node = identity.node_id();
        let proof = identity
            .sign(&pop_message(&token.fleet, &token.hash(), &node, &who))
            .to_vec();
        Self {
            node,
            who,
            secret: token.secret,
            proof,
        }
    }

    /// The request's bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain owned data into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Parses a request (bounded by the caller to [`MAX_REQUEST`] bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, Refused> {
        postcard::from_bytes(bytes)
            .map_err(|e| Refused::new(RefusalCode::Malformed, format!("request: {e}")))
    }
}

/// What the hub grants: the node's certificate, the fleet CA and the signed roster listing it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The node's certificate, DER.
    #[serde(with = "serde_bytes")]
    pub certificate: Vec<u8>,
    /// The fleet CA certificate, DER.
    #[serde(with = "serde_bytes")]
    pub ca: Vec<u8>,
    /// The signed roster that lists the node.
    pub roster: crate::fleet::SignedRoster,
}

/// The hub's answer on the enrolment stream (postcard).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrolResponse {
    /// Enrolled: what to install.
    Granted(Grant),
    /// Refused: nothing changed at the hub.
    Refused(Refused),
}

impl EnrolResponse {
    /// The answer's bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain owned data into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

/// Why the hub refused an enrolment request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RefusalCode {
    /// The request does not parse.
    Malformed,
    /// No token with this secret exists at the hub.
    UnknownToken,
    /// The token was used already (by another key).
    TokenUsed,
    /// The token expired.
    TokenExpired,
    /// The token was revoked.
    TokenRevoked,
    /// The name, location or role is not the one the token was made for.
    Mismatch,
    /// The proof of possession does not verify under the key enrolled.
    BadProof,
    /// The roster refuses the entry (name taken by another key, key revoked...).
    Conflict,
    /// Too many attempts from this address: wait and retry.
    RateLimited,
    /// Too many enrolments in progress: retry.
    Busy,
    /// The hub could not complete it (storage or fleet key failure).
    Unavailable,
}

impl RefusalCode {
    /// The code's stable name (CLI output, logs).
    pub fn as_str(&self) -> &'static str {
        match self {
            RefusalCode::Malformed => "malformed",
            RefusalCode::UnknownToken => "unknown_token",
            RefusalCode::TokenUsed => "token_used",
            RefusalCode::TokenExpired => "token_expired",
            RefusalCode::TokenRevoked => "token_revoked",
            RefusalCode::Mismatch => "mismatch",
            RefusalCode::BadProof => "bad_proof",
            RefusalCode::Conflict => "conflict",
            RefusalCode::RateLimited => "rate_limited",
            RefusalCode::Busy => "busy",
            RefusalCode::Unavailable => "unavailable",
        }
    }
}

/// A refusal: its code and a message for the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct Refused {
    /// Why.
    pub code: RefusalCode,
    /// Details.
    pub message: String,
}

impl Refused {
    /// A refusal with `code` and `message`.
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What the hub holds about one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// [`secret_hash`] of its secret.
    pub hash: [u8; 32],
    /// The roster entry it was made for.
    pub who: Applicant,
    /// Unix seconds from which it is refused.
    pub expires_at: u64,
    /// The key that used it, once used.
    pub used_by: Option<NodeId>,
    /// Revoked by an operator.
    pub revoked: bool,
}

/// What the hub does with an admitted request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A first use: claim the token (atomically), then enrol.
    Claim,
    /// The key that used the token asks again (its answer was lost): enrol
    /// again (idempotent), nothing to claim.
    Again,
}

/// The hub's checks of `req` against `record` (the stored token whose hash
/// is the request secret's, if any) at Unix second `now`, in `fleet`: the
/// token exists, is not revoked, unused (or used by this same key), not
/// expired, made for this entry, and the proof of possession verifies.
pub fn admit(
    req: &EnrolRequest,
    fleet: &FleetId,
    record: Option<&TokenRecord>,
    now: u64,
) -> Result<Admission, Refused> {
    let hash = secret_hash(&req.secret);
    let record = record
        .filter(|r| r.hash == hash)
        .ok_or_else(|| Refused::new(RefusalCode::UnknownToken, "no such enrolment token"))?;
    if record.revoked {
        return Err(Refused::new(
            RefusalCode::TokenRevoked,
            "the token was revoked",
        ));
    }
    let admission = match record.used_by {
        None => Admission::Claim,
        Some(by) if by == req.node => Admission::Again,
        Some(_) => {
            return Err(Refused::new(
                RefusalCode::TokenUsed,
                "the token was used already",
            ))
        }
    };
    if now >= record.expires_at {
        return Err(Refused::new(
            RefusalCode::TokenExpired,
            format!("the token expired at {} (Unix seconds)", record.expires_at),
        ));
    }
    if record.who != req.who {
        return Err(Refused::new(
            RefusalCode::Mismatch,
            format!(
                "the token is for {} ({}) at {}, the request is for {} ({}) at {}",
                record.who.name,
                record.who.role,
                record.who.location,
                req.who.name,
                req.who.role,
                req.who.location
            ),
        ));
    }
    let proof_ok = <[u8; 64]>::try_from(req.proof.as_slice()).is_ok_and(|sig| {
        VerifyingKey::from_bytes(&req.node.0).is_ok_and(|k| {
            !k.is_weak()
                && k.verify_strict(
                    &pop_message(fleet, &hash, &req.node, &req.who),
                    &Signature::from_bytes(&sig),
                )
                .is_ok()
        })
    });
    if !proof_ok {
        return Err(Refused::new(
            RefusalCode::BadProof,
            "the proof of possession does not verify under the key enrolled",
        ));
    }
    Ok(admission)
}

#[cfg(test)]
mod tests;
