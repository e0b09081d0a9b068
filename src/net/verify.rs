//! Mutual authentication: one verifier, used as rustls's server-certificate
//! verifier when dialling and as its client-certificate verifier when
//! accepting. A peer is accepted only if its leaf certificate is signed by the
//! fleet key (strict Ed25519), is within its validity, and its subject key (the
//! peer's node id) is a member the node's *current* roster admits; when
//! dialling a peer whose id is expected, any other key is refused. The
//! handshake signature is then checked under that same key, so the peer id the
//! engine sees comes from the certificate and nothing else.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ed25519_dalek::{Signature, VerifyingKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tracing::warn;

use super::cert::signed_by;
use super::der;
use crate::fleet::{FleetId, Roster};
use crate::model::NodeId;

/// The roster in force, read at every handshake (so roster updates apply to the next one).
pub type RosterSource = Arc<dyn Fn() -> Option<Arc<Roster>> + Send + Sync>;

/// Why a peer was refused at the handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The certificate does not parse as an Ed25519 X.509 v3 certificate.
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// The certificate is not signed by this fleet's key.
    #[error("certificate not signed by this fleet's authority")]
    NotSignedByFleet,
    /// The certificate's validity starts later than now.
    #[error("certificate not valid before {not_before} (Unix seconds)")]
    NotYetValid {
        /// Start of validity.
        not_before: i64,
    },
    /// The certificate's validity ended.
    #[error("certificate expired at {not_after} (Unix seconds)")]
    Expired {
        /// End of validity.
        not_after: i64,
    },
    /// The leaf is the fleet key itself (the CA), never a node.
    #[error("the fleet key is not a node")]
    FleetKey,
    /// The dialled peer is not the node expected at that address.
    #[error("expected node {expected}, reached {found}")]
    Unexpected {
        /// The node id expected.
        expected: NodeId,
        /// The node id in the certificate.
        found: NodeId,
    },
    /// The node holds no roster of this fleet: it admits no one.
    #[error("no roster of this fleet installed: no peer is admitted")]
    NoRoster,
    /// The peer is not in the roster.
    #[error("not a member of the fleet roster")]
    NotMember,
    /// The peer was revoked.
    #[error("revoked: {reason}")]
    Revoked {
        /// Why it was revoked.
        reason: String,
    },
    /// The handshake's signature is not by the certificate's key, or not Ed25519.
    #[error("bad handshake signature")]
    BadSignature,
    /// A sync connection without a client certificate (possible only on a
    /// hub serving enrolment, where the certificate is optional at the
    /// handshake): closed before the node hears of it.
    #[error("no client certificate")]
    NoCertificate,
}

/// One refused handshake, for the status API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalRecord {
    /// When.
    pub at: SystemTime,
    /// The peer's address.
    pub addr: SocketAddr,
    /// The node id its certificate claims, when it parsed.
    pub claimed: Option<NodeId>,
    /// Why it was refused.
    pub reason: Refusal,
}

/// The last refusals, newest last (bounded).
#[derive(Debug, Default)]
pub struct RefusalLog {
    records: Mutex<VecDeque<RefusalRecord>>,
    /// Refusals since start, kept or not.
    total: std::sync::atomic::AtomicU64,
}

/// Refusals kept by a [`RefusalLog`].
const REFUSALS_KEPT: usize = 64;

impl RefusalLog {
    fn push(&self, r: RefusalRecord) {
        self.total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut q = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == REFUSALS_KEPT {
            q.pop_front();
        }
        q.push_back(r);
    }

    /// Logs and keeps a refusal decided outside the verifier.
    pub(crate) fn record(&self, addr: SocketAddr, claimed: Option<NodeId>, reason: Refusal) {
        warn!(peer = %addr, %reason, "peer refused");
        self.push(RefusalRecord {
            at: SystemTime::now(),
            addr,
            claimed,
            reason,
        });
    }

    /// Refusals since start, including those no longer kept.
    pub fn total(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The refusals kept, oldest first.
    pub fn records(&self) -> Vec<RefusalRecord> {
        let q = self.records.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().cloned().collect()
    }
}

/// Verifies one connection's peer, as a client (dialling) or a server (accepting).
pub struct PeerVerifier {
    local: NodeId,
    fleet: FleetId,
    roster: RosterSource,
    expected: Option<NodeId>,
    addr: SocketAddr,
    log: Arc<RefusalLog>,
}

impl fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("fleet", &self.fleet)
            .field("expected", &self.expected)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl PeerVerifier {
    /// A verifier for node `local`'s connection with `addr` in `fleet`,
    /// admitting what `roster` admits, and only `expected` if given; refusals go to `log`.
    pub fn new(
        local: NodeId,
        fleet: FleetId,
        roster: RosterSource,
        expected: Option<NodeId>,
        addr: SocketAddr,
        log: Arc<RefusalLog>,
    ) -> Self {
        Self {
            local,
            fleet,
            roster,
            expected,
            addr,
            log,
        }
    }

    /// The node id of an acceptable leaf, or why it is refused (unlogged).
    pub fn check(&self, leaf: &[u8], now: i64) -> Result<NodeId, (Option<NodeId>, Refusal)> {
        let parsed = der::parse(leaf).map_err(|e| (None, Refusal::Malformed(e.to_string())))?;
        let id = NodeId(parsed.subject_key);
        let refuse = |r| (Some(id), r);
        if !signed_by(&parsed, &self.fleet) {
            return Err(refuse(Refusal::NotSignedByFleet));
        }
        if now < parsed.not_before {
            return Err(refuse(Refusal::NotYetValid {
                not_before: parsed.not_before,
            }));
        }
        if now > parsed.not_after {
            return Err(refuse(Refusal::Expired {
                not_after: parsed.not_after,
            }));
        }
        if id.0 == self.fleet.0 {
            return Err(refuse(Refusal::FleetKey));
        }
        if let Some(expected) = self.expected {
            if expected != id {
                return Err(refuse(Refusal::Unexpected {
                    expected,
                    found: id,
                }));
            }
        }
        let roster = (self.roster)()
            .filter(|r| r.fleet == self.fleet)
            .ok_or(refuse(Refusal::NoRoster))?;
        match roster.admits(&id, None) {
            Ok(_) => Ok(id),
            Err(crate::fleet::RosterError::Revoked { reason, .. }) => {
                Err(refuse(Refusal::Revoked { reason }))
            }
            Err(_) => Err(refuse(Refusal::NotMember)),
        }
    }

    /// [`PeerVerifier::check`], logging and recording a refusal.
    fn verify(&self, leaf: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
        let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        match self.check(leaf.as_ref(), secs) {
            Ok(_) => Ok(()),
            Err((claimed, reason)) => Err(self.refuse(claimed, reason)),
        }
    }

    fn refuse(&self, claimed: Option<NodeId>, reason: Refusal) -> rustls::Error {
        match claimed {
            Some(id) => {
                warn!(node = %self.local, peer = %self.addr, claimed = %id, %reason, "peer refused")
            }
            None => warn!(node = %self.local, peer = %self.addr, %reason, "peer refused"),
        }
        self.log.push(RefusalRecord {
            at: SystemTime::now(),
            addr: self.addr,
            claimed,
            reason: reason.clone(),
        });
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(reason))))
    }

    /// The TLS 1.3 `CertificateVerify` signature: Ed25519 under the leaf's key, strict.
    fn signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let parsed = der::parse(cert.as_ref())
            .map_err(|e| self.refuse(None, Refusal::Malformed(e.to_string())))?;
        let claimed = Some(NodeId(parsed.subject_key));
        let ok = dss.scheme == SignatureScheme::ED25519
            && <[u8; 64]>::try_from(dss.signature()).is_ok_and(|sig| {
                VerifyingKey::from_bytes(&parsed.subject_key).is_ok_and(|k| {
                    !k.is_weak()
                        && k.verify_strict(message, &Signature::from_bytes(&sig))
                            .is_ok()
                })
            });
        if ok {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(self.refuse(claimed, Refusal::BadSignature))
        }
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The name is not checked: the peer's identity is its key, checked above.
        self.verify(end_entity, now)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is configured; never reached.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify(end_entity, now)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The node id in a verified connection's leaf certificate.
pub(crate) fn peer_id(leaf: &[u8]) -> Option<NodeId> {
    der::parse(leaf).ok().map(|p| NodeId(p.subject_key))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::fleet::{FleetAuthority, Member};
    use crate::identity::Identity;
    use crate::model::{LocationId, Role};
    use crate::net::cert::{issue, issue_valid, FleetCa};

    const NOW: i64 = 1_900_000_000;

    fn verifier(
        hq: &FleetAuthority,
        roster: Option<Roster>,
        expected: Option<NodeId>,
    ) -> PeerVerifier {
        let roster = roster.map(Arc::new);
        PeerVerifier::new(
            NodeId([9; 32]),
            hq.fleet(),
            Arc::new(move || roster.clone()),
            expected,
            SocketAddr::from(([127, 0, 0, 1], 1)),
            Arc::new(RefusalLog::default()),
        )
    }

    fn member(hq: &FleetAuthority, ids: &[NodeId]) -> Roster {
        ids.iter().fold(hq.roster(), |r, id| {
            r.with_member(
                *id,
                Member::new("n", Role::Till, [LocationId::new("S1").unwrap()]),
            )
        })
    }

    fn at(secs: i64) -> std::time::SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    }

    #[test]
    fn admits_a_member_and_refuses_everything_else() {
        let hq = FleetAuthority::from_seed([1; 32]);
        let (n, m) = (
            Identity::from_seed([2; 32]).node_id(),
            Identity::from_seed([3; 32]).node_id(),
        );
        let cert = issue_valid(&hq, n, "n", at(NOW - 10), at(NOW + 10)).unwrap();
        let check = |v: &PeerVerifier, der: &[u8]| v.check(der, NOW).map_err(|e| e.1);

        assert_eq!(
            check(&verifier(&hq, Some(member(&hq, &[n])), None), cert.der()),
            Ok(n)
        );
        assert_eq!(
            check(&verifier(&hq, Some(member(&hq, &[n])), Some(n)), cert.der()),
            Ok(n)
        );
        assert_eq!(
            check(&verifier(&hq, Some(member(&hq, &[n])), Some(m)), cert.der()),
            Err(Refusal::Unexpected {
                expected: m,
                found: n
            })
        );
        assert_eq!(
            check(&verifier(&hq, None, None), cert.der()),
            Err(Refusal::NoRoster)
        );
        assert_eq!(
            check(&verifier(&hq, Some(member(&hq, &[m])), None), cert.der()),
            Err(Refusal::NotMember)
        );
        let mut revoked = member(&hq, &[n]);
        revoked.revoke(&n, Default::default(), "stolen").unwrap();
        assert_eq!(
            check(&verifier(&hq, Some(revoked), None), cert.der()),
            Err(Refusal::Revoked {
                reason: "stolen".into()
            })
        );
        // A roster of another fleet admits no one here.
        let other = FleetAuthority::from_seed([4; 32]);
        assert_eq!(
            check(&verifier(&hq, Some(member(&other, &[n])), None), cert.der()),
            Err(Refusal::NoRoster)
        );
        // Signed by another fleet.
        let foreign = issue(&other, n, "n").unwrap();
        assert_eq!(
            check(&verifier(&hq, Some(member(&hq, &[n])), None), foreign.der()),
            Err(Refusal::NotSignedByFleet)
        );
        // The CA itself is not a node, even if listed.
        let ca = FleetCa::derive(&hq).unwrap();
        let fleet_node = NodeId(hq.fleet().0);
        assert_eq!(
            check(
                &verifier(&hq, Some(member(&hq, &[fleet_node])), None),
                ca.der()
            ),
            Err(Refusal::FleetKey)
        );
        assert!(matches!(
            check(
                &verifier(&hq, Some(member(&hq, &[n])), None),
                b"\x30\x03\x02\x01\x01"
            ),
            Err(Refusal::Malformed(_))
        ));
    }

    #[test]
    fn refuses_outside_validity() {
        let hq = FleetAuthority::from_seed([1; 32]);
        let n = Identity::from_seed([2; 32]).node_id();
        let v = verifier(&hq, Some(member(&hq, &[n])), None);
        let early = issue_valid(&hq, n, "n", at(NOW + 60), at(NOW + 120)).unwrap();
        assert_eq!(
            v.check(early.der(), NOW).map_err(|e| e.1),
            Err(Refusal::NotYetValid {
                not_before: NOW + 60
            })
        );
        let late = issue_valid(&hq, n, "n", at(NOW - 120), at(NOW - 60)).unwrap();
        assert_eq!(
            v.check(late.der(), NOW).map_err(|e| e.1),
            Err(Refusal::Expired {
                not_after: NOW - 60
            })
        );
    }
}
