//! The fleet authority's secret key file, `fleet.key` in the hub's data
//! directory: 32 secret bytes, mode 0600, never printed, never copied out.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use stocksync::fleet::{FleetAuthority, FleetId};

use super::FleetError;

/// The authority key's file name in the hub's data directory.
pub const AUTHORITY_FILE: &str = "fleet.key";

/// Makes a fresh authority key and writes it to `dir/fleet.key` (mode 0600,
/// synced); refuses to overwrite one.
pub fn create(dir: &Path) -> Result<FleetAuthority, FleetError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| FleetError::Io(std::io::Error::other(e.to_string())))?;
    let path = dir.join(AUTHORITY_FILE);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                FleetError::AlreadyFleet(dir.display().to_string())
            }
            _ => FleetError::Io(e),
        })?;
    f.write_all(&seed)?;
    f.sync_all()?;
    fs::File::open(dir)?.sync_all()?;
    Ok(FleetAuthority::from_seed(seed))
}

/// Reads `dir/fleet.key`: refuses a key readable by others, of the wrong
/// size, or not the authority of `fleet` (the directory's fleet id).
pub fn load(dir: &Path, fleet: FleetId) -> Result<FleetAuthority, FleetError> {
    let path = dir.join(AUTHORITY_FILE);
    let meta = fs::metadata(&path).map_err(|_| FleetError::NotHub(dir.display().to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(FleetError::Invalid(format!(
            "{AUTHORITY_FILE} is readable by others; chmod 600 it"
        )));
    }
    let bytes = fs::read(&path)?;
    let seed: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| FleetError::Invalid(format!("{AUTHORITY_FILE} is not a 32-byte key")))?;
    let authority = FleetAuthority::from_seed(seed);
    if authority.fleet() != fleet {
        return Err(FleetError::Invalid(format!(
            "{AUTHORITY_FILE} is the key of fleet {}, the directory belongs to fleet {fleet}",
            authority.fleet()
        )));
    }
    Ok(authority)
}
