//! The webhook request (pure): the JSON body of one update, its headers and
//! HMAC-SHA256 signature, and how a receiver's answer is classified. The HTTP
//! client that sends it is `channel::http` (feature `channel`).
//!
//! See docs/hub.md, "Channels and webhooks", for the contract.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::config::ChannelId;
use super::outbox::Failure;
use super::publisher::Update;

/// Header carrying the Unix time (seconds) the request was signed at.
pub const TIMESTAMP_HEADER: &str = "X-Stocksync-Timestamp";
/// Header carrying `sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
pub const SIGNATURE_HEADER: &str = "X-Stocksync-Signature";
/// Header carrying `<channel>:<sku>:<sequence>`.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Most bytes of a receiver's answer kept in an error message.
pub const BODY_EXCERPT: usize = 200;

/// The JSON body of one update.
#[derive(Debug, Serialize)]
struct Payload<'a> {
    channel: &'a str,
    sku: &'a str,
    location: &'a str,
    available: u64,
    updated_at: String,
    sequence: u64,
}

/// A request ready to send: body and headers (besides `Content-Type: application/json`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRequest {
    /// The JSON body.
    pub body: Vec<u8>,
    /// Timestamp, signature and idempotency key headers, by name.
    pub headers: Vec<(&'static str, String)>,
}

/// The JSON body of `update` for `channel`.
pub fn body(channel: &ChannelId, update: &Update) -> Vec<u8> {
    let p = Payload {
        channel: channel.as_str(),
        sku: update.sku.as_str(),
        location: update.location.as_str(),
        available: update.available,
        updated_at: rfc3339_ms(update.updated_at_ms),
        sequence: update.sequence,
    };
    // Serializing a struct of strings and integers cannot fail.
    serde_json::to_vec(&p).unwrap_or_default()
}

/// `sha256=` and the hex HMAC-SHA256 of `timestamp + "." + body` under `secret`.
pub fn signature(secret: &[u8], timestamp_s: u64, body: &[u8]) -> String {
    format!("sha256={}", hex(&mac(secret, timestamp_s, body)))
}

/// Whether `header` is the right signature (compared in constant time).
pub fn verify(secret: &[u8], timestamp_s: u64, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Some(sig) = unhex(hex_sig) else {
        return false;
    };
    keyed(secret, timestamp_s, body).verify_slice(&sig).is_ok()
}

fn keyed(secret: &[u8], timestamp_s: u64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    m.update(timestamp_s.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

fn mac(secret: &[u8], timestamp_s: u64, body: &[u8]) -> Vec<u8> {
    keyed(secret, timestamp_s, body)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// The idempotency key of `update`: `<channel>:<sku>:<sequence>`.
pub fn idempotency_key(channel: &ChannelId, update: &Update) -> String {
    format!("{}:{}:{}", channel, update.sku, update.sequence)
}

/// The signed request for `update`, signed at `now_ms`.
pub fn request(channel: &ChannelId, secret: &[u8], update: &Update, now_ms: u64) -> SignedRequest {
    let body = body(channel, update);
    let ts = now_ms / 1000;
    let headers = vec![
        (TIMESTAMP_HEADER, ts.to_string()),
        (SIGNATURE_HEADER, signature(secret, ts, &body)),
        (IDEMPOTENCY_HEADER, idempotency_key(channel, update)),
    ];
    SignedRequest { body, headers }
}

/// A receiver's answer: 2xx delivered; 408, 429 and 5xx retried (honouring
/// `Retry-After` in seconds); any other status a permanent failure.
pub fn classify(status: u16, retry_after: Option<&str>, body: &str) -> Result<(), Failure> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let excerpt: String = body.chars().take(BODY_EXCERPT).collect();
    let error = format!("HTTP {status}: {excerpt}");
    if status == 408 || status == 429 || status >= 500 {
        let retry_after_ms = retry_after
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| s.saturating_mul(1000));
        Err(Failure::Retry {
            error,
            retry_after_ms,
        })
    } else {
        Err(Failure::Permanent { error })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for Unix milliseconds.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LocationId, Sku};

    fn update() -> Update {
        Update {
            location: LocationId::new("WH-1").unwrap(),
            sku: Sku::new("SHOE-42").unwrap(),
            available: 12,
            updated_at_ms: 1_714_564_800_250,
            sequence: 42,
        }
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_714_564_800_250), "2024-05-01T12:00:00.250Z");
        assert_eq!(rfc3339_ms(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    /// The worked example of docs/hub.md.
    #[test]
    fn worked_example() {
        let ch = ChannelId::new("web").unwrap();
        let r = request(&ch, b"whsec-example", &update(), 1_714_564_801_000);
        let body = String::from_utf8(r.body.clone()).unwrap();
        assert_eq!(
            body,
            r#"{"channel":"web","sku":"SHOE-42","location":"WH-1","available":12,"updated_at":"2024-05-01T12:00:00.250Z","sequence":42}"#
        );
        let h = |name| {
            r.headers
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(h(TIMESTAMP_HEADER), "1714564801");
        assert_eq!(h(IDEMPOTENCY_HEADER), "web:SHOE-42:42");
        assert_eq!(
            h(SIGNATURE_HEADER),
            "sha256=5d5f3abea65b104b1a8d4893a08d663374809a2395196ccc5e551c1b0995a142"
        );
        assert!(verify(
            b"whsec-example",
            1_714_564_801,
            &r.body,
            &h(SIGNATURE_HEADER)
        ));
        assert!(!verify(
            b"other",
            1_714_564_801,
            &r.body,
            &h(SIGNATURE_HEADER)
        ));
        assert!(!verify(
            b"whsec-example",
            1_714_564_802,
            &r.body,
            &h(SIGNATURE_HEADER)
        ));
        assert!(!verify(
            b"whsec-example",
            1_714_564_801,
            &r.body,
            "sha256=zz"
        ));
    }

    #[test]
    fn answers() {
        assert_eq!(classify(200, None, ""), Ok(()));
        assert_eq!(classify(204, None, ""), Ok(()));
        assert!(
            matches!(classify(400, None, "bad sku"), Err(Failure::Permanent { error }) if error == "HTTP 400: bad sku")
        );
        assert!(matches!(
            classify(404, None, ""),
            Err(Failure::Permanent { .. })
        ));
        assert!(matches!(
            classify(429, Some("3"), ""),
            Err(Failure::Retry {
                retry_after_ms: Some(3000),
                ..
            })
        ));
        assert!(matches!(
            classify(408, None, ""),
            Err(Failure::Retry { .. })
        ));
        assert!(matches!(
            classify(503, Some("Wed, 21 Oct 2015 07:28:00 GMT"), ""),
            Err(Failure::Retry {
                retry_after_ms: None,
                ..
            })
        ));
        let long = "x".repeat(1000);
        let Err(Failure::Permanent { error }) = classify(422, None, &long) else {
            panic!()
        };
        assert!(error.len() < 250);
    }
}
