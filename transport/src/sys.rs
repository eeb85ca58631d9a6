//! Sockets and the system calls std does not wrap: UDP GSO on send,
//! `recvmmsg` on receive, forced socket buffer sizes. Everything unsafe in
//! this crate is here.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};

use crate::error::TransportError;

fn io(what: &str) -> impl FnOnce(std::io::Error) -> TransportError + '_ {
    move |e| TransportError::io(what.to_string(), e)
}

/// Asks for a socket buffer of `bytes`, forcing past `rmem_max`/`wmem_max`
/// when privileged, silently settling for what the kernel allows otherwise.
fn big_buffers(s: &Socket, bytes: usize) {
    let n = bytes.min(i32::MAX as usize);
    if setsockopt(s, sockopt::RcvBufForce, &n).is_err() {
        let _ = s.set_recv_buffer_size(n);
    }
    if setsockopt(s, sockopt::SndBufForce, &n).is_err() {
        let _ = s.set_send_buffer_size(n);
    }
}

/// The sender's data socket: bound to `local` (its interface address),
/// multicast TTL 1 (never leaves the link), loopback on so receivers in the
/// same namespace hear it.
pub fn sender_socket(local: Ipv4Addr) -> Result<UdpSocket, TransportError> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(io("creating data socket"))?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(local, 0)).into()).map_err(io("binding data socket"))?;
    if !local.is_unspecified() && !local.is_loopback() {
        s.set_multicast_if_v4(&local).map_err(io("setting IP_MULTICAST_IF"))?;
    }
    s.set_multicast_ttl_v4(1).map_err(io("setting multicast TTL"))?;
    s.set_multicast_loop_v4(true).map_err(io("setting multicast loop"))?;
    big_buffers(&s, 8 << 20);
    Ok(s.into())
}

/// Turns on UDP GSO: every `send` of a buffer of several `segment`-sized
/// packets leaves as that many datagrams. Fails on kernels without it.
pub fn enable_gso(s: &UdpSocket, segment: u16) -> Result<(), TransportError> {
    setsockopt(s, sockopt::UdpGsoSegment, &i32::from(segment))
        .map_err(|e| TransportError::io("enabling UDP GSO", e.into()))
}

/// A unicast control socket bound to `addr` (port 0 for any).
pub fn control_socket(addr: SocketAddrV4) -> Result<UdpSocket, TransportError> {
    let s = UdpSocket::bind(addr).map_err(io("binding control socket"))?;
    Ok(s)
}

/// The receiver's data socket: bound to the group's port, joined to the
/// group on the interface with address `iface` (or any). A loopback "group"
/// is a unicast address: no join (single-receiver test mode).
pub fn receiver_socket(group: SocketAddrV4, iface: Ipv4Addr) -> Result<UdpSocket, TransportError> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(io("creating data socket"))?;
    s.set_reuse_address(true).map_err(io("setting SO_REUSEADDR"))?;
    s.set_reuse_port(true).map_err(io("setting SO_REUSEPORT"))?;
    big_buffers(&s, 32 << 20);
    s.bind(&SocketAddr::V4(group).into()).map_err(io("binding data socket"))?;
    if group.ip().is_multicast() {
        s.join_multicast_v4(group.ip(), &iface).map_err(io("joining multicast group"))?;
    }
    Ok(s.into())
}

/// Asks the kernel to hand `s` coalesced datagrams (UDP GRO: one read
/// carries several same-size datagrams, with their size in a control
/// message). Returns whether the kernel accepted (it has since 5.0).
pub fn enable_gro(s: &UdpSocket) -> bool {
    setsockopt(s, sockopt::UdpGroSegment, &true).is_ok()
}

/// Control message room per read: one `UDP_GRO` int, with headroom.
const CTRL_LEN: usize = 64;

/// A batch of receive buffers for `recvmmsg`, splitting GRO-coalesced reads
/// back into datagrams.
pub struct RecvBatch {
    bufs: Vec<u8>,
    cap: usize,
    /// Never read here: kept alive because every `hdrs[i].msg_control` points into it.
    _ctrl: Vec<u8>,
    /// Never read: kept alive because every `hdrs[i].msg_iov` points into it.
    _iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Datagrams of the last receive: (offset in `bufs`, length).
    segs: Vec<(usize, usize)>,
    /// Reads that carried several coalesced datagrams, since creation.
    coalesced_reads: u64,
}

// SAFETY: the raw pointers inside `_iovs`/`hdrs` point only into `bufs`,
// `ctrl` and `_iovs`, heap allocations owned by the same value that move with it.
unsafe impl Send for RecvBatch {}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch").field("n", &self.hdrs.len()).field("cap", &self.cap).finish()
    }
}

impl RecvBatch {
    /// `n` buffers of `cap` bytes each (with GRO, `cap` must hold a
    /// coalesced read: 64 KiB).
    pub fn new(n: usize, cap: usize) -> Self {
        let mut bufs = vec![0u8; n * cap];
        let mut ctrl = vec![0u8; n * CTRL_LEN];
        let mut iovs: Vec<libc::iovec> = (0..n)
            .map(|i| libc::iovec {
                // SAFETY: i * cap < n * cap = bufs.len(), so the pointer stays inside the allocation.
                iov_base: unsafe { bufs.as_mut_ptr().add(i * cap) }.cast(),
                iov_len: cap,
            })
            .collect();
        let hdrs = (0..n)
            .map(|i| {
                // SAFETY: mmsghdr is a plain C struct for which all-zero is a valid value.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                // SAFETY: i < n = iovs.len().
                h.msg_hdr.msg_iov = unsafe { iovs.as_mut_ptr().add(i) };
                h.msg_hdr.msg_iovlen = 1;
                // SAFETY: i * CTRL_LEN < n * CTRL_LEN = ctrl.len().
                h.msg_hdr.msg_control = unsafe { ctrl.as_mut_ptr().add(i * CTRL_LEN) }.cast();
                h
            })
            .collect();
        RecvBatch { bufs, cap, _ctrl: ctrl, _iovs: iovs, hdrs, segs: Vec::with_capacity(n), coalesced_reads: 0 }
    }

    /// Receives up to a batch of reads, waiting at most `timeout` for the
    /// first. Returns how many datagrams arrived (0 on timeout).
    pub fn recv(&mut self, s: &UdpSocket, timeout: Duration) -> Result<usize, TransportError> {
        self.segs.clear();
        let mut pfd = libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: pfd is a valid pollfd for the duration of the call; nfds = 1.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(TransportError::io("poll", e));
        }
        if r == 0 {
            return Ok(0);
        }
        for h in &mut self.hdrs {
            h.msg_len = 0;
            // The kernel shrinks it to what it wrote.
            h.msg_hdr.msg_controllen = CTRL_LEN as _;
        }
        // SAFETY: hdrs holds hdrs.len() initialised mmsghdr whose iovecs point
        // into self.bufs and whose control buffers into self.ctrl, with the
        // stated lengths; all outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                s.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(0),
                _ => Err(TransportError::io("recvmmsg", e)),
            };
        }
        for i in 0..n as usize {
            let len = (self.hdrs[i].msg_len as usize).min(self.cap);
            let start = i * self.cap;
            match gro_segment_size(&self.hdrs[i].msg_hdr) {
                Some(seg) if seg > 0 && seg < len => {
                    self.coalesced_reads += 1;
                    self.segs.extend((0..len).step_by(seg).map(|o| (start + o, seg.min(len - o))));
                }
                _ => self.segs.push((start, len)),
            }
        }
        Ok(self.segs.len())
    }

    /// Datagram `i` of the last receive.
    pub fn get(&self, i: usize) -> &[u8] {
        let (off, len) = self.segs[i];
        &self.bufs[off..off + len]
    }

    /// Reads that carried several coalesced datagrams so far.
    pub fn coalesced_reads(&self) -> u64 {
        self.coalesced_reads
    }
}

/// The `UDP_GRO` segment size in a received message's control data, if any.
fn gro_segment_size(m: &libc::msghdr) -> Option<usize> {
    // SAFETY: `m` was filled by recvmmsg: msg_control points to msg_controllen
    // bytes of control messages (our buffer, CTRL_LEN long), which the CMSG
    // macros walk without leaving them; the int payload of a UDP_GRO message
    // is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(m);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(m, c);
        }
    }
    None
}

/// Waits until `s` is readable or `d` passes (at most 1 s).
pub fn wait_readable(s: &UdpSocket, d: Duration) {
    let mut pfd = libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: pfd is valid for the call; a failed or interrupted poll just ends the wait early.
    unsafe { libc::poll(&mut pfd, 1, d.as_millis().min(1000) as i32) };
}

/// CPU seconds (user + system) the calling thread has used so far.
pub fn thread_cpu_secs() -> f64 {
    // CLOCK_THREAD_CPUTIME_ID counts in nanoseconds; getrusage's split into
    // user and system time moves in scheduler ticks (4 ms here), too coarse
    // for timing one decode.
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

/// Lowers the calling thread's scheduling priority by `delta` nice steps
/// (Linux applies `setpriority` to a single thread when given its tid).
/// Best effort: a failure leaves the priority as it was.
pub fn lower_thread_priority(delta: i32) {
    // getpriority returns -1 both as a nice value and on error: only errno tells.
    nix::errno::Errno::clear();
    // SAFETY: gettid, getpriority and setpriority take plain integers and touch no memory.
    let (tid, now) = unsafe {
        let tid = libc::gettid() as libc::id_t;
        (tid, libc::getpriority(libc::PRIO_PROCESS, tid))
    };
    if now == -1 && nix::errno::Errno::last_raw() != 0 {
        return;
    }
    // SAFETY: as above.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, (now + delta).min(19)) };
}

#[cfg(test)]
mod tests {
    /// This thread's nice value.
    fn nice() -> i32 {
        // SAFETY: plain integers in, no memory touched.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[test]
    fn lowering_priority_affects_only_the_calling_thread() {
        let before = nice();
        let (inside, after) = std::thread::spawn(move || {
            let start = nice();
            super::lower_thread_priority(3);
            (start, nice())
        })
        .join()
        .unwrap();
        assert_eq!(after, (inside + 3).min(19), "the thread's own nice value");
        assert_eq!(nice(), before, "the spawning thread is untouched");
    }
}
