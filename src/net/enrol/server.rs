//! The hub's side of the enrolment exchange, on its QUIC listener under
//! [`super::ENROL_ALPN`]: per source address a token bucket, at most
//! [`MAX_CONCURRENT`] exchanges at once, one request of at most
//! [`super::MAX_REQUEST`] bytes read within [`DEADLINE`], one answer, then
//! the connection closes. The decision is the [`EnrolService`]'s.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quinn::{Connection, RecvStream, VarInt};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use super::{EnrolRequest, EnrolResponse, Grant, RateLimiter, RefusalCode, Refused, MAX_REQUEST};
use crate::net::close;
use crate::net::frame::{self, FrameError};

/// Enrolment attempts refilled per second and source address.
pub const RATE_PER_SECOND: f64 = 2.0;
/// Attempts a source address may make at once.
pub const BURST: u32 = 5;
/// Exchanges in progress at once (the others are answered `busy`).
pub const MAX_CONCURRENT: usize = 8;
/// How long a client has to open its stream and send its request.
pub const DEADLINE: Duration = Duration::from_secs(5);
/// Source addresses the limiter tracks.
const MAX_ADDRESSES: usize = 4096;

/// The hub's decision on one request (it checks the token, enrols, issues).
pub trait EnrolService: Send + Sync + 'static {
    /// Decides `req` from `from`; blocking (it may write to disk). A
    /// refusal changes nothing.
    fn enrol(&self, req: &EnrolRequest, from: SocketAddr) -> Result<Grant, Refused>;
}

/// A service with its rate limit and concurrency cap.
pub struct EnrolServer {
    service: Arc<dyn EnrolService>,
    limiter: Mutex<RateLimiter>,
    slots: Arc<Semaphore>,
}

impl EnrolServer {
    /// Serves `service` with the default limits.
    pub fn new(service: Arc<dyn EnrolService>) -> Self {
        Self {
            service,
            limiter: Mutex::new(RateLimiter::new(RATE_PER_SECOND, BURST, MAX_ADDRESSES)),
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT)),
        }
    }
}

/// Reads one frame of at most `max` bytes (the length is checked before allocating).
pub(super) async fn read_frame(recv: &mut RecvStream, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; 4];
    recv.read_exact(&mut header)
        .await
        .map_err(|e| FrameError::Read(e.to_string()))?;
    let len = u32::from_be_bytes(header);
    if u64::from(len) > max as u64 {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max,
        });
    }
    // Bounded by `max` just above.
    let mut message = vec![0u8; len as usize];
    recv.read_exact(&mut message).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(_) => FrameError::Truncated,
        quinn::ReadExactError::ReadError(e) => FrameError::Read(e.to_string()),
    })?;
    Ok(message)
}

/// Runs one enrolment connection to its end.
pub(crate) async fn serve(server: Arc<EnrolServer>, conn: Connection) {
    let addr = conn.remote_address();
    let stream = tokio::time::timeout(DEADLINE, conn.accept_bi()).await;
    let Ok(Ok((mut send, mut recv))) = stream else {
        conn.close(VarInt::from_u32(close::PROTOCOL), b"no request");
        return;
    };
    let response = match answer(&server, addr, &mut recv).await {
        Ok(grant) => EnrolResponse::Granted(grant),
        Err(refused) => {
            warn!(peer = %addr, code = refused.code.as_str(), reason = %refused.message, "enrolment refused");
            EnrolResponse::Refused(refused)
        }
    };
    if frame::write(&mut send, &response.encode()).await.is_ok() {
        let _ = send.finish();
        // The client closes once it has read the answer; closing first
        // would discard what is still in flight.
        let _ = tokio::time::timeout(DEADLINE, conn.closed()).await;
    }
    conn.close(VarInt::from_u32(close::SHUTDOWN), b"done");
}

/// The limits, then the request, then the service's decision.
async fn answer(
    server: &Arc<EnrolServer>,
    addr: SocketAddr,
    recv: &mut RecvStream,
) -> Result<Grant, Refused> {
    let allowed = server
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .allow(addr.ip(), Instant::now());
    if !allowed {
        return Err(Refused::new(
            RefusalCode::RateLimited,
            "too many enrolment attempts from this address: retry in a few seconds",
        ));
    }
    let Ok(_slot) = server.slots.clone().try_acquire_owned() else {
        return Err(Refused::new(
            RefusalCode::Busy,
            "too many enrolments in progress: retry",
        ));
    };
    let bytes = match tokio::time::timeout(DEADLINE, read_frame(recv, MAX_REQUEST)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(Refused::new(RefusalCode::Malformed, e.to_string())),
        Err(_) => {
            return Err(Refused::new(
                RefusalCode::Malformed,
                "no request within the deadline",
            ))
        }
    };
    let req = EnrolRequest::decode(&bytes)?;
    let (node, name) = (req.node, req.who.name.clone());
    let service = server.service.clone();
    let decided = tokio::task::spawn_blocking(move || service.enrol(&req, addr))
        .await
        .map_err(|e| Refused::new(RefusalCode::Unavailable, format!("enrolment failed: {e}")))?;
    if decided.is_ok() {
        info!(peer = %addr, %node, %name, "node enrolled with a token");
    }
    decided
}
