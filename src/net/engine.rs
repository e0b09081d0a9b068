//! The two threads between the node and the network: the *pump* hands what
//! the node sends to the right link, and the *ticker* runs the node's timers
//! and keeps the roster the handshakes check up to date. Both call the node's
//! blocking API, so neither runs on the async reactor.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use quinn::VarInt;
use tracing::{debug, info};

use super::close;
use super::link::QUEUE_BYTES;
use super::quic::Inner;
use super::verify::RosterSource;
use crate::fleet::{FleetId, Roster};
use crate::node::Node;

/// Longest the ticker sleeps: bounds how late a roster change reaches the handshakes.
const TICK_MAX: Duration = Duration::from_millis(200);
/// How long the pump waits for a message before checking whether to stop.
const PUMP_WAIT: Duration = Duration::from_millis(100);

/// The node's roster as handshakes see it, refreshed by the ticker.
pub(crate) struct RosterCache {
    fleet: FleetId,
    current: Arc<RwLock<(u64, Option<Arc<Roster>>)>>,
}

impl RosterCache {
    /// Reads the node's roster (off the reactor).
    pub async fn load(node: &Node, fleet: FleetId) -> Self {
        let node = node.clone();
        let current = tokio::task::spawn_blocking(move || (node.roster_version(), node.roster()))
            .await
            .unwrap_or((0, None));
        Self {
            fleet,
            current: Arc::new(RwLock::new((current.0, current.1.map(Arc::new)))),
        }
    }

    /// The closure a verifier calls.
    pub fn source(&self) -> RosterSource {
        let current = self.current.clone();
        Arc::new(move || current.read().unwrap_or_else(|e| e.into_inner()).1.clone())
    }

    /// Takes the node's roster if its version changed; true if it did.
    fn refresh(&self, node: &Node) -> bool {
        let version = node.roster_version();
        if self.current.read().unwrap_or_else(|e| e.into_inner()).0 == version {
            return false;
        }
        let roster = node
            .roster()
            .filter(|r| r.fleet == self.fleet)
            .map(Arc::new);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (version, roster);
        true
    }
}

/// The pump and ticker threads.
pub(crate) struct Threads {
    pump: JoinHandle<()>,
    ticker: JoinHandle<()>,
    stop: Arc<AtomicBool>,
    wake: mpsc::Sender<()>,
}

impl Threads {
    /// Starts both threads; `rt` lets the ticker close links of peers no longer admitted.
    pub fn start(inner: Arc<Inner>, rt: tokio::runtime::Handle) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (wake, sleep) = mpsc::channel();
        let name = format!("net-pump-{}", inner.id);
        let (i, s) = (inner.clone(), stop.clone());
        let pump = std::thread::Builder::new()
            .name(name)
            .spawn(move || pump(&i, &s))?;
        let ticker = std::thread::Builder::new()
            .name(format!("net-tick-{}", inner.id))
            .spawn(move || ticker(&inner, &sleep, &rt))?;
        Ok(Self {
            pump,
            ticker,
            stop,
            wake,
        })
    }

    /// Tells both threads to stop, without waiting for them.
    pub fn signal(self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Stops and joins both threads.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        drop(self.wake);
        let (pump, ticker) = (self.pump, self.ticker);
        let _ = tokio::task::spawn_blocking(move || {
            let _ = pump.join();
            let _ = ticker.join();
        })
        .await;
    }
}

/// Delivers the node's sends to their links; drops what has no link or no room.
fn pump(inner: &Inner, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let sends = inner.node.wait_sends(PUMP_WAIT);
        if sends.is_empty() {
            continue;
        }
        let st = inner.state();
        for o in sends {
            let queued = st
                .links
                .get(&o.to)
                .filter(|l| l.queued.load(Ordering::Relaxed) + o.message.len() <= QUEUE_BYTES);
            let sent = queued.is_some_and(|l| {
                let len = o.message.len();
                l.queued.fetch_add(len, Ordering::Relaxed);
                let ok = l.tx.send(o.message).is_ok();
                if !ok {
                    l.queued.fetch_sub(len, Ordering::Relaxed);
                }
                ok
            });
            if !sent {
                // The protocol repairs a lost message (ack timeout, probes).
                inner.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    debug!("pump stopped");
}

/// Runs the node's timers when due and follows roster changes.
fn ticker(inner: &Inner, sleep: &mpsc::Receiver<()>, rt: &tokio::runtime::Handle) {
    loop {
        let wait = inner.node.tick_in().map_or(TICK_MAX, |d| d.min(TICK_MAX));
        match sleep.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) | Ok(()) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        inner.node.tick();
        if inner.roster.refresh(&inner.node) {
            drop_not_admitted(inner, rt);
        }
    }
    debug!("ticker stopped");
}

/// Closes the links of peers the new roster no longer admits.
fn drop_not_admitted(inner: &Inner, rt: &tokio::runtime::Handle) {
    let roster = (inner.roster_source())();
    let st = inner.state();
    for (id, link) in &st.links {
        let admitted = roster.as_ref().is_some_and(|r| r.admits(id, None).is_ok());
        if !admitted {
            info!(node = %inner.id, peer = %id, "peer no longer admitted by the roster: closing");
            let conn = link.conn.clone();
            // Closing needs the runtime's context for its timers.
            rt.spawn(
                async move { conn.close(VarInt::from_u32(close::NOT_ADMITTED), b"not admitted") },
            );
        }
    }
}
