//! Packet formats and their authentication (see `docs/wire-protocol.md`).
//!
//! Every packet, multicast or unicast, is
//! `header (24 bytes) | body | MAC (16 bytes)`, where the MAC is AEGIS-128L
//! (used as a MAC, 128-bit tag) over header and body, under a key derived
//! from the session key.
//! Nothing in a packet is looked at beyond the fixed header before the MAC
//! has been checked.

use crate::key::SessionKey;

/// First two bytes of every packet.
pub const MAGIC: [u8; 2] = *b"MC";
/// Wire protocol version (4: the sender announces repair plans and the
/// status interval in plan packets, and receivers whose needs a plan covers
/// stay silent; 3: reports carry a freshness counter and a failure reason;
/// 2 introduced the AEGIS-128L packet MAC; 1 used keyed BLAKE3).
pub const VERSION: u8 = 4;
/// Fixed header length.
pub const HEADER_LEN: usize = 24;
/// MAC length.
pub const MAC_LEN: usize = 16;
/// Bytes a packet adds around its body.
pub const OVERHEAD: usize = HEADER_LEN + MAC_LEN;
/// Largest ESI (RFC 6330 ESIs are 24 bits).
pub const MAX_ESI: u32 = (1 << 24) - 1;

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
    /// Shorter than header + MAC, or not our magic/version.
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

/// The fixed header.
///
/// ```text
/// 0  magic "MC"   2  version   3  kind   4  session id (u64 LE)
/// 12 sequence number (u64 LE)  20 a (u32 LE): block for Symbol, else kind-specific
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Packet type.
    pub kind: Kind,
    /// Session the packet belongs to.
    pub session: u64,
    /// Per-sender sequence number (gaps let receivers estimate loss).
    pub seq: u64,
    /// Kind-specific word: the block number for symbols.
    pub a: u32,
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`.
    pub fn write(&self, out: &mut [u8]) {
        out[0..2].copy_from_slice(&MAGIC);
        out[2] = VERSION;
        out[3] = self.kind as u8;
        out[4..12].copy_from_slice(&self.session.to_le_bytes());
        out[12..20].copy_from_slice(&self.seq.to_le_bytes());
        out[20..24].copy_from_slice(&self.a.to_le_bytes());
    }

    fn read(b: &[u8]) -> Result<Header, Reject> {
        if b.len() < OVERHEAD || b[0..2] != MAGIC || b[2] != VERSION {
            return Err(Reject::Malformed);
        }
        Ok(Header {
            kind: Kind::from_u8(b[3]).ok_or(Reject::Malformed)?,
            session: u64::from_le_bytes(b[4..12].try_into().expect("8 bytes")),
            seq: u64::from_le_bytes(b[12..20].try_into().expect("8 bytes")),
            a: u32::from_le_bytes(b[20..24].try_into().expect("4 bytes")),
        })
    }
}

fn mac(key: &SessionKey, data: &[u8]) -> [u8; MAC_LEN] {
    let mut m = key.mac();
    m.update(data);
    m.finalize()
}

/// Appends the MAC over `buf[..]` (header and body already written).
pub fn seal(key: &SessionKey, buf: &mut Vec<u8>) {
    let m = mac(key, buf);
    buf.extend_from_slice(&m);
}

/// Seals a packet in place: `buf` holds header and body followed by
/// [`MAC_LEN`] bytes of room for the MAC.
pub fn seal_in_place(key: &SessionKey, buf: &mut [u8]) {
    let n = buf.len() - MAC_LEN;
    let m = mac(key, &buf[..n]);
    buf[n..].copy_from_slice(&m);
}

/// Checks a packet: framing, session and MAC (constant-time compare).
/// Returns the header and the authenticated body.
pub fn open<'a>(key: &SessionKey, session: u64, pkt: &'a [u8]) -> Result<(Header, &'a [u8]), Reject> {
    let h = Header::read(pkt)?;
    if h.session != session {
        return Err(Reject::OtherSession);
    }
    let (data, tag) = pkt.split_at(pkt.len() - MAC_LEN);
    let mut m = key.mac();
    m.update(data);
    // Constant-time comparison inside aegis.
    m.verify(tag.try_into().expect("MAC_LEN bytes")).map_err(|_| Reject::BadMac)?;
    Ok((h, &data[HEADER_LEN..]))
}

/// Body of a [`Kind::Symbol`] packet: the ESI then the symbol bytes.
/// (The block number travels in the header's `a` word.)
pub fn symbol_body(body: &[u8]) -> Result<(u32, &[u8]), Reject> {
    if body.len() < 4 {
        return Err(Reject::Invalid);
    }
    let esi = u32::from_le_bytes(body[..4].try_into().expect("4 bytes"));
    if esi > MAX_ESI {
        return Err(Reject::Invalid);
    }
    Ok((esi, &body[4..]))
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

/// Builds a complete sealed packet of `kind` with `body`.
pub fn build(key: &SessionKey, kind: Kind, session: u64, seq: u64, a: u32, body: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; HEADER_LEN];
    Header { kind, session, seq, a }.write(&mut buf);
    buf.extend_from_slice(body);
    seal(key, &mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SessionKey {
        SessionKey::from_bytes([b; 32])
    }

    #[test]
    fn seal_open_round_trip_and_rejections() {
        let p = build(&key(1), Kind::Symbol, 42, 7, 3, &[9, 0, 0, 0, 1, 2, 3]);
        let (h, body) = open(&key(1), 42, &p).unwrap();
        assert_eq!((h.kind, h.seq, h.a), (Kind::Symbol, 7, 3));
        assert_eq!(symbol_body(body).unwrap(), (9, &[1u8, 2, 3][..]));
        assert_eq!(open(&key(2), 42, &p), Err(Reject::BadMac));
        assert_eq!(open(&key(1), 43, &p), Err(Reject::OtherSession));
        assert_eq!(open(&key(1), 42, &p[..20]), Err(Reject::Malformed));
        for i in 0..p.len() {
            let mut q = p.clone();
            q[i] ^= 0x10;
            assert!(open(&key(1), 42, &q).is_err(), "flip at {i} accepted");
        }
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
