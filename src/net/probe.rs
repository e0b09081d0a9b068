//! Baseline probes for benches: QUIC + mutual TLS handshakes and a framed
//! echo round trip, with the transport's own TLS, QUIC settings and framing,
//! but outside any node (nothing reaches a node's engine).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::{
    Connection, Endpoint, EndpointConfig, RecvStream, SendStream, TransportConfig, VarInt,
};
use tokio::task::JoinHandle;

use super::frame::{self, FrameError};
use super::quic::NetConfig;
use super::tls::{transport_config, NodeTls};
use super::verify::{RefusalLog, RosterSource};
use super::{close, NetError};
use crate::model::NodeId;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The connection could not be started (bad address, endpoint closed).
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The handshake or the connection failed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The stream's framing broke.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The client configuration could not be built.
    #[error(transparent)]
    Config(#[from] NetError),
    /// The echo did not return the message sent.
    #[error("the echo returned other bytes than were sent")]
    Mismatch,
}

fn settings() -> Result<Arc<TransportConfig>, NetError> {
    let c = NetConfig::default();
    Ok(Arc::new(transport_config(c.keep_alive, c.idle_timeout)?))
}

/// An endpoint that accepts fleet members and echoes every frame back.
pub struct Echo {
    endpoint: Endpoint,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Echo {
    /// Listens on `listen` as `tls`'s node, admitting the peers `roster`
    /// admits. Must be called inside a tokio runtime.
    pub fn start(
        tls: &NodeTls,
        roster: RosterSource,
        listen: SocketAddr,
    ) -> Result<Echo, NetError> {
        let runtime = quinn::default_runtime().ok_or(NetError::NoRuntime)?;
        let socket = std::net::UdpSocket::bind(listen).map_err(NetError::Bind)?;
        let addr = socket.local_addr().map_err(NetError::Bind)?;
        let server =
            tls.server_config(roster, addr, Arc::new(RefusalLog::default()), settings()?)?;
        let endpoint = Endpoint::new(EndpointConfig::default(), Some(server), socket, runtime)
            .map_err(NetError::Bind)?;
        let task = tokio::spawn(accept(endpoint.clone()));
        Ok(Echo {
            endpoint,
            addr,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection and the endpoint.
    pub async fn close(self) {
        self.endpoint
            .close(VarInt::from_u32(close::SHUTDOWN), b"shutdown");
        self.task.abort();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

async fn accept(endpoint: Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((send, recv)) = conn.accept_bi().await {
                tokio::spawn(echo(send, recv));
            }
        });
    }
}

async fn echo(mut send: SendStream, mut recv: RecvStream) {
    while let Ok(m) = frame::read(&mut recv).await {
        if frame::write(&mut send, &m).await.is_err() {
            return;
        }
    }
}

/// A client endpoint dialling with a node's TLS.
pub struct Prober {
    endpoint: Endpoint,
    tls: NodeTls,
    roster: RosterSource,
    transport: Arc<TransportConfig>,
}

impl Prober {
    /// A client endpoint bound to `bind`. Must be called inside a tokio runtime.
    pub fn new(tls: NodeTls, roster: RosterSource, bind: SocketAddr) -> Result<Prober, NetError> {
        let endpoint = Endpoint::client(bind).map_err(NetError::Bind)?;
        Ok(Prober {
            endpoint,
            tls,
            roster,
            transport: settings()?,
        })
    }

    /// Connects to `expected` at `addr` with a fresh handshake; returns the
    /// time from the first packet to the established connection.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: NodeId,
    ) -> Result<(Duration, Probe), ProbeError> {
        let config = self.tls.client_config(
            self.roster.clone(),
            Some(expected),
            addr,
            Arc::new(RefusalLog::default()),
            self.transport.clone(),
        )?;
        let t0 = Instant::now();
        let conn = self
            .endpoint
            .connect_with(config, addr, "stocksync")?
            .await?;
        let took = t0.elapsed();
        let (send, recv) = conn.open_bi().await?;
        Ok((took, Probe { conn, send, recv }))
    }

    /// Closes the endpoint.
    pub async fn close(self) {
        self.endpoint
            .close(VarInt::from_u32(close::SHUTDOWN), b"shutdown");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

/// One established probe connection with its stream.
pub struct Probe {
    conn: Connection,
    send: SendStream,
    recv: RecvStream,
}

impl Probe {
    /// Sends `message` as one frame and waits for it to come back: the round trip.
    pub async fn echo(&mut self, message: &[u8]) -> Result<Duration, ProbeError> {
        let t0 = Instant::now();
        frame::write(&mut self.send, message).await?;
        let back = frame::read(&mut self.recv).await?;
        let took = t0.elapsed();
        if back != message {
            return Err(ProbeError::Mismatch);
        }
        Ok(took)
    }

    /// Closes the connection.
    pub fn close(self) {
        self.conn.close(VarInt::from_u32(close::SHUTDOWN), b"done");
    }
}
