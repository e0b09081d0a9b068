//! What a node is: its id, name, home location and role.

use serde::{Deserialize, Serialize};

use super::ids::{LocationId, NodeId};
use crate::error::InputError;

/// The part a node plays in the fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A point-of-sale till.
    Till,
    /// A store server.
    Store,
    /// The HQ hub.
    Hub,
    /// An online-channel connector.
    Channel,
}

impl Role {
    /// The lower-case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Till => "till",
            Role::Store => "store",
            Role::Hub => "hub",
            Role::Channel => "channel",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, InputError> {
        match s {
            "till" => Ok(Role::Till),
            "store" => Ok(Role::Store),
            "hub" => Ok(Role::Hub),
            "channel" => Ok(Role::Channel),
            _ => Err(InputError::BadRole(s.to_string())),
        }
    }
}

/// A node's identity and place, as stored with its replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    /// Public-key id.
    pub id: NodeId,
    /// Human name (for example `till-1`).
    pub name: String,
    /// Home location: the pool location of its events unless told otherwise.
    pub location: LocationId,
    /// Role.
    pub role: Role,
}
