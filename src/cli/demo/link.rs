//! A node's internet link to the hub, as a UDP relay on loopback that can be
//! cut and restored: the node dials the relay, the relay forwards to the hub
//! from one upstream socket per client. Cut, it drops every datagram both
//! ways (as a dead uplink does); QUIC notices by its idle timeout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Largest datagram relayed (QUIC's are far smaller).
const MAX_DATAGRAM: usize = 65_535;
/// Pause after a socket error before the next receive.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// A relay to one target; its tasks end when it is dropped.
pub struct Link {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Link {
    /// Starts a relay on 127.0.0.1 to `target` (call inside the runtime).
    pub async fn start(target: SocketAddr) -> std::io::Result<Link> {
        let front = Arc::new(UdpSocket::bind(("127.0.0.1", 0)).await?);
        let addr = front.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let relay = tokio::spawn(relay(front, target, up.clone(), tasks.clone()));
        lock(&tasks).push(relay);
        Ok(Link { addr, up, tasks })
    }

    /// The address nodes dial instead of the target's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every datagram from now on.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
    }

    /// Forwards datagrams again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forwards what clients send to `target`, each from its own upstream socket.
async fn relay(
    front: Arc<UdpSocket>,
    target: SocketAddr,
    up: Arc<AtomicBool>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    let mut clients: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((n, from)) = front.recv_from(&mut buf).await else {
            tokio::time::sleep(ERROR_PAUSE).await;
            continue;
        };
        if !up.load(Ordering::SeqCst) {
            continue;
        }
        let upstream = match clients.get(&from) {
            Some(s) => s.clone(),
            None => {
                let Ok(s) = UdpSocket::bind(("127.0.0.1", 0)).await else {
                    continue;
                };
                if s.connect(target).await.is_err() {
                    continue;
                }
                let s = Arc::new(s);
                clients.insert(from, s.clone());
                let back = tokio::spawn(back(s.clone(), front.clone(), from, up.clone()));
                lock(&tasks).push(back);
                s
            }
        };
        // A lost datagram is what a network does; QUIC resends.
        let _ = upstream.send(&buf[..n]).await;
    }
}

/// Forwards what the target answers to the client at `to`.
async fn back(
    upstream: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    to: SocketAddr,
    up: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok(n) = upstream.recv(&mut buf).await else {
            // E.g. the target's port closed: try again a little later.
            tokio::time::sleep(ERROR_PAUSE).await;
            continue;
        };
        if up.load(Ordering::SeqCst) {
            let _ = front.send_to(&buf[..n], to).await;
        }
    }
}
