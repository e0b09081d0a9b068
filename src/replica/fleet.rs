//! The replica's fleet: its roster, which writers and own events it admits,
//! and installing a newer roster.

use super::Replica;
use crate::error::ChangeError;
use crate::fleet::{FleetState, InstallError, Roster, RosterError, SignedRoster, VerifiedRoster};
use crate::model::{NodeId, Position};

impl Replica {
    /// Puts the replica in a fleet (`Some`: writers and own events are checked
    /// against its roster) or in open mode (`None`: nothing is checked).
    pub fn set_fleet(&mut self, fleet: Option<FleetState>) {
        self.fleet = fleet;
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
            .install(roster)
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
