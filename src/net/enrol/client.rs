//! A new node's side of the enrolment exchange: dial the hub over QUIC
//! under [`super::ENROL_ALPN`] with no client certificate, accept only the
//! hub the token names (its certificate signed by the token's fleet, its key
//! the token's hub id: checked by the same [`PeerVerifier`] as sync
//! connections, before anything is sent), send the signed request, read the
//! answer and check it: the CA is the token's fleet, the certificate is for
//! this node's key, the roster is signed by the fleet and lists the hub as a
//! hub.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{ConnectionError, Endpoint, TransportErrorCode, VarInt};
use rustls::version::TLS13;

use super::server::read_frame;
use super::{
    Applicant, EnrolRequest, EnrolResponse, Refused, Token, ENROL_ALPN, MAX_REQUEST, MAX_RESPONSE,
};
use crate::fleet::{Member, Roster, SignedRoster};
use crate::identity::Identity;
use crate::model::Role;
use crate::net::cert::{FleetCa, NodeCertificate};
use crate::net::frame;
use crate::net::tls::{transport_config, NodeTls};
use crate::net::verify::{PeerVerifier, Refusal, RefusalLog};
use crate::net::{close, NetError};

/// TLS alert `no_application_protocol`: the peer does not serve enrolment.
const NO_APPLICATION_PROTOCOL: u8 = 120;

/// Why online enrolment failed on the node's side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrolError {
    /// No QUIC connection to the hub (nothing listening, no route, timed out).
    #[error("hub {addr} not reachable: {reason}")]
    Unreachable {
        /// The address dialled.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The node reached is not the token's hub of the token's fleet: the
    /// secret was not sent.
    #[error(
        "{addr} is not the hub of the token's fleet ({reason}): refused before sending the token"
    )]
    NotPinnedHub {
        /// The address dialled.
        addr: SocketAddr,
        /// What its certificate failed.
        reason: Refusal,
    },
    /// The node reached does not serve enrolment (a till, or not the hub's transport port).
    #[error("{0} does not serve enrolment (a node that is not a fleet hub?)")]
    NoEnrolment(SocketAddr),
    /// The hub refused the request.
    #[error("the hub refused the enrolment: {0}")]
    Refused(Refused),
    /// The exchange broke (stream closed, answer too large or unreadable).
    #[error("enrolment exchange with {addr}: {reason}")]
    Protocol {
        /// The hub's address.
        addr: SocketAddr,
        /// What broke.
        reason: String,
    },
    /// The hub's answer does not hold together (wrong fleet, key, or roster).
    #[error("the hub's answer is not usable: {0}")]
    BadGrant(String),
    /// A TLS or QUIC configuration could not be built.
    #[error(transparent)]
    Net(#[from] NetError),
}

/// What a successful enrolment brings: checked against the token and the node's key.
#[derive(Debug)]
pub struct Enrolled {
    /// The fleet CA (the token's fleet).
    pub ca: FleetCa,
    /// The node's certificate.
    pub certificate: NodeCertificate,
    /// The signed roster that lists the node and the hub.
    pub roster: SignedRoster,
}

/// Enrols `identity` as `who` at the hub at `addr` with `token`; the whole
/// exchange is bounded by `timeout`.
pub async fn enrol(
    addr: SocketAddr,
    token: &Token,
    identity: &Identity,
    who: Applicant,
    timeout: Duration,
) -> Result<Enrolled, EnrolError> {
    let log = Arc::new(RefusalLog::default());
    let config = client_config(token, identity, addr, log.clone())?;
    let bind: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = Endpoint::client(bind).map_err(NetError::Bind)?;
    let run = exchange(&endpoint, config, addr, token, identity, who, &log);
    let result = match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(EnrolError::Unreachable {
            addr,
            reason: format!("no answer within {timeout:?}"),
        }),
    };
    endpoint.close(VarInt::from_u32(close::SHUTDOWN), b"done");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    result
}

/// The client configuration: TLS 1.3, no client certificate, the enrolment
/// ALPN, and a verifier that admits the token's hub only.
fn client_config(
    token: &Token,
    identity: &Identity,
    addr: SocketAddr,
    log: Arc<RefusalLog>,
) -> Result<quinn::ClientConfig, NetError> {
    // The only member this connection admits: the hub the token names.
    let pinned = Arc::new(
        Roster::new(token.fleet).with_member(token.hub, Member::new("hub", Role::Hub, [])),
    );
    let roster = Arc::new(move || Some(pinned.clone()));
    let verifier = PeerVerifier::new(
        identity.node_id(),
        token.fleet,
        roster,
        Some(token.hub),
        addr,
        log,
    );
    let mut tls = rustls::ClientConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_protocol_versions(&[&TLS13])?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(verifier))
    .with_no_client_auth();
    tls.alpn_protocols = vec![ENROL_ALPN.to_vec()];
    tls.enable_sni = false;
    tls.resumption = rustls::client::Resumption::disabled();
    let crypto =
        QuicClientConfig::try_from(Arc::new(tls)).map_err(|e| NetError::Config(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config(
        Duration::from_secs(1),
        Duration::from_secs(5),
    )?));
    Ok(config)
}

/// Connects, sends the request, reads and checks the answer.
async fn exchange(
    endpoint: &Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    token: &Token,
    identity: &Identity,
    who: Applicant,
    log: &RefusalLog,
) -> Result<Enrolled, EnrolError> {
    let connecting = endpoint
        .connect_with(config, addr, NodeTls::server_name())
        .map_err(|e| EnrolError::Unreachable {
            addr,
            reason: e.to_string(),
        })?;
    let conn = match connecting.await {
        Ok(c) => c,
        Err(e) => return Err(connect_error(addr, e, log)),
    };
    let broke = |reason: String| EnrolError::Protocol { addr, reason };
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| broke(e.to_string()))?;
    let request = EnrolRequest::new(identity, who, token).encode();
    if request.len() > MAX_REQUEST {
        return Err(EnrolError::BadGrant(format!(
            "the request is {} bytes, over the limit of {MAX_REQUEST}: shorter names",
            request.len()
        )));
    }
    frame::write(&mut send, &request)
        .await
        .map_err(|e| broke(e.to_string()))?;
    let _ = send.finish();
    let answer = read_frame(&mut recv, MAX_RESPONSE)
        .await
        .map_err(|e| broke(e.to_string()))?;
    conn.close(VarInt::from_u32(close::SHUTDOWN), b"done");
    let response: EnrolResponse =
        postcard::from_bytes(&answer).map_err(|e| broke(format!("answer: {e}")))?;
    match response {
        EnrolResponse::Refused(r) => Err(EnrolError::Refused(r)),
        EnrolResponse::Granted(g) => check(token, identity, g),
    }
}

/// A failed handshake: the pinned hub refused by our verifier, no enrolment
/// protocol there, or no hub at all.
fn connect_error(addr: SocketAddr, e: ConnectionError, log: &RefusalLog) -> EnrolError {
    if let Some(r) = log.records().pop() {
        return EnrolError::NotPinnedHub {
            addr,
            reason: r.reason,
        };
    }
    match &e {
        ConnectionError::ConnectionClosed(c)
            if c.error_code == TransportErrorCode::crypto(NO_APPLICATION_PROTOCOL) =>
        {
            EnrolError::NoEnrolment(addr)
        }
        _ => EnrolError::Unreachable {
            addr,
            reason: e.to_string(),
        },
    }
}

/// Checks the grant against the token and the node's key.
fn check(token: &Token, identity: &Identity, grant: super::Grant) -> Result<Enrolled, EnrolError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| EnrolError::BadGrant(format!("{what}: {e}"));
    let ca = FleetCa::from_der(grant.ca).map_err(|e| bad("ca", &e))?;
    if ca.fleet() != token.fleet {
        return Err(EnrolError::BadGrant(format!(
            "the CA is fleet {}'s, the token's fleet is {}",
            ca.fleet(),
            token.fleet
        )));
    }
    let certificate =
        NodeCertificate::from_der(grant.certificate).map_err(|e| bad("certificate", &e))?;
    if certificate.node() != identity.node_id() {
        return Err(EnrolError::BadGrant(format!(
            "the certificate is for {}, this node is {}",
            certificate.node(),
            identity.node_id()
        )));
    }
    certificate
        .verify(&ca)
        .map_err(|e| bad("certificate", &e))?;
    let verified = grant
        .roster
        .verify(&token.fleet)
        .map_err(|e| bad("roster", &e))?;
    let hub = verified
        .roster()
        .admits(&token.hub, None)
        .map_err(|e| bad("roster: the hub", &e))?;
    if hub.role != Role::Hub {
        return Err(EnrolError::BadGrant(format!(
            "the roster lists the token's hub as a {}",
            hub.role.as_str()
        )));
    }
    verified
        .roster()
        .admits(&identity.node_id(), None)
        .map_err(|e| bad("roster: this node", &e))?;
    Ok(Enrolled {
        ca,
        certificate,
        roster: grant.roster,
    })
}
