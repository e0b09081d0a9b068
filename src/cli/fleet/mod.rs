//! Fleet enrolment on the command line: `fleet init|enrol|revoke|roster`
//! and `fleet token` (the hub's side) and `enrol request|accept`,
//! `init --join`, `init --hub --token` (a node's side). See docs/daemon.md,
//! "Fleet".

mod authority;
mod bundle;
mod hub;
mod online;
pub mod token_cmd;
mod tokens;

use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use stocksync::data_dir::{self, Reader};
use stocksync::error::NodeError;
use stocksync::fleet::InstallError;
use stocksync::model::{NodeMeta, Position};
use stocksync::net::cert::{CA_FILE, CERT_FILE};
use stocksync::node::NodeOptions;
use tracing::info;

pub use bundle::{Bundle, EnrolRequest};
pub use hub::{init as init_hub, Hub};
pub use online::{join_online, TokenEnrolment};
pub use token_cmd::{IssuedToken, TokenBody};

/// One roster edit at a time (API, token enrolment): each reads the version
/// the previous one installed.
pub static EDITS: Mutex<()> = Mutex::new(());

/// Why a fleet command refused (exit code 2 unless it is an I/O failure).
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// `fleet init` on a directory that already holds a fleet.
    #[error("{0} already holds a fleet (fleet.id or fleet.key): refusing to overwrite it")]
    AlreadyFleet(String),
    /// A hub command on a directory without the fleet key.
    #[error("{0} is not a fleet hub (no fleet.id or fleet.key there; see `stocksync fleet init`)")]
    NotHub(String),
    /// A bundle whose certificate is for another node's key.
    #[error("the bundle's certificate is for node {cert}, this node's key is {key}: refused")]
    WrongKey {
        /// The node the certificate certifies.
        cert: String,
        /// This node.
        key: String,
    },
    /// A request, bundle, key file or roster edit that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Online enrolment with a token failed.
    #[error(transparent)]
    Enrol(#[from] stocksync::net::enrol::client::EnrolError),
}

impl FleetError {
    /// The process exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            FleetError::Io(_) => 1,
            FleetError::Enrol(e) => online::enrol_exit_code(e),
            _ => super::EXIT_BAD_INPUT,
        }
    }
}

/// `POST /v1/fleet/revoke`'s body.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// The member: node id (hex) or name.
    pub node: String,
    /// Why.
    pub reason: String,
}

/// What a revocation did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Revoked {
    /// The member revoked (hex).
    pub node_id: String,
    /// Its last change that stays accepted.
    pub after: Position,
    /// The roster version that revokes it.
    pub roster_version: u64,
}

/// `POST /v1/fleet/retire`'s body.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireBody {
    /// The member: node id (hex) or name.
    pub node: String,
    /// Why.
    pub reason: String,
    /// The member whose rights its remaining rights count as: node id (hex) or name.
    pub heir: String,
}

/// What a retirement did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Retired {
    /// The member retired (hex).
    pub node_id: String,
    /// Its last change that stays accepted.
    pub after: Position,
    /// Its heir (hex).
    pub heir: String,
    /// The roster version that retires it.
    pub roster_version: u64,
}

/// The bundle for `req` from the hub in `hub_dir`: through its daemon's API
/// when one runs, else by opening the directory.
fn enrol_at(hub_dir: &Path, req: &EnrolRequest) -> Result<Bundle> {
    if let Some(client) = super::daemon_client::find(hub_dir) {
        return client.post("/v1/fleet/enrol", req);
    }
    let hub = Hub::open(hub_dir)?;
    let bundle = hub.enrol(req);
    hub.close();
    bundle
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Reads a file, or standard input for `-`.
fn read_input(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        return Ok(s);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// `fleet init`.
pub fn init(dir: &Path, name: &str, location: &str, as_json: bool) -> Result<()> {
    let meta = hub::init(dir, name, location)?;
    let fleet = data_dir::fleet_id(dir)?.map(|f| f.to_hex());
    if as_json {
        return print_json(&json!({
            "fleet": fleet, "node_id": meta.id.to_hex(), "name": meta.name,
            "location": meta.location, "role": meta.role, "roster_version": 1,
        }));
    }
    println!(
        "fleet {} created; hub {} at {} is member 1 of roster version 1\nthe fleet key is {}/fleet.key: keep it on this machine",
        fleet.unwrap_or_default(),
        meta.name,
        meta.location,
        dir.display()
    );
    Ok(())
}

/// `fleet enrol REQUEST`: prints the bundle (JSON) for the request's node.
pub fn enrol(hub_dir: &Path, request: &Path) -> Result<()> {
    let req: EnrolRequest = serde_json::from_str(&read_input(request)?)
        .map_err(|e| FleetError::Invalid(format!("request: {e}")))?;
    let bundle = enrol_at(hub_dir, &req)?;
    println!("{}", serde_json::to_string_pretty(&bundle)?);
    Ok(())
}

/// `fleet revoke NODE --reason TEXT`.
pub fn revoke(hub_dir: &Path, target: &str, reason: &str, as_json: bool) -> Result<()> {
    let body = RevokeBody {
        node: target.to_string(),
        reason: reason.to_string(),
    };
    let done: Revoked = match super::daemon_client::find(hub_dir) {
        Some(client) => client.post("/v1/fleet/revoke", &body)?,
        None => {
            let hub = Hub::open(hub_dir)?;
            let done = hub.revoke(target, reason);
            hub.close();
            let (id, after, roster_version) = done?;
            Revoked {
                node_id: id.to_hex(),
                after,
                roster_version,
            }
        }
    };
    if as_json {
        return print_json(&serde_json::to_value(&done)?);
    }
    println!(
        "revoked {} after {}/{}; roster version {} installed at the hub (it spreads to the fleet as nodes sync)",
        done.node_id, done.after.epoch, done.after.seq, done.roster_version
    );
    Ok(())
}

/// `fleet retire NODE --reason TEXT --heir NODE`.
pub fn retire(hub_dir: &Path, target: &str, reason: &str, heir: &str, as_json: bool) -> Result<()> {
    let body = RetireBody {
        node: target.to_string(),
        reason: reason.to_string(),
        heir: heir.to_string(),
    };
    let done: Retired = match super::daemon_client::find(hub_dir) {
        Some(client) => client.post("/v1/fleet/retire", &body)?,
        None => {
            let hub = Hub::open(hub_dir)?;
            let done = hub.retire(target, reason, heir);
            hub.close();
            retired(done?)
        }
    };
    if as_json {
        return print_json(&serde_json::to_value(&done)?);
    }
    println!(
        "retired {} after {}/{}; its remaining rights count as {}'s; roster version {} installed at the hub (it spreads to the fleet as nodes sync)",
        done.node_id, done.after.epoch, done.after.seq, done.heir, done.roster_version
    );
    Ok(())
}

/// The answer for what [`Hub::retire`] returned.
pub fn retired(
    (id, after, roster_version, heir): (
        stocksync::model::NodeId,
        Position,
        u64,
        stocksync::model::NodeId,
    ),
) -> Retired {
    Retired {
        node_id: id.to_hex(),
        after,
        heir: heir.to_hex(),
        roster_version,
    }
}

/// `fleet roster`: the roster the node in `dir` holds (read without the lock).
pub fn roster(dir: &Path, as_json: bool) -> Result<()> {
    let Some(fleet) = data_dir::fleet_id(dir)? else {
        return Err(FleetError::Invalid(format!(
            "{} belongs to no fleet (open mode)",
            dir.display()
        ))
        .into());
    };
    let signed = Reader::open(dir)?
        .roster()?
        .ok_or_else(|| FleetError::Invalid("no roster installed".into()))?;
    let roster = signed
        .verify(&fleet)
        .map_err(|e| FleetError::Invalid(format!("the stored roster: {e}")))?
        .roster()
        .clone();
    if as_json {
        let members: Vec<_> = roster
            .members
            .iter()
            .map(|(id, m)| {
                json!({
                    "node_id": id.to_hex(), "name": m.name, "role": m.role,
                    "locations": m.locations, "revoked": m.revoked,
                    "heir": roster.heirs.get(id).map(|h| h.to_hex()),
                })
            })
            .collect();
        return print_json(&json!({
            "fleet": fleet.to_hex(), "version": roster.version, "members": members,
        }));
    }
    println!("fleet {} roster version {}", fleet.to_hex(), roster.version);
    for (id, m) in &roster.members {
        let locations: Vec<&str> = m.locations.iter().map(|l| l.as_str()).collect();
        let state = match &m.revoked {
            Some(r) => match roster.heirs.get(id) {
                Some(h) => format!(
                    "RETIRED after {}/{} to {h}: {}",
                    r.after.epoch, r.after.seq, r.reason
                ),
                None => format!(
                    "REVOKED after {}/{}: {}",
                    r.after.epoch, r.after.seq, r.reason
                ),
            },
            None => "active".into(),
        };
        println!(
            "{} {:<16} {:<8} {:<16} {state}",
            id.to_hex(),
            m.name,
            m.role.as_str(),
            locations.join(",")
        );
    }
    Ok(())
}

/// `enrol request`: prints the node's request (JSON) for the hub.
pub fn request(dir: &Path) -> Result<()> {
    let meta = Reader::open(dir)?.meta()?;
    println!(
        "{}",
        serde_json::to_string_pretty(&EnrolRequest::of(&meta))?
    );
    Ok(())
}

/// `enrol accept BUNDLE`.
pub fn accept(dir: &Path, bundle: &Path, as_json: bool) -> Result<()> {
    let bundle: Bundle = serde_json::from_str(&read_input(bundle)?)
        .map_err(|e| FleetError::Invalid(format!("bundle: {e}")))?;
    let (meta, version) = install(dir, &bundle)?;
    report_member(dir, &meta, version, as_json)
}

fn report_member(dir: &Path, meta: &NodeMeta, version: u64, as_json: bool) -> Result<()> {
    let fleet = data_dir::fleet_id(dir)?.map(|f| f.to_hex());
    if as_json {
        return print_json(&json!({
            "fleet": fleet, "node_id": meta.id.to_hex(), "name": meta.name,
            "location": meta.location, "role": meta.role, "roster_version": version,
        }));
    }
    println!(
        "node {} ({}) at {} is a member of fleet {} (roster version {version})",
        meta.name,
        meta.role.as_str(),
        meta.location,
        fleet.unwrap_or_default()
    );
    Ok(())
}

/// Checks `bundle` against the node in `dir` and installs it: the roster in
/// the store, then the CA and certificate files, then the fleet id.
pub fn install(dir: &Path, bundle: &Bundle) -> Result<(NodeMeta, u64)> {
    let meta = Reader::open(dir)?.meta()?;
    let checked = bundle.check(&meta)?;
    if let Some(held) = data_dir::fleet_id(dir)?.filter(|f| *f != checked.fleet) {
        return Err(FleetError::Invalid(format!(
            "this node already belongs to fleet {}; the bundle is for fleet {}",
            held.to_hex(),
            checked.fleet.to_hex()
        ))
        .into());
    }
    let options = NodeOptions {
        fleet: Some(checked.fleet),
        ..NodeOptions::default()
    };
    let node = crate::cli::open_node_with(dir, options)?;
    let installed = node.install_roster(checked.roster);
    let held = node.roster_version();
    node.shutdown();
    match installed {
        Ok(_) | Err(NodeError::Roster(InstallError::NotNewer { .. })) => {}
        Err(e) => return Err(e.into()),
    }
    checked.ca.save(&dir.join(CA_FILE))?;
    checked.cert.save(&dir.join(CERT_FILE))?;
    data_dir::write_fleet_id(dir, checked.fleet)?;
    info!(node = %meta.id, fleet = %checked.fleet, version = held, "enrolled");
    Ok((meta, held.max(checked.version)))
}

/// `init --join HUB`: creates the node in `dir` and enrols it at once with
/// the hub in `hub_dir` (through the hub's daemon when one runs).
pub fn join(
    dir: &Path,
    hub_dir: &Path,
    name: &str,
    location: &str,
    role: &str,
    as_json: bool,
) -> Result<()> {
    // Through the hub's daemon if one runs; else the hub's directory is
    // opened (and locked) before the node is created.
    let made = match super::daemon_client::find(hub_dir) {
        Some(client) => crate::cli::init_node(dir, name, location, role)
            .and_then(|meta| client.post("/v1/fleet/enrol", &EnrolRequest::of(&meta))),
        None => {
            let hub = Hub::open(hub_dir)?;
            let made = crate::cli::init_node(dir, name, location, role)
                .and_then(|meta| hub.enrol(&EnrolRequest::of(&meta)));
            hub.close();
            made
        }
    };
    let (meta, version) = install(dir, &made?)?;
    report_member(dir, &meta, version, as_json)
}
