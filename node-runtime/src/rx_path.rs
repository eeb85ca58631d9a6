//! Choosing the receive path: the XDP/AF_XDP fast path (`metalcast-ebpf`)
//! or a plain UDP socket, and the [`PacketSource`] that feeds the receiver
//! from either.
//!
//! `auto` takes the XDP path when it can be set up and otherwise falls back to
//! the socket, saying why (not privileged, group not multicast, interface
//! unknown, symbols too large for an AF_XDP frame, XDP attach or AF_XDP bind
//! refused). On the XDP path the receiver's UDP socket still joins the group
//! (IGMP) and still reads anything the program passes up (e.g. frames on rx
//! queues without an AF_XDP socket), so no packet is lost to the choice.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

use metalcast_ebpf::{AttachMode, RxStats, SessionMatch, SessionSlot, XdpRx, XskConfig, XskRx, XskStats};
use metalcast_transport::{PacketSource, SessionSpec, SocketSource, TransportError};

/// Which receive path to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RxPath {
    /// XDP/AF_XDP when it can be set up, else the socket (the reason is logged).
    #[default]
    Auto,
    /// XDP/AF_XDP only: fail if it cannot be set up.
    Xdp,
    /// A UDP socket with `recvmmsg`.
    Socket,
}

/// Most AF_XDP sockets (rx queues) one receiver binds; frames on further
/// queues are passed by the program and read from the UDP socket.
pub const MAX_XSK_QUEUES: u32 = 4;

/// Why the XDP path could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum XdpUnavailable {
    /// Missing capabilities.
    #[error("not privileged: {0}")]
    NotPrivileged(String),
    /// The session or the interface does not allow it.
    #[error("{0}")]
    Unsupported(String),
    /// Loading or attaching the program failed.
    #[error(transparent)]
    Xdp(#[from] metalcast_ebpf::XdpRxError),
    /// Binding the AF_XDP socket failed.
    #[error(transparent)]
    Xsk(#[from] metalcast_ebpf::XskError),
    /// Joining the group failed.
    #[error("joining the group: {0}")]
    Join(#[source] TransportError),
}

/// The XDP path: the program, its AF_XDP sockets, and the group's UDP socket.
pub struct XdpSource {
    xsks: Vec<XskRx>,
    sock: SocketSource,
    xdp: XdpRx,
    slot: SessionSlot,
    ifname: String,
    mode: AttachMode,
    fds: Vec<RawFd>,
    /// Current batch: (socket index or `usize::MAX` for the UDP socket, index in it).
    batch: Vec<(usize, usize)>,
    calls: u64,
    mark_errors: u64,
}

impl std::fmt::Debug for XdpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpSource")
            .field("ifname", &self.ifname)
            .field("mode", &self.mode)
            .field("queues", &self.xsks.len())
            .finish_non_exhaustive()
    }
}

const SOCKET: usize = usize::MAX;
const BATCH: usize = 64;

impl XdpSource {
    /// Sets up the XDP path for `spec` (an image of `nblocks` blocks) on the
    /// interface with address `iface` (any: the only non-loopback interface
    /// with an IPv4 address). Must run in the interface's network namespace.
    pub fn open(spec: &SessionSpec, nblocks: u32, iface: Ipv4Addr) -> Result<XdpSource, XdpUnavailable> {
        Self::open_mode(spec, nblocks, iface, AttachMode::Auto)
    }

    /// Like [`open`](Self::open), attaching in `mode` (native, generic, or native if possible).
    pub fn open_mode(
        spec: &SessionSpec,
        nblocks: u32,
        iface: Ipv4Addr,
        mode: AttachMode,
    ) -> Result<XdpSource, XdpUnavailable> {
        if !spec.group.is_multicast() {
            return Err(XdpUnavailable::Unsupported(format!(
                "group {} is not multicast (loopback test mode)",
                spec.group
            )));
        }
        let cfg = XskConfig::default();
        // Ethernet + 2 VLAN tags + IPv6 + UDP + packet overhead (header, MAC) + symbol.
        let frame = 14 + 8 + 40 + 8 + metalcast_transport::packet::OVERHEAD + usize::from(spec.symbol_size);
        if frame > cfg.max_frame() as usize {
            return Err(XdpUnavailable::Unsupported(format!(
                "{}-byte symbols need {frame}-byte frames; an AF_XDP frame holds {} (jumbo frames use the socket path)",
                spec.symbol_size,
                cfg.max_frame()
            )));
        }
        capable()?;
        let ifname = interface_for(iface)?;
        let mut xdp = XdpRx::load()?;
        let m = SessionMatch { group: IpAddr::V4(spec.group), port: spec.port, session_id: spec.session_id };
        let slot = xdp.add_session(m, nblocks)?;
        // Sockets first, so no frame of the session is redirected to an empty queue.
        let mut xsks = vec![XskRx::bind(&ifname, 0, cfg)?];
        for q in 1..MAX_XSK_QUEUES {
            // Binding past the interface's last rx queue fails: that is how many it has.
            match XskRx::bind(&ifname, q, cfg) {
                Ok(x) => xsks.push(x),
                Err(_) => break,
            }
        }
        for (q, x) in xsks.iter().enumerate() {
            xdp.set_socket(q as u32, x)?;
        }
        let mode = xdp.attach(&ifname, mode)?;
        // Join last: from the first packet on, the session's frames take the fast path.
        let sock = SocketSource::join(spec, iface).map_err(XdpUnavailable::Join)?;
        let mut fds: Vec<RawFd> = xsks.iter().map(|x| x.as_raw_fd()).collect();
        fds.push(sock.as_fd().as_raw_fd());
        Ok(XdpSource { xsks, sock, xdp, slot, ifname, mode, fds, batch: Vec::new(), calls: 0, mark_errors: 0 })
    }

    /// The program's counters for this session.
    pub fn stats(&self) -> Result<RxStats, metalcast_ebpf::XdpRxError> {
        self.xdp.stats(self.slot)
    }

    /// Summary of the path for the receive report.
    pub fn report(&self) -> XdpReport {
        let xsk = self.xsks.iter().fold(XskStats::default(), |a, x| {
            let s = x.stats();
            XskStats {
                rx_dropped: a.rx_dropped + s.rx_dropped,
                rx_ring_full: a.rx_ring_full + s.rx_ring_full,
                fill_ring_empty: a.fill_ring_empty + s.fill_ring_empty,
            }
        });
        XdpReport {
            ifname: self.ifname.clone(),
            mode: match self.mode {
                AttachMode::Driver => "driver",
                AttachMode::Generic => "generic",
                AttachMode::Auto => "auto",
            },
            queues: self.xsks.len() as u32,
            session: self.stats().unwrap_or_default(),
            other: self.xdp.other_stats().unwrap_or_default(),
            xsk,
            mark_errors: self.mark_errors,
        }
    }

    fn take_xsk_frames(&mut self) {
        for (q, x) in self.xsks.iter_mut().enumerate() {
            let room = BATCH.saturating_sub(self.batch.len());
            let n = x.recv(room);
            self.batch.extend((0..n).map(|i| (q, i)));
        }
    }

    fn take_socket(&mut self) -> Result<(), TransportError> {
        let n = self.sock.recv(Duration::ZERO)?;
        self.batch.extend((0..n).map(|i| (SOCKET, i)));
        Ok(())
    }
}

/// What the XDP path did, for the receive summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct XdpReport {
    /// Interface the program is attached to.
    pub ifname: String,
    /// "driver" (native) or "generic" (skb) XDP.
    pub mode: &'static str,
    /// AF_XDP sockets (rx queues) bound.
    pub queues: u32,
    /// The program's counters for the session.
    pub session: RxStats,
    /// Frames on the interface that matched no session (passed to the stack).
    pub other: RxStats,
    /// AF_XDP socket drop counters.
    pub xsk: XskStats,
    /// Failed updates of the finished-block map (those blocks' symbols still reach user space).
    pub mark_errors: u64,
}

impl PacketSource for XdpSource {
    fn recv(&mut self, timeout: Duration) -> Result<usize, TransportError> {
        self.batch.clear();
        self.calls += 1;
        // The rings are plain memory: no system call while frames keep coming.
        self.take_xsk_frames();
        // The UDP socket only gets what the program passes up: look now and then, or when idle.
        let wait = if self.batch.is_empty() { timeout } else { Duration::ZERO };
        if self.batch.is_empty() || self.calls.is_multiple_of(16) {
            let ready = metalcast_ebpf::wait_readable(&self.fds, wait)
                .map_err(|e| TransportError::io("waiting for AF_XDP/UDP data", e))?;
            if self.batch.is_empty() && ready[..self.xsks.len()].iter().any(|r| *r) {
                self.take_xsk_frames();
            }
            if ready[self.xsks.len()] && self.batch.len() < BATCH {
                self.take_socket()?;
            }
        }
        Ok(self.batch.len())
    }

    fn get(&self, i: usize) -> &[u8] {
        match self.batch[i] {
            (SOCKET, j) => self.sock.get(j),
            // A frame that does not parse is handed on empty: the receiver counts it malformed.
            (q, j) => metalcast_ebpf::frame::udp_payload(self.xsks[q].frame(j)).unwrap_or(&[]),
        }
    }

    fn block_done(&mut self, block: u32) {
        if let Err(e) = self.xdp.mark_done(self.slot, block) {
            if self.mark_errors == 0 {
                tracing::warn!("XDP: cannot mark block {block} finished: {e}");
            }
            self.mark_errors += 1;
        }
    }

    fn dropped_on_purpose(&self) -> u64 {
        self.stats().map_or(0, |s| s.early_dropped)
    }
}

/// The receive path in use, built by [`open`].
#[derive(Debug)]
pub enum RxSource {
    /// XDP/AF_XDP.
    Xdp(Box<XdpSource>),
    /// A UDP socket; with the reason when `auto` fell back to it.
    Socket(SocketSource, Option<String>),
}

/// The receive path in the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RxReport {
    /// "xdp" or "socket".
    pub path: &'static str,
    /// Why `auto` fell back to the socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// XDP counters, on the XDP path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp: Option<XdpReport>,
}

impl RxSource {
    /// What the path did so far.
    pub fn report(&self) -> RxReport {
        match self {
            RxSource::Xdp(x) => RxReport { path: "xdp", fallback_reason: None, xdp: Some(x.report()) },
            RxSource::Socket(_, why) => RxReport { path: "socket", fallback_reason: why.clone(), xdp: None },
        }
    }

    fn inner(&mut self) -> &mut dyn PacketSource {
        match self {
            RxSource::Xdp(x) => x.as_mut(),
            RxSource::Socket(s, _) => s,
        }
    }
}

impl PacketSource for RxSource {
    fn recv(&mut self, timeout: Duration) -> Result<usize, TransportError> {
        self.inner().recv(timeout)
    }
    fn get(&self, i: usize) -> &[u8] {
        match self {
            RxSource::Xdp(x) => x.get(i),
            RxSource::Socket(s, _) => s.get(i),
        }
    }
    fn block_done(&mut self, block: u32) {
        self.inner().block_done(block)
    }
    fn dropped_on_purpose(&self) -> u64 {
        match self {
            RxSource::Xdp(x) => x.dropped_on_purpose(),
            RxSource::Socket(..) => 0,
        }
    }
}

/// Opens the receive path `path` for `spec` (image of `nblocks` blocks) on
/// the interface with address `iface`. `auto` logs why it fell back.
pub fn open(path: RxPath, spec: &SessionSpec, nblocks: u32, iface: Ipv4Addr) -> Result<RxSource, RxPathError> {
    let socket = || SocketSource::join(spec, iface).map_err(RxPathError::Socket);
    match path {
        RxPath::Socket => Ok(RxSource::Socket(socket()?, None)),
        RxPath::Xdp => Ok(RxSource::Xdp(Box::new(XdpSource::open(spec, nblocks, iface).map_err(RxPathError::Xdp)?))),
        RxPath::Auto => match XdpSource::open(spec, nblocks, iface) {
            Ok(x) => {
                tracing::info!("receive path: XDP ({:?} mode on {}, {} AF_XDP queues)", x.mode, x.ifname, x.xsks.len());
                Ok(RxSource::Xdp(Box::new(x)))
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!("receive path: socket (XDP unavailable: {reason})");
                Ok(RxSource::Socket(socket()?, Some(reason)))
            }
        },
    }
}

/// Errors opening a receive path.
#[derive(Debug, thiserror::Error)]
pub enum RxPathError {
    /// `--rx-path xdp` and the XDP path could not be set up.
    #[error("XDP receive path unavailable: {0}")]
    Xdp(#[source] XdpUnavailable),
    /// The socket path could not be set up.
    #[error(transparent)]
    Socket(TransportError),
}

/// CAP_NET_ADMIN and CAP_BPF (or CAP_SYS_ADMIN), from /proc/self/status.
fn capable() -> Result<(), XdpUnavailable> {
    let no = |why: String| XdpUnavailable::NotPrivileged(why);
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| no(format!("reading capabilities: {e}")))?;
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .ok_or_else(|| no("no CapEff in /proc/self/status".into()))?;
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_BPF: u32 = 39;
    if caps & (1 << CAP_NET_ADMIN) == 0 || caps & ((1 << CAP_BPF) | (1 << CAP_SYS_ADMIN)) == 0 {
        return Err(no("needs CAP_NET_ADMIN and CAP_BPF (run as root)".into()));
    }
    Ok(())
}

/// The interface holding `addr`, or the only non-loopback interface with an
/// IPv4 address when `addr` is unspecified.
fn interface_for(addr: Ipv4Addr) -> Result<String, XdpUnavailable> {
    let unsupported = |s: String| XdpUnavailable::Unsupported(s);
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| unsupported(format!("listing interfaces: {e}")))?;
    let mut names: Vec<String> = Vec::new();
    for ifa in addrs {
        let Some(a) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()).map(|s| s.ip()) else { continue };
        if addr.is_unspecified() {
            if !a.is_loopback() && !names.contains(&ifa.interface_name) {
                names.push(ifa.interface_name);
            }
        } else if a == addr {
            return Ok(ifa.interface_name);
        }
    }
    match (addr.is_unspecified(), names.len()) {
        (false, _) => Err(unsupported(format!("no interface has address {addr}"))),
        (true, 1) => Ok(names.remove(0)),
        (true, 0) => Err(unsupported("no non-loopback interface with an IPv4 address".into())),
        (true, _) => Err(unsupported(format!("several interfaces ({}): give --iface-addr", names.join(", ")))),
    }
}

#[cfg(test)]
mod tests {
    /// The kernel fast path matches one wire version; if the transport moves to
    /// another, every symbol would silently take the slow path.
    #[test]
    fn xdp_program_matches_the_transport_wire_version() {
        assert_eq!(metalcast_ebpf::xdp_rx::WIRE_VERSION, metalcast_transport::packet::VERSION);
    }
}
