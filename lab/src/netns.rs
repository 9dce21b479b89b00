//! Network namespaces by name (`ip netns`: bind mounts in `/run/netns`): made, entered, emptied of
//! their processes and deleted; veth pairs made straight inside them, so that nothing appears in
//! the root namespace, not even for a moment.

use std::fs::File;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;

use crate::command::ip;
use crate::{Error, Result, process};

/// Where `ip netns` keeps a namespace's bind mount.
pub const NETNS_DIR: &str = "/run/netns";

/// The bind mount of namespace `name`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Makes namespace `name` with its loopback up.
pub fn add(name: &str) -> Result<()> {
    ip(&["netns", "add", name])?;
    link_up(name, "lo")
}

/// Every named namespace on the machine, sorted.
pub fn names() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else { return Vec::new() };
    let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// The processes in namespace `name` (`ip netns pids`).
pub fn pids(name: &str) -> Result<Vec<u32>> {
    Ok(ip(&["netns", "pids", name])?.split_whitespace().filter_map(|pid| pid.parse().ok()).collect())
}

/// Kills every process in namespace `name` except this one (a test may have entered it), then
/// deletes it; its interfaces, addresses, routes and iptables rules go with it.
pub fn remove(name: &str) -> Result<()> {
    if let Ok(pids) = pids(name) {
        pids.into_iter().filter(|pid| *pid != std::process::id()).for_each(|pid| process::signal(pid, Signal::SIGKILL));
    }
    ip(&["netns", "del", name]).map(drop)
}

/// `ip -n <netns> link set <device> up`.
pub fn link_up(netns: &str, device: &str) -> Result<()> {
    ip(&["-n", netns, "link", "set", device, "up"]).map(drop)
}

/// `ip -n <netns> addr add <cidr> dev <device>`.
pub fn add_address(netns: &str, cidr: &str, device: &str) -> Result<()> {
    ip(&["-n", netns, "addr", "add", cidr, "dev", device]).map(drop)
}

/// One end of a veth pair: an interface name in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End<'a> {
    pub netns: &'a str,
    pub device: &'a str,
}

/// Makes a veth pair with `a` and `b` created straight in their namespaces (both down). Deleting
/// either namespace deletes the pair.
pub fn veth(a: End<'_>, b: End<'_>) -> Result<()> {
    ip(&["-n", a.netns, "link", "add", a.device, "type", "veth", "peer", "name", b.device, "netns", b.netns]).map(drop)
}

/// A namespace this value made; deleted (with every process in it) when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
    removed: bool,
}

impl Netns {
    /// Makes namespace `name` with its loopback up.
    pub fn create(name: &str) -> Result<Self> {
        ip(&["netns", "add", name])?;
        let netns = Self { name: name.to_string(), removed: false };
        link_up(name, "lo")?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes it now, saying what went wrong (dropping it only prints that).
    pub fn remove(mut self) -> Result<()> {
        self.removed = true;
        remove(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.removed
            && let Err(error) = remove(&self.name)
        {
            eprintln!("bakery-lab: could not remove network namespace {}: {}", self.name, crate::chain(&error));
        }
    }
}

/// A namespace's bind mount, opened: a thread enters it with [`Handle::enter`]. Opened before
/// the thread starts, so a missing namespace is an error where it is asked for.
#[derive(Debug)]
pub struct Handle {
    name: String,
    file: File,
}

impl Handle {
    pub fn open(name: &str) -> Result<Self> {
        let path = path(name);
        let file = File::open(&path).map_err(|source| Error::File { action: "opening", path, source })?;
        Ok(Self { name: name.to_string(), file })
    }

    /// Moves the calling thread (only it: `setns` with `CLONE_NEWNET` is per thread) into the
    /// namespace; sockets it opens afterwards, and processes it starts, are there.
    pub fn enter(&self) -> Result<()> {
        nix::sched::setns(&self.file, CloneFlags::CLONE_NEWNET)
            .map_err(|source| Error::Enter { netns: self.name.clone(), source })
    }
}

/// Moves the calling thread into namespace `name` (see [`Handle::enter`]).
pub fn enter(name: &str) -> Result<()> {
    Handle::open(name)?.enter()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::*;
    use crate::cgroup::CgroupLayout;
    use crate::cleanup::{test_netns_name, test_pod_uid};
    use crate::process::{Output, Spawn};

    /// Runs `work` on a thread of its own inside namespace `netns`.
    fn inside<T: Send + 'static>(netns: &str, work: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
        let namespace = Handle::open(netns).unwrap();
        std::thread::spawn(move || {
            namespace.enter().unwrap();
            work()
        })
    }

    #[test]
    fn root_two_namespaces_joined_by_a_veth_talk_and_leave_nothing_behind() {
        crate::require_root("root_two_namespaces_joined_by_a_veth_talk_and_leave_nothing_behind");
        let a = Netns::create(&test_netns_name(0, "lab", "a")).unwrap();
        let b = Netns::create(&test_netns_name(0, "lab", "b")).unwrap();
        veth(End { netns: a.name(), device: "eth0" }, End { netns: b.name(), device: "eth0" }).unwrap();
        for (netns, address) in [(&a, "198.18.255.1/30"), (&b, "198.18.255.2/30")] {
            add_address(netns.name(), address, "eth0").unwrap();
            link_up(netns.name(), "eth0").unwrap();
        }
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let server = inside(b.name(), move || {
            let listener = TcpListener::bind("198.18.255.2:0").unwrap();
            port_tx.send(listener.local_addr().unwrap().port()).unwrap();
            let mut received = String::new();
            listener.accept().unwrap().0.read_to_string(&mut received).unwrap();
            received
        });
        let port = port_rx.recv().unwrap();
        inside(a.name(), move || {
            let address = ("198.18.255.2", port);
            let mut stream = TcpStream::connect(address).unwrap();
            stream.write_all(b"flour").unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(server.join().unwrap(), "flour", "a's end reaches b's through the veth");

        // A process in b and in a cgroup: removing the cgroup kills it.
        let layout = CgroupLayout::detect().unwrap();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let pod = format!("kubepods/besteffort/pod{}", test_pod_uid(0, nanos));
        let container = format!("{pod}/sleeper");
        layout.create(&container).unwrap();
        let mut sleeper = Spawn::new("sleeper", "ip")
            .args(["netns", "exec", b.name(), "sleep", "600"])
            .output(Output::Null)
            .start()
            .unwrap();
        layout.join(&container, sleeper.pid()).unwrap();
        assert_eq!(pids(b.name()).unwrap(), [sleeper.pid()]);
        layout.remove(&pod).unwrap();
        assert!(sleeper.wait_exit(Duration::from_secs(10)).is_some(), "killed with its cgroup");
        assert!(layout.dirs(&pod).iter().all(|dir| !dir.exists()));

        let names_made = [a.name().to_string(), b.name().to_string()];
        a.remove().unwrap();
        drop(b);
        assert!(names().iter().all(|name| !names_made.contains(name)), "both namespaces are gone");
    }
}
