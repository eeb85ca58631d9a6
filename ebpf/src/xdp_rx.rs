//! XDP receive fast path: loader for `src/xdp_rx.bpf.c`.
//!
//! The program matches the frames of registered imaging sessions (destination
//! group, destination UDP port and the session id in the metalcast header),
//! redirects them to the AF_XDP socket bound to the frame's rx queue
//! ([`crate::xsk::XskRx`]), drops symbols of blocks already marked done
//! ([`XdpRx::mark_done`]) before they cost anything, and passes every other
//! frame to the stack untouched: ARP, DHCP, SSH, the unicast control channel,
//! IP fragments, IPv6 extension headers. Per-session counters
//! ([`RxStats`]) are kept per CPU and summed on read.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use aya::maps::{Array, HashMap as BpfHashMap, MapError, PerCpuArray, XskMap};
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::{Ebpf, EbpfError};

use crate::netns;

/// Sessions one program can match at once.
pub const MAX_SESSIONS: u32 = 64;
/// Rx queues the AF_XDP socket map covers.
pub const MAX_QUEUES: u32 = 64;
/// Finished-block bits the program can hold, over all sessions.
pub const MAX_BLOCKS: u32 = 65536 * 64;
/// The one metalcast wire version the program matches (`MC_VERSION` in
/// `xdp_rx.bpf.c`); frames of any other version are passed to the stack. It
/// must equal the transport's `packet::VERSION`: the node runtime's tests hold
/// the two together, this crate's tests hold it to the C source.
pub const WIRE_VERSION: u8 = 5;

const PROGRAM: &str = "metalcast_xdp_rx";
const SESSIONS_MAP: &str = "XDP_RX_SESSIONS";
const STATS_MAP: &str = "XDP_RX_STATS";
const DONE_MAP: &str = "XDP_RX_DONE";
const XSKS_MAP: &str = "XDP_RX_XSKS";

/// What identifies an imaging session's multicast frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionMatch {
    /// Destination (multicast group) address.
    pub group: IpAddr,
    /// Destination UDP port.
    pub port: u16,
    /// Session id carried in every packet's header.
    pub session_id: u32,
}

/// Mirror of `struct session_key` in `xdp_rx.bpf.c`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
struct RawKey {
    addr: [u8; 16],
    port: u16,
    pad0: u16,
    session_id: u32,
}

// SAFETY: `RawKey` is `#[repr(C)]` with explicit padding fields (no implicit
// padding), every bit pattern valid, mirroring the C `struct session_key`.
unsafe impl aya::Pod for RawKey {}

impl From<SessionMatch> for RawKey {
    fn from(m: SessionMatch) -> Self {
        let addr = match m.group {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        };
        RawKey { addr, port: m.port, pad0: 0, session_id: m.session_id }
    }
}

/// Mirror of `struct session_info` in `xdp_rx.bpf.c`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct RawInfo {
    slot: u32,
    nblocks: u32,
    done_base: u32,
    pad: u32,
}

// SAFETY: `#[repr(C)]`, only `u32`s (no padding, every bit pattern valid),
// mirrors the C `struct session_info`.
unsafe impl aya::Pod for RawInfo {}

/// Mirror of `struct rx_stats` in `xdp_rx.bpf.c`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct RawStats {
    seen: u64,
    redirected: u64,
    early_dropped: u64,
    passed: u64,
}

// SAFETY: `#[repr(C)]`, only `u64`s (no padding, every bit pattern valid),
// mirrors the C `struct rx_stats`.
unsafe impl aya::Pod for RawStats {}

/// Counters of one session (or of unmatched traffic), summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct RxStats {
    /// Frames that matched.
    pub seen: u64,
    /// Of those, redirected to an AF_XDP socket.
    pub redirected: u64,
    /// Of those, symbols of finished blocks dropped in the kernel.
    pub early_dropped: u64,
    /// Of those, passed to the network stack (for sessions: no AF_XDP socket on that rx queue).
    pub passed: u64,
}

/// A registered session: its counter slot and its finished-block bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSlot {
    slot: u32,
    nblocks: u32,
    done_base: u32,
}

impl SessionSlot {
    /// Blocks in the session's image.
    pub fn blocks(&self) -> u32 {
        self.nblocks
    }
}

/// How to attach the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// Native (driver) mode if the driver supports it, else generic (skb) mode.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Driver,
    /// Generic (skb) mode: works on any interface, copies every frame.
    Generic,
}

/// Errors of the XDP receive path's loader.
#[derive(Debug, thiserror::Error)]
pub enum XdpRxError {
    /// The embedded object could not be loaded (parsing, maps, BTF).
    #[error("loading the XDP receive object failed: {source}")]
    Load {
        /// The aya error.
        #[source]
        source: Box<EbpfError>,
    },
    /// The object lacks an expected program or map (stale object?).
    #[error("the XDP receive object has no {kind} named {name}")]
    Missing {
        /// "program" or "map".
        kind: &'static str,
        /// The expected name.
        name: &'static str,
    },
    /// The kernel refused the program (verifier, no XDP support, no CAP_BPF).
    #[error("loading XDP program {PROGRAM} failed: {source}")]
    Verify {
        /// The aya error.
        #[source]
        source: Box<ProgramError>,
    },
    /// Attaching to the interface failed.
    #[error("attaching XDP program to {ifname} ({mode:?}) failed: {source}")]
    Attach {
        /// Interface name.
        ifname: String,
        /// The mode tried last.
        mode: AttachMode,
        /// The aya error.
        #[source]
        source: Box<ProgramError>,
    },
    /// Already attached to an interface.
    #[error("the XDP program is already attached to {0}")]
    AlreadyAttached(String),
    /// Every session slot or every finished-block bit is taken.
    #[error("no room for another session: {0}")]
    Full(&'static str),
    /// The block is outside the session's image.
    #[error("block {block} is outside the session's {nblocks} blocks")]
    BlockOutOfRange {
        /// The block.
        block: u32,
        /// Blocks in the session.
        nblocks: u32,
    },
    /// Reading or writing a map failed.
    #[error("map {map} access failed: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// The aya error.
        #[source]
        source: Box<MapError>,
    },
    /// The caller's network namespace could not be opened.
    #[error("opening the current network namespace failed: {source}")]
    Netns {
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn map_err(map: &'static str) -> impl Fn(MapError) -> XdpRxError {
    move |e| XdpRxError::Map { map, source: Box::new(e) }
}

/// The loaded XDP receive program and its maps. Dropping it detaches the
/// program (in the network namespace it was attached in).
pub struct XdpRx {
    ebpf: Option<Ebpf>,
    attached: Option<(String, AttachMode)>,
    netns: File,
    sessions: HashMap<SessionMatch, SessionSlot>,
    next_slot: u32,
    next_word: u32,
    /// Our copy of every finished-block word written to the kernel.
    done: HashMap<u32, u64>,
}

impl fmt::Debug for XdpRx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpRx")
            .field("attached", &self.attached)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

impl XdpRx {
    /// Loads and verifies the program (needs `CAP_BPF`), not yet attached.
    pub fn load() -> Result<Self, XdpRxError> {
        let netns = netns::current().map_err(|source| XdpRxError::Netns { source })?;
        let mut ebpf = Ebpf::load(crate::objects::XDP_RX).map_err(|e| XdpRxError::Load { source: Box::new(e) })?;
        program(&mut ebpf)?.load().map_err(|e| XdpRxError::Verify { source: Box::new(e) })?;
        Ok(XdpRx {
            ebpf: Some(ebpf),
            attached: None,
            netns,
            sessions: HashMap::new(),
            next_slot: 0,
            next_word: 0,
            done: HashMap::new(),
        })
    }

    /// Attaches to `ifname` (resolved in the calling thread's network
    /// namespace). Returns the mode that worked.
    pub fn attach(&mut self, ifname: &str, mode: AttachMode) -> Result<AttachMode, XdpRxError> {
        if let Some((name, _)) = &self.attached {
            return Err(XdpRxError::AlreadyAttached(name.clone()));
        }
        self.netns = netns::current().map_err(|source| XdpRxError::Netns { source })?;
        let prog = program(self.ebpf_mut())?;
        let attach_err = |mode, e| XdpRxError::Attach { ifname: ifname.to_owned(), mode, source: Box::new(e) };
        let used = match mode {
            AttachMode::Driver => {
                prog.attach(ifname, XdpMode::Driver).map(|_| mode).map_err(|e| attach_err(mode, e))?
            }
            AttachMode::Generic => prog.attach(ifname, XdpMode::Skb).map(|_| mode).map_err(|e| attach_err(mode, e))?,
            AttachMode::Auto => match prog.attach(ifname, XdpMode::Driver) {
                Ok(_) => AttachMode::Driver,
                Err(_) => prog
                    .attach(ifname, XdpMode::Skb)
                    .map(|_| AttachMode::Generic)
                    .map_err(|e| attach_err(AttachMode::Generic, e))?,
            },
        };
        self.attached = Some((ifname.to_owned(), used));
        Ok(used)
    }

    /// Interface and mode this program is attached with, if attached.
    pub fn attached(&self) -> Option<(&str, AttachMode)> {
        self.attached.as_ref().map(|(n, m)| (n.as_str(), *m))
    }

    /// Starts matching a session whose image has `nblocks` blocks. Adding a
    /// session again returns its existing slot.
    pub fn add_session(&mut self, m: SessionMatch, nblocks: u32) -> Result<SessionSlot, XdpRxError> {
        if let Some(s) = self.sessions.get(&m) {
            return Ok(*s);
        }
        if self.next_slot >= MAX_SESSIONS {
            return Err(XdpRxError::Full("every session slot is taken"));
        }
        let words = nblocks.div_ceil(64);
        if u64::from(self.next_word) + u64::from(words) > u64::from(MAX_BLOCKS / 64) {
            return Err(XdpRxError::Full("too many blocks for the finished-block map"));
        }
        let s = SessionSlot { slot: self.next_slot, nblocks, done_base: self.next_word };
        let map =
            self.ebpf_mut().map_mut(SESSIONS_MAP).ok_or(XdpRxError::Missing { kind: "map", name: SESSIONS_MAP })?;
        let mut sessions: BpfHashMap<_, RawKey, RawInfo> = BpfHashMap::try_from(map).map_err(map_err(SESSIONS_MAP))?;
        let info = RawInfo { slot: s.slot, nblocks, done_base: s.done_base, pad: 0 };
        sessions.insert(RawKey::from(m), info, 0).map_err(map_err(SESSIONS_MAP))?;
        self.next_slot += 1;
        self.next_word += words;
        self.sessions.insert(m, s);
        Ok(s)
    }

    /// Stops matching a session: its frames go to the stack again. (Its slot
    /// and bits are not reused by this instance.)
    pub fn remove_session(&mut self, m: SessionMatch) -> Result<(), XdpRxError> {
        if self.sessions.remove(&m).is_none() {
            return Ok(());
        }
        let map =
            self.ebpf_mut().map_mut(SESSIONS_MAP).ok_or(XdpRxError::Missing { kind: "map", name: SESSIONS_MAP })?;
        let mut sessions: BpfHashMap<_, RawKey, RawInfo> = BpfHashMap::try_from(map).map_err(map_err(SESSIONS_MAP))?;
        sessions.remove(&RawKey::from(m)).map_err(map_err(SESSIONS_MAP))
    }

    /// Marks `block` of session `s` finished: from now on the kernel drops its symbols.
    pub fn mark_done(&mut self, s: SessionSlot, block: u32) -> Result<(), XdpRxError> {
        if block >= s.nblocks {
            return Err(XdpRxError::BlockOutOfRange { block, nblocks: s.nblocks });
        }
        let word = s.done_base + block / 64;
        let bits = self.done.get(&word).copied().unwrap_or(0) | 1u64 << (block % 64);
        let map = self.ebpf_mut().map_mut(DONE_MAP).ok_or(XdpRxError::Missing { kind: "map", name: DONE_MAP })?;
        let mut done: Array<_, u64> = Array::try_from(map).map_err(map_err(DONE_MAP))?;
        done.set(word, bits, 0).map_err(map_err(DONE_MAP))?;
        self.done.insert(word, bits);
        Ok(())
    }

    /// Directs frames received on rx `queue` to the AF_XDP socket `fd`.
    pub fn set_socket(&mut self, queue: u32, fd: &impl AsRawFd) -> Result<(), XdpRxError> {
        if queue >= MAX_QUEUES {
            return Err(XdpRxError::Full("rx queue beyond the socket map"));
        }
        let map = self.ebpf_mut().map_mut(XSKS_MAP).ok_or(XdpRxError::Missing { kind: "map", name: XSKS_MAP })?;
        let mut xsks = XskMap::try_from(map).map_err(map_err(XSKS_MAP))?;
        xsks.set(queue, fd.as_raw_fd(), 0).map_err(map_err(XSKS_MAP))
    }

    /// Counters of session `s`.
    pub fn stats(&self, s: SessionSlot) -> Result<RxStats, XdpRxError> {
        self.read_stats(s.slot)
    }

    /// Counters of frames that matched no session (all passed to the stack).
    pub fn other_stats(&self) -> Result<RxStats, XdpRxError> {
        self.read_stats(MAX_SESSIONS)
    }

    fn read_stats(&self, index: u32) -> Result<RxStats, XdpRxError> {
        let ebpf = self.ebpf.as_ref().expect("ebpf is only taken in Drop");
        let map = ebpf.map(STATS_MAP).ok_or(XdpRxError::Missing { kind: "map", name: STATS_MAP })?;
        let array: PerCpuArray<_, RawStats> = PerCpuArray::try_from(map).map_err(map_err(STATS_MAP))?;
        let per_cpu = array.get(&index, 0).map_err(map_err(STATS_MAP))?;
        Ok(per_cpu.iter().fold(RxStats::default(), |a, s| RxStats {
            seen: a.seen + s.seen,
            redirected: a.redirected + s.redirected,
            early_dropped: a.early_dropped + s.early_dropped,
            passed: a.passed + s.passed,
        }))
    }

    fn ebpf_mut(&mut self) -> &mut Ebpf {
        self.ebpf.as_mut().expect("ebpf is only taken in Drop")
    }
}

fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp, XdpRxError> {
    ebpf.program_mut(PROGRAM)
        .ok_or(XdpRxError::Missing { kind: "program", name: PROGRAM })?
        .try_into()
        .map_err(|e| XdpRxError::Verify { source: Box::new(e) })
}

impl Drop for XdpRx {
    fn drop(&mut self) {
        // bpf_link-attached programs detach when the link fd closes; a legacy
        // netlink attachment is removed by ifindex, only meaningful in the
        // namespace it was made in: drop there, or leak if it is gone (its
        // deletion removes the program anyway).
        let mut slot = self.ebpf.take();
        if netns::run_in(&self.netns, || drop(slot.take())).is_err() {
            std::mem::forget(slot.take());
        }
    }
}

#[cfg(test)]
mod tests {
    //! Verdict tests: the program runs under `BPF_PROG_TEST_RUN` on crafted
    //! frames (needs `CAP_BPF`; SKIP otherwise, FAIL under
    //! `METALCAST_REQUIRE_PRIVILEGED=1`). No interface is involved.

    use std::net::{Ipv4Addr, Ipv6Addr};

    use aya::programs::{TestRun, TestRunOptions};

    use super::*;
    use crate::testing::{self, Frame};

    const XDP_DROP: u32 = 1;
    const XDP_PASS: u32 = 2;
    const XDP_REDIRECT: u32 = 4;

    const GROUP: Ipv4Addr = Ipv4Addr::new(239, 77, 1, 1);
    const PORT: u16 = 47000;
    const SID: u32 = 0x1122_3344;

    fn run(rx: &mut XdpRx, frame: &[u8]) -> u32 {
        let mut out = vec![0u8; frame.len() + 512];
        let prog = program(rx.ebpf_mut()).expect("program");
        let r = prog
            .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..TestRunOptions::new() })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(r.data_size_out as usize);
        assert_eq!(out, frame, "the program never changes a frame");
        r.return_value
    }

    fn loaded() -> (XdpRx, SessionSlot) {
        let mut rx = XdpRx::load().expect("load XDP program");
        let s = rx.add_session(SessionMatch { group: GROUP.into(), port: PORT, session_id: SID }, 100).expect("add");
        (rx, s)
    }

    #[test]
    fn wire_version_matches_the_c_source() {
        let src = include_str!("xdp_rx.bpf.c");
        let line = src.lines().find(|l| l.starts_with("#define MC_VERSION ")).expect("MC_VERSION in xdp_rx.bpf.c");
        let v: u8 = line["#define MC_VERSION ".len()..].trim().parse().expect("MC_VERSION is a number");
        assert_eq!(v, WIRE_VERSION, "xdp_rx.bpf.c and WIRE_VERSION disagree (rebuild ebpf/obj after a bump)");
    }

    #[test]
    fn verdicts_on_crafted_frames() {
        crate::testing::skip_unless_bpf!("verdicts_on_crafted_frames");
        let (mut rx, s) = loaded();
        let v6group: Ipv6Addr = "ff15::77".parse().unwrap();
        let s6 = rx.add_session(SessionMatch { group: v6group.into(), port: PORT, session_id: SID }, 10).unwrap();
        let sym = |block: u32| testing::mc_symbol(SID, block);
        let ok = Frame::v4(GROUP, PORT, sym(3));

        // No AF_XDP socket on queue 0 in a test run: matches are passed, and counted so.
        assert_eq!(run(&mut rx, &ok.build()), XDP_PASS);
        assert_eq!(rx.stats(s).unwrap(), RxStats { seen: 1, passed: 1, ..RxStats::default() });

        // Finished block: dropped in the kernel. Other blocks still go up.
        rx.mark_done(s, 3).unwrap();
        assert_eq!(run(&mut rx, &ok.build()), XDP_DROP);
        assert_eq!(run(&mut rx, &Frame::v4(GROUP, PORT, sym(4)).build()), XDP_PASS);
        rx.mark_done(s, 99).unwrap();
        assert_eq!(run(&mut rx, &Frame::v4(GROUP, PORT, sym(99)).build()), XDP_DROP);
        // The block is 24 bits: one whose low 16 bits name a finished block is
        // another block, beyond the image, and goes up.
        assert_eq!(run(&mut rx, &Frame::v4(GROUP, PORT, sym(3 | 1 << 16)).build()), XDP_PASS);
        assert!(matches!(rx.mark_done(s, 100), Err(XdpRxError::BlockOutOfRange { .. })));
        // A poll of the same session is never dropped, whatever its header word says.
        assert_eq!(run(&mut rx, &Frame::v4(GROUP, PORT, testing::mc_packet(2, SID, 3)).build()), XDP_PASS);

        // VLAN-tagged (802.1Q, and QinQ) frames are parsed through their tags.
        assert_eq!(run(&mut rx, &Frame::v4(GROUP, PORT, sym(3)).vlan(&[0x8100]).build()), XDP_DROP);
        assert_eq!(run(&mut rx, &Frame::v4(GROUP, PORT, sym(3)).vlan(&[0x88a8, 0x8100]).build()), XDP_DROP);
        // IPv6: the v6 session's bits are its own.
        assert_eq!(run(&mut rx, &Frame::v6(v6group, PORT, sym(3)).build()), XDP_PASS);
        rx.mark_done(s6, 3).unwrap();
        assert_eq!(run(&mut rx, &Frame::v6(v6group, PORT, sym(3)).build()), XDP_DROP);
        assert_eq!(rx.stats(s6).unwrap(), RxStats { seen: 2, early_dropped: 1, passed: 1, ..RxStats::default() });
        let s_stats = rx.stats(s).unwrap();
        assert_eq!((s_stats.seen, s_stats.early_dropped, s_stats.passed), (8, 4, 4));

        // Everything else is passed and counted as "other".
        let before = rx.other_stats().unwrap();
        let others: Vec<(&str, Vec<u8>)> = vec![
            ("wrong port", Frame::v4(GROUP, PORT + 1, sym(3)).build()),
            ("unknown session", Frame::v4(GROUP, PORT, testing::mc_symbol(SID + 1, 3)).build()),
            ("other group", Frame::v4(Ipv4Addr::new(239, 77, 1, 2), PORT, sym(3)).build()),
            ("IPv4 first fragment (MF)", Frame::v4(GROUP, PORT, sym(3)).frag(0x2000).build()),
            ("IPv4 later fragment", Frame::v4(GROUP, PORT, sym(3)).frag(0x0010).build()),
            ("IPv6 fragment header", Frame::v6(v6group, PORT, sym(3)).v6_fragment().build()),
            (
                "not a version byte",
                Frame::v4(GROUP, PORT, {
                    let mut p = sym(3);
                    p[0] = b'X';
                    p
                })
                .build(),
            ),
            (
                "a version 4 symbol of a finished block (MC framing, u64 session id)",
                Frame::v4(GROUP, PORT, testing::mc_symbol_v4(u64::from(SID), 3)).build(),
            ),
            (
                "older wire version",
                Frame::v4(GROUP, PORT, testing::mc_packet_version(WIRE_VERSION - 1, 1, SID, 3)).build(),
            ),
            (
                "newer wire version",
                Frame::v4(GROUP, PORT, testing::mc_packet_version(WIRE_VERSION + 1, 1, SID, 3)).build(),
            ),
            ("ARP", testing::arp()),
            ("TCP (SSH)", Frame::v4(GROUP, 22, sym(3)).tcp().build()),
        ];
        for (what, f) in &others {
            assert_eq!(run(&mut rx, f), XDP_PASS, "{what}");
        }
        // Truncated at every length: never dropped or redirected, never aborted.
        let full = Frame::v4(GROUP, PORT, sym(3)).vlan(&[0x8100]).build();
        let header_end = 14 + 4 + 20 + 8 + 16;
        assert_eq!(run(&mut rx, &full[..header_end]), XDP_DROP, "the whole metalcast header is enough");
        let s_stats = RxStats { seen: s_stats.seen + 1, early_dropped: s_stats.early_dropped + 1, ..s_stats };
        for len in 14..header_end {
            assert_eq!(run(&mut rx, &full[..len]), XDP_PASS, "truncated to {len}");
        }
        let full6 = Frame::v6(v6group, PORT, sym(3)).build();
        for len in 14..14 + 40 + 8 + 16 {
            assert_eq!(run(&mut rx, &full6[..len]), XDP_PASS, "v6 truncated to {len}");
        }
        let after = rx.other_stats().unwrap();
        assert!(after.passed >= before.passed + 10, "others counted: {before:?} -> {after:?}");
        assert_eq!(rx.stats(s).unwrap(), s_stats, "nothing above touched the session's counters");

        // After removal the session is "other" traffic again.
        rx.remove_session(SessionMatch { group: GROUP.into(), port: PORT, session_id: SID }).unwrap();
        assert_eq!(run(&mut rx, &ok.build()), XDP_PASS);
        assert_eq!(rx.stats(s).unwrap(), s_stats);
    }

    #[test]
    fn redirects_to_a_bound_af_xdp_socket() {
        crate::testing::skip_unless_bpf!("redirects_to_a_bound_af_xdp_socket");
        let (mut rx, s) = loaded();
        // A real AF_XDP socket bound to loopback's queue 0 is a valid XSKMAP entry.
        let xsk = crate::xsk::XskRx::bind("lo", 0, crate::xsk::XskConfig::small()).expect("AF_XDP socket on lo");
        rx.set_socket(0, &xsk).expect("XSKMAP update");
        assert_eq!(run(&mut rx, &Frame::v4(GROUP, PORT, testing::mc_symbol(SID, 7)).build()), XDP_REDIRECT);
        rx.mark_done(s, 7).unwrap();
        assert_eq!(run(&mut rx, &Frame::v4(GROUP, PORT, testing::mc_symbol(SID, 7)).build()), XDP_DROP);
        assert_eq!(run(&mut rx, &testing::arp()), XDP_PASS);
        assert_eq!(rx.stats(s).unwrap(), RxStats { seen: 2, redirected: 1, early_dropped: 1, passed: 0 });
    }
}
