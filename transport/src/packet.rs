//! Packet formats and their authentication (see `docs/wire-protocol.md`).
//!
//! Every packet, multicast or unicast, is
//! `header (16 bytes) | body | MAC (16 bytes)`, where the MAC is AEGIS-128L
//! (used as a MAC, 128-bit tag) over header and body and the high 32 bits of
//! the sequence number (which the header does not carry), under a key
//! derived from the session key. Nothing in a packet is looked at beyond the
//! fixed header before the MAC has been checked.

use crate::key::SessionKey;

/// Wire protocol version, the first byte of every packet (5: the lean
/// 16-byte header, 32-bit session id and sequence number, block and ESI in
/// 24 bits each, symbols that fill the MTU; 4: the sender announces repair
/// plans and the status interval in plan packets; 3: reports carry a
/// freshness counter and a failure reason; 2 introduced the AEGIS-128L
/// packet MAC; 1 used keyed BLAKE3). Versions 1 to 4 began with the magic
/// `MC`, so their first byte (`M`) is no version: they are malformed here.
pub const VERSION: u8 = 5;
/// Fixed header length.
pub const HEADER_LEN: usize = 16;
/// MAC length (a 128-bit tag: see `docs/wire-protocol.md`, "Packets").
pub const MAC_LEN: usize = 16;
/// Bytes a packet adds around its body (a symbol packet's body is the symbol).
pub const OVERHEAD: usize = HEADER_LEN + MAC_LEN;
/// Largest ESI (RFC 6330 ESIs are 24 bits; so is the header's field).
pub const MAX_ESI: u32 = (1 << 24) - 1;
/// Most blocks a session's image can have: block numbers, and a poll's
/// count of blocks, are 24 bits on the wire (16 TiB in 1 MiB chunks).
pub const MAX_BLOCKS: usize = (1 << 24) - 1;

/// Packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Multicast, sender to receivers: one encoding symbol of one block.
    Symbol = 1,
    /// Multicast, sender to receivers: status (first pass complete, asks for reports).
    Poll = 2,
    /// Unicast, receiver to sender: hello, needs per block, or done.
    Report = 3,
    /// Unicast, sender to one receiver: its done report was recorded.
    Ack = 4,
    /// Multicast, sender to receivers: the repair it will send per block,
    /// the status interval and the longest back-off ([`Plan`]).
    Plan = 5,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Symbol,
            2 => Kind::Poll,
            3 => Kind::Report,
            4 => Kind::Ack,
            5 => Kind::Plan,
            _ => return None,
        })
    }
}

/// Why a packet was rejected. Each is counted separately by the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Shorter than header + MAC, not our version (earlier versions included) or kind.
    #[error("malformed packet")]
    Malformed,
    /// Another session's packet (possibly a replay from an earlier session).
    #[error("packet of another session")]
    OtherSession,
    /// MAC does not verify: forged or corrupted.
    #[error("bad MAC")]
    BadMac,
    /// Authentic but semantically invalid (block out of range, wrong size...).
    #[error("invalid contents")]
    Invalid,
}

/// The fixed header, 16 bytes, integers little endian.
///
/// ```text
/// 0  version (5)   1  kind   2  session id (u32)   6  sequence number, low 32 bits (u32)
/// 10 a (u24): block for Symbol, total blocks for Poll, else 0
/// 13 esi (u24): the symbol's ESI for Symbol, else 0
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Packet type.
    pub kind: Kind,
    /// Session the packet belongs to.
    pub session: u32,
    /// Per-sender sequence number (gaps let receivers estimate loss). The
    /// wire carries its low 32 bits; a receiver extends them to the value
    /// nearest the highest it has seen, and the MAC covers all 64.
    pub seq: u64,
    /// Kind-specific word (24 bits on the wire): the block number for symbols.
    pub a: u32,
    /// The ESI of a symbol (24 bits on the wire); 0 for other kinds.
    pub esi: u32,
}

fn put_u24(out: &mut [u8], v: u32) {
    debug_assert!(v <= MAX_ESI, "{v} does not fit 24 bits");
    out.copy_from_slice(&v.to_le_bytes()[..3]);
}

fn u24(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], 0])
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`. `a`
    /// and `esi` must fit 24 bits (the sender keeps them there:
    /// [`MAX_BLOCKS`], [`MAX_ESI`]).
    pub fn write(&self, out: &mut [u8]) {
        out[0] = VERSION;
        out[1] = self.kind as u8;
        out[2..6].copy_from_slice(&self.session.to_le_bytes());
        out[6..10].copy_from_slice(&(self.seq as u32).to_le_bytes());
        put_u24(&mut out[10..13], self.a);
        put_u24(&mut out[13..16], self.esi);
    }

    /// Reads a header whose sequence number is extended next to `near`.
    fn read(b: &[u8], near: u64) -> Result<Header, Reject> {
        if b.len() < OVERHEAD || b[0] != VERSION {
            return Err(Reject::Malformed);
        }
        Ok(Header {
            kind: Kind::from_u8(b[1]).ok_or(Reject::Malformed)?,
            session: u32::from_le_bytes(b[2..6].try_into().expect("4 bytes")),
            seq: extend_seq(near, u32::from_le_bytes(b[6..10].try_into().expect("4 bytes"))),
            a: u24(&b[10..13]),
            esi: u24(&b[13..16]),
        })
    }
}

/// The 64-bit sequence number whose low 32 bits are `low`, nearest to `near`
/// (the highest the receiver has seen): packets up to 2^31 behind or ahead
/// of it are placed right, as RTP and QUIC extend theirs.
pub fn extend_seq(near: u64, low: u32) -> u64 {
    const SPAN: u64 = 1 << 32;
    let candidate = (near & !(SPAN - 1)) | u64::from(low);
    if candidate.saturating_add(SPAN / 2) < near && candidate <= u64::MAX - SPAN {
        candidate + SPAN
    } else if candidate > near.saturating_add(SPAN / 2) && candidate >= SPAN {
        candidate - SPAN
    } else {
        candidate
    }
}

/// The MAC of a packet with sequence number `seq` whose header and body are
/// `data`: the high 32 bits of `seq`, which the header leaves out, are
/// authenticated after `data` (as SRTP does with its rollover counter), so a
/// packet replayed 2^32 packets later does not verify.
fn mac(key: &SessionKey, seq: u64, data: &[u8]) -> [u8; MAC_LEN] {
    let mut m = key.mac();
    m.update(data);
    m.update(&((seq >> 32) as u32).to_le_bytes());
    m.finalize()
}

/// Appends the MAC over `buf[..]` (header and body already written, of a
/// packet with sequence number `seq`).
pub fn seal(key: &SessionKey, seq: u64, buf: &mut Vec<u8>) {
    let m = mac(key, seq, buf);
    buf.extend_from_slice(&m);
}

/// Seals a packet with sequence number `seq` in place: `buf` holds header
/// and body followed by [`MAC_LEN`] bytes of room for the MAC.
pub fn seal_in_place(key: &SessionKey, seq: u64, buf: &mut [u8]) {
    let n = buf.len() - MAC_LEN;
    let m = mac(key, seq, &buf[..n]);
    buf[n..].copy_from_slice(&m);
}

/// Checks a packet: framing, session and MAC (constant-time compare).
/// `near` is the highest sequence number the caller has taken (0 before the
/// first, and for unicast packets, which carry 0): the header's 32 bits are
/// extended next to it. Returns the header and the authenticated body.
pub fn open<'a>(key: &SessionKey, session: u32, near: u64, pkt: &'a [u8]) -> Result<(Header, &'a [u8]), Reject> {
    let h = Header::read(pkt, near)?;
    if h.session != session {
        return Err(Reject::OtherSession);
    }
    let (data, tag) = pkt.split_at(pkt.len() - MAC_LEN);
    let mut m = key.mac();
    m.update(data);
    m.update(&((h.seq >> 32) as u32).to_le_bytes());
    // Constant-time comparison inside aegis.
    m.verify(tag.try_into().expect("MAC_LEN bytes")).map_err(|_| Reject::BadMac)?;
    Ok((h, &data[HEADER_LEN..]))
}

/// Receiver state carried in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReportState {
    /// Joined, waiting for data.
    Hello = 0,
    /// Receiving; `needs` lists blocks it wants more symbols for.
    Receiving = 1,
    /// Every block decoded, verified and written.
    Done = 2,
    /// Gave up (see [`FailReason`]); `needs` is empty.
    Failed = 3,
}

impl ReportState {
    /// Where the state lies on a receiver's one-way path: hello, then
    /// receiving, then done or failed (both final). A sender never moves a
    /// receiver to a lower rank.
    pub fn rank(self) -> u8 {
        match self {
            ReportState::Hello => 0,
            ReportState::Receiving => 1,
            ReportState::Done | ReportState::Failed => 2,
        }
    }
}

/// Why a receiver failed (the byte after the state in a report; 0 in other states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum FailReason {
    /// Not failed, or no reason given.
    None = 0,
    /// Nothing that advanced the session arrived for its idle timeout.
    TimedOut = 1,
    /// A block decoded to a chunk that failed the manifest's hash again and
    /// again: the image being sent is corrupt.
    CorruptBlock = 2,
    /// Writing a verified chunk failed.
    WriteFailed = 3,
    /// Stopped by its owner (a signal).
    Cancelled = 4,
    /// Anything else.
    Other = 5,
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailReason::None => "none",
            FailReason::TimedOut => "timed-out",
            FailReason::CorruptBlock => "corrupt-block",
            FailReason::WriteFailed => "write-failed",
            FailReason::Cancelled => "cancelled",
            FailReason::Other => "other",
        })
    }
}

impl FailReason {
    fn from_u8(v: u8) -> Option<FailReason> {
        Some(match v {
            0 => FailReason::None,
            1 => FailReason::TimedOut,
            2 => FailReason::CorruptBlock,
            3 => FailReason::WriteFailed,
            4 => FailReason::Cancelled,
            5 => FailReason::Other,
            _ => return None,
        })
    }
}

/// A receiver's report (unicast to the sender).
///
/// Body: receiver id u64, counter u64, state u8, fail reason u8, need count
/// u16, blocks done u32, packets received u64, packets rejected u64, highest
/// sequence number processed u64, then per need: block u32, symbols wanted u32.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Stable receiver identity.
    pub receiver: u64,
    /// Freshness: strictly increasing over a receiver's reports (it starts at
    /// the receiver's clock in microseconds since the Unix epoch). Under the
    /// MAC with the identity, so a sender takes a report only if its counter
    /// is above the last one it took from that receiver: a replayed report is
    /// stale.
    pub counter: u64,
    /// What the receiver is doing.
    pub state: ReportState,
    /// Why it failed ([`ReportState::Failed`] only; else [`FailReason::None`]).
    pub reason: FailReason,
    /// Blocks decoded and written so far.
    pub blocks_done: u32,
    /// Authentic packets received (in need reports, counting those a fast
    /// path dropped on purpose: the sender's rate control compares it with
    /// `max_seq`).
    pub received: u64,
    /// Packets rejected (malformed, other session, bad MAC, invalid).
    pub rejected: u64,
    /// Highest sender sequence number processed before this report: needs
    /// are only current for bursts that ended before it.
    pub max_seq: u64,
    /// `(block, symbols wanted)`, lowest blocks first.
    pub needs: Vec<(u32, u32)>,
}

/// Most needs one report can carry while staying under 1400 bytes.
pub const MAX_NEEDS_PER_REPORT: usize = 160;
const REPORT_FIXED: usize = 8 + 8 + 1 + 1 + 2 + 4 + 8 + 8 + 8;

impl Report {
    /// Encodes the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.receiver.to_le_bytes());
        out.extend_from_slice(&self.counter.to_le_bytes());
        out.push(self.state as u8);
        out.push(self.reason as u8);
        let n = self.needs.len().min(MAX_NEEDS_PER_REPORT);
        out.extend_from_slice(&(n as u16).to_le_bytes());
        out.extend_from_slice(&self.blocks_done.to_le_bytes());
        out.extend_from_slice(&self.received.to_le_bytes());
        out.extend_from_slice(&self.rejected.to_le_bytes());
        out.extend_from_slice(&self.max_seq.to_le_bytes());
        for &(b, k) in &self.needs[..n] {
            out.extend_from_slice(&b.to_le_bytes());
            out.extend_from_slice(&k.to_le_bytes());
        }
    }

    /// Decodes a body (already authenticated).
    pub fn decode(b: &[u8]) -> Result<Report, Reject> {
        if b.len() < REPORT_FIXED {
            return Err(Reject::Invalid);
        }
        let u32at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let state = match b[16] {
            0 => ReportState::Hello,
            1 => ReportState::Receiving,
            2 => ReportState::Done,
            3 => ReportState::Failed,
            _ => return Err(Reject::Invalid),
        };
        let reason = FailReason::from_u8(b[17]).ok_or(Reject::Invalid)?;
        let n = u16::from_le_bytes([b[18], b[19]]) as usize;
        if n > MAX_NEEDS_PER_REPORT || b.len() != REPORT_FIXED + 8 * n {
            return Err(Reject::Invalid);
        }
        let needs = (0..n).map(|i| (u32at(REPORT_FIXED + 8 * i), u32at(REPORT_FIXED + 8 * i + 4))).collect();
        Ok(Report {
            receiver: u64at(0),
            counter: u64at(8),
            state,
            reason,
            blocks_done: u32at(20),
            received: u64at(24),
            rejected: u64at(32),
            max_seq: u64at(40),
            needs,
        })
    }
}

/// Body of a [`Kind::Poll`] packet: blocks whose first pass is sent (u32),
/// and, from a sender that resumed the session ([`crate::Resume`]), its
/// report address (IPv4 u32 in network order, port u16) and epoch (u16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poll {
    /// Blocks whose first pass is sent.
    pub pass_blocks: u32,
    /// A resumed sender's report address and epoch.
    pub moved: Option<(std::net::SocketAddrV4, u16)>,
}

/// Length of a poll body without and with the resumed sender's address.
const POLL_LEN: usize = 4;
const POLL_MOVED_LEN: usize = 12;

impl Poll {
    /// Decodes a body (already authenticated).
    pub fn decode(b: &[u8]) -> Result<Poll, Reject> {
        if b.len() != POLL_LEN && b.len() != POLL_MOVED_LEN {
            return Err(Reject::Invalid);
        }
        let pass_blocks = u32::from_le_bytes(b[0..4].try_into().expect("4 bytes"));
        let moved = (b.len() == POLL_MOVED_LEN).then(|| {
            let ip = std::net::Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            let port = u16::from_le_bytes([b[8], b[9]]);
            (std::net::SocketAddrV4::new(ip, port), u16::from_le_bytes([b[10], b[11]]))
        });
        match moved {
            Some((a, epoch)) if a.ip().is_unspecified() || a.port() == 0 || epoch == 0 => Err(Reject::Invalid),
            _ => Ok(Poll { pass_blocks, moved }),
        }
    }
}

/// Appends a resumed sender's report address and epoch to a poll body.
pub fn encode_moved(body: &mut Vec<u8>, addr: std::net::SocketAddrV4, epoch: u32) {
    body.extend_from_slice(&addr.ip().octets());
    body.extend_from_slice(&addr.port().to_le_bytes());
    body.extend_from_slice(&(epoch.min(u32::from(u16::MAX)) as u16).to_le_bytes());
}

/// One block's entry in a [`Plan`]: the sender will send the repair symbols
/// with ESIs `first..first + count` for `block`, in one burst (consecutive
/// sequence numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanEntry {
    /// Block number.
    pub block: u32,
    /// First ESI of the burst.
    pub first: u32,
    /// Symbols in the burst.
    pub count: u32,
}

/// Body of a [`Kind::Plan`] packet (multicast, sender to receivers):
/// status interval (ms) u16, longest back-off (us) u16, entry count u16,
/// reserved u16 (0), then per entry: block u32, first ESI u32, count u32.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// How often each receiver sends a status report, milliseconds.
    pub status_ms: u16,
    /// Longest back-off before a receiver asks for what the plan does not cover, microseconds.
    pub backoff_us: u16,
    /// The repair planned, per block.
    pub entries: Vec<PlanEntry>,
}

/// Most entries one plan carries (under 1400 bytes).
pub const MAX_PLAN_ENTRIES: usize = 100;
const PLAN_FIXED: usize = 8;

impl Plan {
    /// Encodes the body (at most [`MAX_PLAN_ENTRIES`] entries).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let n = self.entries.len().min(MAX_PLAN_ENTRIES);
        out.extend_from_slice(&self.status_ms.to_le_bytes());
        out.extend_from_slice(&self.backoff_us.to_le_bytes());
        out.extend_from_slice(&(n as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        for e in &self.entries[..n] {
            out.extend_from_slice(&e.block.to_le_bytes());
            out.extend_from_slice(&e.first.to_le_bytes());
            out.extend_from_slice(&e.count.to_le_bytes());
        }
    }

    /// Decodes a body (already authenticated).
    pub fn decode(b: &[u8]) -> Result<Plan, Reject> {
        if b.len() < PLAN_FIXED {
            return Err(Reject::Invalid);
        }
        let u16at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let n = usize::from(u16at(4));
        if n > MAX_PLAN_ENTRIES || b.len() != PLAN_FIXED + 12 * n || u16at(6) != 0 || u16at(0) == 0 {
            return Err(Reject::Invalid);
        }
        let entries = (0..n)
            .map(|i| {
                let o = PLAN_FIXED + 12 * i;
                PlanEntry { block: u32at(o), first: u32at(o + 4), count: u32at(o + 8) }
            })
            .collect();
        Ok(Plan { status_ms: u16at(0), backoff_us: u16at(2), entries })
    }
}

/// Builds a complete sealed packet of `kind` with `body` (ESI 0; symbols:
/// [`build_symbol`]).
pub fn build(key: &SessionKey, kind: Kind, session: u32, seq: u64, a: u32, body: &[u8]) -> Vec<u8> {
    build_header(key, Header { kind, session, seq, a, esi: 0 }, body)
}

/// Builds a complete sealed symbol packet: symbol `esi` of `block`. (The
/// sender writes its symbols in place, into its send batches.)
pub fn build_symbol(key: &SessionKey, session: u32, seq: u64, block: u32, esi: u32, sym: &[u8]) -> Vec<u8> {
    build_header(key, Header { kind: Kind::Symbol, session, seq, a: block, esi }, sym)
}

fn build_header(key: &SessionKey, h: Header, body: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(OVERHEAD + body.len());
    buf.resize(HEADER_LEN, 0);
    h.write(&mut buf);
    buf.extend_from_slice(body);
    seal(key, h.seq, &mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SessionKey {
        SessionKey::from_bytes([b; 32])
    }

    fn symbol(k: &SessionKey, session: u32, seq: u64, block: u32, esi: u32, sym: &[u8]) -> Vec<u8> {
        let p = build_symbol(k, session, seq, block, esi, sym);
        let mut q = vec![0u8; HEADER_LEN];
        Header { kind: Kind::Symbol, session, seq, a: block, esi }.write(&mut q);
        q.extend_from_slice(sym);
        q.resize(q.len() + MAC_LEN, 0);
        seal_in_place(k, seq, &mut q);
        assert_eq!(p, q, "sealed in place as built");
        p
    }

    #[test]
    fn polls_with_and_without_a_moved_sender() {
        let plain = 17u32.to_le_bytes();
        assert_eq!(Poll::decode(&plain), Ok(Poll { pass_blocks: 17, moved: None }));
        let mut body = plain.to_vec();
        let to = std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(10, 1, 2, 3), 40_001);
        encode_moved(&mut body, to, 2);
        assert_eq!(Poll::decode(&body), Ok(Poll { pass_blocks: 17, moved: Some((to, 2)) }));
        // Any other length, an unspecified address, port 0 or epoch 0: invalid.
        assert_eq!(Poll::decode(&body[..11]), Err(Reject::Invalid));
        assert_eq!(Poll::decode(&[body.clone(), vec![0]].concat()), Err(Reject::Invalid));
        for bad in [
            (std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 1), 1),
            (std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0), 1),
            (to, 0),
        ] {
            let mut b = plain.to_vec();
            encode_moved(&mut b, bad.0, bad.1);
            assert_eq!(Poll::decode(&b), Err(Reject::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn seal_open_round_trip_and_rejections() {
        let p = symbol(&key(1), 42, 7, 3, 9, &[1, 2, 3]);
        assert_eq!(p.len(), OVERHEAD + 3);
        let (h, body) = open(&key(1), 42, 0, &p).unwrap();
        assert_eq!(h, Header { kind: Kind::Symbol, session: 42, seq: 7, a: 3, esi: 9 });
        assert_eq!(body, &[1u8, 2, 3][..]);
        assert_eq!(open(&key(2), 42, 0, &p), Err(Reject::BadMac));
        assert_eq!(open(&key(1), 43, 0, &p), Err(Reject::OtherSession));
        assert_eq!(open(&key(1), 42, 0, &p[..OVERHEAD - 1]), Err(Reject::Malformed));
        for i in 0..p.len() {
            let mut q = p.clone();
            q[i] ^= 0x10;
            assert!(open(&key(1), 42, 0, &q).is_err(), "flip at {i} accepted");
        }
        // The largest block and ESI the 24-bit fields carry.
        let p = symbol(&key(1), u32::MAX, 1, MAX_ESI, MAX_ESI, &[]);
        let (h, _) = open(&key(1), u32::MAX, 0, &p).unwrap();
        assert_eq!((h.a, h.esi), (MAX_ESI, MAX_ESI));
        assert_eq!(MAX_BLOCKS as u32, MAX_ESI, "a poll's block count fits too");
    }

    #[test]
    fn header_layout_is_as_documented() {
        let mut b = [0u8; HEADER_LEN];
        Header { kind: Kind::Poll, session: 0x0403_0201, seq: 0x1_0807_0605, a: 0x0b_0a09, esi: 0x0e_0d0c }
            .write(&mut b);
        assert_eq!(b, [5, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    }

    /// A version 4 packet (`MC`, version 4, kind, u64 session, u64 sequence
    /// number, u32 block, then the ESI) is malformed to a version 5 peer,
    /// whatever its MAC; so is one of a version to come.
    #[test]
    fn other_versions_are_malformed() {
        let mut v4 = b"MC".to_vec();
        v4.extend([4, 1]);
        v4.extend(42u64.to_le_bytes());
        v4.extend(7u64.to_le_bytes());
        v4.extend(3u32.to_le_bytes());
        v4.extend(9u32.to_le_bytes());
        v4.extend([0xAB; 1424]);
        v4.extend([0; 16]);
        assert_eq!(open(&key(1), 42, 0, &v4), Err(Reject::Malformed));
        let mut v6 = symbol(&key(1), 42, 7, 3, 9, &[1, 2, 3]);
        v6[0] = VERSION + 1;
        assert_eq!(open(&key(1), 42, 0, &v6), Err(Reject::Malformed));
        let mut bad_kind = symbol(&key(1), 42, 7, 3, 9, &[1, 2, 3]);
        bad_kind[1] = 9;
        assert_eq!(open(&key(1), 42, 0, &bad_kind), Err(Reject::Malformed));
    }

    /// Arbitrary bytes, at every length around the header's, with the
    /// version byte right or wrong: rejected, never a panic, never accepted.
    #[test]
    fn arbitrary_bytes_are_rejected() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut counts = [0usize; 4];
        for i in 0..20_000usize {
            let len = i % 80;
            let mut p: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if len > 2 && i % 2 == 0 {
                p[0] = VERSION;
                p[1] = 1 + (i % 5) as u8;
                p[2..6.min(len)].copy_from_slice(&42u32.to_le_bytes()[..4.min(len - 2)]);
            }
            let r = open(&key(1), 42, x, &p).expect_err("random bytes accepted");
            counts[r as usize] += 1;
        }
        // Short or foreign packets are malformed; well-framed ones of this session fail the MAC.
        assert!(counts[Reject::Malformed as usize] > 0 && counts[Reject::BadMac as usize] > 0, "{counts:?}");
    }

    #[test]
    fn sequence_numbers_extend_next_to_the_highest_seen() {
        const S: u64 = 1 << 32;
        assert_eq!(extend_seq(0, 0), 0);
        assert_eq!(extend_seq(0, 5), 5);
        assert_eq!(extend_seq(100, 90), 90, "a little behind");
        assert_eq!(extend_seq(S - 10, 5), S + 5, "just past a wrap");
        assert_eq!(extend_seq(S + 5, (S - 10) as u32), S - 10, "reordered across a wrap");
        assert_eq!(extend_seq(3 * S + 7, 7), 3 * S + 7);
        assert_eq!(extend_seq(3 * S, (S / 2 - 1) as u32), 3 * S + S / 2 - 1, "up to 2^31 ahead");
        assert_eq!(extend_seq(3 * S, (S / 2 + 1) as u32), 2 * S + S / 2 + 1, "more than 2^31 ahead is behind");
        assert_eq!(extend_seq(5, u32::MAX), u64::from(u32::MAX), "no wrap below zero");
        assert_eq!(extend_seq(u64::MAX, 0), u64::MAX - (S - 1), "no wrap past the top");
    }

    /// The MAC covers the sequence number's high bits, which the header does
    /// not carry: a packet replayed 2^32 packets later, whose low bits read
    /// as new, fails the MAC instead of passing for a new one.
    #[test]
    fn the_mac_binds_the_whole_sequence_number() {
        const S: u64 = 1 << 32;
        let late = symbol(&key(1), 42, S + 3, 3, 9, &[1, 2, 3]);
        assert_eq!(open(&key(1), 42, S, &late).unwrap().0.seq, S + 3);
        assert_eq!(open(&key(1), 42, 0, &late), Err(Reject::BadMac), "read as seq 3, it fails");
        let early = symbol(&key(1), 42, 3, 3, 9, &[1, 2, 3]);
        assert_eq!(open(&key(1), 42, 0, &early).unwrap().0.seq, 3);
        assert_eq!(open(&key(1), 42, S, &early), Err(Reject::BadMac), "a replay 2^32 packets on");
        let unicast = build(&key(1), Kind::Report, 42, 0, 0, &[1]);
        assert_eq!(open(&key(1), 42, 0, &unicast).unwrap().0.kind, Kind::Report);
    }

    #[test]
    fn report_round_trip_and_bounds() {
        let r = Report {
            receiver: 5,
            counter: 1 << 40,
            state: ReportState::Receiving,
            reason: FailReason::None,
            blocks_done: 3,
            received: 100,
            rejected: 2,
            max_seq: 99,
            needs: vec![(1, 10), (4, 700)],
        };
        let mut b = Vec::new();
        r.encode(&mut b);
        assert_eq!(Report::decode(&b).unwrap(), r);
        assert_eq!(Report::decode(&b[..b.len() - 1]), Err(Reject::Invalid));
        let mut bad = b.clone();
        bad[16] = 9;
        assert_eq!(Report::decode(&bad), Err(Reject::Invalid));
        let mut bad = b.clone();
        bad[17] = 200;
        assert_eq!(Report::decode(&bad), Err(Reject::Invalid));
        let failed =
            Report { state: ReportState::Failed, reason: FailReason::CorruptBlock, needs: vec![], ..r.clone() };
        let mut f = Vec::new();
        failed.encode(&mut f);
        assert_eq!(Report::decode(&f).unwrap(), failed);
        let big = Report { needs: (0..1000).map(|i| (i, 1)).collect(), ..r };
        let mut b = Vec::new();
        big.encode(&mut b);
        assert_eq!(Report::decode(&b).unwrap().needs.len(), MAX_NEEDS_PER_REPORT);
        assert!(b.len() + OVERHEAD <= 1400);
    }

    #[test]
    fn plan_round_trip_and_bounds() {
        let p = Plan {
            status_ms: 20,
            backoff_us: 2000,
            entries: vec![PlanEntry { block: 3, first: 800, count: 12 }, PlanEntry { block: 4, first: 737, count: 1 }],
        };
        let mut b = Vec::new();
        p.encode(&mut b);
        assert_eq!(Plan::decode(&b).unwrap(), p);
        assert_eq!(Plan::decode(&b[..b.len() - 1]), Err(Reject::Invalid));
        let mut bad = b.clone();
        bad[6] = 1;
        assert_eq!(Plan::decode(&bad), Err(Reject::Invalid), "reserved bytes must be zero");
        let mut bad = b.clone();
        bad[0..2].copy_from_slice(&[0, 0]);
        assert_eq!(Plan::decode(&bad), Err(Reject::Invalid), "a status interval of 0");
        let big = Plan { entries: vec![p.entries[0]; 500], ..p };
        let mut b = Vec::new();
        big.encode(&mut b);
        assert_eq!(Plan::decode(&b).unwrap().entries.len(), MAX_PLAN_ENTRIES);
        assert!(b.len() + OVERHEAD + 28 <= 1400);
    }
}
