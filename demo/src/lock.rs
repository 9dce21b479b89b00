//! The run lock: one cluster of namespaces fits on a machine (its names and addresses are fixed),
//! so a second demo refuses to start, naming the first. Held for the life of the cluster; while
//! it is held, everything of the demo on the machine is this run's, and before it builds, the
//! earlier runs' leftovers are removed (`bakery_lab::cleanup::remove_demo_leftovers`).

use std::io::Write;
use std::path::PathBuf;

use crate::{Error, Result};

/// Where the lock lives (root's run directory, cleared at boot).
pub const LOCK_FILE: &str = "/run/bakery-demo.lock";

/// Holds the run lock for the life of the value.
#[derive(Debug)]
pub struct RunLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl RunLock {
    /// Takes the lock, or says which process holds it.
    pub fn acquire() -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(LOCK_FILE)
            .map_err(|source| Error::File { action: "opening", path: PathBuf::from(LOCK_FILE), source })?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let _ = lock.set_len(0);
                let _ = writeln!(lock, "{}", std::process::id());
                Ok(Self { _lock: lock })
            }
            Err((_, _)) => {
                let holder = std::fs::read_to_string(LOCK_FILE).unwrap_or_default();
                Err(Error::Busy(holder.trim().to_string()))
            }
        }
    }
}
