//! The replica's fleet: its roster, which writers and own events it admits,
//! and installing a newer roster.

use std::collections::BTreeMap;

use super::Replica;
use crate::error::ChangeError;
use crate::fleet::{FleetState, InstallError, Roster, RosterError, SignedRoster, VerifiedRoster};
use crate::model::{NodeId, PoolKey, Position};

impl Replica {
    /// Puts the replica in a fleet (`Some`: writers and own events are checked
    /// against its roster) or in open mode (`None`: nothing is checked).
    pub fn set_fleet(&mut self, fleet: Option<FleetState>) {
        self.fleet = fleet;
        self.refresh_inheritance();
    }

    /// The fleet, if the replica is in one.
    pub fn fleet(&self) -> Option<&FleetState> {
        self.fleet.as_ref()
    }

    /// The roster in force: `None` in open mode; an empty one (no members) in a
    /// fleet before any roster is installed.
    pub fn roster(&self) -> Option<&Roster> {
        self.fleet.as_ref().map(FleetState::roster)
    }

    /// The installed roster's version (0 when none is, and in open mode).
    pub fn roster_version(&self) -> u64 {
        self.fleet.as_ref().map(FleetState::version).unwrap_or(0)
    }

    /// The installed roster as signed, to store and to send.
    pub fn signed_roster(&self) -> Option<&SignedRoster> {
        self.fleet.as_ref().and_then(FleetState::signed)
    }

    /// Verifies `offered` under the replica's fleet and checks it is newer.
    pub fn check_roster(&self, offered: &SignedRoster) -> Result<VerifiedRoster, InstallError> {
        self.fleet
            .as_ref()
            .ok_or(InstallError::OpenMode)?
            .check(offered)
    }

    /// Installs a roster checked by [`Replica::check_roster`]. Changes applied
    /// before stay; the new roster decides every change and event from now on.
    pub fn install_roster(&mut self, roster: VerifiedRoster) -> Result<(), InstallError> {
        self.fleet
            .as_mut()
            .ok_or(InstallError::OpenMode)?
            .install(roster)?;
        self.refresh_inheritance();
        Ok(())
    }

    /// Derives from the roster which retired writers' rights count as their
    /// heirs' (see docs/escrow.md, "Retiring a node"): a retired writer's
    /// rights move only once this replica holds its history up to its
    /// revocation point, so that every spending it did before then is counted
    /// (after it, its changes are refused: its counters are frozen).
    pub(super) fn refresh_inheritance(&mut self) {
        let direct: BTreeMap<NodeId, NodeId> = match self.roster() {
            None => BTreeMap::new(),
            Some(r) => r
                .retirements()
                .filter(|(id, _, after)| {
                    self.heads.get(id).map(|h| h.position).unwrap_or_default() >= *after
                })
                .map(|(id, heir, _)| (id, heir))
                .collect(),
        };
        let moved = self.book.set_inheritance(&direct);
        self.inherited_pools.extend(moved);
    }

    /// The pools whose figures an inheritance change moved since the last
    /// call (their stock rows are to be written again).
    pub fn take_inherited_pools(&mut self) -> Vec<PoolKey> {
        std::mem::take(&mut self.inherited_pools)
            .into_iter()
            .collect()
    }

    /// Would a change of `writer` at `at` be admitted by the roster (a member,
    /// not revoked before `at`)? Always in open mode. Checks the writer only,
    /// not what the change writes.
    pub fn admits_writer(&self, writer: &NodeId, at: Position) -> Result<(), ChangeError> {
        match self.roster() {
            None => Ok(()),
            Some(r) => match r.admits(writer, Some(at)) {
                Ok(_) => Ok(()),
                Err(RosterError::Revoked { after, .. }) => {
                    Err(ChangeError::Revoked { after, got: at })
                }
                Err(_) => Err(ChangeError::NotMember),
            },
        }
    }
}
