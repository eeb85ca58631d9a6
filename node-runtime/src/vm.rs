//! VM mode: boot a received disk image under QEMU on the node, for OSes that
//! cannot be kexec'd. The runtime (and its network) stays up around the VM.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;

use metalcast_image::Manifest;

use crate::exit;
use crate::target::Targets;

/// VMs started by this agent (kept so they are not waited on or dropped).
static VMS: Mutex<Vec<Child>> = Mutex::new(Vec::new());

/// Starts `qemu-system-x86_64` on the bundle's `vm-disk` part (on the disk
/// target's device, or in its memfd) with the bundle's extra arguments.
pub fn start(m: &Manifest, t: &Targets, device: Option<&Path>) -> Result<(String, serde_json::Value), (u8, String)> {
    let vm = m.vm.as_ref().ok_or((exit::USAGE, "the bundle has no VM description".to_string()))?;
    let disk = match device {
        Some(d) => d.to_path_buf(),
        None => {
            let f = t.part_memfd(&vm.disk).ok_or((exit::USAGE, format!("no part {}", vm.disk)))?;
            // The memfd is close-on-exec; QEMU reopens it through our /proc entry while we live.
            PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd()))
        }
    };
    let accel = if Path::new("/dev/kvm").exists() { "kvm:tcg" } else { "tcg" };
    let child = Command::new("qemu-system-x86_64")
        .args(["-accel", accel, "-m", "1024", "-nographic", "-drive"])
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .args(&vm.qemu_args)
        .spawn()
        .map_err(|e| (exit::HANDOVER, format!("starting qemu-system-x86_64: {e}")))?;
    let pid = child.id();
    VMS.lock().unwrap_or_else(|p| p.into_inner()).push(child);
    Ok((format!("VM started (qemu pid {pid}) on {}", disk.display()), serde_json::json!({ "qemu_pid": pid })))
}
