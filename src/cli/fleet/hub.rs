//! The hub's side: create a fleet, enrol members, revoke them. Every edit
//! raises the roster's version, is signed with `fleet.key` and installed in
//! the hub's own store, from where the sync engine's roster exchange spreads
//! it to the fleet.

use std::path::Path;

use anyhow::{Context, Result};
use stocksync::data_dir::{self, NodeSpec, FLEET_FILE};
use stocksync::fleet::{FleetAuthority, Member, Roster, SignedRoster};
use stocksync::model::{NodeId, NodeMeta, Position, Role};
use stocksync::net::cert::{CA_FILE, CERT_FILE};
use stocksync::net::{issue, FleetCa, NodeCertificate};
use stocksync::node::{system_clock, Node, NodeOptions};
use tracing::info;

use super::authority::{self, AUTHORITY_FILE};
use super::bundle::{Bundle, EnrolRequest};
use super::FleetError;

/// `fleet init`: creates the hub's node in `dir`, the fleet key, roster
/// version 1 listing the hub, the hub's certificate and the CA file.
pub fn init(dir: &Path, name: &str, location: &str) -> Result<NodeMeta> {
    if dir.join(FLEET_FILE).exists() || dir.join(AUTHORITY_FILE).exists() {
        return Err(FleetError::AlreadyFleet(dir.display().to_string()).into());
    }
    let spec = NodeSpec::parse(name, location, Role::Hub.as_str())?;
    let meta = data_dir::init(dir, &spec)?;
    let authority = authority::create(dir)?;
    let roster = authority.roster().with_member(
        meta.id,
        Member::new(&spec.name, Role::Hub, [spec.location.clone()]),
    );
    let signed = authority.sign(&roster)?;
    let options = NodeOptions {
        fleet: Some(authority.fleet()),
        ..NodeOptions::default()
    };
    let node = data_dir::open(dir, options, system_clock())?;
    node.install_roster(signed)?;
    node.shutdown();
    FleetCa::derive(&authority)?.save(&dir.join(CA_FILE))?;
    issue(&authority, meta.id, &spec.name)?.save(&dir.join(CERT_FILE))?;
    // Last: the fleet id marks the directory as a member with everything in place.
    data_dir::write_fleet_id(dir, authority.fleet())?;
    info!(node = %meta.id, fleet = %authority.fleet(), "fleet created");
    Ok(meta)
}

/// `dir`'s fleet key, checked against its fleet id.
pub(super) fn load_authority(dir: &Path) -> Result<FleetAuthority, FleetError> {
    let fleet = data_dir::fleet_id(dir)
        .map_err(|e| FleetError::Invalid(e.to_string()))?
        .ok_or_else(|| FleetError::NotHub(dir.display().to_string()))?;
    authority::load(dir, fleet)
}

/// The hub's node (opened with its directory lock, or a daemon's) and its fleet key.
pub struct Hub {
    node: Node,
    authority: FleetAuthority,
    ca: FleetCa,
}

impl Hub {
    /// Opens the hub in `dir`: it must hold a fleet and its key, and no daemon may run on it.
    pub fn open(dir: &Path) -> Result<Self> {
        let authority = load_authority(dir)?;
        let node = crate::cli::open_node(dir)
            .with_context(|| format!("cannot open the hub in {}", dir.display()))?;
        Self::with(node, authority)
    }

    /// The hub of the running `node`, whose data directory is `dir` (a daemon's).
    pub fn of_node(node: Node, dir: &Path) -> Result<Self> {
        Self::with(node, load_authority(dir)?)
    }

    fn with(node: Node, authority: FleetAuthority) -> Result<Self> {
        let ca = FleetCa::derive(&authority)?;
        Ok(Self {
            node,
            authority,
            ca,
        })
    }

    fn roster(&self) -> Result<Roster, FleetError> {
        self.node
            .roster()
            .ok_or_else(|| FleetError::Invalid("the hub holds no roster".into()))
    }

    /// Signs `roster` and installs it at the hub; returns its version.
    fn publish(&self, roster: &Roster) -> Result<u64> {
        let signed = self.authority.sign(roster)?;
        Ok(self.node.install_roster(signed)?)
    }

    /// Adds the node of `req` to the roster (version + 1) and issues its
    /// certificate. A request repeating a current member's entry gets a new
    /// bundle with the roster unchanged.
    pub fn enrol(&self, req: &EnrolRequest) -> Result<Bundle> {
        let (cert, roster) = self.enrol_parts(req)?;
        Ok(Bundle::new(&self.ca, &cert, &roster))
    }

    /// The fleet CA.
    pub fn ca(&self) -> &FleetCa {
        &self.ca
    }

    /// [`Hub::enrol`]'s certificate and signed roster (for the online flow).
    pub fn enrol_parts(&self, req: &EnrolRequest) -> Result<(NodeCertificate, SignedRoster)> {
        let (id, member) = req.member()?;
        let roster = self.roster()?;
        for (other, m) in &roster.members {
            if *other != id && m.name == member.name && m.revoked.is_none() {
                return Err(FleetError::Invalid(format!(
                    "another member is already named {} ({other})",
                    m.name
                ))
                .into());
            }
        }
        let roster = match roster.member(&id) {
            Some(m) if m.revoked.is_some() => {
                return Err(FleetError::Invalid(format!(
                    "node {id} was revoked: enrol a new key (a fresh `init`)"
                ))
                .into())
            }
            Some(m) if *m == member => roster,
            Some(_) => {
                return Err(FleetError::Invalid(format!(
                    "node {id} is already a member with another name, role or location"
                ))
                .into())
            }
            None => {
                let next = roster.with_member(id, member.clone());
                let version = self.publish(&next)?;
                info!(node = %id, name = %member.name, version, "member enrolled");
                next
            }
        };
        let cert = issue(&self.authority, id, &member.name)?;
        Ok((cert, self.authority.sign(&roster)?))
    }

    /// Revokes `target` (a node id or a member's name) after the last change
    /// of it the hub holds; returns its id, that position and the new version.
    pub fn revoke(&self, target: &str, reason: &str) -> Result<(NodeId, Position, u64)> {
        self.revoke_or_retire(target, reason, None)
    }

    /// Retires `target`: revokes it as [`Hub::revoke`] does (an already revoked
    /// member keeps its revocation point) and names `heir` (a node id or a
    /// member's name), whose rights its remaining rights count as.
    pub fn retire(
        &self,
        target: &str,
        reason: &str,
        heir: &str,
    ) -> Result<(NodeId, Position, u64, NodeId)> {
        let (id, after, version) = self.revoke_or_retire(target, reason, Some(heir))?;
        let roster = self.roster()?;
        let heir = roster
            .heirs
            .get(&id)
            .copied()
            .ok_or_else(|| FleetError::Invalid(format!("{target}: no heir recorded")))?;
        Ok((id, after, version, heir))
    }

    fn revoke_or_retire(
        &self,
        target: &str,
        reason: &str,
        heir: Option<&str>,
    ) -> Result<(NodeId, Position, u64)> {
        let mut roster = self.roster()?;
        let id = member_id(&roster, target)?;
        if id == self.node.id() {
            return Err(FleetError::Invalid("the hub cannot revoke itself".into()).into());
        }
        // Revocation is positional: a member revoked before keeps its point,
        // or replicas that decided its changes under it would disagree.
        let held = roster
            .member(&id)
            .and_then(|m| m.revoked.as_ref())
            .map(|r| r.after);
        let after = match held {
            Some(after) => after,
            None => self
                .node
                .query(|r| r.heads().get(&id).map(|h| h.position))?
                .unwrap_or_default(),
        };
        let edit = match heir {
            None => roster.revoke(&id, after, reason),
            Some(h) => {
                let heir = member_id(&roster, h)?;
                roster.retire(&id, after, reason, heir)
            }
        };
        edit.map_err(|e| FleetError::Invalid(format!("{target}: {e}")))?;
        let version = self.publish(&roster)?;
        info!(node = %id, ?after, version, heir, "member revoked");
        Ok((id, after, version))
    }

    /// Releases the hub's directory.
    pub fn close(self) {
        self.node.shutdown();
    }
}

/// The member `target` names: a node id, or a member's name.
fn member_id(roster: &stocksync::fleet::Roster, target: &str) -> Result<NodeId> {
    match NodeId::from_hex(target) {
        Ok(id) => Ok(id),
        Err(_) => Ok(*roster
            .members
            .iter()
            .find(|(_, m)| m.name == target)
            .map(|(id, _)| id)
            .ok_or_else(|| FleetError::Invalid(format!("no member named {target}")))?),
    }
}
