//! The disk-write guard: positive proof before any block device is written
//! (a reclaim wipe, a disk-target deployment) or the machine is powered off.
//!
//! An agent may destroy data only when it can show what it is:
//! - [`Authority::Runtime`]: it is the node's own runtime. Every one of
//!   these holds (see [`RuntimeFacts`]): the init marker that only
//!   `metalcast-node init` sets names this boot; its parent is PID 1; PID 1
//!   runs the same executable as the agent; it is in the machine's initial
//!   PID namespace (PID 2 is a kernel thread, visible nowhere else); and the
//!   root filesystem is the initramfs (`rootfs` or `tmpfs`). It may write the
//!   node's whole disks.
//! - [`Authority::Allowed`]: it was started with `--allow-disk-writes DEV...`
//!   (tests, an agent run by hand on a machine that is not the node). It may
//!   write exactly those devices.
//! - [`Authority::Denied`]: anything else, with every failed check as the
//!   reason. It writes no block device and never powers the machine off.
//!
//! Then, for each device, [`claim`] checks (before anything is opened for
//! writing): that it is a block device this authority covers (one of the
//! node's whole disks in its inventory, or one of the allowed devices); that
//! neither it, nor a partition of it, nor a device stacked on it (dm, md,
//! a loop device backed by it) holds a mounted filesystem or an active swap
//! area; and finally
//! claims it exclusively (`O_EXCL`), which the kernel refuses for a device
//! mounted in any mount namespace or held by another driver. The claim is
//! kept for as long as the device is written.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use metalcast_runtime_api::Disk;

/// The environment variable `metalcast-node init` sets for the agent it
/// starts: this boot's id (`/proc/sys/kernel/random/boot_id`).
pub const INIT_MARKER_ENV: &str = "METALCAST_INIT_BOOT_ID";

/// `PF_KTHREAD` in the flags field of `/proc/PID/stat`.
const PF_KTHREAD: u64 = 0x0020_0000;

/// What the agent may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// The node's own runtime: the node's whole disks.
    Runtime,
    /// Started with `--allow-disk-writes`: exactly these devices.
    Allowed(Vec<PathBuf>),
    /// No block device at all; why not.
    Denied(String),
}

/// Why a device is not written.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The agent has no authority over any block device.
    #[error(
        "disk writes refused: this agent is not the node's runtime ({0}); an agent started by hand writes only the devices named with --allow-disk-writes"
    )]
    NotRuntime(String),
    /// Not a block device (or missing).
    #[error("disk write to {device} refused: {why}")]
    NotBlockDevice {
        /// The device path.
        device: PathBuf,
        /// What it is instead.
        why: String,
    },
    /// Outside what this agent may write.
    #[error("disk write to {device} refused: {why}")]
    NotCovered {
        /// The device path.
        device: PathBuf,
        /// Which list it is missing from.
        why: String,
    },
    /// It, a partition of it or a device on top of it is mounted or swapped on.
    #[error("disk write to {device} refused: {user} holds a mounted filesystem or swap area ({what})")]
    InUse {
        /// The device path.
        device: PathBuf,
        /// The kernel name of the device in use (the device itself, a partition, or a holder).
        user: String,
        /// The mount point or swap entry.
        what: String,
    },
    /// The kernel would not let us claim it exclusively.
    #[error(
        "disk write to {device} refused: the kernel will not give it exclusively ({source}): it is mounted (perhaps in another mount namespace), a swap area, or part of a RAID, LVM or dm device"
    )]
    Busy {
        /// The device path.
        device: PathBuf,
        /// The open error.
        #[source]
        source: std::io::Error,
    },
}

/// The facts behind [`Authority::Runtime`], read from `/proc` (see [`RuntimeFacts::read`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeFacts {
    /// The value of [`INIT_MARKER_ENV`], if set.
    pub marker: Option<String>,
    /// This boot's id.
    pub boot_id: String,
    /// The parent's PID (0: we are PID 1 of a PID namespace).
    pub parent_pid: u32,
    /// Whether `/proc/1/exe` is the same file as `/proc/self/exe` (`None`: unreadable).
    pub pid1_is_runtime: Option<bool>,
    /// Whether PID 2 is a kernel thread: true only in the machine's initial PID namespace.
    pub initial_pid_ns: bool,
    /// Filesystem type of `/`.
    pub root_fstype: String,
}

impl RuntimeFacts {
    /// Reads the facts of this process.
    pub fn read() -> RuntimeFacts {
        let same_file = |a: &str, b: &str| -> Option<bool> {
            let (a, b) = (std::fs::metadata(a).ok()?, std::fs::metadata(b).ok()?);
            Some(a.dev() == b.dev() && a.ino() == b.ino())
        };
        RuntimeFacts {
            marker: std::env::var(INIT_MARKER_ENV).ok(),
            boot_id: crate::inventory::boot_id(),
            parent_pid: std::os::unix::process::parent_id(),
            pid1_is_runtime: same_file("/proc/1/exe", "/proc/self/exe"),
            initial_pid_ns: std::fs::read_to_string("/proc/2/stat")
                .ok()
                .and_then(|s| stat_flags(&s))
                .is_some_and(|f| f & PF_KTHREAD != 0),
            root_fstype: std::fs::read_to_string("/proc/self/mountinfo")
                .ok()
                .and_then(|m| root_fstype(&m))
                .unwrap_or_else(|| "unknown".into()),
        }
    }

    /// Every check the facts fail, empty when this is the node's runtime.
    pub fn failures(&self) -> Vec<String> {
        let mut why = Vec::new();
        match &self.marker {
            None => why.push(format!("not started by metalcast-node init ({INIT_MARKER_ENV} unset)")),
            Some(m) if *m != self.boot_id => why.push(format!("the init marker names another boot ({m})")),
            Some(_) => {}
        }
        if self.parent_pid != 1 {
            why.push(format!("its parent is PID {}, not the init", self.parent_pid));
        }
        match self.pid1_is_runtime {
            Some(true) => {}
            Some(false) => why.push("PID 1 is another program than metalcast-node".into()),
            None => why.push("PID 1's executable cannot be read".into()),
        }
        if !self.initial_pid_ns {
            why.push("it runs in a PID namespace of its own, not the machine's".into());
        }
        if !matches!(self.root_fstype.as_str(), "rootfs" | "tmpfs" | "ramfs") {
            why.push(format!("the root filesystem is {}, not an initramfs", self.root_fstype));
        }
        why
    }
}

/// The flags field (the 9th) of a `/proc/PID/stat` line.
fn stat_flags(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(6)?.parse().ok()
}

/// The filesystem type of the mount at `/` in `/proc/self/mountinfo` text (the last one wins).
fn root_fstype(mountinfo: &str) -> Option<String> {
    mountinfo.lines().filter_map(MountLine::parse).rfind(|m| m.mount_point == "/").map(|m| m.fstype)
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, PartialEq, Eq)]
struct MountLine {
    dev: (u32, u32),
    mount_point: String,
    fstype: String,
    source: String,
}

impl MountLine {
    fn parse(line: &str) -> Option<MountLine> {
        let (left, right) = line.split_once(" - ")?;
        let mut l = left.split_whitespace();
        let (maj, min) = l.nth(2)?.split_once(':')?;
        let mount_point = unescape(l.nth(1)?);
        let mut r = right.split_whitespace();
        Some(MountLine {
            dev: (maj.parse().ok()?, min.parse().ok()?),
            mount_point,
            fstype: r.next()?.to_string(),
            source: unescape(r.next().unwrap_or("")),
        })
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Authority {
    /// Decides what this agent may write: the devices named with
    /// `--allow-disk-writes`, else the node's disks if the facts prove it
    /// is the node's runtime, else nothing.
    pub fn establish(allowed: &[PathBuf], facts: &RuntimeFacts) -> Authority {
        if !allowed.is_empty() {
            return Authority::Allowed(allowed.to_vec());
        }
        let why = facts.failures();
        if why.is_empty() { Authority::Runtime } else { Authority::Denied(why.join("; ")) }
    }

    /// Whether this is the node's own runtime (which alone may power the machine off).
    pub fn is_runtime(&self) -> bool {
        *self == Authority::Runtime
    }

    /// One line for the console.
    pub fn describe(&self) -> String {
        match self {
            Authority::Runtime => "the node's runtime: may write the node's whole disks".into(),
            Authority::Allowed(d) => format!(
                "started with --allow-disk-writes: may write only {}",
                d.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            Authority::Denied(why) => format!("writes no block device: {why}"),
        }
    }

    /// The disks to report in the inventory: what this agent may write
    /// (the machine's whole disks for the runtime, the allowed devices, or none).
    pub fn disks(&self) -> Vec<Disk> {
        match self {
            Authority::Runtime => crate::inventory::whole_disks(),
            Authority::Allowed(devs) => devs.iter().filter_map(|d| crate::inventory::disk_of(d)).collect(),
            Authority::Denied(_) => Vec::new(),
        }
    }
}

/// A device claimed exclusively (`O_EXCL`) for as long as this lives; the
/// writes go through a descriptor opened after the claim.
#[derive(Debug)]
pub struct Claim {
    /// The device.
    pub path: PathBuf,
    _excl: File,
}

/// Checks `device` against `authority` and what is mounted, then claims it.
/// Nothing is opened for writing here.
pub fn claim(authority: &Authority, device: &Path) -> Result<Claim, GuardError> {
    let not_block = |why: String| GuardError::NotBlockDevice { device: device.to_path_buf(), why };
    if let Authority::Denied(why) = authority {
        return Err(GuardError::NotRuntime(why.clone()));
    }
    let meta = std::fs::metadata(device).map_err(|e| not_block(e.to_string()))?;
    if !meta.file_type().is_block_device() {
        return Err(not_block("not a block device".into()));
    }
    let rdev = split_dev(meta.rdev());
    let sys = sysfs_dir(rdev);
    let name = kernel_name(&sys).ok_or_else(|| not_block(format!("no sysfs entry for {}:{}", rdev.0, rdev.1)))?;
    match authority {
        Authority::Runtime => {
            let disks = crate::inventory::whole_disks();
            if !disks.iter().any(|d| d.name == name) {
                return Err(GuardError::NotCovered {
                    device: device.to_path_buf(),
                    why: format!(
                        "{name} is not one of this node's whole disks ({})",
                        disks.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
        Authority::Allowed(list) => {
            let covered = list.iter().any(|p| {
                std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device() && split_dev(m.rdev()) == rdev)
            });
            if !covered {
                return Err(GuardError::NotCovered {
                    device: device.to_path_buf(),
                    why: "it is not one of the devices named with --allow-disk-writes".into(),
                });
            }
        }
        Authority::Denied(_) => unreachable!("refused above"),
    }
    let in_use = in_use_devices();
    for (dev, user) in family(&sys, &name) {
        if let Some(what) = in_use.iter().find(|(d, _)| *d == dev).map(|(_, w)| w.clone()) {
            return Err(GuardError::InUse { device: device.to_path_buf(), user, what });
        }
    }
    let excl = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL | libc::O_CLOEXEC)
        .open(device)
        .map_err(|source| GuardError::Busy { device: device.to_path_buf(), source })?;
    Ok(Claim { path: device.to_path_buf(), _excl: excl })
}

/// A `dev_t` as (major, minor).
fn split_dev(rdev: u64) -> (u32, u32) {
    (libc::major(rdev), libc::minor(rdev))
}

/// `/sys/dev/block/MAJ:MIN`.
fn sysfs_dir(dev: (u32, u32)) -> PathBuf {
    PathBuf::from(format!("/sys/dev/block/{}:{}", dev.0, dev.1))
}

/// The kernel's name of the block device whose sysfs directory is `sys` (`vda`, `loop3`, `vda1`).
fn kernel_name(sys: &Path) -> Option<String> {
    let target = std::fs::canonicalize(sys).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// `MAJ:MIN` from a sysfs `dev` file.
fn read_dev(sys: &Path) -> Option<(u32, u32)> {
    let s = std::fs::read_to_string(sys.join("dev")).ok()?;
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The device, its partitions and everything stacked on any of them
/// (`holders/`, recursively), as (dev, kernel name).
fn family(sys: &Path, name: &str) -> Vec<((u32, u32), String)> {
    let mut out = Vec::new();
    let mut todo: Vec<PathBuf> = vec![std::fs::canonicalize(sys).unwrap_or_else(|_| sys.to_path_buf())];
    let mut seen = BTreeSet::new();
    while let Some(dir) = todo.pop() {
        if !seen.insert(dir.clone()) || seen.len() > 4096 {
            continue;
        }
        let Some(dev) = read_dev(&dir) else { continue };
        let dname = dir.file_name().map_or_else(|| name.to_string(), |f| f.to_string_lossy().into_owned());
        out.push((dev, dname.clone()));
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.filter_map(Result::ok) {
                let p = e.path();
                // Partitions are subdirectories named after the disk with a `partition` file.
                if e.file_name().to_string_lossy().starts_with(&dname) && p.join("partition").exists() {
                    todo.push(p);
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(dir.join("holders")) {
            for e in rd.filter_map(Result::ok) {
                if let Ok(p) = std::fs::canonicalize(e.path()) {
                    todo.push(p);
                }
            }
        }
        // Loop devices backed by this device (they are no `holders`).
        todo.extend(loops_backed_by(dev));
    }
    out
}

/// The sysfs directories of the loop devices whose backing file is the block device `dev`.
fn loops_backed_by(dev: (u32, u32)) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir("/sys/block") else { return Vec::new() };
    rd.filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("loop/backing_file")).is_ok_and(|f| {
                std::fs::metadata(f.trim()).is_ok_and(|m| m.file_type().is_block_device() && split_dev(m.rdev()) == dev)
            })
        })
        .filter_map(|e| std::fs::canonicalize(e.path()).ok())
        .collect()
}

/// Block devices holding a mounted filesystem (by the mount's device
/// number and by its source path) or an active swap area, with what uses them.
fn in_use_devices() -> Vec<((u32, u32), String)> {
    let mut out = Vec::new();
    let rdev_of =
        |p: &str| std::fs::metadata(p).ok().filter(|m| m.file_type().is_block_device()).map(|m| split_dev(m.rdev()));
    for m in std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().filter_map(MountLine::parse) {
        let what = format!("{} on {}", m.fstype, m.mount_point);
        out.push((m.dev, what.clone()));
        if m.source.starts_with('/')
            && let Some(d) = rdev_of(&m.source)
        {
            out.push((d, what));
        }
    }
    for l in std::fs::read_to_string("/proc/swaps").unwrap_or_default().lines().skip(1) {
        if let Some(p) = l.split_whitespace().next()
            && let Some(d) = rdev_of(&unescape(p))
        {
            out.push((d, format!("swap {p}")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> RuntimeFacts {
        RuntimeFacts {
            marker: Some("b1".into()),
            boot_id: "b1".into(),
            parent_pid: 1,
            pid1_is_runtime: Some(true),
            initial_pid_ns: true,
            root_fstype: "rootfs".into(),
        }
    }

    #[test]
    fn only_every_fact_together_proves_the_runtime() {
        assert!(runtime().failures().is_empty());
        assert_eq!(Authority::establish(&[], &runtime()), Authority::Runtime);
        let tmpfs = RuntimeFacts { root_fstype: "tmpfs".into(), ..runtime() };
        assert!(tmpfs.failures().is_empty());
        // Each single fact missing denies, and says which.
        let cases: Vec<(RuntimeFacts, &str)> = vec![
            (RuntimeFacts { marker: None, ..runtime() }, "unset"),
            (RuntimeFacts { marker: Some("b0".into()), ..runtime() }, "another boot"),
            // Reparented to PID 1 (double fork, setsid, nohup, a systemd unit): the parent
            // is 1 but PID 1 is the host's init, not the runtime.
            (RuntimeFacts { pid1_is_runtime: Some(false), ..runtime() }, "PID 1 is another program"),
            (RuntimeFacts { pid1_is_runtime: None, ..runtime() }, "cannot be read"),
            (RuntimeFacts { parent_pid: 4242, ..runtime() }, "parent is PID 4242"),
            // PID 1 of a PID namespace of its own.
            (RuntimeFacts { parent_pid: 0, ..runtime() }, "parent is PID 0"),
            (RuntimeFacts { initial_pid_ns: false, ..runtime() }, "PID namespace of its own"),
            (RuntimeFacts { root_fstype: "ext4".into(), ..runtime() }, "ext4, not an initramfs"),
        ];
        for (facts, needle) in cases {
            let a = Authority::establish(&[], &facts);
            match &a {
                Authority::Denied(why) => assert!(why.contains(needle), "{why:?} should say {needle:?}"),
                other => panic!("{facts:?} gave {other:?}"),
            }
            assert!(!a.is_runtime());
            assert!(a.disks().is_empty(), "a denied agent reports no disks");
        }
        // The flag names exactly the devices, whatever the facts.
        let allowed = Authority::establish(&[PathBuf::from("/dev/loop7")], &RuntimeFacts { marker: None, ..runtime() });
        assert_eq!(allowed, Authority::Allowed(vec![PathBuf::from("/dev/loop7")]));
        assert!(!allowed.is_runtime(), "--allow-disk-writes does not make a runtime (no power-off)");
    }

    #[test]
    fn a_denied_agent_claims_nothing() {
        let e = claim(&Authority::Denied("x".into()), Path::new("/dev/null")).unwrap_err();
        assert!(matches!(e, GuardError::NotRuntime(_)), "{e}");
        let e = claim(&Authority::Allowed(vec!["/dev/null".into()]), Path::new("/dev/null")).unwrap_err();
        assert!(matches!(e, GuardError::NotBlockDevice { .. }), "{e}");
    }

    #[test]
    fn proc_parsers() {
        let line = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0";
        assert_eq!(stat_flags(line), Some(2_129_984));
        assert_eq!(stat_flags("7 (a) b) c) S 1 7 7 0 -1 4194560 1"), Some(4_194_560));
        let mi = "22 1 0:21 / / rw,relatime shared:1 - rootfs rootfs rw\n\
                  30 22 253:1 / /mnt/my\\040disk rw - ext4 /dev/vda1 rw\n\
                  31 22 0:45 / /data rw - btrfs /dev/sdb2 rw\n";
        assert_eq!(root_fstype(mi).as_deref(), Some("rootfs"));
        let lines: Vec<MountLine> = mi.lines().filter_map(MountLine::parse).collect();
        assert_eq!(lines[1].mount_point, "/mnt/my disk");
        assert_eq!(lines[1].dev, (253, 1));
        assert_eq!(lines[2].source, "/dev/sdb2");
        let over = format!("{mi}40 22 0:50 / / rw - overlay overlay rw\n");
        assert_eq!(root_fstype(&over).as_deref(), Some("overlay"));
        // This very test runs on a host: it is never the runtime.
        assert!(!RuntimeFacts::read().failures().is_empty());
    }
}
