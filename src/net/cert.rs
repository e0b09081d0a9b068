//! Fleet certificates: the fleet authority's ed25519 key is the certificate
//! authority, and each node's certificate binds its name to its own ed25519
//! public key (its node id).
//!
//! The CA certificate is *derived*: every field is fixed by the authority's
//! key (Ed25519 signatures are deterministic), so HQ can produce it again at
//! any time and ship its public part to nodes as a file ([`CA_FILE`]).
//!
//! Validity: the CA is valid from 2020 to 9999-12-31 (RFC 5280's "no
//! expiry"), since trust in it ends only by replacing the fleet key. A node
//! certificate is valid from one day before issue (a device whose clock runs
//! up to a day behind still accepts it) for [`NODE_CERT_DAYS`] days: the
//! roster, not the certificate, decides membership and revocation at every
//! handshake, so expiry only bounds the life of a key HQ forgot about.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signature, VerifyingKey};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, PublicKeyData, SerialNumber, SignatureAlgorithm, SigningKey,
};

use super::der::{self, DerError};
use crate::fleet::{FleetAuthority, FleetId};
use crate::model::NodeId;

/// The fleet CA certificate's file name in a node's data directory (PEM).
pub const CA_FILE: &str = "fleet-ca.pem";
/// The node certificate's file name in a node's data directory (PEM).
pub const CERT_FILE: &str = "node-cert.pem";
/// How long a node certificate stays valid after its issue, in days (two years).
pub const NODE_CERT_DAYS: u64 = 730;
/// How far before its issue a node certificate is already valid (clock skew).
pub const CLOCK_SKEW: Duration = Duration::from_secs(86_400);

/// Why a certificate could not be issued, read or accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Generating the certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
    /// The bytes are not a fleet certificate.
    #[error("malformed certificate: {0}")]
    Malformed(#[from] DerError),
    /// The file is not PEM, or holds no CERTIFICATE block.
    #[error("malformed PEM: {0}")]
    Pem(String),
    /// The certificate is not signed by the fleet authority it should be.
    #[error("certificate not signed by fleet {fleet}")]
    NotSignedByFleet {
        /// The fleet it was checked against.
        fleet: FleetId,
    },
    /// The certificate names another node than the key it is used with.
    #[error("certificate is for node {cert}, the key is node {key}")]
    WrongNode {
        /// The node id in the certificate.
        cert: NodeId,
        /// The node id of the key.
        key: NodeId,
    },
    /// Reading or writing the file failed.
    #[error("certificate file: {0}")]
    Io(#[from] std::io::Error),
}

/// The fleet key as rcgen's signer: the CA's key in every certificate it issues.
struct AuthorityKey<'a> {
    authority: &'a FleetAuthority,
    public: [u8; 32],
}

impl<'a> AuthorityKey<'a> {
    fn new(authority: &'a FleetAuthority) -> Self {
        Self {
            authority,
            public: authority.fleet().0,
        }
    }
}

impl PublicKeyData for AuthorityKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

impl SigningKey for AuthorityKey<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.authority
            .sign_certificate(msg)
            .map(|s| s.to_vec())
            .ok_or(rcgen::Error::RingUnspecified)
    }
}

/// A node's public key as the subject of its certificate.
struct NodeKey([u8; 32]);

impl PublicKeyData for NodeKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

fn gen_err(e: rcgen::Error) -> CertError {
    CertError::Generate(e.to_string())
}

/// A positive DER INTEGER serial from `bytes` (top bit cleared, never zero).
fn serial(mut bytes: [u8; 16]) -> SerialNumber {
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

/// The CA's parameters: every field fixed by the fleet id.
fn ca_params(fleet: FleetId) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "stocksync fleet");
    dn.push(DnType::CommonName, format!("fleet {}", fleet.to_hex()));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = time::OffsetDateTime::from_unix_timestamp(253_402_300_799)
        .map_err(|e| CertError::Generate(e.to_string()))?;
    let mut s = [0u8; 16];
    s.copy_from_slice(&fleet.0[..16]);
    p.serial_number = Some(serial(s));
    Ok(p)
}

fn pem_of(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

fn der_of_pem(text: &str) -> Result<Vec<u8>, CertError> {
    let block = pem::parse(text).map_err(|e| CertError::Pem(e.to_string()))?;
    if block.tag() != "CERTIFICATE" {
        return Err(CertError::Pem(format!("a {} block", block.tag())));
    }
    Ok(block.into_contents())
}

/// Checks `cert`'s signature under `fleet` (strict Ed25519: no weak keys, canonical signatures).
pub(crate) fn signed_by(cert: &der::Parsed<'_>, fleet: &FleetId) -> bool {
    match VerifyingKey::from_bytes(&fleet.0) {
        Ok(k) if !k.is_weak() => k
            .verify_strict(cert.tbs, &Signature::from_bytes(&cert.signature))
            .is_ok(),
        _ => false,
    }
}

/// A fleet's CA certificate: the fleet key, self-signed.
#[derive(Clone, PartialEq, Eq)]
pub struct FleetCa {
    der: Vec<u8>,
    fleet: FleetId,
}

impl fmt::Debug for FleetCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FleetCa({})", self.fleet)
    }
}

impl FleetCa {
    /// The CA certificate of `authority`'s fleet (the same bytes every time).
    pub fn derive(authority: &FleetAuthority) -> Result<Self, CertError> {
        let key = AuthorityKey::new(authority);
        let cert = ca_params(authority.fleet())?
            .self_signed(&key)
            .map_err(gen_err)?;
        Self::from_der(cert.der().to_vec())
    }

    /// Reads a CA certificate: it must be self-signed by the key it names.
    pub fn from_der(der: Vec<u8>) -> Result<Self, CertError> {
        let parsed = der::parse(&der)?;
        let fleet = FleetId(parsed.subject_key);
        if !signed_by(&parsed, &fleet) {
            return Err(CertError::NotSignedByFleet { fleet });
        }
        Ok(Self { der, fleet })
    }

    /// Reads a PEM CA certificate.
    pub fn from_pem(text: &str) -> Result<Self, CertError> {
        Self::from_der(der_of_pem(text)?)
    }

    /// Reads a PEM CA certificate file.
    pub fn load(path: &Path) -> Result<Self, CertError> {
        Self::from_pem(&std::fs::read_to_string(path)?)
    }

    /// Writes the certificate as PEM to `path` (public: no secret in it).
    pub fn save(&self, path: &Path) -> Result<(), CertError> {
        Ok(std::fs::write(path, self.to_pem())?)
    }

    /// The certificate as PEM.
    pub fn to_pem(&self) -> String {
        pem_of(&self.der)
    }

    /// The certificate as DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The fleet whose key signed it.
    pub fn fleet(&self) -> FleetId {
        self.fleet
    }
}

/// A node's certificate, issued by its fleet's authority.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeCertificate {
    der: Vec<u8>,
    node: NodeId,
    not_after: i64,
}

impl fmt::Debug for NodeCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NodeCertificate({}, until {})",
            self.node, self.not_after
        )
    }
}

/// Issues `node`'s certificate named `name`, valid from [`CLOCK_SKEW`] before
/// now for [`NODE_CERT_DAYS`] days.
pub fn issue(
    authority: &FleetAuthority,
    node: NodeId,
    name: &str,
) -> Result<NodeCertificate, CertError> {
    let now = SystemTime::now();
    let days = Duration::from_secs(NODE_CERT_DAYS * 86_400);
    issue_valid(
        authority,
        node,
        name,
        now.checked_sub(CLOCK_SKEW).unwrap_or(UNIX_EPOCH),
        now + days,
    )
}

/// Issues `node`'s certificate named `name`, valid from `not_before` to `not_after`.
pub fn issue_valid(
    authority: &FleetAuthority,
    node: NodeId,
    name: &str,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<NodeCertificate, CertError> {
    let key = AuthorityKey::new(authority);
    let issuer = Issuer::new(ca_params(authority.fleet())?, &key);
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "stocksync fleet");
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    p.not_before = not_before.into();
    p.not_after = not_after.into();
    let mut s = [0u8; 16];
    getrandom::fill(&mut s).map_err(|e| CertError::Generate(e.to_string()))?;
    p.serial_number = Some(serial(s));
    let cert = p.signed_by(&NodeKey(node.0), &issuer).map_err(gen_err)?;
    NodeCertificate::from_der(cert.der().to_vec())
}

impl NodeCertificate {
    /// Reads a node certificate (its issuer is checked by [`NodeCertificate::verify`]).
    pub fn from_der(der: Vec<u8>) -> Result<Self, CertError> {
        let parsed = der::parse(&der)?;
        let (node, not_after) = (NodeId(parsed.subject_key), parsed.not_after);
        Ok(Self {
            der,
            node,
            not_after,
        })
    }

    /// Reads a PEM node certificate.
    pub fn from_pem(text: &str) -> Result<Self, CertError> {
        Self::from_der(der_of_pem(text)?)
    }

    /// Reads a PEM node certificate file.
    pub fn load(path: &Path) -> Result<Self, CertError> {
        Self::from_pem(&std::fs::read_to_string(path)?)
    }

    /// Writes the certificate as PEM to `path` (public: no secret in it).
    pub fn save(&self, path: &Path) -> Result<(), CertError> {
        Ok(std::fs::write(path, self.to_pem())?)
    }

    /// The certificate as PEM.
    pub fn to_pem(&self) -> String {
        pem_of(&self.der)
    }

    /// The certificate as DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The node whose key it certifies.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// End of validity, Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// Checks that `ca`'s fleet key signed it.
    pub fn verify(&self, ca: &FleetCa) -> Result<(), CertError> {
        let parsed = der::parse(&self.der)?;
        if signed_by(&parsed, &ca.fleet()) {
            Ok(())
        } else {
            Err(CertError::NotSignedByFleet { fleet: ca.fleet() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn ca_is_derived_and_node_certs_verify_only_under_their_fleet() {
        let hq = FleetAuthority::from_seed([1; 32]);
        let ca = FleetCa::derive(&hq).unwrap();
        assert_eq!(ca, FleetCa::derive(&hq).unwrap(), "deterministic");
        assert_eq!(ca.fleet(), hq.fleet());
        assert_eq!(FleetCa::from_pem(&ca.to_pem()).unwrap(), ca);

        let node = Identity::from_seed([2; 32]).node_id();
        let cert = issue(&hq, node, "till-1").unwrap();
        assert_eq!(cert.node(), node);
        cert.verify(&ca).unwrap();
        let back = NodeCertificate::from_pem(&cert.to_pem()).unwrap();
        assert_eq!(back, cert);

        let other = FleetCa::derive(&FleetAuthority::from_seed([3; 32])).unwrap();
        assert!(matches!(
            cert.verify(&other),
            Err(CertError::NotSignedByFleet { .. })
        ));
        // The authority signs only DER sequences: never a roster's message.
        assert!(hq.sign_certificate(b"stocksync-roster-v1 body").is_none());
        // A node certificate is not a CA: it is not self-signed.
        assert!(FleetCa::from_der(cert.der().to_vec()).is_err());
        // One flipped bit anywhere in the signed part breaks the signature.
        let mut bad = cert.der().to_vec();
        let at = bad.len() / 2;
        bad[at] ^= 1;
        assert!(NodeCertificate::from_der(bad)
            .and_then(|c| c.verify(&ca))
            .is_err());
    }

    #[test]
    fn files_round_trip_and_refuse_other_pem() {
        let dir = tempfile::tempdir().unwrap();
        let hq = FleetAuthority::from_seed([4; 32]);
        let ca = FleetCa::derive(&hq).unwrap();
        ca.save(&dir.path().join(CA_FILE)).unwrap();
        assert_eq!(FleetCa::load(&dir.path().join(CA_FILE)).unwrap(), ca);
        let key_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        assert!(matches!(
            NodeCertificate::from_pem(&key_pem),
            Err(CertError::Pem(_))
        ));
        assert!(matches!(
            NodeCertificate::from_pem("not pem"),
            Err(CertError::Pem(_))
        ));
    }
}
