//! The disk-write guard with real agents and real block devices (root): loop
//! devices on sparse files stand in for disks, and the runtime API server
//! stands in for the control plane (it records every report).
//!
//! - Agents that are not the node's runtime refuse every wipe, even with the
//!   init's marker forged into their environment: one reparented to PID 1 by
//!   a double fork, one started with `setsid`, one that is PID 1 of a PID
//!   namespace of its own. They report no disks at check-in (not the host's).
//! - An agent started with `--allow-disk-writes` refuses a device outside
//!   that list (wipe and disk-target deploy), one holding a mounted
//!   filesystem, one whose partition is mounted, and one under a mounted
//!   loop device backed by it; a wipe of several
//!   devices of which one is refused writes none of them; then it zeroes the
//!   one free device it was given.
//!
//! Every refused device's first and last MiB are unchanged; every refusal
//! is a failed report with class 8 and the reason.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use metalcast_fabric::{Fabric, Host, skip_unless_root};
use metalcast_image::{Bundle, spec_from_inputs};
use metalcast_runtime_api::server::RuntimeApi;
use metalcast_runtime_api::{Action, Handover, Phase, Report, Status, Target, Wipe, WipeMode};

const NODE: &str = env!("CARGO_BIN_EXE_metalcast-node");
const MIB: usize = 1 << 20;
/// Size of each "disk".
const DISK: usize = 16 * MIB;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A loop device on a sparse file, its first and last MiB filled with 0xa5;
/// unmounted and detached on drop.
struct Loop {
    file: PathBuf,
    dev: PathBuf,
    mounted: Option<PathBuf>,
    partition: bool,
}

impl Loop {
    /// With `partition`, an MBR with one partition (sectors 2048 to the last MiB).
    fn new(dir: &Path, name: &str, partition: bool) -> Loop {
        let file = dir.join(name);
        let mut data = vec![0u8; DISK];
        data[..MIB].fill(0xa5);
        data[DISK - MIB..].fill(0xa5);
        if partition {
            // One entry; the other three empty.
            data[446..510].fill(0);
            let e = &mut data[446..462];
            e[4] = 0x83;
            e[8..12].copy_from_slice(&2048u32.to_le_bytes());
            e[12..16].copy_from_slice(&((DISK / 512 - 4096) as u32).to_le_bytes());
            data[510] = 0x55;
            data[511] = 0xaa;
        }
        std::fs::write(&file, &data).unwrap();
        Loop::attach(file, partition)
    }

    /// A loop device on `file`; with `partition`, partition 1 added by hand
    /// (`addpart`: kernels without partition-table parsers have it too).
    fn attach(file: PathBuf, partition: bool) -> Loop {
        let dev = PathBuf::from(run(Command::new("losetup").args(["--find", "--show"]).arg(&file)));
        let l = Loop { file, dev, mounted: None, partition };
        if partition {
            let sectors = (DISK / 512 - 4096).to_string();
            run(Command::new("addpart").arg(&l.dev).args(["1", "2048", &sectors]));
        }
        l
    }

    /// Makes an ext4 filesystem on `dev` (this device or its partition) and mounts it under `dir`.
    fn mount(&mut self, dev: &Path, dir: &Path) {
        wait_until(Duration::from_secs(10), &format!("{} to appear", dev.display()), || dev.exists().then_some(()));
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(dev));
        let at = dir.join(format!("mnt-{}", dev.file_name().unwrap().to_string_lossy()));
        std::fs::create_dir_all(&at).unwrap();
        run(Command::new("mount").arg(dev).arg(&at));
        self.mounted = Some(at);
    }

    /// The kernel's name (`loop3`).
    fn name(&self) -> String {
        self.dev.file_name().unwrap().to_string_lossy().into_owned()
    }

    /// The first and last MiB as the backing file holds them.
    fn ends(&self) -> (Vec<u8>, Vec<u8>) {
        let d = std::fs::read(&self.file).unwrap();
        (d[..MIB].to_vec(), d[DISK - MIB..].to_vec())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        if let Some(at) = &self.mounted {
            let _ = Command::new("umount").arg(at).status();
        }
        if self.partition {
            let _ = Command::new("delpart").arg(&self.dev).arg("1").status();
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// An agent that is no child of ours (double fork, setsid): killed by PID on drop.
struct Orphan(i32);

impl Drop for Orphan {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), nix::sys::signal::Signal::SIGKILL);
    }
}

/// The agent's arguments on `host`.
fn agent_args(host: &Host, cp: &str) -> Vec<String> {
    [
        "agent",
        "--control-plane",
        cp,
        "--iface",
        host.ifname(),
        "--addr",
        &host.ipv4().to_string(),
        "--allow-unsigned",
        "--handover",
        "none",
        "--max-backoff",
        "1",
        "--poll-wait",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Starts `prefix... NODE agent...` in the background of a shell that exits at once;
/// returns the agent's PID (its parent is then the machine's init or a subreaper).
fn orphan(host: &Host, prefix: &str, cp: &str, dir: &Path, tag: &str) -> Orphan {
    let pidfile = dir.join(format!("{tag}.pid"));
    let log = dir.join(format!("{tag}.log"));
    let script = format!(
        "{prefix} {NODE} {} >{} 2>&1 </dev/null & echo $! >{}",
        agent_args(host, cp).join(" "),
        log.display(),
        pidfile.display()
    );
    let status = host
        .command("sh")
        .args(["-c", &script])
        .env(metalcast_node::guard::INIT_MARKER_ENV, boot_id())
        .status()
        .unwrap();
    assert!(status.success());
    let pid = wait_until(Duration::from_secs(5), "the pid file", || {
        std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse::<i32>().ok())
    });
    Orphan(pid)
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap().trim().to_string()
}

/// Pushes `action` to `mac` and waits for its report of `phase`.
fn ask(api: &RuntimeApi, mac: &str, action: Action, phase: Phase) -> Report {
    let id = api.push(mac, action).unwrap();
    wait_until(Duration::from_secs(30), &format!("{mac}: {phase:?} report of instruction {id}"), || {
        api.node(mac)?.reports.iter().find(|r| r.instruction == id && r.phase == phase).cloned()
    })
}

fn wipe(devices: &[&Loop]) -> Action {
    Action::Wipe(Wipe { mode: WipeMode::Zero, devices: devices.iter().map(|l| l.dev.display().to_string()).collect() })
}

#[track_caller]
fn assert_refused(r: &Report, needle: &str) {
    assert_eq!((r.status, r.exit_code), (Status::Failed, 8), "{r:?}");
    assert!(r.detail.contains(needle), "{:?} should say {needle:?}", r.detail);
}

fn prerequisites() -> Result<(), String> {
    for tool in ["losetup", "addpart", "delpart", "mkfs.ext4", "unshare", "setsid", "mount"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map_or(true, |s| !s.success())
        {
            return Err(format!("{tool} not installed (util-linux, e2fsprogs)"));
        }
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err("no /dev/loop-control (loop devices)".into());
    }
    Ok(())
}

#[test]
fn only_the_runtime_or_named_free_devices_are_ever_written() {
    skip_unless_root!();
    if let Err(reason) = prerequisites() {
        assert!(!metalcast_fabric::require_privileged(), "cannot run: {reason}");
        eprintln!("SKIP only_the_runtime_or_named_free_devices_are_ever_written: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let free = Loop::new(dir.path(), "free.img", false);
    let other = Loop::new(dir.path(), "other.img", false);
    let mut mounted = Loop::new(dir.path(), "mounted.img", false);
    mounted.mount(&mounted.dev.clone(), dir.path());
    let mut parent = Loop::new(dir.path(), "parent.img", true);
    let part = PathBuf::from(format!("{}p1", parent.dev.display()));
    parent.mount(&part, dir.path());
    // A loop device backed by `stacked`'s device, mounted: no `holders` link, no exclusive claim.
    let stacked = Loop::new(dir.path(), "stacked.img", false);
    let mut on_top = Loop::attach(stacked.dev.clone(), false);
    on_top.mount(&on_top.dev.clone(), dir.path());
    let before: Vec<_> = [&free, &other, &mounted, &parent, &stacked].iter().map(|l| l.ends()).collect();

    let f = Fabric::builder().receivers(4).build().unwrap();
    let port = 18090;
    let cp = format!("http://{}:{port}", f.sender().ipv4());
    let server = Server::start(f.sender(), port, RuntimeApi::new());
    let api = &server.api;
    let hosts = f.receivers();

    // Not the runtime, the init's marker forged: reparented by a double fork, setsid, own PID namespace.
    let _a = orphan(&hosts[0], "", &cp, dir.path(), "double-fork");
    let _b = orphan(&hosts[1], "setsid", &cp, dir.path(), "setsid");
    let _c = Killed(
        hosts[2]
            .command("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child", NODE])
            .args(agent_args(&hosts[2], &cp))
            .env(metalcast_node::guard::INIT_MARKER_ENV, boot_id())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for (h, how) in hosts[..3].iter().zip(["double fork", "setsid", "own PID namespace"]) {
        let mac = h.mac_string();
        let rec = wait_checkins(api, &mac, 1, Duration::from_secs(30));
        let inv = &rec.last_checkin().unwrap().inventory;
        assert!(inv.disks.is_empty(), "{how}: an agent that is not the runtime reports no disks: {inv:?}");
        let r = ask(api, &mac, wipe(&[&free]), Phase::Wipe);
        assert_refused(&r, "not the node's runtime");
        if how == "own PID namespace" {
            assert_refused(&r, "PID namespace of its own");
        }
        eprintln!("{how}: {}", r.detail);
        assert_eq!(free.ends(), before[0], "{how}: the device was written");
    }

    // Started by hand with the devices it may write.
    let allowed = [&free, &mounted, &parent, &stacked].map(|l| l.dev.display().to_string()).join(",");
    let h = &hosts[3];
    let mac = h.mac_string();
    let _d = Killed(
        h.command(NODE)
            .args(agent_args(h, &cp))
            .args(["--allow-disk-writes", &allowed])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let rec = wait_checkins(api, &mac, 1, Duration::from_secs(30));
    let mut names: Vec<String> = rec.last_checkin().unwrap().inventory.disks.iter().map(|d| d.name.clone()).collect();
    names.sort();
    let mut want = vec![free.name(), mounted.name(), parent.name(), stacked.name()];
    want.sort();
    assert_eq!(names, want, "the inventory lists exactly the allowed devices");

    assert_refused(
        &ask(api, &mac, wipe(&[&other]), Phase::Wipe),
        "not one of the devices named with --allow-disk-writes",
    );
    let b = tiny_bundle(dir.path());
    let spec = session(&b, f.sender().ipv4(), 9);
    let target = Target::Disk { device: other.dev.display().to_string() };
    let r = ask(api, &mac, deploy(&b, &spec, target, Handover::None, ""), Phase::Accept);
    assert_refused(&r, "not one of the devices named with --allow-disk-writes");
    assert_refused(&ask(api, &mac, wipe(&[&mounted]), Phase::Wipe), "holds a mounted filesystem");
    let r = ask(api, &mac, wipe(&[&parent]), Phase::Wipe);
    assert_refused(&r, &format!("{}p1 holds a mounted filesystem", parent.name()));
    let r = ask(api, &mac, wipe(&[&stacked]), Phase::Wipe);
    assert_refused(&r, &format!("{} holds a mounted filesystem", on_top.name()));
    let target = Target::Disk { device: mounted.dev.display().to_string() };
    let r = ask(api, &mac, deploy(&b, &spec, target, Handover::None, ""), Phase::Accept);
    assert_refused(&r, "holds a mounted filesystem");
    // Every disk it may write (instruction without devices): one is mounted, so none is written.
    let r = ask(api, &mac, Action::Wipe(Wipe { mode: WipeMode::Zero, devices: vec![] }), Phase::Wipe);
    assert_refused(&r, "holds a mounted filesystem");
    let after: Vec<_> = [&free, &other, &mounted, &parent, &stacked].iter().map(|l| l.ends()).collect();
    assert!(after == before, "a refused device was written");

    // The one free device it was given is zeroed.
    let r = ask(api, &mac, wipe(&[&free]), Phase::Wipe);
    assert_eq!(r.status, Status::Ok, "{r:?}");
    let (first, last) = free.ends();
    assert!(first.iter().chain(&last).all(|&b| b == 0), "the allowed free device was zeroed");
    let after: Vec<_> = [&other, &mounted, &parent, &stacked].iter().map(|l| l.ends()).collect();
    assert!(after == before[1..], "only the allowed free device was written");
}

/// A 64 KiB unsigned bundle (the refusals happen before any of it is received).
fn tiny_bundle(dir: &Path) -> Bundle {
    std::fs::write(dir.join("kernel"), vec![7u8; 64 << 10]).unwrap();
    let spec = spec_from_inputs("guard", Some(dir.join("kernel")), vec![], String::new(), None, None, None).unwrap();
    let path = dir.join("tiny.mcb");
    metalcast_image::build(&spec, &path, None, &indicatif::ProgressBar::hidden()).unwrap();
    Bundle::open(&path).unwrap()
}
