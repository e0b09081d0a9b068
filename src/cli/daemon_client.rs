//! The command line's path through a running daemon: find it (runtime file
//! present and the API answering health for the same node), then send event,
//! stock and status requests to its API with the directory's token.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use ureq::Agent;

use crate::daemon::api::EventBody;
use crate::daemon::error::ErrorBody;
use crate::daemon::runtime_file::{self, RuntimeInfo};
use crate::daemon::{auth, error};
use stocksync::model::EventOutcome;
use stocksync::store::StockRow;

/// How long the health probe may take before the daemon counts as absent.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one request may take (an event waits for its group commit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An error answer of the daemon; its code decides the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiFailure {
    /// The API's error code.
    pub code: String,
    /// The API's message (the text the direct path prints).
    pub message: String,
}

impl ApiFailure {
    /// The command-line exit code of this failure.
    pub fn exit_code(&self) -> i32 {
        error::exit_code(&self.code)
    }
}

/// `s` with every byte outside `A-Z a-z 0-9 - _ . ~` percent-encoded (a path segment).
fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A running daemon's API.
pub struct Client {
    agent: Agent,
    base: String,
    token: String,
    info: RuntimeInfo,
}

/// One row of `GET /v1/stock` (the fields of [`StockRow`]).
#[derive(Deserialize)]
struct Row {
    location: String,
    sku: String,
    on_hand: i64,
    held: i64,
    rights: i64,
    deficit: i64,
}

fn agent(timeout: Duration) -> Agent {
    Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

/// The daemon running on `dir`, if any: `None` without a runtime file or
/// token, or when the API does not answer health for this directory's node
/// (a daemon that died leaves a stale file: the direct path is then taken).
pub fn find(dir: &Path) -> Option<Client> {
    let info = runtime_file::read(dir)?;
    let token = auth::read(dir).ok()??;
    let base = format!("http://{}", info.api);
    let probe = agent(PROBE_TIMEOUT);
    let mut resp = probe.get(format!("{base}/v1/health")).call().ok()?;
    if resp.status() != 200 {
        return None;
    }
    let text = resp.body_mut().read_to_string().ok()?;
    let health: Value = serde_json::from_str(&text).ok()?;
    if health["node_id"].as_str() != Some(info.node_id.as_str()) {
        return None;
    }
    Some(Client {
        agent: agent(REQUEST_TIMEOUT),
        base,
        token: token.as_str().to_string(),
        info,
    })
}

impl Client {
    fn answer<T: DeserializeOwned>(
        &self,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        what: &str,
    ) -> Result<T> {
        let mut resp = sent
            .map_err(|e| anyhow!("the daemon at {} did not answer {what}: {e}", self.info.api))?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_string()
            .map_err(|e| anyhow!("reading the daemon's answer to {what}: {e}"))?;
        if status.is_success() {
            return Ok(serde_json::from_str(&text)?);
        }
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => Err(ApiFailure {
                code: b.error.code,
                message: b.error.message,
            }
            .into()),
            Err(_) => Err(anyhow!("the daemon answered {status} to {what}: {text}")),
        }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let sent = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .call();
        self.answer(sent, path)
    }

    /// `POST /v1/events`; `body.id` must be set (the caller makes one if the user gave none).
    pub fn event(&self, body: &EventBody) -> Result<EventOutcome> {
        let id = body.id.clone().unwrap_or_default();
        let json = serde_json::to_string(body)?;
        let sent = self
            .agent
            .post(format!("{}/v1/events", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .content_type("application/json")
            .send(json);
        if let Err(e) = &sent {
            return Err(anyhow!(
                "the daemon at {} did not answer: {e}; event {id} may or may not be recorded: \
                 run the same command again with --id {id} (it is applied at most once)",
                self.info.api
            ));
        }
        self.answer(sent, "the event")
    }

    /// `GET /v1/stock` or `GET /v1/stock/{sku}`.
    pub fn stock(&self, sku: Option<&str>) -> Result<Vec<StockRow>> {
        let path = match sku {
            Some(s) => format!("/v1/stock/{}", escape(s)),
            None => "/v1/stock".to_string(),
        };
        let rows: Vec<Row> = self.get(&path)?;
        Ok(rows
            .into_iter()
            .map(|r| StockRow {
                location: r.location,
                sku: r.sku,
                on_hand: r.on_hand,
                held: r.held,
                rights: r.rights,
                deficit: r.deficit,
            })
            .collect())
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<Value> {
        self.get("/v1/status")
    }

    /// `POST path` with the JSON of `body` (the fleet routes).
    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &impl serde::Serialize) -> Result<T> {
        let json = serde_json::to_string(body)?;
        let sent = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.token))
            .content_type("application/json")
            .send(json);
        self.answer(sent, path)
    }
}
