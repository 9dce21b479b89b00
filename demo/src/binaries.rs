//! Where the binaries the cluster runs are: this one (stand-ins, keepers, `enter`), the agent and
//! the collector (required), bakery-top and the Kubernetes API double (optional), nginx and oha
//! from the machine.

use std::path::{Path, PathBuf};

use bakery_lab::command::find_command;

use crate::{Error, Result};

/// Where the other bakery binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// This binary (stand-ins, keepers, `enter`).
    pub demo: PathBuf,
    pub agent: PathBuf,
    pub collector: PathBuf,
    pub top: Option<PathBuf>,
    /// The Kubernetes API test double, when it is built.
    pub apiserver: Option<PathBuf>,
    pub nginx: Option<PathBuf>,
    pub oha: Option<PathBuf>,
}

impl Binaries {
    /// The binaries next to this executable (cargo puts a workspace's binaries in one directory).
    pub fn beside_this_executable() -> Result<Self> {
        let demo = std::env::current_exe().map_err(|source| Error::File {
            action: "locating",
            path: "/proc/self/exe".into(),
            source,
        })?;
        let dir = demo.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::in_dir(&dir, demo)
    }

    /// The binaries in `bin_dir` (`--bin-dir`), or beside this executable.
    pub fn find(bin_dir: Option<&Path>) -> Result<Self> {
        match bin_dir {
            Some(dir) => {
                let demo = std::env::current_exe().map_err(|source| Error::File {
                    action: "locating",
                    path: "/proc/self/exe".into(),
                    source,
                })?;
                Self::in_dir(dir, demo)
            }
            None => Self::beside_this_executable(),
        }
    }

    pub fn in_dir(dir: &Path, demo: PathBuf) -> Result<Self> {
        let required = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::Missing {
                    what: path.display().to_string(),
                    how: format!("build it with `cargo build -p {name}` (or run `cargo xtask demo`)"),
                })
            }
        };
        let optional = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        Ok(Self {
            agent: required("bakery-agent")?,
            collector: required("bakery-collector")?,
            top: optional("bakery-top"),
            apiserver: optional("bakery-fake-apiserver"),
            nginx: find_command("nginx"),
            oha: crate::oha::locate(),
            demo,
        })
    }
}
