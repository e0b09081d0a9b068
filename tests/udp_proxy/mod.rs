//! A misbehaving UDP proxy on loopback, for QUIC tests: it sits between
//! clients and one target and, per direction, drops, duplicates, delays and
//! reorders datagrams, or holds a batch back to replay it much later.
//!
//! Decisions are drawn from a seeded generator per direction, in the order
//! datagrams arrive, so a seed fixes the policy (the timing of real sockets
//! still varies). The seed is printed; counters say what was done.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::net::UdpSocket;

/// What one direction does to its datagrams in [`Mode::Hostile`].
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Per cent of datagrams dropped.
    pub drop_pct: u32,
    /// Per cent of datagrams sent twice (the copy with its own delay).
    pub dup_pct: u32,
    /// Per cent of datagrams held back until `reorder_window` later ones passed.
    pub reorder_pct: u32,
    /// How many later datagrams overtake a reordered one (or 50 ms, whichever first).
    pub reorder_window: u32,
    /// Delay of each datagram, uniform in this range (milliseconds).
    pub delay_ms: (u64, u64),
}

impl Policy {
    /// No loss, no duplicates, no reordering, no delay.
    pub const CLEAN: Policy = Policy {
        drop_pct: 0,
        dup_pct: 0,
        reorder_pct: 0,
        reorder_window: 0,
        delay_ms: (0, 0),
    };
}

/// What the proxy does now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Forwards everything at once.
    Clean = 0,
    /// Applies each direction's [`Policy`].
    Hostile = 1,
    /// Forwards nothing; keeps every datagram for [`UdpProxy::replay_held`].
    Hold = 2,
}

/// A direction: 0 from the clients to the target, 1 back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Up = 0,
    Down = 1,
}

/// What one direction did.
#[derive(Default)]
struct Counters {
    received: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    delayed: AtomicU64,
    held: AtomicU64,
    recorded: AtomicU64,
    replayed: AtomicU64,
}

impl Counters {
    fn json(&self) -> Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "received": g(&self.received), "sent": g(&self.sent),
            "dropped": g(&self.dropped), "duplicated": g(&self.duplicated),
            "reordered": g(&self.reordered), "delayed": g(&self.delayed),
            "held": g(&self.held), "recorded": g(&self.recorded),
            "replayed": g(&self.replayed),
        })
    }
}

/// splitmix64: small, seeded, good enough to draw per cents and delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pct(&mut self, p: u32) -> bool {
        self.next() % 100 < u64::from(p)
    }
    fn range(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.next() % (hi.saturating_sub(lo) + 1)
    }
}

/// Where a datagram goes: to the target from a client's own upstream socket,
/// or to a client from the listening socket.
#[derive(Clone)]
enum Route {
    Up(Arc<UdpSocket>),
    Down(Arc<UdpSocket>, SocketAddr),
}

impl Route {
    async fn send(&self, bytes: &[u8]) {
        // A send error (the peer's port closed) is a lost datagram, as on a network.
        let _ = match self {
            Route::Up(s) => s.send(bytes).await,
            Route::Down(s, to) => s.send_to(bytes, to).await,
        };
    }
}

/// A datagram waiting to be overtaken.
struct Waiting {
    left: u32,
    since: Instant,
    route: Route,
    bytes: Vec<u8>,
}

/// One direction's state.
struct Lane {
    policy: Policy,
    rng: Mutex<Rng>,
    waiting: Mutex<VecDeque<Waiting>>,
    counters: Counters,
}

struct Shared {
    mode: AtomicU8,
    /// How many more datagrams to copy into `held` as they pass (any mode but hold).
    record: AtomicU64,
    lanes: [Lane; 2],
    held: Mutex<Vec<(Route, Vec<u8>)>>,
}

impl Shared {
    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            1 => Mode::Hostile,
            2 => Mode::Hold,
            _ => Mode::Clean,
        }
    }

    fn send_later(&self, dir: Dir, route: Route, bytes: Vec<u8>, delay: Duration) {
        let lane = &self.lanes[dir as usize];
        lane.counters.sent.fetch_add(1, Ordering::Relaxed);
        if delay.is_zero() {
            tokio::spawn(async move { route.send(&bytes).await });
        } else {
            lane.counters.delayed.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                route.send(&bytes).await;
            });
        }
    }

    /// One datagram arrived in direction `dir`, for `route`.
    fn datagram(&self, dir: Dir, route: Route, bytes: Vec<u8>) {
        let lane = &self.lanes[dir as usize];
        lane.counters.received.fetch_add(1, Ordering::Relaxed);
        let mode = self.mode();
        if mode != Mode::Hold
            && self
                .record
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            lane.counters.recorded.fetch_add(1, Ordering::Relaxed);
            self.held
                .lock()
                .unwrap()
                .push((route.clone(), bytes.clone()));
        }
        match mode {
            Mode::Clean => self.send_later(dir, route, bytes, Duration::ZERO),
            Mode::Hold => {
                lane.counters.held.fetch_add(1, Ordering::Relaxed);
                self.held.lock().unwrap().push((route, bytes));
            }
            Mode::Hostile => {
                let p = lane.policy;
                let (drop, dup, reorder, d1, d2) = {
                    let mut rng = lane.rng.lock().unwrap();
                    (
                        rng.pct(p.drop_pct),
                        rng.pct(p.dup_pct),
                        rng.pct(p.reorder_pct),
                        rng.range(p.delay_ms),
                        rng.range(p.delay_ms),
                    )
                };
                self.release(dir, true, false);
                if drop {
                    lane.counters.dropped.fetch_add(1, Ordering::Relaxed);
                } else if reorder && p.reorder_window > 0 {
                    lane.counters.reordered.fetch_add(1, Ordering::Relaxed);
                    lane.waiting.lock().unwrap().push_back(Waiting {
                        left: p.reorder_window,
                        since: Instant::now(),
                        route: route.clone(),
                        bytes: bytes.clone(),
                    });
                } else {
                    self.send_later(dir, route.clone(), bytes.clone(), ms(d1));
                }
                if dup && !drop {
                    lane.counters.duplicated.fetch_add(1, Ordering::Relaxed);
                    self.send_later(dir, route, bytes, ms(d2));
                }
            }
        }
    }

    /// Releases the waiting datagrams overtaken by enough others (`passed`:
    /// one more just did) or that waited 50 ms; all of them with `all`.
    fn release(&self, dir: Dir, passed: bool, all: bool) {
        let ready: Vec<Waiting> = {
            let mut q = self.lanes[dir as usize].waiting.lock().unwrap();
            if passed {
                for w in q.iter_mut() {
                    w.left = w.left.saturating_sub(1);
                }
            }
            let (ready, keep): (Vec<Waiting>, Vec<Waiting>) = q
                .drain(..)
                .partition(|w| all || w.left == 0 || w.since.elapsed() > Duration::from_millis(50));
            *q = keep.into();
            ready
        };
        for w in ready {
            self.send_later(dir, w.route, w.bytes, Duration::ZERO);
        }
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The proxy: clients send to [`UdpProxy::addr`], it forwards to the target.
pub struct UdpProxy {
    /// Where clients send.
    pub addr: SocketAddr,
    /// The seed of its decisions.
    pub seed: u64,
    name: String,
    shared: Arc<Shared>,
    rt: tokio::runtime::Runtime,
}

impl UdpProxy {
    /// A proxy named `name` to `target`, starting [`Mode::Clean`]; `up` and
    /// `down` are the policies of each direction in [`Mode::Hostile`].
    pub fn start(name: &str, target: SocketAddr, seed: u64, up: Policy, down: Policy) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let lane = |policy, salt: u64| Lane {
            policy,
            rng: Mutex::new(Rng(seed ^ salt)),
            waiting: Mutex::new(VecDeque::new()),
            counters: Counters::default(),
        };
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(Mode::Clean as u8),
            record: AtomicU64::new(0),
            lanes: [lane(up, 0x5570), lane(down, 0xD0D0)],
            held: Mutex::new(Vec::new()),
        });
        let listen = rt
            .block_on(UdpSocket::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let addr = listen.local_addr().expect("proxy addr");
        println!("udp proxy {name}: {addr} -> {target}, seed {seed}, up {up:?}, down {down:?}");
        rt.spawn(serve(Arc::new(listen), target, shared.clone()));
        // Releases reordered datagrams no later datagram overtook.
        let tick = shared.clone();
        rt.spawn(async move {
            loop {
                tokio::time::sleep(ms(10)).await;
                tick.release(Dir::Up, false, false);
                tick.release(Dir::Down, false, false);
            }
        });
        Self {
            addr,
            seed,
            name: name.to_string(),
            shared,
            rt,
        }
    }

    /// Switches the mode; leaving [`Mode::Hostile`] releases the reordered datagrams.
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
        if mode != Mode::Hostile {
            let _guard = self.rt.enter();
            self.shared.release(Dir::Up, false, true);
            self.shared.release(Dir::Down, false, true);
        }
    }

    /// Copies the next `n` datagrams that pass (both directions) into the
    /// held batch, to replay them later as well.
    pub fn record(&self, n: u64) {
        self.shared.record.store(n, Ordering::SeqCst);
    }

    /// How many datagrams [`Mode::Hold`] kept, or [`UdpProxy::record`]
    /// copied, and not yet replayed.
    pub fn held(&self) -> usize {
        self.shared.held.lock().unwrap().len()
    }

    /// Sends every held datagram `times` times, each to where it was going
    /// (from the same client socket); returns how many were sent.
    pub fn replay_held(&self, times: usize) -> usize {
        let held = std::mem::take(&mut *self.shared.held.lock().unwrap());
        let shared = self.shared.clone();
        self.rt.block_on(async move {
            let mut n = 0;
            for _ in 0..times {
                for (route, bytes) in &held {
                    let dir = if matches!(route, Route::Up(_)) {
                        Dir::Up
                    } else {
                        Dir::Down
                    };
                    shared.lanes[dir as usize]
                        .counters
                        .replayed
                        .fetch_add(1, Ordering::Relaxed);
                    route.send(bytes).await;
                    n += 1;
                }
            }
            n
        })
    }

    /// The counters of both directions, as JSON.
    pub fn counters(&self) -> Value {
        json!({
            "proxy": self.name,
            "seed": self.seed,
            "to_target": self.shared.lanes[0].counters.json(),
            "to_clients": self.shared.lanes[1].counters.json(),
        })
    }
}

/// Receives from clients (one upstream socket per client address) and from
/// the target, and hands each datagram to the policy.
async fn serve(listen: Arc<UdpSocket>, target: SocketAddr, shared: Arc<Shared>) {
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, client)) = listen.recv_from(&mut buf).await else {
            continue;
        };
        let up = match upstreams.get(&client) {
            Some(up) => up.clone(),
            None => {
                let Ok(sock) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                if sock.connect(target).await.is_err() {
                    continue;
                }
                let sock = Arc::new(sock);
                upstreams.insert(client, sock.clone());
                tokio::spawn(back(sock.clone(), listen.clone(), client, shared.clone()));
                sock
            }
        };
        shared.datagram(Dir::Up, Route::Up(up), buf[..n].to_vec());
    }
}

/// Carries the target's answers to one client.
async fn back(up: Arc<UdpSocket>, listen: Arc<UdpSocket>, client: SocketAddr, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match up.recv(&mut buf).await {
            Ok(n) => shared.datagram(
                Dir::Down,
                Route::Down(listen.clone(), client),
                buf[..n].to_vec(),
            ),
            // ICMP port unreachable (the target restarting) surfaces here: keep going.
            Err(_) => tokio::time::sleep(ms(5)).await,
        }
    }
}

/// A seed from `STOCKSYNC_PROXY_SEED`, or the clock.
pub fn seed_from_env() -> u64 {
    std::env::var("STOCKSYNC_PROXY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}
