//! The fleet roster: which node ids belong to the fleet, where and in which
//! role, signed by the fleet authority (HQ). Pure: no I/O, no clock.
//!
//! A node configured with a fleet id (`NodeOptions::fleet`) holds the latest
//! roster it verified ([`FleetState`]) and refuses changes of writers the
//! roster does not admit, and own events it forbids. A node with no fleet id
//! is in *open mode*: it checks no membership (single-node use and tests).
//! See docs/escrow.md ("Fleet roster") and docs/sync.md (the roster exchange).

mod roster;
mod signed;
#[cfg(test)]
mod tests;

pub use roster::{Member, Revocation, Roster, RosterError};
pub use signed::{
    FleetAuthority, FleetId, SignedRoster, SignedRosterError, VerifiedRoster, MAX_ROSTER_BYTES,
};

/// Why a roster was not installed. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The node has no fleet id configured (open mode): it takes no roster.
    #[error("this node has no fleet id configured (open mode): it takes no roster")]
    OpenMode,
    /// The roster does not verify under the node's fleet id.
    #[error(transparent)]
    Invalid(#[from] SignedRosterError),
    /// The node already holds this version or a newer one.
    #[error("roster version {offered} is not newer than the version {held} held")]
    NotNewer {
        /// The version held.
        held: u64,
        /// The version offered.
        offered: u64,
    },
}

/// A node's fleet: its id and the latest roster verified under it.
#[derive(Clone, Debug)]
pub struct FleetState {
    id: FleetId,
    installed: Option<VerifiedRoster>,
    /// Stands in before any roster is installed: no one may write.
    empty: Roster,
}

impl FleetState {
    /// The fleet `id` with the roster `stored` (verified here), if any.
    pub fn new(id: FleetId, stored: Option<&SignedRoster>) -> Result<Self, SignedRosterError> {
        let installed = stored.map(|s| s.verify(&id)).transpose()?;
        Ok(Self {
            id,
            installed,
            empty: Roster::new(id),
        })
    }

    /// The fleet id.
    pub fn id(&self) -> FleetId {
        self.id
    }

    /// The roster in force: the installed one, or an empty one (no members).
    pub fn roster(&self) -> &Roster {
        self.installed
            .as_ref()
            .map(VerifiedRoster::roster)
            .unwrap_or(&self.empty)
    }

    /// The installed roster, signed.
    pub fn signed(&self) -> Option<&SignedRoster> {
        self.installed.as_ref().map(VerifiedRoster::signed)
    }

    /// The installed roster's version (0 when none is).
    pub fn version(&self) -> u64 {
        self.installed
            .as_ref()
            .map(VerifiedRoster::version)
            .unwrap_or(0)
    }

    /// Verifies `offered` under this fleet and checks it is newer than the one held.
    pub fn check(&self, offered: &SignedRoster) -> Result<VerifiedRoster, InstallError> {
        let v = offered.verify(&self.id)?;
        self.check_newer(&v)?;
        Ok(v)
    }

    fn check_newer(&self, v: &VerifiedRoster) -> Result<(), InstallError> {
        if v.roster().fleet != self.id {
            return Err(SignedRosterError::WrongFleet {
                named: v.roster().fleet,
                signer: self.id,
            }
            .into());
        }
        let held = self.version();
        if v.version() <= held {
            return Err(InstallError::NotNewer {
                held,
                offered: v.version(),
            });
        }
        Ok(())
    }

    /// Installs a roster checked by [`FleetState::check`] (checked again: it
    /// must still be newer). Nothing applied before is checked again.
    pub fn install(&mut self, v: VerifiedRoster) -> Result<(), InstallError> {
        self.check_newer(&v)?;
        self.installed = Some(v);
        Ok(())
    }
}
