//! The web shop's side of the channel: an HTTP receiver on 127.0.0.1 in the
//! demo's process that checks each request's HMAC signature and logs what
//! it got. It can go down (the listener and every connection close) and come
//! back on the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

use stocksync::channel::webhook::{verify, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// One update as the receiver got it (signature checked).
#[derive(Clone, Debug)]
pub struct Got {
    /// The SKU.
    pub sku: String,
    /// The location.
    pub location: String,
    /// The available quantity published.
    pub available: u64,
    /// The per-(channel, SKU) sequence number.
    pub sequence: u64,
}

#[derive(Default)]
struct Log {
    got: Vec<Got>,
    bad_signatures: usize,
}

struct Shared {
    secret: Vec<u8>,
    log: Mutex<Log>,
}

fn lock(m: &Mutex<Log>) -> MutexGuard<'_, Log> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The receiver: its address and, while up, its own runtime.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
}

async fn hook(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ts = h(TIMESTAMP_HEADER).parse::<u64>().ok();
    let signed = ts.is_some_and(|ts| verify(&s.secret, ts, &body, h(SIGNATURE_HEADER)));
    if !signed {
        lock(&s.log).bad_signatures += 1;
        return (StatusCode::UNAUTHORIZED, "bad signature");
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON");
    };
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let got = Got {
        sku: text("sku"),
        location: text("location"),
        available: v["available"].as_u64().unwrap_or(0),
        sequence: v["sequence"].as_u64().unwrap_or(0),
    };
    lock(&s.log).got.push(got);
    (StatusCode::OK, "")
}

impl Receiver {
    /// Starts a receiver on a free port of 127.0.0.1 checking signatures with `secret`.
    pub fn start(secret: &str) -> Result<Self> {
        let mut r = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            shared: Arc::new(Shared {
                secret: secret.as_bytes().to_vec(),
                log: Mutex::default(),
            }),
            rt: None,
        };
        r.up()?;
        Ok(r)
    }

    /// Listens (again, on the same port once it has one).
    pub fn up(&mut self) -> Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("the receiver's runtime")?;
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(self.shared.clone());
        let addr = self.addr;
        let listener = rt.block_on(async {
            for _ in 0..100 {
                if let Ok(l) = tokio::net::TcpListener::bind(addr).await {
                    return Ok(l);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(anyhow!("cannot bind the webhook receiver to {addr} again"))
        })?;
        self.addr = listener.local_addr()?;
        rt.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        self.rt = Some(rt);
        Ok(())
    }

    /// Goes down as a process would: the listener and every connection close.
    pub fn down(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }

    /// The webhook URL.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Every update received, in arrival order.
    pub fn got(&self) -> Vec<Got> {
        lock(&self.shared.log).got.clone()
    }

    /// Requests refused for a bad signature.
    pub fn bad_signatures(&self) -> usize {
        lock(&self.shared.log).bad_signatures
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}
