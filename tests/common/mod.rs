//! Shared helpers for the integration tests.
#![allow(dead_code)]

pub mod client;
pub mod media;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Path of a program the test drives; fails the test (never skips) with the
/// Debian package to install when it is missing. `tools/test` installs them.
pub fn require_program(program: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{program}` is not installed: this test needs it. Install the Debian package \
             `{package}` (apt-get install {package}), or run tools/test, which installs it."
        )
    })
}

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The dhp2p binary under test.
pub fn dhp2p() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dhp2p"))
}

/// A fresh scratch directory under the target dir, removed first if present.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}
