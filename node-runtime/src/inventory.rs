//! The hardware inventory a node reports at check-in, read from `/sys` and `/proc`.

use metalcast_runtime_api::{Disk, Inventory, Nic};

fn read(p: &str) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Counts CPUs in a kernel CPU list like `0-3,6`.
pub fn count_cpu_list(list: &str) -> u32 {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<u32>().unwrap_or(0).saturating_sub(a.parse().unwrap_or(0)) + 1,
            None => 1,
        })
        .sum()
}

/// Field `key` (e.g. `MemTotal`) in bytes from `/proc/meminfo` text (0 if absent).
pub fn meminfo_bytes(meminfo: &str, key: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `MemTotal` in bytes from `/proc/meminfo` text.
pub fn mem_total(meminfo: &str) -> u64 {
    meminfo_bytes(meminfo, "MemTotal")
}

/// `MemAvailable` of this machine in bytes (0 if unreadable).
pub fn mem_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo").map_or(0, |m| meminfo_bytes(&m, "MemAvailable"))
}

/// Reads the inventory of this machine, reporting `disks` as its disks
/// (the ones the agent may write: [`crate::guard::Authority::disks`]).
pub fn collect(disks: Vec<Disk>) -> Inventory {
    let nics = crate::net::interfaces()
        .into_iter()
        .filter_map(|name| {
            let mac = crate::net::mac_of(&name)?;
            let driver = std::fs::read_link(format!("/sys/class/net/{name}/device/driver"))
                .ok()
                .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()));
            Some(Nic { name, mac, driver })
        })
        .collect();
    Inventory {
        nics,
        cpus: read("/sys/devices/system/cpu/online").map_or(1, |l| count_cpu_list(&l)).max(1),
        memory_bytes: read("/proc/meminfo").map_or(0, |m| mem_total(&m)),
        disks,
        kernel: nix::sys::utsname::uname()
            .map_or_else(|_| "unknown".into(), |u| u.release().to_string_lossy().into_owned()),
    }
}

/// The disk whose sysfs directory is `sys`, named `name`.
fn disk_at(sys: &str, name: String) -> Disk {
    Disk {
        size_bytes: read(&format!("{sys}/size")).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) * 512,
        rotational: read(&format!("{sys}/queue/rotational")).is_some_and(|r| r == "1"),
        name,
    }
}

/// The machine's whole disks (`/sys/block`, without loop, RAM, optical,
/// floppy, device-mapper and network block devices), sorted by name.
pub fn whole_disks() -> Vec<Disk> {
    let mut disks: Vec<Disk> = std::fs::read_dir("/sys/block")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !["loop", "ram", "zram", "sr", "fd", "dm-", "nbd"].iter().any(|p| n.starts_with(p)))
                .map(|n| disk_at(&format!("/sys/block/{n}"), n))
                .collect()
        })
        .unwrap_or_default();
    disks.sort_by(|a, b| a.name.cmp(&b.name));
    disks
}

/// The block device at `path` (any kind, e.g. a loop device) as an inventory disk.
pub fn disk_of(path: &std::path::Path) -> Option<Disk> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::metadata(path).ok().filter(|m| m.file_type().is_block_device())?;
    let sys = format!("/sys/dev/block/{}:{}", libc::major(m.rdev()), libc::minor(m.rdev()));
    let name = std::fs::canonicalize(&sys).ok()?.file_name()?.to_string_lossy().into_owned();
    Some(disk_at(&sys, name))
}

/// This boot's id (changes at every boot and kexec).
pub fn boot_id() -> String {
    read("/proc/sys/kernel/random/boot_id").unwrap_or_else(|| "unknown".into())
}

/// Seconds since this kernel started.
pub fn uptime() -> f64 {
    read("/proc/uptime").and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok())).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(count_cpu_list("0-3,6"), 5);
        assert_eq!(count_cpu_list("0"), 1);
        assert_eq!(mem_total("MemFree: 1 kB\nMemTotal:  2048 kB\n"), 2 << 20);
        assert_eq!(meminfo_bytes("MemAvailableX: 5 kB\nMemAvailable: 3 kB\n", "MemAvailable"), 3 << 10);
        assert!(mem_available() > 0);
        let inv = collect(whole_disks());
        assert!(inv.cpus >= 1 && inv.memory_bytes > 0, "{inv:?}");
    }
}
