//! What travels between a node and its hub when it enrols: the request (who
//! the node is) and the bundle (what makes it a member), both JSON, neither
//! holding a secret.

use serde::{Deserialize, Serialize};
use stocksync::fleet::{FleetId, Member, SignedRoster};
use stocksync::model::{NodeId, NodeMeta};
use stocksync::net::{FleetCa, NodeCertificate};

use super::FleetError;

/// `stocksync enrol request`: the node asking to join.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The node id (its public key), 64 hex digits.
    pub node_id: String,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its home location.
    pub location: String,
}

impl EnrolRequest {
    /// The request of the node `meta`.
    pub fn of(meta: &NodeMeta) -> Self {
        Self {
            node_id: meta.id.to_hex(),
            name: meta.name.clone(),
            role: meta.role.as_str().to_string(),
            location: meta.location.to_string(),
        }
    }

    /// The node id and the roster entry asked for, checked.
    pub fn member(&self) -> Result<(NodeId, Member), FleetError> {
        let id = NodeId::from_hex(&self.node_id)
            .map_err(|e| FleetError::Invalid(format!("request: node_id: {e}")))?;
        let spec = stocksync::NodeSpec::parse(&self.name, &self.location, &self.role)
            .map_err(|e| FleetError::Invalid(format!("request: {e}")))?;
        Ok((id, Member::new(spec.name, spec.role, [spec.location])))
    }
}

/// `stocksync fleet enrol`: the hub's answer, installed by `enrol accept`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// The fleet id, 64 hex digits.
    pub fleet: String,
    /// The node certified, 64 hex digits.
    pub node_id: String,
    /// The node's certificate, PEM.
    pub certificate: String,
    /// The fleet CA certificate, PEM.
    pub ca: String,
    /// The signed roster listing the node: body, hex.
    pub roster_body: String,
    /// The signed roster's signature, hex.
    pub roster_signature: String,
}

/// A bundle whose parts were checked against each other and against the
/// node that installs it.
pub struct Checked {
    /// The fleet.
    pub fleet: FleetId,
    /// The node's certificate.
    pub cert: NodeCertificate,
    /// The fleet CA.
    pub ca: FleetCa,
    /// The roster, signed by the fleet.
    pub roster: SignedRoster,
    /// Its version.
    pub version: u64,
}

impl Bundle {
    /// The bundle of `cert` and `roster` for a node of `ca`'s fleet.
    pub fn new(ca: &FleetCa, cert: &NodeCertificate, roster: &SignedRoster) -> Self {
        Self {
            fleet: ca.fleet().to_hex(),
            node_id: cert.node().to_hex(),
            certificate: cert.to_pem(),
            ca: ca.to_pem(),
            roster_body: hex(&roster.body),
            roster_signature: hex(&roster.signature),
        }
    }

    /// Checks the bundle for the node `me`: the certificate certifies `me`'s
    /// key and chains to the CA, the CA is the fleet named, and the roster is
    /// signed by that fleet and admits `me` with the role and home location
    /// it asked for.
    pub fn check(&self, me: &NodeMeta) -> Result<Checked, FleetError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            FleetError::Invalid(format!("bundle: {what}: {e}"))
        };
        let fleet = FleetId::from_hex(&self.fleet).map_err(|e| bad("fleet", &e))?;
        let ca = FleetCa::from_pem(&self.ca).map_err(|e| bad("ca", &e))?;
        if ca.fleet() != fleet {
            return Err(FleetError::Invalid(format!(
                "bundle: the CA is fleet {}'s, the bundle names fleet {fleet}",
                ca.fleet()
            )));
        }
        let cert =
            NodeCertificate::from_pem(&self.certificate).map_err(|e| bad("certificate", &e))?;
        if cert.node() != me.id {
            return Err(FleetError::WrongKey {
                cert: cert.node().to_hex(),
                key: me.id.to_hex(),
            });
        }
        cert.verify(&ca).map_err(|e| bad("certificate", &e))?;
        let roster = SignedRoster {
            body: unhex(&self.roster_body).map_err(|e| bad("roster_body", &e))?,
            signature: unhex(&self.roster_signature).map_err(|e| bad("roster_signature", &e))?,
        };
        let verified = roster.verify(&fleet).map_err(|e| bad("roster", &e))?;
        let member = verified
            .roster()
            .admits(&me.id, None)
            .map_err(|e| bad("roster", &e))?;
        if member.role != me.role || !member.locations.contains(&me.location) {
            return Err(FleetError::Invalid(format!(
                "bundle: the roster lists this node as a {} at {:?}, it is a {} at {}",
                member.role.as_str(),
                member.locations,
                me.role.as_str(),
                me.location
            )));
        }
        let version = verified.version();
        Ok(Checked {
            fleet,
            cert,
            ca,
            roster,
            version,
        })
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses lower- or upper-case hex.
pub fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(|| format!("not hex at {i}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        let b = vec![0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(&hex(&b)).unwrap(), b);
        assert!(unhex("abc").is_err());
        assert!(unhex("zz").is_err());
    }
}
