//! QEMU guest nodes on a fabric (tests and `metalcast demo --qemu`): the
//! Debian kernel unpacked by `node-runtime/fetch-kernel.sh`, the static
//! runtime, and QEMU (TCG) attached to a fabric tap, with the serial console
//! captured line by line with host timestamps.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Host, Tap};

/// Where an unpacked `linux-image-*-amd64` .deb lives (see `node-runtime/fetch-kernel.sh`).
pub fn kernel_root() -> PathBuf {
    std::env::var_os("METALCAST_KERNEL_DIR")
        .map_or_else(|| PathBuf::from("/var/cache/metalcast/linux-image"), PathBuf::from)
}

/// (vmlinuz, modules dir) of the unpacked kernel, or why not.
pub fn kernel() -> Result<(PathBuf, PathBuf), String> {
    let root = kernel_root();
    let find = |dir: &Path, prefix: &str| -> Option<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
            .collect();
        v.sort();
        v.pop()
    };
    let vmlinuz = find(&root.join("boot"), "vmlinuz-")
        .ok_or_else(|| format!("no kernel under {}/boot (run node-runtime/fetch-kernel.sh)", root.display()))?;
    let modules = find(&root.join("lib/modules"), "")
        .or_else(|| find(&root.join("usr/lib/modules"), ""))
        .ok_or_else(|| format!("no modules under {}/lib/modules", root.display()))?;
    Ok((vmlinuz, modules))
}

/// Kernel modules a guest's initramfs loads for QEMU's virtio and e1000 devices.
pub const GUEST_MODULES: [&str; 5] = ["virtio_pci", "virtio_net", "virtio_blk", "virtio_rng", "e1000"];

/// Whether QEMU is installed.
pub fn qemu() -> Result<(), String> {
    match Command::new("qemu-system-x86_64").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("qemu-system-x86_64 not installed (node-runtime/ci-setup.sh installs it)".into()),
    }
}

/// The static `metalcast-node` for guests: `$METALCAST_NODE_STATIC`, or built
/// from the workspace at `workspace` (`+crt-static`, explicit target so build
/// scripts are unaffected) into its own target directory (an outer `cargo
/// test` holds the main one).
pub fn static_node(workspace: &Path) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("METALCAST_NODE_STATIC") {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from)
        .join("node-static");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--locked", "-p", "metalcast-node", "--bin", "metalcast-node"])
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env("CARGO_PROFILE_DEV_STRIP", "symbols")
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !st.success() {
        return Err("building the static metalcast-node failed".into());
    }
    Ok(target.join("x86_64-unknown-linux-gnu/debug/metalcast-node"))
}

/// Console lines with the host time they arrived.
pub type Console = Arc<Mutex<Vec<(Instant, String)>>>;

/// A running guest; killed on drop. Its console is also appended to `log`.
#[derive(Debug)]
pub struct Guest {
    /// Name used in messages.
    pub name: String,
    /// The QEMU process.
    pub child: std::process::Child,
    /// Console lines so far.
    pub console: Console,
    /// File the console is copied to.
    pub log: PathBuf,
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a guest boots.
#[derive(Debug, Clone)]
pub enum GuestBoot<'a> {
    /// Straight into a kernel (`-kernel`, `-initrd`, `-append`): no firmware netboot.
    Kernel {
        /// Kernel to boot.
        kernel: &'a Path,
        /// Initramfs.
        initrd: &'a Path,
        /// Kernel command line.
        append: String,
    },
    /// Firmware network boot (`-boot n`) with SeaBIOS and the NIC's own iPXE
    /// option ROM (QEMU's `ipxe-qemu`): iPXE does DHCP and fetches its script.
    BiosPxe,
    /// Firmware network boot with OVMF (UEFI) and the NIC's option ROM
    /// disabled (`romfile=`), so EDK2's own PXE client does DHCP and fetches
    /// the boot file over TFTP first.
    UefiPxe,
}

/// Where Debian's `ovmf` puts the UEFI firmware image.
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// Guest hardware.
#[derive(Debug)]
pub struct GuestSpec<'a> {
    /// Name used in messages.
    pub name: &'a str,
    /// How it boots.
    pub boot: GuestBoot<'a>,
    /// QEMU NIC model (`e1000`, `virtio-net-pci`).
    pub nic_model: &'a str,
    /// NIC MAC address.
    pub mac: &'a str,
    /// Raw virtio disk image.
    pub disk: Option<&'a Path>,
    /// Memory, MiB.
    pub memory_mb: u32,
}

impl Guest {
    /// Starts QEMU (TCG, `-no-reboot`: a firmware reboot ends the process) in the tap's namespace.
    pub fn start(tap: &Tap, s: &GuestSpec<'_>, log: PathBuf) -> std::io::Result<Guest> {
        let mut cmd = tap.netns().command("qemu-system-x86_64");
        cmd.args(["-accel", "tcg", "-smp", "1", "-no-reboot", "-display", "none", "-serial", "stdio"])
            // virtio-rng: TCG's default CPU has no RDRAND, and getrandom would block for long.
            .args(["-monitor", "none", "-nodefaults", "-device", "virtio-rng-pci", "-m"])
            .arg(s.memory_mb.to_string())
            .arg("-netdev")
            .arg(format!("tap,id=n0,ifname={},script=no,downscript=no", tap.ifname()));
        let mut nic = format!("{},netdev=n0,mac={}", s.nic_model, s.mac);
        match &s.boot {
            GuestBoot::Kernel { kernel, initrd, append } => {
                cmd.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd).arg("-append").arg(append);
            }
            GuestBoot::BiosPxe => {
                cmd.args(["-boot", "n"]);
            }
            GuestBoot::UefiPxe => {
                cmd.args(["-bios", OVMF, "-boot", "n"]);
                nic.push_str(",romfile=");
            }
        }
        cmd.arg("-device").arg(nic);
        if let Some(d) = s.disk {
            cmd.arg("-drive").arg(format!("file={},format=raw,if=virtio", d.display()));
        }
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let console: Console = Arc::default();
        let (c, out, logp, name) =
            (Arc::clone(&console), child.stdout.take().expect("stdout is piped"), log.clone(), s.name.to_string());
        let mut f = std::fs::File::create(&logp)?;
        std::thread::spawn(move || {
            use std::io::Write;
            for line in BufReader::new(out).split(b'\n') {
                let Ok(line) = line else { break };
                let text = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
                let _ = writeln!(f, "{text}");
                if text.contains("metalcast") {
                    eprintln!("[{name}] {text}");
                }
                c.lock().unwrap_or_else(|p| p.into_inner()).push((Instant::now(), text));
            }
        });
        Ok(Guest { name: s.name.to_string(), child, console, log })
    }

    /// Like [`Guest::wait_line`], but an error instead of a panic.
    pub fn try_wait_line(
        &mut self,
        needle: &str,
        from: usize,
        timeout: Duration,
    ) -> Result<(usize, Instant, String), String> {
        let t0 = Instant::now();
        loop {
            {
                let c = self.console.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((i, (t, l))) = c.iter().enumerate().skip(from).find(|(_, (_, l))| l.contains(needle)) {
                    return Ok((i, *t, l.clone()));
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!(
                    "{}: QEMU exited ({st}) before {needle:?}; console in {}",
                    self.name,
                    self.log.display()
                ));
            }
            if t0.elapsed() > timeout {
                return Err(format!(
                    "{}: no {needle:?} within {timeout:?}; console in {}",
                    self.name,
                    self.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for a console line containing `needle` after line index `from`;
    /// returns (index, time, line). Panics with the log path if QEMU exits or
    /// the deadline passes (for tests).
    pub fn wait_line(&mut self, needle: &str, from: usize, timeout: Duration) -> (usize, Instant, String) {
        self.try_wait_line(needle, from, timeout).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Whether QEMU is still running (with `-no-reboot`, a firmware reboot would have ended it).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// A DHCP server for guests on `host`'s link (dnsmasq: DHCP only, no DNS),
/// handing out `.100`-`.150` of the host's /24 with one-hour leases. Kill
/// the child to stop it.
pub fn dhcp_server(host: &Host, lease_file: &Path) -> std::io::Result<std::process::Child> {
    let [a, b, c, _] = host.ipv4().octets();
    host.command("dnsmasq")
        .args(["--no-daemon", "--conf-file=/dev/null", "--bind-interfaces", "--port=0", "--no-ping"])
        .arg(format!("--interface={}", host.ifname()))
        .arg(format!("--dhcp-range={a}.{b}.{c}.100,{a}.{b}.{c}.150,255.255.255.0,1h"))
        .arg(format!("--dhcp-leasefile={}", lease_file.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// A QEMU that runs no machine (`-machine none`, stopped) and only answers
/// QMP on a unix socket: a real BMC endpoint for the QMP driver when no guest
/// needs to boot. Killed on drop.
#[derive(Debug)]
pub struct QmpOnly(std::process::Child);

impl QmpOnly {
    /// Starts it and waits (up to 15 s) until `sock` accepts connections.
    pub fn start(sock: &Path) -> Result<QmpOnly, String> {
        qemu()?;
        let child = Command::new("qemu-system-x86_64")
            .args(["-machine", "none", "-nodefaults", "-display", "none", "-S"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting qemu-system-x86_64: {e}"))?;
        let q = QmpOnly(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::os::unix::net::UnixStream::connect(sock).is_err() {
            if Instant::now() > deadline {
                return Err("QEMU did not open its QMP socket within 15 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(q)
    }
}

impl Drop for QmpOnly {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
