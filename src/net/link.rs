//! One authenticated connection: its stream, its registration as *the* link
//! to its peer (one per peer id, with a deterministic tie-break), the engine's
//! `peer_up`/`peer_down`, and the reading and writing loops.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use quinn::{Connection, RecvStream, SendStream, VarInt};
use rustls_pki_types::CertificateDer;
use tokio::sync::mpsc;
use tracing::{debug, info, info_span, warn, Instrument};

use super::close;
use super::frame::{self, FrameError};
use super::quic::{alpn_of, Inner};
use super::tls::ALPN;
use super::verify::{peer_id, Refusal};
use crate::model::NodeId;

/// Most bytes queued for one connection before the pump drops messages to it.
pub(crate) const QUEUE_BYTES: usize = 16 << 20;

/// The live connection to a peer.
pub(crate) struct Link {
    /// Unique per connection, to tell a replaced link from the current one.
    pub seq: u64,
    /// The connection.
    pub conn: Connection,
    /// Messages for the writing loop.
    pub tx: mpsc::UnboundedSender<Vec<u8>>,
    /// Bytes waiting in `tx`.
    pub queued: Arc<AtomicUsize>,
    /// Bytes of frames (length prefix and message) written to the stream.
    pub written: Arc<AtomicU64>,
    /// True if this node dialled it.
    pub dialled: bool,
    /// The peer's address.
    pub addr: SocketAddr,
    /// When it came up.
    pub since: SystemTime,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Another connection to the same peer was kept.
    Duplicate,
    /// It reached this node itself.
    ToSelf,
    /// It closed or broke; why.
    Closed(String),
}

fn code(c: u32) -> VarInt {
    VarInt::from_u32(c)
}

/// Keep the new connection rather than the old one to the same peer? The
/// newer one in the same direction (the old one is from before a restart);
/// between the two directions, the one dialled by the smaller node id, so both
/// sides keep the same connection.
fn keep_new(me: NodeId, peer: NodeId, old_dialled: bool, new_dialled: bool) -> bool {
    if old_dialled == new_dialled {
        return true;
    }
    let new_dialler = if new_dialled { me } else { peer };
    new_dialler == me.min(peer)
}

/// The node id in an established connection's peer certificate (the
/// verifier accepted that leaf, so it parses).
pub(crate) fn peer_of(conn: &Connection) -> Option<NodeId> {
    conn.peer_identity()
        .and_then(|a| a.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|chain| chain.first().and_then(|l| peer_id(l.as_ref())))
}

/// Runs an established connection to its end.
pub(crate) async fn run(inner: Arc<Inner>, conn: Connection, dialled: bool) -> Ended {
    let addr = conn.remote_address();
    let Some(id) = peer_of(&conn) else {
        // A hub serving enrolment makes the client certificate optional at
        // the handshake (tls.rs): a sync connection without one ends here,
        // before the node hears of it.
        inner.refusals.record(addr, None, Refusal::NoCertificate);
        conn.close(code(close::PROTOCOL), b"no certificate");
        return Ended::Closed("no peer certificate".into());
    };
    if alpn_of(&conn).as_deref() != Some(ALPN) {
        conn.close(code(close::PROTOCOL), b"alpn");
        return Ended::Closed("no stocksync/1 application protocol".into());
    }
    if id == inner.id {
        conn.close(code(close::SELF), b"self");
        return Ended::ToSelf;
    }
    let span = info_span!("link", node = %inner.id, peer = %id, %addr, dialled);
    serve(inner, conn, id, dialled).instrument(span).await
}

async fn serve(inner: Arc<Inner>, conn: Connection, id: NodeId, dialled: bool) -> Ended {
    let (send, recv) = match open(&conn, dialled).await {
        Ok(s) => s,
        Err(e) => {
            conn.close(code(close::PROTOCOL), b"stream");
            return Ended::Closed(e.to_string());
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let link = Link {
        seq: 0,
        conn: conn.clone(),
        tx,
        queued: queued.clone(),
        written: written.clone(),
        dialled,
        addr: conn.remote_address(),
        since: SystemTime::now(),
    };
    let seq = match register(&inner, id, link).await {
        Ok(seq) => seq,
        Err(ended) => return ended,
    };
    info!("connected");
    let writer =
        tokio::spawn(write_loop(conn.clone(), send, rx, queued, written).in_current_span());
    let ended = read_loop(&inner, &conn, id, recv).await;
    writer.abort();
    conn.close(code(close::SHUTDOWN), b"closed");
    unregister(&inner, id, seq).await;
    info!(reason = ?ended, rtt = ?conn.rtt(), "disconnected");
    ended
}

/// Sets up the connection's one stream. Each side writes an empty frame
/// first; the dialler waits for the acceptor's, which the acceptor can only
/// send once it has verified the dialler, so neither side tells its node about
/// a peer that has not accepted it.
async fn open(conn: &Connection, dialled: bool) -> Result<(SendStream, RecvStream), FrameError> {
    let (mut send, mut recv) = if dialled {
        conn.open_bi()
            .await
            .map_err(|e| FrameError::Write(e.to_string()))?
    } else {
        conn.accept_bi()
            .await
            .map_err(|e| FrameError::Read(e.to_string()))?
    };
    frame::write(&mut send, &[]).await?;
    if dialled && !frame::read(&mut recv).await?.is_empty() {
        return Err(FrameError::Read(
            "the acceptor's first frame is not empty".into(),
        ));
    }
    Ok((send, recv))
}

/// Makes `link` the link to `id` (calling `peer_up`: a first link or a new
/// session replacing the old one) or refuses it.
async fn register(inner: &Arc<Inner>, id: NodeId, mut link: Link) -> Result<u64, Ended> {
    let _order = inner.updown.lock().await;
    let (seq, conn) = {
        let mut st = inner.state();
        let seq = st.next_seq;
        st.next_seq += 1;
        link.seq = seq;
        let first = match st.links.get(&id) {
            None => true,
            Some(old) if keep_new(inner.id, id, old.dialled, link.dialled) => {
                debug!(old = %old.addr, "replacing the link to this peer");
                old.conn.close(code(close::DUPLICATE), b"replaced");
                false
            }
            Some(_) => {
                debug!("already linked to this peer: closing the new connection");
                link.conn.close(code(close::DUPLICATE), b"duplicate");
                return Err(Ended::Duplicate);
            }
        };
        let conn = link.conn.clone();
        st.links.insert(id, link);
        if !first {
            // A replaced link is a new session: the other end (a restarted
            // device, or a second device with the same key) holds nothing of
            // the old one. `peer_up` again starts the engine's session over
            // (heads, roster and fork proofs offered again).
            debug!("a new session with this peer");
        }
        (seq, conn)
    };
    let node = inner.node.clone();
    let up = tokio::task::spawn_blocking(move || node.peer_up(id)).await;
    match up {
        Ok(Ok(())) => Ok(seq),
        other => {
            warn!(result = ?other.map(|r| r.map_err(|e| e.to_string())), "the node refused the peer");
            let mut st = inner.state();
            if st.links.get(&id).is_some_and(|l| l.seq == seq) {
                st.links.remove(&id);
            }
            conn.close(code(close::REFUSED), b"refused");
            Err(Ended::Closed("the node refused the peer".into()))
        }
    }
}

/// Removes the link `seq` to `id` if it is still the current one, and tells the node.
pub(crate) async fn unregister(inner: &Arc<Inner>, id: NodeId, seq: u64) {
    let _order = inner.updown.lock().await;
    let removed = {
        let mut st = inner.state();
        if st.links.get(&id).is_some_and(|l| l.seq == seq) {
            st.links.remove(&id)
        } else {
            None
        }
    };
    if removed.is_some() {
        let node = inner.node.clone();
        let _ = tokio::task::spawn_blocking(move || node.peer_down(id)).await;
    }
}

async fn read_loop(
    inner: &Arc<Inner>,
    conn: &Connection,
    id: NodeId,
    mut recv: RecvStream,
) -> Ended {
    loop {
        match frame::read(&mut recv).await {
            Ok(m) if m.is_empty() => {}
            Ok(m) => {
                // `receive` may block on disk: never on the reactor.
                let node = inner.node.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || node.receive(id, m)).await {
                    return Ended::Closed(format!("receive failed: {e}"));
                }
            }
            Err(e @ FrameError::TooLarge { .. }) => {
                warn!(error = %e, "closing the connection");
                conn.close(code(close::FRAME_TOO_LARGE), b"frame too large");
                return Ended::Closed(e.to_string());
            }
            Err(e @ FrameError::Truncated) => {
                conn.close(code(close::PROTOCOL), b"truncated frame");
                return Ended::Closed(e.to_string());
            }
            Err(e) => {
                let why = conn.close_reason().map(|r| r.to_string());
                return Ended::Closed(why.unwrap_or_else(|| e.to_string()));
            }
        }
    }
}

async fn write_loop(
    conn: Connection,
    mut send: SendStream,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    written: Arc<AtomicU64>,
) {
    while let Some(message) = rx.recv().await {
        let r = frame::write(&mut send, &message).await;
        queued.fetch_sub(message.len(), Ordering::Relaxed);
        if r.is_ok() {
            written.fetch_add(message.len() as u64 + 4, Ordering::Relaxed);
        }
        if let Err(e) = r {
            // A link that cannot write is no link: close it, the peer redials.
            debug!(error = %e, "write failed");
            conn.close(code(close::PROTOCOL), b"write failed");
            return;
        }
    }
    let _ = send.finish();
}

#[cfg(test)]
mod tests {
    use super::keep_new;
    use crate::model::NodeId;

    #[test]
    fn tie_break_keeps_the_same_connection_on_both_sides() {
        let (a, b) = (NodeId([1; 32]), NodeId([2; 32]));
        // a dialled (a→b) and b dialled (b→a): both keep a→b, whatever came first.
        // On a: a→b is `dialled`; on b: a→b is not.
        assert!(!keep_new(a, b, true, false), "a keeps its own a→b");
        assert!(keep_new(a, b, false, true), "a replaces b→a by a→b");
        assert!(keep_new(b, a, true, false), "b replaces b→a by a→b");
        assert!(!keep_new(b, a, false, true), "b keeps a→b");
        // Same direction: the newer one (the old one predates a restart).
        assert!(keep_new(a, b, true, true) && keep_new(a, b, false, false));
    }
}
