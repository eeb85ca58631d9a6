//! PID 1 of the bootstrap initramfs: mount the kernel filesystems, load the
//! modules listed by the image builder, print the boot checks asked for on
//! the command line, then run the agent as a child process, reaping every
//! child and restarting the agent (after a pause) whenever it exits.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::mount::MsFlags;

use crate::config::parse_cmdline;
use crate::{inventory, sys};

/// The module list written by `metalcast-image initramfs`.
pub const MODULE_LIST: &str = "/etc/metalcast/modules";
/// Where the modules are.
pub const MODULE_DIR: &str = "/lib/modules/metalcast";

fn mounts() {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    for (fs, at, flags, data) in [
        ("proc", "/proc", nodev, None),
        ("sysfs", "/sys", nodev, None),
        ("devtmpfs", "/dev", MsFlags::MS_NOSUID, Some("mode=0755")),
        ("tmpfs", "/run", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755")),
        ("tmpfs", "/tmp", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, None),
    ] {
        if let Err(e) = sys::mount(fs, at, flags, data) {
            eprintln!("metalcast-init: mounting {fs} on {at}: {e}");
        }
    }
}

/// Loads the listed modules in order; a failure is printed and skipped.
pub fn load_modules(list: &Path, dir: &Path) -> usize {
    let Ok(names) = std::fs::read_to_string(list) else { return 0 };
    let mut n = 0;
    for name in names.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let p = dir.join(name);
        match std::fs::File::open(&p).and_then(|f| sys::load_module(&f)) {
            Ok(()) => n += 1,
            Err(e) => eprintln!("metalcast-init: loading {}: {e}", p.display()),
        }
    }
    n
}

/// BLAKE3 of the first `len` bytes of `dev` (waiting up to 10 s for it to appear).
fn hash_device(dev: &str, len: u64) -> std::io::Result<String> {
    let t0 = Instant::now();
    while !Path::new(dev).exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let f = std::fs::File::open(dev)?;
    let mut h = blake3::Hasher::new();
    let n = std::io::copy(&mut f.take(len), &mut h)?;
    if n != len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("{dev} has only {n} bytes")));
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Runs as PID 1; never returns.
pub fn run() -> ! {
    mounts();
    println!(
        "metalcast-init {}: started {:.2}s after the kernel, boot {}",
        env!("CARGO_PKG_VERSION"),
        inventory::uptime(),
        inventory::boot_id()
    );
    // The marker says "this kernel's init runs" (tests, and the hand-over benchmark's
    // end point): printed first, before module loading and the RNG wait.
    let boot_args = parse_cmdline(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    if let Ok(Some(m)) = boot_args.as_ref().map(|a| a.marker.as_ref()) {
        println!("metalcast-marker: {m}");
    }
    let n = load_modules(Path::new(MODULE_LIST), Path::new(MODULE_DIR));
    println!("metalcast-init: {n} modules loaded at {:.2}s", inventory::uptime());
    if !sys::entropy_ready() {
        // DHCP ids and receiver ids come from getrandom, which blocks until the
        // kernel's RNG is seeded: say so rather than hang silently.
        println!("metalcast-init: waiting for the kernel's random number generator (RDRAND, virtio-rng, or jitter)");
        let t0 = Instant::now();
        while !sys::entropy_ready() {
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("metalcast-init: random number generator ready after {:.1}s", t0.elapsed().as_secs_f64());
    }
    match &boot_args {
        Ok(a) => {
            if let Some((dev, len)) = &a.hash {
                match hash_device(dev, *len) {
                    Ok(h) => println!("metalcast-hash: {dev} {len} {h}"),
                    Err(e) => println!("metalcast-hash: {dev} {len} error: {e}"),
                }
            }
        }
        Err(e) => eprintln!("metalcast-init: kernel command line: {e}"),
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| "/init".into());
    loop {
        let started = Instant::now();
        // The marker only this init sets: the agent's proof (with the facts
        // it checks itself) that it may write the node's disks (`guard`).
        let child = Command::new(&exe)
            .args(["agent", "--from-cmdline", "/proc/cmdline"])
            .env(crate::guard::INIT_MARKER_ENV, inventory::boot_id())
            .spawn();
        match child {
            Ok(c) => {
                let pid = c.id() as i32;
                // Reap everything (orphans included) until the agent itself exits.
                loop {
                    match sys::reap_any() {
                        Some((p, code)) if p == pid => {
                            eprintln!("metalcast-init: agent exited with {code}");
                            break;
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
            }
            Err(e) => eprintln!("metalcast-init: starting the agent: {e}"),
        }
        // Do not spin on an agent that fails at once.
        let pause = Duration::from_secs(3).saturating_sub(started.elapsed().min(Duration::from_secs(3)));
        std::thread::sleep(pause.max(Duration::from_millis(500)));
    }
}
