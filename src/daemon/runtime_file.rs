//! `daemon.json` in the data directory: where a running daemon's API listens,
//! so the command line can find it. Written (mode 0600) once the API is bound,
//! removed at shutdown; a file left by a dead daemon is ignored by readers.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The runtime file's name in the data directory.
pub const RUNTIME_FILE: &str = "daemon.json";

/// What a running daemon tells the command line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    /// The address the API is bound to.
    pub api: SocketAddr,
    /// The daemon's process id.
    pub pid: u32,
    /// The node's id (hex), to check the API answering is this directory's.
    pub node_id: String,
    /// The daemon's version.
    pub version: String,
}

/// The runtime file of data directory `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(RUNTIME_FILE)
}

/// Writes the runtime file atomically (a temporary file renamed over it).
pub fn write(dir: &Path, info: &RuntimeInfo) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{RUNTIME_FILE}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let body = serde_json::to_vec_pretty(info).map_err(std::io::Error::other)?;
    f.write_all(&body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path(dir))
}

/// Reads the runtime file, if there is a well-formed one (it may be stale).
pub fn read(dir: &Path) -> Option<RuntimeInfo> {
    let bytes = std::fs::read(path(dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes the runtime file; a missing one is fine.
pub fn remove(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path(dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_private_read_back_removed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        let info = RuntimeInfo {
            api: "127.0.0.1:7480".parse().unwrap(),
            pid: 42,
            node_id: "ab".into(),
            version: "0".into(),
        };
        write(dir.path(), &info).unwrap();
        write(dir.path(), &info).unwrap();
        assert_eq!(read(dir.path()), Some(info));
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        remove(dir.path()).unwrap();
        remove(dir.path()).unwrap();
        assert_eq!(read(dir.path()), None);
        std::fs::write(path(dir.path()), "{not json").unwrap();
        assert_eq!(read(dir.path()), None);
    }
}
