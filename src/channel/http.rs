//! The HTTP client of a channel's webhook (ureq, blocking, one request at a
//! time): posts a [`webhook::request`] and classifies
//! the answer with [`webhook::classify`].

use std::time::Duration;

use super::config::{ChannelConfig, ChannelId};
use super::outbox::Failure;
use super::publisher::Update;
use super::webhook;

/// Most bytes of a receiver's answer read.
const MAX_ANSWER: u64 = 4096;

/// Posts updates to one channel's webhook.
pub struct WebhookClient {
    agent: ureq::Agent,
    channel: ChannelId,
    url: String,
    secret: Vec<u8>,
}

impl WebhookClient {
    /// A client for `cfg`'s URL, signing with `secret`; no redirects followed.
    pub fn new(cfg: &ChannelConfig, secret: Vec<u8>) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(cfg.request_timeout_ms)))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Self {
            agent,
            channel: cfg.id.clone(),
            url: cfg.url.clone(),
            secret,
        }
    }

    /// Posts `update`, signed at `now_ms`; `Ok` when the receiver answered 2xx.
    pub fn send(&self, update: &Update, now_ms: u64) -> Result<(), Failure> {
        let req = webhook::request(&self.channel, &self.secret, update, now_ms);
        let mut call = self.agent.post(&self.url).content_type("application/json");
        for (name, value) in &req.headers {
            call = call.header(*name, value);
        }
        let mut resp = call.send(&req.body[..]).map_err(|e| Failure::Retry {
            error: format!("request failed: {e}"),
            retry_after_ms: None,
        })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .unwrap_or_default();
        webhook::classify(status, retry_after.as_deref(), &text)
    }
}
