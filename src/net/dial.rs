//! Dial targets: addresses the node keeps a connection to, redialled with
//! jittered exponential backoff. Static peers and (later) discovery feed them
//! through [`add`] and [`remove`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{debug, info_span, Instrument};

use super::link::{self, Ended};
use super::quic::Inner;
use super::status::PeerInfo;
use super::tls::NodeTls;
use crate::model::NodeId;

/// A link up this long resets the redial delay to its minimum.
const HEALTHY: Duration = Duration::from_secs(1);

/// An address to keep connected.
pub(crate) struct Target {
    /// The node expected there, if known beforehand.
    pub expected: Option<NodeId>,
    /// The node last reached there.
    pub learned: Option<NodeId>,
    /// Why the last attempt or connection failed.
    pub last_error: Option<String>,
    /// Attempts after the first.
    pub reconnects: u64,
    cancel: watch::Sender<bool>,
}

impl Target {
    fn id(&self) -> Option<NodeId> {
        self.expected.or(self.learned)
    }
}

/// Starts dialling `addr` (or updates the id expected there).
pub(crate) fn add(inner: &Arc<Inner>, addr: SocketAddr, expected: Option<NodeId>) {
    if *inner.stop.borrow() {
        return;
    }
    let cancel = {
        let mut st = inner.state();
        if let Some(t) = st.targets.get_mut(&addr) {
            t.expected = expected.or(t.expected);
            return;
        }
        let (cancel, rx) = watch::channel(false);
        st.targets.insert(
            addr,
            Target {
                expected,
                learned: None,
                last_error: None,
                reconnects: 0,
                cancel,
            },
        );
        rx
    };
    let span = info_span!("dial", node = %inner.id, peer = %addr);
    inner.track(tokio::spawn(
        run(inner.clone(), addr, cancel).instrument(span),
    ));
}

/// Stops dialling `addr`.
pub(crate) fn remove(inner: &Arc<Inner>, addr: SocketAddr) {
    if let Some(t) = inner.state().targets.remove(&addr) {
        t.cancel.send_replace(true);
    }
}

/// Stops every dial loop (shutdown).
pub(crate) fn cancel_all(inner: &Inner) {
    for t in inner.state().targets.values() {
        t.cancel.send_replace(true);
    }
}

/// The targets and the links not covered by a target.
pub(crate) fn peers(inner: &Arc<Inner>) -> Vec<PeerInfo> {
    let st = inner.state();
    let mut out: Vec<PeerInfo> = st
        .targets
        .iter()
        .map(|(addr, t)| {
            let link = t.id().and_then(|id| st.links.get(&id));
            PeerInfo {
                addr: *addr,
                id: t.id(),
                dialled: true,
                connected: link.is_some(),
                since: link.map(|l| l.since),
                last_error: t.last_error.clone(),
                reconnects: t.reconnects,
            }
        })
        .collect();
    for (id, l) in &st.links {
        if !st.targets.values().any(|t| t.id() == Some(*id)) {
            out.push(PeerInfo {
                addr: l.addr,
                id: Some(*id),
                dialled: false,
                connected: true,
                since: Some(l.since),
                last_error: None,
                reconnects: 0,
            });
        }
    }
    out.sort_by_key(|p| p.addr);
    out
}

/// `d` with equal jitter: uniformly in `[d/2, d]`, so redials of many nodes spread out.
pub(crate) fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 8];
    let r = getrandom::fill(&mut b).map_or(0, |()| u64::from_le_bytes(b));
    let half = d / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(if nanos == 0 { 0 } else { r % (nanos + 1) })
}

fn set(inner: &Inner, addr: SocketAddr, f: impl FnOnce(&mut Target)) {
    if let Some(t) = inner.state().targets.get_mut(&addr) {
        f(t);
    }
}

/// Waits until the cancel flag is set.
async fn cancelled(cancel: &mut watch::Receiver<bool>) {
    // An error means the target was dropped: as good as cancelled.
    let _ = cancel.wait_for(|c| *c).await;
}

/// One dial attempt: the connection, or why it failed.
async fn dial_once(inner: &Arc<Inner>, addr: SocketAddr) -> Result<quinn::Connection, String> {
    let expected = inner.state().targets.get(&addr).and_then(|t| t.expected);
    let config = inner
        .tls
        .client_config(
            inner.roster_source(),
            expected,
            addr,
            inner.refusals.clone(),
            inner.transport.clone(),
        )
        .map_err(|e| e.to_string())?;
    let connecting = inner
        .endpoint
        .connect_with(config, addr, NodeTls::server_name())
        .map_err(|e| e.to_string())?;
    connecting.await.map_err(|e| e.to_string())
}

/// Keeps `addr` connected until cancelled.
async fn run(inner: Arc<Inner>, addr: SocketAddr, mut cancel: watch::Receiver<bool>) {
    let (min, max) = (
        inner.config.backoff_min,
        inner.config.backoff_max.max(inner.config.backoff_min),
    );
    let mut delay = min;
    let mut attempts = 0u64;
    while !*cancel.borrow() {
        // Already linked to the peer at this address (it dialled us): wait for that link to end.
        let linked = {
            let st = inner.state();
            let id = st.targets.get(&addr).and_then(Target::id);
            id.and_then(|id| st.links.get(&id).map(|l| l.conn.clone()))
        };
        if let Some(conn) = linked {
            tokio::select! {
                _ = conn.closed() => {}
                _ = cancelled(&mut cancel) => break,
            }
            delay = min;
            continue;
        }
        if attempts > 0 {
            set(&inner, addr, |t| t.reconnects += 1);
        }
        attempts += 1;
        let outcome = tokio::select! {
            r = dial_once(&inner, addr) => r,
            _ = cancelled(&mut cancel) => break,
        };
        match outcome {
            Ok(conn) => {
                let id = link::peer_of(&conn);
                set(&inner, addr, |t| {
                    t.learned = id;
                    t.last_error = None;
                });
                let up = Instant::now();
                match link::run(inner.clone(), conn, true).await {
                    Ended::Duplicate => {}
                    Ended::ToSelf => {
                        debug!("this address is the node itself: not dialling it again");
                        set(&inner, addr, |t| {
                            t.last_error = Some("this node itself".into())
                        });
                        break;
                    }
                    Ended::Closed(why) => {
                        debug!(reason = %why, "link ended");
                        set(&inner, addr, |t| t.last_error = Some(why));
                    }
                }
                // A link that lived is a success; one closed at once (the peer
                // refused it after the handshake) keeps backing off.
                if up.elapsed() >= HEALTHY {
                    delay = min;
                }
            }
            Err(e) => {
                debug!(error = %e, "dial failed");
                set(&inner, addr, |t| t.last_error = Some(e));
            }
        }
        let wait = jitter(delay);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancelled(&mut cancel) => break,
        }
        delay = delay.saturating_mul(2).min(max);
    }
    debug!("dialling stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_to_full() {
        for ms in [0u64, 1, 100, 10_000] {
            let d = Duration::from_millis(ms);
            for _ in 0..100 {
                let j = jitter(d);
                assert!(j >= d / 2 && j <= d, "{j:?} for {d:?}");
            }
        }
    }
}
