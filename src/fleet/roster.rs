//! The fleet roster: who may write, where, and in which role; and the rules a
//! change's counter writes must obey (see docs/escrow.md, "Fleet roster").

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::signed::FleetId;
use crate::escrow::CounterKey;
use crate::model::{LocationId, NodeId, Position, Role};

/// Why the roster forbids a write. Typed so that a caller can tell an outsider
/// from a member overstepping its place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RosterError {
    /// The writer is not in the roster.
    #[error("the writer is not a member of the fleet")]
    NotMember,
    /// The writer was revoked; its changes after `after` are refused.
    #[error("the writer was revoked after {after:?}: {reason}")]
    Revoked {
        /// The last position of the writer that stays accepted.
        after: Position,
        /// Why it was revoked.
        reason: String,
    },
    /// The counter is in a pool (or transfer end) outside the writer's locations.
    #[error("location {location} is not one of the writer's locations")]
    OutsideLocations {
        /// The location written.
        location: LocationId,
    },
    /// The writer's role may not bring units into a pool.
    #[error("a {} node may not mint units (receipts, returns, positive adjustments, transfers in)", role.as_str())]
    RoleMayNotMint {
        /// The writer's role.
        role: Role,
    },
    /// A grant's receiver is not a current member of the fleet.
    #[error("grant to {to}, which is not a current member of the fleet")]
    GrantToNonMember {
        /// The receiver.
        to: NodeId,
    },
    /// A grant's receiver does not hold the pool's location.
    #[error("grant to {to}, whose locations do not include {location}")]
    GrantOutsideLocations {
        /// The receiver.
        to: NodeId,
        /// The pool's location.
        location: LocationId,
    },
    /// A retired node's heir is not an unrevoked member.
    #[error("heir {heir} is not an unrevoked member of the fleet")]
    HeirNotMember {
        /// The heir named.
        heir: NodeId,
    },
    /// A retired node's heir does not hold every location of the retired node.
    #[error("heir {heir} does not hold location {location} of the retired node")]
    HeirOutsideLocations {
        /// The heir named.
        heir: NodeId,
        /// A location of the retired node the heir does not hold.
        location: LocationId,
    },
    /// A node cannot be its own heir.
    #[error("a node cannot be its own heir")]
    HeirIsSelf,
}

/// A revocation: the member's changes after `after` are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The last position of the member's history that stays accepted.
    pub after: Position,
    /// Why (for the audit trail).
    pub reason: String,
}

/// One member of the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Human name (for example `till-1`).
    pub name: String,
    /// Its role: decides whether it may mint.
    pub role: Role,
    /// The locations whose pools it may write.
    pub locations: BTreeSet<LocationId>,
    /// Set once the member is revoked.
    pub revoked: Option<Revocation>,
}

impl Member {
    /// A member in good standing with `role` at `locations`.
    pub fn new(
        name: impl Into<String>,
        role: Role,
        locations: impl IntoIterator<Item = LocationId>,
    ) -> Self {
        Self {
            name: name.into(),
            role,
            locations: locations.into_iter().collect(),
            revoked: None,
        }
    }

    /// True when the role may bring units into a pool (store, hub, till; not channel).
    pub fn may_mint(&self) -> bool {
        match self.role {
            Role::Store | Role::Hub | Role::Till => true,
            Role::Channel => false,
        }
    }

    fn at(&self, location: &LocationId) -> Result<(), RosterError> {
        if self.locations.contains(location) {
            Ok(())
        } else {
            Err(RosterError::OutsideLocations {
                location: location.clone(),
            })
        }
    }

    fn mint(&self) -> Result<(), RosterError> {
        if self.may_mint() {
            Ok(())
        } else {
            Err(RosterError::RoleMayNotMint { role: self.role })
        }
    }
}

/// Who belongs to the fleet, signed by the fleet authority as a whole
/// ([`super::SignedRoster`]). A higher `version` replaces a lower one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    /// The fleet: its authority's public key.
    pub fleet: FleetId,
    /// Raised by every edit; a node installs only a higher version than it holds.
    pub version: u64,
    /// The members, by node id.
    pub members: BTreeMap<NodeId, Member>,
    /// Retired members and their heirs (see docs/escrow.md, "Retiring a
    /// node"). Last, so a node built before retirement existed, which
    /// ignores bytes after the members, still reads the roster (without heirs).
    #[serde(default)]
    pub heirs: BTreeMap<NodeId, NodeId>,
}

/// The roster as encoded before retirement existed (no heirs).
#[derive(Deserialize)]
struct LegacyRoster {
    fleet: FleetId,
    version: u64,
    members: BTreeMap<NodeId, Member>,
}

/// Whether a grant's receiver must be unrevoked (own events) or only listed
/// (changes received: see [`Roster::check_received`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Receiver {
    Unrevoked,
    Listed,
}

impl Roster {
    /// An empty roster of `fleet` at version 0 (no one may write).
    pub fn new(fleet: FleetId) -> Self {
        Self {
            fleet,
            version: 0,
            members: BTreeMap::new(),
            heirs: BTreeMap::new(),
        }
    }

    /// Adds `id` (or replaces its entry) and raises the version.
    ///
    /// Replacing an entry should only widen it: a change a receiver refuses
    /// stalls its writer there, so taking a location or the right to mint
    /// away from a live member can stall replicas that had not yet received
    /// its earlier changes. To take something away, revoke and enrol a new key.
    pub fn with_member(mut self, id: NodeId, member: Member) -> Self {
        self.members.insert(id, member);
        self.version = self.version.saturating_add(1);
        self
    }

    /// Revokes `node` after `after` (its changes up to `after` stay accepted)
    /// and raises the version. A second revocation replaces the first.
    pub fn revoke(
        &mut self,
        node: &NodeId,
        after: Position,
        reason: impl Into<String>,
    ) -> Result<(), RosterError> {
        let m = self.members.get_mut(node).ok_or(RosterError::NotMember)?;
        m.revoked = Some(Revocation {
            after,
            reason: reason.into(),
        });
        self.heirs.remove(node);
        self.version = self.version.saturating_add(1);
        Ok(())
    }

    /// Retires `node`: revokes it after `after` (as [`Roster::revoke`]) and
    /// names `heir`, whose rights its remaining rights count as. The heir
    /// must be an unrevoked member holding every location of `node`.
    /// Nothing changes on an error. Retiring a revoked node replaces its
    /// revocation (a new version).
    pub fn retire(
        &mut self,
        node: &NodeId,
        after: Position,
        reason: impl Into<String>,
        heir: NodeId,
    ) -> Result<(), RosterError> {
        if node == &heir {
            return Err(RosterError::HeirIsSelf);
        }
        let retired = self.members.get(node).ok_or(RosterError::NotMember)?;
        let h = self
            .members
            .get(&heir)
            .filter(|h| h.revoked.is_none())
            .ok_or(RosterError::HeirNotMember { heir })?;
        if let Some(location) = retired.locations.difference(&h.locations).next() {
            return Err(RosterError::HeirOutsideLocations {
                heir,
                location: location.clone(),
            });
        }
        self.revoke(node, after, reason)?;
        self.heirs.insert(*node, heir);
        Ok(())
    }

    /// The heir of `node`, if it is retired (revoked with an heir).
    pub fn heir_of(&self, node: &NodeId) -> Option<NodeId> {
        self.members.get(node)?.revoked.as_ref()?;
        self.heirs.get(node).copied()
    }

    /// Every retired member with its heir and revocation point, in id order.
    pub fn retirements(&self) -> impl Iterator<Item = (NodeId, NodeId, Position)> + '_ {
        self.heirs.iter().filter_map(|(id, heir)| {
            let r = self.members.get(id)?.revoked.as_ref()?;
            Some((*id, *heir, r.after))
        })
    }

    /// Decodes a roster body (postcard) without checking its signature. A
    /// body written before retirement existed ends after the members: it
    /// decodes with no heirs.
    pub fn decode(body: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes::<Roster>(body).or_else(|e| {
            postcard::from_bytes::<LegacyRoster>(body)
                .map(|l| Roster {
                    fleet: l.fleet,
                    version: l.version,
                    members: l.members,
                    heirs: BTreeMap::new(),
                })
                .map_err(|_| e)
        })
    }

    /// The entry of `id`, if it is listed (revoked or not).
    pub fn member(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// The entry of `author` if its change at `at` is admitted (listed, and
    /// not revoked before `at`); `None` for `at` means a new change now, which
    /// any revocation forbids.
    pub fn admits(&self, author: &NodeId, at: Option<Position>) -> Result<&Member, RosterError> {
        let m = self.members.get(author).ok_or(RosterError::NotMember)?;
        if let Some(r) = &m.revoked {
            if at.is_none_or(|p| p > r.after) {
                return Err(RosterError::Revoked {
                    after: r.after,
                    reason: r.reason.clone(),
                });
            }
        }
        Ok(m)
    }

    /// May `author` write `key` in a change it builds now? Used for own events:
    /// a revoked author may write nothing, and a grant's receiver must be an
    /// unrevoked member whose locations include the pool's.
    pub fn check_write(&self, author: &NodeId, key: &CounterKey) -> Result<(), RosterError> {
        let m = self.admits(author, None)?;
        self.check_member(m, key, Receiver::Unrevoked)
    }

    /// May a change of `author` at position `at` write `key`? Used for changes
    /// received: the author must be listed and not revoked before `at`; a
    /// grant's receiver must be listed with the pool's location, but may be
    /// revoked (whether a grant was made before or after its receiver's
    /// revocation cannot be told, and refusing it on some replicas and not on
    /// others would stall the granter there; rights granted to a revoked
    /// member can never be spent, so accepting them is safe).
    pub fn check_received(
        &self,
        author: &NodeId,
        at: Position,
        key: &CounterKey,
    ) -> Result<(), RosterError> {
        let m = self.admits(author, Some(at))?;
        self.check_member(m, key, Receiver::Listed)
    }

    fn check_member(
        &self,
        m: &Member,
        key: &CounterKey,
        receiver: Receiver,
    ) -> Result<(), RosterError> {
        match key {
            CounterKey::Minted(p) => {
                m.at(&p.location)?;
                m.mint()
            }
            CounterKey::Consumed(p) | CounterKey::Reserved(p) | CounterKey::Released(p) => {
                m.at(&p.location)
            }
            CounterKey::Granted(p, to) => {
                m.at(&p.location)?;
                let r = self
                    .members
                    .get(to)
                    .filter(|r| receiver == Receiver::Listed || r.revoked.is_none())
                    .ok_or(RosterError::GrantToNonMember { to: *to })?;
                if r.locations.contains(&p.location) {
                    Ok(())
                } else {
                    Err(RosterError::GrantOutsideLocations {
                        to: *to,
                        location: p.location.clone(),
                    })
                }
            }
            CounterKey::Shipped(leg) => m.at(&leg.from),
            CounterKey::Received(leg) => {
                m.at(&leg.to)?;
                m.mint()
            }
        }
    }
}
