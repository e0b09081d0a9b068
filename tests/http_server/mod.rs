//! A local HTTP server for tests (a webhook receiver) that can go down as a
//! process would and come back on the same port.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;

/// `app` served on 127.0.0.1, on its own runtime while up.
pub struct Restartable {
    addr: SocketAddr,
    app: Router,
    rt: Option<tokio::runtime::Runtime>,
}

impl Restartable {
    /// Serves `app` on a free port.
    pub fn start(app: Router) -> Self {
        let mut s = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            app,
            rt: None,
        };
        s.up();
        s
    }

    /// Listens (again, on the same port once it has one).
    pub fn up(&mut self) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let addr = self.addr;
        let listener = rt.block_on(async {
            for _ in 0..100 {
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => return l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            panic!("cannot bind {addr} again");
        });
        self.addr = listener.local_addr().unwrap();
        let app = self.app.clone();
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        self.rt = Some(rt);
    }

    /// Goes down as a process would: the listener and every connection close.
    pub fn down(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Restartable {
    fn drop(&mut self) {
        self.down();
    }
}
