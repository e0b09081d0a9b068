//! The network transport (feature `net`): the sync protocol over QUIC with
//! mutual TLS 1.3 bound to the fleet's signed roster. See docs/network.md.
//!
//! - [`cert`]: the fleet CA (the authority's key) and node certificates.
//! - [`verify`]: the peer verifier: fleet signature, validity, roster admission, expected id.
//! - [`enrol`]: online enrolment with a one-time token (a hub's extra ALPN).
//! - [`probe`]: baseline handshakes and echo round trips for benches.
//! - [`Transport`]: one QUIC endpoint that listens and dials, one stream per
//!   peer carrying length-prefixed messages between the wire and a [`crate::Node`].

pub mod cert;
mod der;
mod dial;
mod engine;
pub mod enrol;
mod frame;
mod link;
pub mod probe;
mod quic;
mod status;
mod tls;
pub mod verify;

pub use cert::{issue, issue_valid, CertError, FleetCa, NodeCertificate};
pub use der::DerError;
pub use frame::FrameError;
pub use quic::{NetConfig, Transport};
pub use status::{LinkStats, PeerInfo};
pub use tls::{transport_config, NodeTls, ALPN};
pub use verify::{PeerVerifier, Refusal, RefusalLog, RefusalRecord, RosterSource};

/// Application close codes a transport sends when it closes a connection.
pub mod close {
    /// The transport is shutting down.
    pub const SHUTDOWN: u32 = 0;
    /// Another connection to the same peer was kept (tie-break or a newer one).
    pub const DUPLICATE: u32 = 1;
    /// The peer sent a length prefix over the wire limit.
    pub const FRAME_TOO_LARGE: u32 = 2;
    /// The peer is no longer admitted by the roster (revoked or removed).
    pub const NOT_ADMITTED: u32 = 3;
    /// The peer broke the framing or the stream layout.
    pub const PROTOCOL: u32 = 4;
    /// The connection reached this node itself.
    pub const SELF: u32 = 5;
    /// The node refused the peer (its store is not durable).
    pub const REFUSED: u32 = 6;
}

/// Why the transport could not start or a configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The UDP socket could not be bound or set up.
    #[error("bind: {0}")]
    Bind(#[source] std::io::Error),
    /// A TLS configuration was refused by rustls.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// A certificate is missing, malformed or not the fleet's.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The node key could not be loaded, or does not match the certificate.
    #[error("node key: {0}")]
    Key(String),
    /// A QUIC setting is out of range.
    #[error("config: {0}")]
    Config(String),
    /// Not called from within a tokio runtime.
    #[error("the transport must be started inside a tokio runtime")]
    NoRuntime,
}
