//! Every system call the runtime makes that std does not wrap: mounts,
//! module loading, memfds, block-device ioctls, interface configuration,
//! kexec and reboot. All `unsafe` code of the crate is here.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::mount::MsFlags;

/// Mounts `fstype` at `target` (creating the directory); EBUSY (already mounted) is fine.
pub fn mount(fstype: &str, target: &str, flags: MsFlags, data: Option<&str>) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    match nix::mount::mount(Some(fstype), target, Some(fstype), flags, data) {
        Ok(()) | Err(nix::errno::Errno::EBUSY) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Loads a kernel module from a file (`finit_module`); an already loaded module is fine.
pub fn load_module(file: &File) -> io::Result<()> {
    let params = CString::default();
    match nix::kmod::finit_module(file, &params, nix::kmod::ModuleInitFlags::empty()) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// An anonymous in-memory file.
pub fn memfd(name: &str) -> io::Result<File> {
    let fd = nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    Ok(File::from(fd))
}

/// `BLKGETSIZE64` = `_IOR(0x12, 114, u64)` (not exported by the libc crate).
const BLKGETSIZE64: libc::Ioctl = 0x8008_1272;

/// Size in bytes of a block device (`BLKGETSIZE64`).
pub fn block_size_bytes(dev: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at a live local.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(size) }
}

/// `BLKDISCARD` = `_IO(0x12, 119)`, `BLKZEROOUT` = `_IO(0x12, 127)` (not exported by the libc crate).
const BLKDISCARD: libc::Ioctl = 0x1277;
const BLKZEROOUT: libc::Ioctl = 0x127f;

/// Discards (`zero == false`) or zeroes (`zero == true`) bytes `0..len` of a block device.
pub fn erase_block_device(dev: &File, len: u64, zero: bool) -> io::Result<()> {
    let range: [u64; 2] = [0, len];
    let req = if zero { BLKZEROOUT } else { BLKDISCARD };
    // SAFETY: both ioctls read a `u64[2]` {start, length} through the pointer, which points at a live local.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), req, range.as_ptr()) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Logical sector size of a block device (`BLKSSZGET`): the unit of `O_DIRECT` I/O.
pub fn logical_sector_size(dev: &File) -> io::Result<usize> {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points at a live local.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), libc::BLKSSZGET, &mut size as *mut libc::c_int) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(size.max(512) as usize) }
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("interface name {name:?}")));
    }
    // SAFETY: ifreq is plain old data (arrays and a union of integers/sockaddrs); all zeros is valid.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(r)
}

fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr_in(a: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.octets()) },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes) and sockaddr is plain data.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ioctl_ifreq(sock: &OwnedFd, req: libc::Ioctl, r: &mut libc::ifreq, what: &str) -> io::Result<()> {
    // SAFETY: the request is one of the SIOC*IF* calls that read or write one ifreq, and r is a live ifreq.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), req, r as *mut libc::ifreq) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// Sets an interface up (`IFF_UP`).
pub fn link_up(name: &str) -> io::Result<()> {
    let sock = inet_socket()?;
    let mut r = ifreq(name)?;
    ioctl_ifreq(&sock, libc::SIOCGIFFLAGS, &mut r, "SIOCGIFFLAGS")?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { r.ifr_ifru.ifru_flags };
    r.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    ioctl_ifreq(&sock, libc::SIOCSIFFLAGS, &mut r, "SIOCSIFFLAGS")
}

/// Gives an interface an IPv4 address and netmask (the kernel adds the subnet route).
pub fn set_ipv4(name: &str, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
    let sock = inet_socket()?;
    let mut r = ifreq(name)?;
    r.ifr_ifru.ifru_addr = sockaddr_in(addr);
    ioctl_ifreq(&sock, libc::SIOCSIFADDR, &mut r, "SIOCSIFADDR")?;
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
    let mut r = ifreq(name)?;
    r.ifr_ifru.ifru_netmask = sockaddr_in(Ipv4Addr::from(mask));
    ioctl_ifreq(&sock, libc::SIOCSIFNETMASK, &mut r, "SIOCSIFNETMASK")?;
    let mut r = ifreq(name)?;
    r.ifr_ifru.ifru_broadaddr = sockaddr_in(Ipv4Addr::from(u32::from(addr) | !mask));
    ioctl_ifreq(&sock, libc::SIOCSIFBRDADDR, &mut r, "SIOCSIFBRDADDR")
}

/// Removes an interface's IPv4 address (`SIOCSIFADDR` with 0.0.0.0 deletes it).
pub fn clear_ipv4(name: &str) -> io::Result<()> {
    let sock = inet_socket()?;
    let mut r = ifreq(name)?;
    r.ifr_ifru.ifru_addr = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    ioctl_ifreq(&sock, libc::SIOCSIFADDR, &mut r, "SIOCSIFADDR 0.0.0.0")
}

/// Adds a default route through `gw`; an existing one is fine.
pub fn add_default_route(gw: Ipv4Addr) -> io::Result<()> {
    let sock = inet_socket()?;
    // SAFETY: rtentry is plain data; all zeros is a valid (empty) value.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr_in(gw);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    // SAFETY: SIOCADDRT reads one rtentry, which lives for the call; rt_dev is null (any device).
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCADDRT, &mut rt as *mut libc::rtentry) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    Ok(())
}

/// Why a kexec load failed, in terms the caller can act on.
#[derive(Debug)]
pub enum KexecError {
    /// The kernel refuses `kexec_file_load` (not built in, or signature
    /// enforcement): only the legacy `kexec_load` could work.
    FileLoadRefused(io::Error),
    /// Anything else (bad image, no memory, no permission).
    Other(io::Error),
}

/// `kexec_file_load(kernel, initrd, cmdline)`: stages the new kernel.
pub fn kexec_file_load(kernel: &File, initrd: Option<&File>, cmdline: &str) -> Result<(), KexecError> {
    let c = CString::new(cmdline)
        .map_err(|_| KexecError::Other(io::Error::new(io::ErrorKind::InvalidInput, "NUL in command line")))?;
    let bytes = c.as_bytes_with_nul();
    let (initrd_fd, flags) = match initrd {
        Some(f) => (f.as_raw_fd(), 0),
        None => (-1, libc::KEXEC_FILE_NO_INITRAMFS),
    };
    // SAFETY: kexec_file_load reads the two descriptors (open for the call's duration) and
    // `bytes.len()` bytes of the NUL-terminated command line, which outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            kernel.as_raw_fd(),
            initrd_fd,
            bytes.len() as libc::c_ulong,
            bytes.as_ptr(),
            flags as libc::c_ulong,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::EKEYREJECTED) | Some(libc::EPERM) | Some(libc::EOPNOTSUPP) => {
            Err(KexecError::FileLoadRefused(e))
        }
        _ => Err(KexecError::Other(e)),
    }
}

/// Unloads a staged kexec image, however it was loaded (`kexec_file_load`
/// with `KEXEC_FILE_UNLOAD`, else `kexec_load` with no segments).
pub fn kexec_unload() -> io::Result<()> {
    // SAFETY: with KEXEC_FILE_UNLOAD the kernel reads no descriptor and no command line (null, length 0).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            -1 as libc::c_int,
            -1 as libc::c_int,
            0 as libc::c_ulong,
            std::ptr::null::<u8>(),
            libc::KEXEC_FILE_UNLOAD as libc::c_ulong,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: kexec_load with zero segments unloads; the null segment array is not read.
    let rc = unsafe {
        libc::syscall(libc::SYS_kexec_load, 0 as libc::c_ulong, 0 as libc::c_ulong, std::ptr::null::<u8>(), 0)
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Whether a kexec image is staged (`/sys/kernel/kexec_loaded`).
pub fn kexec_loaded() -> bool {
    std::fs::read_to_string("/sys/kernel/kexec_loaded").is_ok_and(|s| s.trim() == "1")
}

/// Syncs filesystems and reboots into the staged kexec kernel. Returns only on failure.
pub fn reboot_kexec() -> io::Error {
    nix::unistd::sync();
    match nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_KEXEC) {
        Ok(never) => match never {},
        Err(e) => e.into(),
    }
}

/// Powers the machine off. Returns only on failure.
pub fn power_off() -> io::Error {
    nix::unistd::sync();
    match nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF) {
        Ok(never) => match never {},
        Err(e) => e.into(),
    }
}

/// Whether the kernel's random number generator is initialised (a
/// non-blocking `getrandom` succeeds). Until it is, `getrandom` blocks, and
/// so does everything that seeds from it (DHCP transaction ids, receiver ids).
pub fn entropy_ready() -> bool {
    let mut b = [0u8; 1];
    // SAFETY: getrandom writes at most 1 byte into the live local buffer.
    let r = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 1, libc::GRND_NONBLOCK) };
    r == 1
}

/// Reaps one exited child, blocking; `None` when there are no children.
pub fn reap_any() -> Option<(i32, i32)> {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) => return Some((pid.as_raw(), code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) => return Some((pid.as_raw(), 128 + sig as i32)),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Makes the child `cmd` spawns get SIGTERM when the spawning thread exits
/// (`PR_SET_PDEATHSIG`; the agent spawns VMs from its main thread, so a VM
/// does not outlive the agent). A child whose parent is already gone fails
/// to start (`ESRCH`).
pub fn terminate_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the child between fork and exec; it makes two
    // async-signal-safe system calls (prctl, getppid), allocates nothing and
    // touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
            // The parent may have exited before prctl: then we were reparented already.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Blocks until child `pid` has exited, without reaping it (`waitid` with
/// `WNOWAIT`): until it is reaped its pid cannot be reused, so signalling it
/// stays safe.
pub fn wait_exited_unreaped(pid: u32) -> io::Result<()> {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends `SIGTERM` (or with `kill`, `SIGKILL`) to process `pid`.
pub fn signal(pid: u32, kill: bool) -> io::Result<()> {
    use nix::sys::signal::Signal;
    let sig = if kill { Signal::SIGKILL } else { Signal::SIGTERM };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).map_err(Into::into)
}

/// SIGINT and SIGTERM: the signals that ask a process to stop.
fn stop_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}

/// Blocks SIGINT and SIGTERM in the calling thread, and so in every thread
/// it starts afterwards: they stay pending until [`wait_stop_signal`] takes
/// them, instead of ending the process on the spot.
pub fn block_stop_signals() -> io::Result<()> {
    stop_signals().thread_block().map_err(Into::into)
}

/// Waits for SIGINT or SIGTERM (blocked by [`block_stop_signals`]) and
/// returns its number.
pub fn wait_stop_signal() -> io::Result<i32> {
    stop_signals().wait().map(|s| s as i32).map_err(Into::into)
}
