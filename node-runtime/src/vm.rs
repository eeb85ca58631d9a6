//! VM mode: boot a received disk image under QEMU on the node, for OSes that
//! cannot be kexec'd. The runtime (and its network) stays up around the VM:
//! the agent keeps polling for instructions, reaps the VM when it exits and
//! reports that, and can serve the image it received to other nodes
//! ([`crate::seed`]).
//!
//! Networking: QEMU gives a VM without a `-nic`/`-net`/`-netdev` argument a
//! default user-mode NIC (slirp: the guest reaches whatever the node
//! reaches, the provisioning network included). The runtime therefore adds
//! `-nic none` unless the bundle's `qemu_args` configure networking
//! themselves ([`configures_network`]).
//!
//! Lifetime: a VM is the agent's child and does not outlive it (it gets
//! `SIGTERM` when the agent exits, `PR_SET_PDEATHSIG`); a new deployment
//! stops the running VM first ([`stop_all`]).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use metalcast_image::Manifest;

use crate::target::Targets;
use crate::{exit, sys};

/// A running VM.
#[derive(Debug)]
struct Running {
    pid: u32,
    /// A duplicate of the memory target's disk memfd, which QEMU opens
    /// through `/proc/<agent>/fd/<fd>`: kept open until QEMU is reaped, so
    /// the deployment's targets can go away before QEMU has opened it.
    _disk: Option<File>,
}

/// VMs started by this agent and not yet reaped.
static VMS: Mutex<Vec<Running>> = Mutex::new(Vec::new());
/// Signalled whenever a VM is reaped.
static REAPED: Condvar = Condvar::new();

fn vms() -> MutexGuard<'static, Vec<Running>> {
    VMS.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a VM ended.
#[derive(Debug, Clone)]
pub struct VmExit {
    /// QEMU's pid.
    pub pid: u32,
    /// QEMU's exit status (`None`: it could not be collected).
    pub status: Option<ExitStatus>,
    /// How long it ran, seconds.
    pub secs: f64,
}

/// Whether `args` configure the VM's networking themselves: any of `-nic`,
/// `-net`, `-netdev` (or their `--` forms). Otherwise the runtime adds `-nic none`.
pub fn configures_network(args: &[String]) -> bool {
    args.iter().any(|a| matches!(a.trim_start_matches('-'), "nic" | "net" | "netdev") && a.starts_with('-'))
}

/// QEMU's command line (without the program) for `disk`: with `kvm`, KVM
/// with TCG as the fallback (QEMU tries `-accel` options in order; the
/// `kvm:tcg` form is only valid in `-machine accel=`), else TCG.
pub fn qemu_args(disk: &Path, kvm: bool, extra: &[String]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    if kvm {
        v.extend(["-accel", "kvm"].map(String::from));
    }
    v.extend(["-accel", "tcg", "-m", "1024", "-nographic", "-drive"].map(String::from));
    v.push(format!("file={},format=raw,if=virtio", disk.display()));
    if !configures_network(extra) {
        v.extend(["-nic".to_string(), "none".to_string()]);
    }
    v.extend(extra.iter().cloned());
    v
}

/// Starts `qemu-system-x86_64` on the bundle's `vm-disk` part (on the disk
/// target's device, or in its memfd) with the bundle's extra arguments.
/// `on_exit` is called from a background thread once QEMU exited and was reaped.
pub fn start(
    m: &Manifest,
    t: &Targets,
    device: Option<&Path>,
    on_exit: Box<dyn FnOnce(VmExit) + Send>,
) -> Result<(String, serde_json::Value), (u8, String)> {
    let vm = m.vm.as_ref().ok_or((exit::USAGE, "the bundle has no VM description".to_string()))?;
    let (disk, memfd) = match device {
        Some(d) => (d.to_path_buf(), None),
        None => {
            let f = t.part_memfd(&vm.disk).ok_or((exit::USAGE, format!("no part {}", vm.disk)))?;
            let f = f.try_clone().map_err(|e| (exit::HANDOVER, format!("duplicating the disk memfd: {e}")))?;
            // The memfd is close-on-exec; QEMU reopens it through our /proc entry.
            (PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd())), Some(f))
        }
    };
    let args = qemu_args(&disk, Path::new("/dev/kvm").exists(), &vm.qemu_args);
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(&args);
    sys::terminate_with_parent(&mut cmd);
    let mut list = vms();
    let mut child = cmd.spawn().map_err(|e| (exit::HANDOVER, format!("starting qemu-system-x86_64: {e}")))?;
    let pid = child.id();
    list.push(Running { pid, _disk: memfd });
    drop(list);
    let t0 = Instant::now();
    let waiter = std::thread::Builder::new().name("metalcast-vm".into()).spawn(move || {
        if let Err(e) = sys::wait_exited_unreaped(pid) {
            eprintln!("metalcast: waiting for qemu (pid {pid}): {e}");
        }
        // Reaped under the lock: nobody signals a pid that may be reused.
        let mut list = vms();
        let status = child.wait().ok();
        list.retain(|v| v.pid != pid);
        drop(list);
        REAPED.notify_all();
        on_exit(VmExit { pid, status, secs: t0.elapsed().as_secs_f64() });
    });
    if let Err(e) = waiter {
        // Without a waiter nobody would reap it: stop it now.
        let _ = sys::signal(pid, true);
        return Err((exit::HANDOVER, format!("starting the VM's waiter thread: {e}")));
    }
    let network = if configures_network(&vm.qemu_args) { "as the bundle's qemu_args say" } else { "none" };
    Ok((
        format!("VM started (qemu pid {pid}) on {}, network {network}", disk.display()),
        serde_json::json!({ "handover": "vm", "qemu_pid": pid, "qemu_args": args }),
    ))
}

/// Pids of the VMs running now.
pub fn running() -> Vec<u32> {
    vms().iter().map(|v| v.pid).collect()
}

/// Stops every running VM (`SIGTERM`, and `SIGKILL` after `grace`) and waits
/// until each is reaped; returns how many there were.
pub fn stop_all(grace: Duration) -> usize {
    let mut list = vms();
    let n = list.len();
    for v in list.iter() {
        let _ = sys::signal(v.pid, false);
    }
    let deadline = Instant::now() + grace;
    let mut killed = false;
    while !list.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() && !killed {
            for v in list.iter() {
                eprintln!("metalcast: qemu (pid {}) still runs after {grace:?}: SIGKILL", v.pid);
                let _ = sys::signal(v.pid, true);
            }
            killed = true;
        }
        let wait = if killed { Duration::from_secs(1) } else { left };
        list = REAPED.wait_timeout(list, wait).unwrap_or_else(|p| p.into_inner()).0;
    }
    n
}

/// Waits until every VM has exited (`agent --once` after a VM hand-over).
pub fn wait_all() {
    let mut list = vms();
    while !list.is_empty() {
        list = REAPED.wait(list).unwrap_or_else(|p| p.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn no_network_unless_the_bundle_configures_it() {
        let a = qemu_args(Path::new("/dev/vda"), false, &s(&["-m", "64"]));
        assert_eq!(
            a.join(" "),
            "-accel tcg -m 1024 -nographic -drive file=/dev/vda,format=raw,if=virtio -nic none -m 64"
        );
        assert_eq!(qemu_args(Path::new("/d"), true, &[])[..4], s(&["-accel", "kvm", "-accel", "tcg"]));
        for own in
            [&["-nic", "user"][..], &["-netdev", "tap,id=n0", "-device", "virtio-net,netdev=n0"], &["--net", "none"]]
        {
            let a = qemu_args(Path::new("/d"), false, &s(own));
            assert!(!a.windows(2).any(|w| w == ["-nic", "none"]), "{a:?}");
            assert!(configures_network(&s(own)));
        }
        // Values that merely mention networking do not count.
        assert!(!configures_network(&s(&["-name", "net", "-device", "virtio-rng-pci"])));
    }
}
