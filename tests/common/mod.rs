//! Helpers shared by the tests that run the real binary.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_stocksync");

/// Runs `stocksync --data DIR ARGS...`.
pub fn run<I, S>(dir: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(BIN)
        .arg("--data")
        .arg(dir)
        .args(args)
        .output()
        .expect("run stocksync")
}

/// Runs `stocksync init` for till-1 at S1 in `dir`.
pub fn init(dir: &Path) -> Output {
    Command::new(BIN)
        .arg("init")
        .arg("--data")
        .arg(dir)
        .args(["--node", "till-1", "--location", "S1", "--role", "till"])
        .output()
        .expect("run stocksync init")
}

/// A fresh node in a temporary directory, after `events` (each must succeed).
pub fn node_with(events: &[&[&str]]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("n");
    let out = init(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for args in events {
        let out = run(&dir, *args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (tmp, dir)
}
