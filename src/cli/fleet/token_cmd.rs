//! `fleet token` (create), `fleet token list` and `fleet token revoke` on the
//! hub's data directory. Creating goes through the hub's daemon when one runs
//! (`POST /v1/fleet/tokens`); listing and revoking use the token store
//! directly (SQLite serializes them with the daemon).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::json;
use stocksync::data_dir::{self, NodeSpec, Reader};
use stocksync::model::NodeId;
use stocksync::net::enrol::{Applicant, Token};

use super::hub::load_authority;
use super::tokens::{parse_ttl, TokenStore, MAX_TTL};
use super::{print_json, FleetError};

/// The default time to live of a token, in seconds (one hour).
pub const DEFAULT_TTL_S: u64 = 3600;

/// `POST /v1/fleet/tokens`'s body: the roster entry the token is for.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The new node's name.
    pub node: String,
    /// Its home location.
    pub location: String,
    /// Its role.
    pub role: String,
    /// Seconds until the token expires (default one hour, at most 30 days).
    #[serde(default)]
    pub ttl_s: Option<u64>,
}

/// A token just made: the only time its text (with the secret) is shown.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssuedToken {
    /// The token to give to the new node's operator.
    pub token: String,
    /// Its public id (for `fleet token list|revoke`).
    pub id: String,
    /// The fleet (hex).
    pub fleet: String,
    /// The hub that serves it (hex).
    pub hub: String,
    /// The node name it is for.
    pub name: String,
    /// The location.
    pub location: String,
    /// The role.
    pub role: String,
    /// Refused from, Unix seconds.
    pub expires_at: u64,
}

/// Unix seconds now.
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Makes a token in the hub in `dir` (which must hold the fleet key) at Unix second `now`.
pub fn issue_token(dir: &Path, body: &TokenBody, now: u64) -> Result<IssuedToken, FleetError> {
    let authority = load_authority(dir)?;
    let spec = NodeSpec::parse(&body.node, &body.location, &body.role)
        .map_err(|e| FleetError::Invalid(e.to_string()))?;
    let ttl = body.ttl_s.unwrap_or(DEFAULT_TTL_S);
    if ttl == 0 || ttl > MAX_TTL.as_secs() {
        return Err(FleetError::Invalid(format!(
            "ttl {ttl} s: between 1 s and {} s",
            MAX_TTL.as_secs()
        )));
    }
    let hub: NodeId = Reader::open(dir)
        .and_then(|r| r.meta())
        .map_err(|e| FleetError::Invalid(format!("the hub's node: {e}")))?
        .id;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| FleetError::Io(std::io::Error::other(e.to_string())))?;
    let token = Token {
        fleet: authority.fleet(),
        hub,
        secret,
    };
    let who = Applicant {
        name: spec.name.clone(),
        location: spec.location.to_string(),
        role: spec.role.as_str().to_string(),
    };
    let expires_at = now.saturating_add(ttl);
    let id = TokenStore::open(dir)?.create(&token.hash(), &who, now, expires_at)?;
    tracing::info!(%id, name = %who.name, expires_at, "enrolment token created");
    Ok(IssuedToken {
        token: token.to_string(),
        id,
        fleet: token.fleet.to_hex(),
        hub: hub.to_hex(),
        name: who.name,
        location: who.location,
        role: who.role,
        expires_at,
    })
}

/// `fleet token --node N --location L --role R [--ttl T]`.
pub fn create(
    dir: &Path,
    node: &str,
    location: &str,
    role: &str,
    ttl: &str,
    as_json: bool,
) -> Result<()> {
    let body = TokenBody {
        node: node.to_string(),
        location: location.to_string(),
        role: role.to_string(),
        ttl_s: Some(parse_ttl(ttl)?.as_secs()),
    };
    let issued: IssuedToken = match crate::cli::daemon_client::find(dir) {
        Some(client) => client.post("/v1/fleet/tokens", &body)?,
        None => issue_token(dir, &body, now_s())?,
    };
    if as_json {
        return print_json(&serde_json::to_value(&issued)?);
    }
    println!("{}", issued.token);
    eprintln!(
        "one-time token {} for {} ({}) at {}, expires at {} (Unix seconds); on the new node:\n  \
         stocksync init --data DIR --node {} --location {} --role {} --hub HUB_HOST:PORT --token TOKEN",
        issued.id,
        issued.name,
        issued.role,
        issued.location,
        issued.expires_at,
        issued.name,
        issued.location,
        issued.role
    );
    Ok(())
}

/// `fleet token list`.
pub fn list(dir: &Path, as_json: bool) -> Result<()> {
    load_authority(dir)?;
    let rows = TokenStore::open(dir)?.list(now_s())?;
    if as_json {
        return print_json(&json!({ "tokens": rows }));
    }
    for r in rows {
        println!(
            "{} {:<16} {:<8} {:<16} expires {} {}{}",
            r.id,
            r.name,
            r.role,
            r.location,
            r.expires_at,
            r.state,
            r.used_by.map(|b| format!(" by {b}")).unwrap_or_default()
        );
    }
    Ok(())
}

/// `fleet token revoke ID`.
pub fn revoke(dir: &Path, id: &str, as_json: bool) -> Result<()> {
    load_authority(dir)?;
    TokenStore::open(dir)?.revoke(id, now_s())?;
    if as_json {
        return print_json(&json!({ "id": id, "state": "revoked" }));
    }
    println!("token {id} revoked");
    Ok(())
}

/// Whether `dir` holds a fleet's key (a hub that can serve tokens).
pub fn serves_tokens(dir: &Path) -> bool {
    matches!(data_dir::fleet_id(dir), Ok(Some(_))) && load_authority(dir).is_ok()
}
