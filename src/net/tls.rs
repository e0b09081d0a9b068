//! A node's TLS material (its identity key, its certificate, the fleet CA)
//! and the QUIC client and server configurations built from it: TLS 1.3
//! only, the `ring` provider, ALPN [`ALPN`], the client certificate required
//! (optional on a hub serving enrolment, see [`NodeTls::server_config_for`]),
//! and a [`PeerVerifier`] per connection.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::version::TLS13;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};

use super::cert::{CertError, FleetCa, NodeCertificate, CA_FILE, CERT_FILE};
use super::enrol::ENROL_ALPN;
use super::verify::{PeerVerifier, RefusalLog, RosterSource};
use super::NetError;
use crate::identity::Identity;
use crate::model::NodeId;

/// The application protocol negotiated on every connection.
pub const ALPN: &[u8] = b"stocksync/1";

/// The server name a dialler sends; never checked (a peer is its key).
const SERVER_NAME: &str = "stocksync";

/// A node's certificate, its private key and its fleet's CA.
pub struct NodeTls {
    key: Vec<u8>,
    cert: NodeCertificate,
    ca: FleetCa,
}

impl fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeTls")
            .field("cert", &self.cert)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl NodeTls {
    /// `identity`'s TLS material: `cert` must certify its key and be signed by `ca`.
    pub fn new(identity: &Identity, cert: NodeCertificate, ca: FleetCa) -> Result<Self, CertError> {
        if cert.node() != identity.node_id() {
            return Err(CertError::WrongNode {
                cert: cert.node(),
                key: identity.node_id(),
            });
        }
        cert.verify(&ca)?;
        Ok(Self {
            key: identity.to_pkcs8_der(),
            cert,
            ca,
        })
    }

    /// Loads `node.key`, [`CERT_FILE`] and [`CA_FILE`] from a data directory.
    pub fn load(dir: &Path) -> Result<Self, NetError> {
        let identity = Identity::load(dir).map_err(|e| NetError::Key(e.to_string()))?;
        let cert = NodeCertificate::load(&dir.join(CERT_FILE))?;
        let ca = FleetCa::load(&dir.join(CA_FILE))?;
        Ok(Self::new(&identity, cert, ca)?)
    }

    /// The node id certified.
    pub fn node(&self) -> NodeId {
        self.cert.node()
    }

    /// The fleet CA.
    pub fn ca(&self) -> &FleetCa {
        &self.ca
    }

    fn chain(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![CertificateDer::from(self.cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone())),
        )
    }

    /// The QUIC client configuration to dial `addr`, expecting `expected` if given.
    pub fn client_config(
        &self,
        roster: RosterSource,
        expected: Option<NodeId>,
        addr: SocketAddr,
        log: Arc<RefusalLog>,
        transport: Arc<TransportConfig>,
    ) -> Result<quinn::ClientConfig, NetError> {
        let verifier = PeerVerifier::new(self.node(), self.ca.fleet(), roster, expected, addr, log);
        let (chain, key) = self.chain();
        let mut tls = rustls::ClientConfig::builder_with_provider(
            rustls::crypto::ring::default_provider().into(),
        )
        .with_protocol_versions(&[&TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        tls.enable_sni = false;
        // Every connection is a full handshake: a resumed session would skip
        // the verifier, and with it the roster check.
        tls.resumption = rustls::client::Resumption::disabled();
        let crypto = QuicClientConfig::try_from(Arc::new(tls))
            .map_err(|e| NetError::Config(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport);
        Ok(config)
    }

    /// The QUIC server configuration for a connection from `addr` (client certificate required).
    pub fn server_config(
        &self,
        roster: RosterSource,
        addr: SocketAddr,
        log: Arc<RefusalLog>,
        transport: Arc<TransportConfig>,
    ) -> Result<quinn::ServerConfig, NetError> {
        self.server_config_for(roster, addr, log, transport, false)
    }

    /// [`NodeTls::server_config`], also offering the enrolment protocol when
    /// `enrol` (a hub serving tokens). rustls cannot require a client
    /// certificate for one ALPN only, so then a client certificate is
    /// optional at the handshake: one that is presented is verified as
    /// always, and a sync connection without one is closed by the link layer
    /// before the node hears of it (`link::run`).
    pub fn server_config_for(
        &self,
        roster: RosterSource,
        addr: SocketAddr,
        log: Arc<RefusalLog>,
        transport: Arc<TransportConfig>,
        enrol: bool,
    ) -> Result<quinn::ServerConfig, NetError> {
        let verifier = PeerVerifier::new(self.node(), self.ca.fleet(), roster, None, addr, log);
        let verifier: Arc<dyn ClientCertVerifier> = if enrol {
            Arc::new(OptionalClientCert(verifier))
        } else {
            Arc::new(verifier)
        };
        let (chain, key) = self.chain();
        let mut tls = rustls::ServerConfig::builder_with_provider(
            rustls::crypto::ring::default_provider().into(),
        )
        .with_protocol_versions(&[&TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        if enrol {
            tls.alpn_protocols.push(ENROL_ALPN.to_vec());
        }
        // No tickets, no session cache, no early data: a peer is verified
        // against the current roster at every connection.
        tls.send_tls13_tickets = 0;
        tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        tls.max_early_data_size = 0;
        let crypto = QuicServerConfig::try_from(Arc::new(tls))
            .map_err(|e| NetError::Config(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(transport);
        Ok(config)
    }

    /// The server name a dialler passes to quinn.
    pub(crate) fn server_name() -> &'static str {
        SERVER_NAME
    }
}

/// The peer verifier with the client certificate optional (a hub that
/// serves enrolment, where a new node has no certificate yet).
#[derive(Debug)]
struct OptionalClientCert(PeerVerifier);

impl ClientCertVerifier for OptionalClientCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ClientCertVerifier::verify_tls12_signature(&self.0, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ClientCertVerifier::verify_tls13_signature(&self.0, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ClientCertVerifier::supported_verify_schemes(&self.0)
    }
}

/// QUIC transport settings: keep-alive and idle timeout, and one bidirectional
/// stream per connection, opened by the dialler.
pub fn transport_config(
    keep_alive: Duration,
    idle_timeout: Duration,
) -> Result<TransportConfig, NetError> {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(keep_alive));
    t.max_idle_timeout(Some(
        IdleTimeout::try_from(idle_timeout).map_err(|e| NetError::Config(e.to_string()))?,
    ));
    t.max_concurrent_bidi_streams(VarInt::from_u32(1));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t.datagram_receive_buffer_size(None);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::FleetAuthority;
    use crate::net::cert::issue;

    #[test]
    fn loads_from_a_data_dir_and_refuses_a_foreign_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let hq = FleetAuthority::from_seed([1; 32]);
        let id = Identity::from_seed([2; 32]);
        id.save(dir.path()).unwrap();
        let ca = FleetCa::derive(&hq).unwrap();
        ca.save(&dir.path().join(CA_FILE)).unwrap();
        issue(&hq, id.node_id(), "till-1")
            .unwrap()
            .save(&dir.path().join(CERT_FILE))
            .unwrap();
        let tls = NodeTls::load(dir.path()).unwrap();
        assert_eq!((tls.node(), tls.ca().fleet()), (id.node_id(), hq.fleet()));
        assert!(!format!("{tls:?}").contains("key"), "no secret in Debug");

        let other = Identity::from_seed([3; 32]).node_id();
        let wrong = issue(&hq, other, "till-2").unwrap();
        assert!(matches!(
            NodeTls::new(&id, wrong, ca.clone()),
            Err(CertError::WrongNode { .. })
        ));
        let foreign_ca = FleetCa::derive(&FleetAuthority::from_seed([4; 32])).unwrap();
        let cert = issue(&hq, id.node_id(), "till-1").unwrap();
        assert!(matches!(
            NodeTls::new(&id, cert, foreign_ca),
            Err(CertError::NotSignedByFleet { .. })
        ));
    }
}
