//! The only place that touches namespaces and capabilities directly. There is
//! no `unsafe` here: `nix` wraps `setns(2)` safely.

use std::fs::File;
use std::io;
use std::path::Path;

use nix::sched::{CloneFlags, setns};

/// Where iproute2 keeps named network namespaces.
pub(crate) const NETNS_DIR: &str = "/run/netns";

/// Opens the named network namespace created by `ip netns add`.
pub(crate) fn open_netns(name: &str) -> io::Result<File> {
    File::open(Path::new(NETNS_DIR).join(name))
}

/// Moves the calling thread (only it) into the network namespace `ns`.
pub(crate) fn enter_netns(ns: &File) -> io::Result<()> {
    setns(ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// Writes a sysctl of the calling thread's network namespace, e.g.
/// `net/ipv6/conf/default/accept_dad` (`/proc/sys/net` follows the opener's
/// network namespace).
pub(crate) fn write_sysctl(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(Path::new("/proc/sys").join(key), value)
}

/// Effective capability set of this process (bit n = capability n).
pub(crate) fn effective_caps() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no CapEff in /proc/self/status"))
}

/// `CAP_NET_ADMIN`.
pub(crate) const CAP_NET_ADMIN: u32 = 12;
/// `CAP_SYS_ADMIN` (setns, mounting /run/netns).
pub(crate) const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_BPF`.
pub(crate) const CAP_BPF: u32 = 39;
