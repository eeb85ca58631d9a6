//! The sender: streams every block's source symbols once (the first pass),
//! then answers receivers' per-block deficits with fresh repair symbols,
//! sized for the neediest receiver, until every expected receiver is done.
//! Lossy outliers' and late joiners' large deficits wait until the first
//! pass is over, and then for the others' (see [`crate::outlier`]).
//! A thread checks every chunk against the manifest ahead of the first pass:
//! a corrupt image is refused, never sent.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use metalcast_image::{Bundle, BundleError, Manifest};
use raptorq::{SourceBlockEncoder, SourceBlockEncodingPlan};

use crate::erasure::{FewErasures, MAX_DIRECT_REPAIRS};
use crate::error::TransportError;
use crate::feedback;
use crate::layout::Layout;
use crate::outlier::{self, LossMeter, OutlierKind};
use crate::packet::{self, FailReason, Kind, MAX_ESI, OVERHEAD, Reject, Report, ReportState};
use crate::rate::{RateControl, RxLoss};
use crate::session::SessionSpec;
use crate::sys;

/// Sender tuning. Defaults suit a LAN; every field is documented with its default.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Local interface address to send from (default 0.0.0.0: the routing table decides).
    pub local: Ipv4Addr,
    /// Cap on UDP payload bytes per second (default none). With `adaptive`
    /// the rate moves below it; without, it is the fixed rate (none: as fast
    /// as the host can).
    pub rate: Option<u64>,
    /// Adapt the rate to the receivers' reported loss (default true): start
    /// at `start_rate`, grow while no receiver loses more than usual for it,
    /// cut when one does (`docs/wire-protocol.md`, "Rate").
    pub adaptive: bool,
    /// Where the adaptive rate starts, UDP payload bytes per second (default
    /// 100 MB/s = 800 Mbit/s, at most `rate`); it never drops below a quarter of it.
    pub start_rate: u64,
    /// Receivers that must report done before the session ends (default 1).
    pub expected_receivers: usize,
    /// How long to wait for `expected_receivers` hellos before the first pass starts anyway (default 10 s).
    pub join_timeout: Duration,
    /// A receiver silent this long is declared failed and no longer waited for (default 10 s).
    pub receiver_timeout: Duration,
    /// Hard limit on the whole session (default none).
    pub deadline: Option<Duration>,
    /// After the first need for a block arrives, wait this long for other receivers' needs
    /// so that one burst serves them all (default 6 ms).
    pub gather: Duration,
    /// Interval of multicast polls once the first pass is over (default 50 ms).
    pub poll_interval: Duration,
    /// Send with UDP GSO, one system call per ~64 KB (default true; falls back when unsupported).
    pub gso: bool,
    /// Let lossy outliers and late joiners wait (default true): their needs
    /// above what a healthy receiver asks are served after the first pass,
    /// and only when no other receiver's need is due, so they do not slow
    /// the others (`docs/wire-protocol.md`, "Outliers and late joiners").
    /// Off: every need is served at once, sized for the neediest receiver.
    pub outliers_wait: bool,
    /// Announce repair plans (default true): the repair each block will get
    /// and the status interval, in plan packets, so that receivers whose
    /// needs a plan covers stay silent and the others ask after a back-off
    /// (`docs/wire-protocol.md`, "Feedback"). Off: no plans, and receivers
    /// report every `ReceiverConfig::report_interval`, as in wire version 3.
    pub plans: bool,
    /// Set to stop the session early (checked every loop turn; `run` then
    /// returns [`TransportError::Cancelled`]). Default none.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Take over a session an earlier sender left unfinished (it died or
    /// was stopped), instead of starting it (default none): see [`Resume`].
    pub resume: Option<Resume>,
}

/// How a sender takes over a session another sender of the same
/// [`SessionSpec`] (group, port, session id, key) left unfinished. The
/// receivers keep every block they wrote and everything they hold of the
/// blocks in flight, so the new sender must not look like a replay, must not
/// repeat a symbol they may hold, and should not send again what they have
/// (`docs/wire-protocol.md`, "Resuming a session"):
///
/// - its sequence numbers start at `seq_start`, above every sequence number
///   the earlier senders used and within 2^31 of the highest a receiver took
///   (the caller persists the earlier sender's [`SenderProgress::seq`] and
///   adds an upper bound for what it can have sent since);
/// - its repair symbols' ESIs start `epoch` × [`ESI_EPOCH_STRIDE`] above
///   the first repair ESI, so no two epochs share one;
/// - its polls carry its report address and the epoch, so receivers whose
///   reports went to the earlier sender send them to this one (its control
///   socket may be on another host, or on another port of the same one
///   while a stopped earlier sender still holds the first);
/// - after the join phase its first pass starts at the fewest blocks done
///   that a receiver reports; blocks below it that a receiver still lacks
///   are closed, asked for and repaired like a late joiner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// Takeover count: 1 for the first takeover, at most [`MAX_EPOCH`].
    pub epoch: u32,
    /// First sequence number.
    pub seq_start: u64,
}

/// ESIs between the repair symbols of consecutive epochs: more repair
/// symbols than a block ever gets in one epoch.
pub const ESI_EPOCH_STRIDE: u32 = 1 << 20;
/// Most takeovers of one session (the ESI space is 2^24).
pub const MAX_EPOCH: u32 = 15;

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            local: Ipv4Addr::UNSPECIFIED,
            rate: None,
            adaptive: true,
            start_rate: 100_000_000,
            expected_receivers: 1,
            join_timeout: Duration::from_secs(10),
            receiver_timeout: Duration::from_secs(10),
            deadline: None,
            gather: Duration::from_millis(6),
            poll_interval: Duration::from_millis(50),
            gso: true,
            outliers_wait: true,
            plans: true,
            cancel: None,
            resume: None,
        }
    }
}

/// What the sender knows about one receiver.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReceiverStatus {
    /// Receiver id.
    pub id: u64,
    /// Address its reports come from.
    pub addr: String,
    /// Last reported state, or "timed-out".
    pub state: String,
    /// Blocks it has written.
    pub blocks_done: u32,
    /// Authentic packets it received.
    pub received: u64,
    /// Packets it rejected.
    pub rejected: u64,
    /// Seconds from the first pass start to its done report.
    pub done_secs: Option<f64>,
    /// Why it failed, if it reported failure.
    pub failure: Option<FailReason>,
    /// Its loss as the sender measures it from its reports (once they cover
    /// a few thousand packets).
    pub loss: Option<f64>,
    /// Reports taken from it (fresh and authentic).
    pub reports: u64,
    /// Set if the sender classed it as a lossy outlier or a late joiner: its
    /// large needs waited for the end of the first pass (while such receivers
    /// were a minority, and unless `SenderConfig::outliers_wait` was off).
    pub outlier: Option<OutlierKind>,
}

/// A snapshot for progress displays.
#[derive(Debug, Clone)]
pub struct SenderProgress {
    /// Blocks whose first pass is sent.
    pub pass_blocks: usize,
    /// Total blocks.
    pub total_blocks: usize,
    /// Receivers known so far.
    pub receivers: Vec<ReceiverStatus>,
    /// UDP payload bytes sent so far.
    pub bytes_sent: u64,
    /// The next sequence number: persisted, it lets a later sender resume
    /// the session above every packet of this one ([`Resume::seq_start`]).
    pub seq: u64,
}

/// The outcome of a session.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SenderSummary {
    /// Session id.
    pub session_id: u32,
    /// Seconds from first pass start to the last receiver done.
    pub secs: f64,
    /// Stored (compressed) bytes of the image: what had to be delivered.
    pub image_bytes: u64,
    /// UDP payload bytes sent (headers, MACs and padding included).
    pub wire_bytes: u64,
    /// `wire_bytes / image_bytes`.
    pub wire_ratio: f64,
    /// Source symbols sent.
    pub source_packets: u64,
    /// Repair symbols sent.
    pub repair_packets: u64,
    /// Repair bursts sent.
    pub bursts: u64,
    /// Control packets (reports) that reached the sender, rejected ones included.
    pub report_packets: u64,
    /// Plan packets sent (see `SenderConfig::plans`).
    pub plan_packets: u64,
    /// Control packets dropped: the total of `rejected_by_reason`.
    pub rejected_reports: u64,
    /// Control packets dropped, by reason.
    pub rejected_by_reason: RejectedReports,
    /// Highest send rate reached, UDP payload bytes per second (None: unpaced).
    pub peak_rate: Option<f64>,
    /// Send rate at the end of the first pass (None: unpaced).
    pub pass_rate: Option<f64>,
    /// Seconds from first pass start to its end (every source symbol sent once);
    /// the rest of `secs` is the repair tail.
    pub pass_secs: f64,
    /// Times the adaptive rate was cut for loss.
    pub rate_cuts: u64,
    /// Receivers whose large needs were made to wait (lossy outliers and
    /// late joiners; each is marked in `receivers`).
    pub outliers: u64,
    /// Repair symbols sent for needs that waited: what the outliers cost on
    /// the wire beyond the others' repair.
    pub outlier_repair_packets: u64,
    /// Per receiver.
    pub receivers: Vec<ReceiverStatus>,
}

/// Control packets the sender dropped, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RejectedReports {
    /// Too short, wrong magic, version or kind.
    pub malformed: u64,
    /// Another session's packet.
    pub other_session: u64,
    /// MAC did not verify (forged or corrupted).
    pub bad_mac: u64,
    /// Authentic but not a valid report.
    pub invalid: u64,
    /// Authentic, but not newer than the last report taken from its receiver
    /// (its counter is not above that report's), or one that would move the
    /// receiver's state back: a replay.
    pub stale: u64,
}

impl RejectedReports {
    /// All rejections.
    pub fn total(&self) -> u64 {
        self.malformed + self.other_session + self.bad_mac + self.invalid + self.stale
    }

    fn count(&mut self, r: Reject) {
        match r {
            Reject::Malformed => self.malformed += 1,
            Reject::OtherSession => self.other_session += 1,
            Reject::BadMac => self.bad_mac += 1,
            Reject::Invalid => self.invalid += 1,
        }
    }
}

impl SenderSummary {
    /// Receivers that finished.
    pub fn done(&self) -> usize {
        self.receivers.iter().filter(|r| r.state == "done").count()
    }

    /// The receivers whose large needs were made to wait.
    pub fn outlier_receivers(&self) -> impl Iterator<Item = &ReceiverStatus> {
        self.receivers.iter().filter(|r| r.outlier.is_some())
    }
}

struct Rx {
    addr: SocketAddr,
    last_seen: Instant,
    report: Report,
    done_at: Option<Instant>,
    timed_out: bool,
    loss: RxLoss,
    /// Its loss since its first report while receiving (for the outlier policy).
    meter: LossMeter,
    outlier: Option<OutlierKind>,
    /// Reports taken from it.
    reports: u64,
}

struct TokenBucket {
    rate: f64,
    tokens: f64,
    burst: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u64, burst: u64) -> Self {
        TokenBucket { rate: rate as f64, tokens: burst as f64, burst: burst as f64, last: Instant::now() }
    }

    /// Takes `n` bytes, sleeping until they are available.
    fn take(&mut self, n: usize) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        self.tokens -= n as f64;
        if self.tokens < 0.0 {
            std::thread::sleep(Duration::from_secs_f64(-self.tokens / self.rate));
        }
    }
}

/// What a [`Sender`] sends from: an image's manifest and its stored
/// (compressed) chunk bytes, addressed like a bundle's data section (a stored
/// chunk's bytes at its manifest `offset`). A bundle file is one; the node
/// runtime's copy of an image it received (seed mode) is another.
pub trait StoredImage {
    /// The image's validated manifest.
    fn manifest(&self) -> &Manifest;

    /// Reads the data-section range `[offset, offset + buf.len())`; the sender
    /// only asks for whole stored chunks.
    fn read_data(&self, offset: u64, buf: &mut [u8]) -> Result<(), BundleError>;
}

impl StoredImage for Bundle {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn read_data(&self, offset: u64, buf: &mut [u8]) -> Result<(), BundleError> {
        Bundle::read_data(self, offset, buf)
    }
}

/// A multicast sender for one image and one session.
pub struct Sender<'a> {
    spec: &'a SessionSpec,
    bundle: &'a (dyn StoredImage + Sync),
    layout: Layout,
    cfg: SenderConfig,
    data: UdpSocket,
    control: UdpSocket,
    /// Where the control socket is bound (`spec.sender`, with the port the
    /// kernel chose if that was 0): a resuming sender announces it.
    control_addr: SocketAddrV4,
    seq: u64,
    gso_batch: usize,
    encoders: VecDeque<(usize, SourceBlockEncoder)>,
    block_buf: Vec<u8>,
    /// A burst of direct repair symbols (reused).
    repair_buf: Vec<u8>,
    out: Vec<u8>,
    wire_bytes: u64,
    plan: Option<Plan>,
    direct: FewErasures,
    /// Control packets received.
    report_packets: u64,
    /// Plan packets sent.
    plan_packets: u64,
}

/// The RaptorQ encoding plan for `k_max`, generated in the background at
/// start so the first repair does not stall the stream.
enum Plan {
    Building(std::thread::JoinHandle<SourceBlockEncodingPlan>),
    Ready(SourceBlockEncodingPlan),
}

impl std::fmt::Debug for Sender<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("session", &self.spec.session_id).finish()
    }
}

const ENCODER_CACHE: usize = 16;
/// After the last receiver is done: quiet time that ends the farewell (four
/// of a receiver's 50 ms done-report repeats).
const FAREWELL_QUIET: Duration = Duration::from_millis(200);
/// Longest farewell: a receiver's default linger.
const FAREWELL_MAX: Duration = Duration::from_secs(2);

impl<'a> Sender<'a> {
    /// Binds the sockets. The control socket must be bindable at `spec.sender`.
    pub fn new(
        spec: &'a SessionSpec,
        bundle: &'a (dyn StoredImage + Sync),
        cfg: SenderConfig,
    ) -> Result<Self, TransportError> {
        spec.validate()?;
        if spec.root_hash != bundle.manifest().root_hash {
            return Err(TransportError::Config("session spec is for another image (root hash differs)".into()));
        }
        let layout = Layout::new(bundle.manifest(), spec.symbol_size);
        layout.check_wire()?;
        if let Some(r) = cfg.resume
            && !(1..=MAX_EPOCH).contains(&r.epoch)
        {
            return Err(TransportError::Config(format!(
                "resume epoch {} is out of range (1 to {MAX_EPOCH}): a session can be taken over at most {MAX_EPOCH} times",
                r.epoch
            )));
        }
        let data = sys::sender_socket(cfg.local)?;
        let control = sys::control_socket(spec.sender)?;
        control.set_nonblocking(true).map_err(|e| TransportError::io("control socket", e))?;
        let control_addr = match control.local_addr() {
            Ok(SocketAddr::V4(a)) => a,
            Ok(a) => return Err(TransportError::Config(format!("control socket bound to {a}, not IPv4"))),
            Err(e) => return Err(TransportError::io("control socket address", e)),
        };
        let pkt_len = OVERHEAD + usize::from(spec.symbol_size);
        let mut gso_batch = 1;
        if cfg.gso {
            match sys::enable_gso(&data, pkt_len as u16) {
                Ok(()) => gso_batch = (65_000 / pkt_len).clamp(1, 64),
                Err(e) => tracing::warn!("UDP GSO unavailable, sending one datagram per call: {e}"),
            }
        }
        let seq_start = cfg.resume.map_or(0, |r| r.seq_start);
        let k_max = layout.k_max as u16;
        let plan = Some(Plan::Building(std::thread::spawn(move || SourceBlockEncodingPlan::generate(k_max))));
        Ok(Sender {
            direct: FewErasures::new(layout.k_max),
            plan,
            spec,
            bundle,
            layout,
            cfg,
            data,
            control,
            control_addr,
            seq: seq_start,
            gso_batch,
            encoders: VecDeque::new(),
            block_buf: Vec::new(),
            repair_buf: Vec::new(),
            out: Vec::new(),
            wire_bytes: 0,
            report_packets: 0,
            plan_packets: 0,
        })
    }

    fn read_block(&mut self, b: usize) -> Result<(), TransportError> {
        let blk = self.layout.blocks[b];
        self.block_buf.clear();
        self.block_buf.resize(self.layout.padded_len(), 0);
        self.bundle.read_data(blk.offset, &mut self.block_buf[..blk.len as usize])?;
        Ok(())
    }

    fn push_symbol(&mut self, b: usize, esi: u32, sym: &[u8]) {
        let start = self.out.len();
        self.out.resize(start + packet::HEADER_LEN, 0);
        let seq = self.seq;
        packet::Header { kind: Kind::Symbol, session: self.spec.session_id, seq, a: b as u32, esi }
            .write(&mut self.out[start..]);
        self.seq += 1;
        self.out.extend_from_slice(sym);
        self.out.resize(self.out.len() + packet::MAC_LEN, 0);
        packet::seal_in_place(&self.spec.key, seq, &mut self.out[start..]);
    }

    /// Sends the packets accumulated in `out` (all of equal length `pkt_len`).
    fn flush(&mut self, bucket: &mut Option<TokenBucket>) -> Result<(), TransportError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let pkt_len = OVERHEAD + usize::from(self.spec.symbol_size);
        let dest = self.spec.group_addr();
        let per_send = pkt_len * self.gso_batch;
        let mut off = 0;
        while off < self.out.len() {
            let end = (off + per_send).min(self.out.len());
            if let Some(b) = bucket.as_mut() {
                b.take(end - off);
            }
            loop {
                match self.data.send_to(&self.out[off..end], dest) {
                    Ok(_) => break,
                    // A full socket buffer (ENOBUFS on a saturated device): back off briefly.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) || e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(e) => return Err(TransportError::io(format!("sending to {dest}"), e)),
                }
            }
            self.wire_bytes += (end - off) as u64;
            off = end;
        }
        self.out.clear();
        Ok(())
    }

    fn send_source(&mut self, b: usize, bucket: &mut Option<TokenBucket>) -> Result<u64, TransportError> {
        self.read_block(b)?;
        let t = usize::from(self.spec.symbol_size);
        let k = self.layout.blocks[b].k as usize;
        let buf = std::mem::take(&mut self.block_buf);
        for esi in 0..k {
            self.push_symbol(b, esi as u32, &buf[esi * t..(esi + 1) * t]);
            if (esi + 1) % self.gso_batch == 0 {
                self.flush(bucket)?;
            }
        }
        self.block_buf = buf;
        self.flush(bucket)?;
        Ok(k as u64)
    }

    fn encoder(&mut self, b: usize) -> Result<usize, TransportError> {
        if let Some(i) = self.encoders.iter().position(|(x, _)| *x == b) {
            return Ok(i);
        }
        self.read_block(b)?;
        let plan = match self.plan.take() {
            Some(Plan::Building(h)) => h.join().expect("plan generation does not panic"),
            Some(Plan::Ready(p)) => p,
            None => unreachable!("the plan is put back after every use"),
        };
        let enc = SourceBlockEncoder::with_encoding_plan(0, &self.layout.oti(), &self.block_buf, &plan);
        self.plan = Some(Plan::Ready(plan));
        if self.encoders.len() == ENCODER_CACHE {
            self.encoders.pop_front();
        }
        self.encoders.push_back((b, enc));
        Ok(self.encoders.len() - 1)
    }

    fn send_repair(
        &mut self,
        b: usize,
        first_id: u32,
        n: u32,
        bucket: &mut Option<TokenBucket>,
    ) -> Result<(), TransportError> {
        if n <= MAX_DIRECT_REPAIRS && !self.encoders.iter().any(|(x, _)| *x == b) {
            // A small burst: coefficient rows times source symbols, no encoder to build.
            self.read_block(b)?;
            let t = usize::from(self.spec.symbol_size);
            let (k, k_max) = (self.layout.blocks[b].k, self.layout.k_max);
            let esis: Vec<u32> = (0..n).map(|j| k_max + first_id + j).collect();
            let mut syms = std::mem::take(&mut self.repair_buf);
            syms.resize(esis.len() * t, 0);
            self.direct.repairs_into(&self.block_buf, t, k, &esis, &mut syms);
            for (j, (&esi, sym)) in esis.iter().zip(syms.chunks_exact(t)).enumerate() {
                self.push_symbol(b, esi, sym);
                if (j + 1).is_multiple_of(self.gso_batch) {
                    self.flush(bucket)?;
                }
            }
            self.repair_buf = syms;
            return self.flush(bucket);
        }
        let i = self.encoder(b)?;
        let pkts = self.encoders[i].1.repair_packets(first_id, n);
        for (j, p) in pkts.iter().enumerate() {
            self.push_symbol(b, p.payload_id().encoding_symbol_id(), p.data());
            if (j + 1) % self.gso_batch == 0 {
                self.flush(bucket)?;
            }
        }
        self.flush(bucket)
    }

    fn send_poll(&mut self, pass_blocks: usize) -> Result<(), TransportError> {
        let mut body = (pass_blocks as u32).to_le_bytes().to_vec();
        if let Some(r) = self.cfg.resume {
            packet::encode_moved(&mut body, self.control_addr, r.epoch);
        }
        let p = packet::build(
            &self.spec.key,
            Kind::Poll,
            self.spec.session_id,
            self.seq,
            self.layout.blocks.len() as u32,
            &body,
        );
        self.seq += 1;
        self.wire_bytes += p.len() as u64;
        self.data.send_to(&p, self.spec.group_addr()).map_err(|e| TransportError::io("sending poll", e))?;
        Ok(())
    }

    /// Multicasts a plan: the status interval and back-off for `receivers`,
    /// and the repair planned per block (`(block, first ESI, count)`), in as
    /// many packets as the entries need (one, possibly without entries).
    fn send_plan(&mut self, receivers: usize, entries: &[packet::PlanEntry]) -> Result<(), TransportError> {
        let status_ms = feedback::status_interval(receivers).as_millis().clamp(1, u128::from(u16::MAX)) as u16;
        let backoff_us = feedback::backoff_max(receivers).as_micros().min(u128::from(u16::MAX)) as u16;
        let mut chunks: Vec<&[packet::PlanEntry]> = entries.chunks(packet::MAX_PLAN_ENTRIES).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        for c in chunks {
            let mut body = Vec::with_capacity(8 + 12 * c.len());
            packet::Plan { status_ms, backoff_us, entries: c.to_vec() }.encode(&mut body);
            let p = packet::build(&self.spec.key, Kind::Plan, self.spec.session_id, self.seq, 0, &body);
            self.seq += 1;
            self.wire_bytes += p.len() as u64;
            self.plan_packets += 1;
            self.data.send_to(&p, self.spec.group_addr()).map_err(|e| TransportError::io("sending a plan", e))?;
        }
        Ok(())
    }

    /// Where receivers' reports must go: the control socket's address.
    pub fn control_addr(&self) -> SocketAddrV4 {
        self.control_addr
    }

    fn cancelled(&self) -> bool {
        self.cfg.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Runs the session to its end: every expected receiver done, or failed
    /// (timed out), or the deadline, or cancelled. `progress` is called about every 100 ms.
    ///
    /// Meanwhile a thread checks every stored chunk against the manifest, in
    /// send order; the first pass never overtakes it, and a chunk that fails
    /// ends the session at once with [`TransportError::CorruptChunk`]: every
    /// receiver would decode it, fail its hash and ask again, forever.
    pub fn run(mut self, progress: &mut dyn FnMut(&SenderProgress)) -> Result<SenderSummary, TransportError> {
        let verification = Verification::default();
        let (image, layout) = (self.bundle, self.layout.clone());
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("metalcast-verify".into())
                .spawn_scoped(s, || verify_chunks(image, &layout, &verification))
                .map_err(|e| TransportError::io("starting the chunk verifier", e))?;
            let r = self.session(progress, &verification);
            verification.stop.store(true, Ordering::Relaxed);
            r
        })
    }

    fn session(
        &mut self,
        progress: &mut dyn FnMut(&SenderProgress),
        verified: &Verification,
    ) -> Result<SenderSummary, TransportError> {
        let nblocks = self.layout.blocks.len();
        let mut rxs: HashMap<u64, Rx> = HashMap::new();
        let mut rejected_reports = RejectedReports::default();
        let mut ctl_buf = vec![0u8; 2048];
        let session_start = Instant::now();

        // Join phase: poll the group until every expected receiver reports that
        // it hears it (a hello only proves the unicast path; IGMP snooping may
        // not forward the group to it yet), so the first pass is not wasted.
        let join_deadline = Instant::now() + self.cfg.join_timeout;
        let hearing = |rxs: &HashMap<u64, Rx>| rxs.values().filter(|r| r.report.state != ReportState::Hello).count();
        while hearing(&rxs) < self.cfg.expected_receivers && Instant::now() < join_deadline {
            if self.cancelled() {
                return Err(TransportError::Cancelled { receivers_left: self.cfg.expected_receivers });
            }
            if let Some(e) = verified.take_error() {
                return Err(e);
            }
            self.send_poll(0)?;
            if self.cfg.plans {
                // Receivers learn the status interval before the first pass.
                self.send_plan(self.cfg.expected_receivers.max(rxs.len()), &[])?;
            }
            self.drain_control(&mut rxs, &mut ctl_buf, &mut rejected_reports, &mut |_, _, _, _| {})?;
            sys::wait_readable(&self.control, Duration::from_millis(10));
        }
        if hearing(&rxs) < self.cfg.expected_receivers {
            tracing::warn!(
                hearing = hearing(&rxs),
                expected = self.cfg.expected_receivers,
                "starting before every receiver hears the group"
            );
        }

        let burst = (OVERHEAD as u64 + u64::from(self.spec.symbol_size)) * 64;
        let start = Instant::now();
        let mut rate_ctl = self
            .cfg
            .adaptive
            .then(|| RateControl::new(self.cfg.start_rate as f64, self.cfg.rate.map(|r| r as f64), start));
        let mut bucket = match &rate_ctl {
            Some(c) => Some(TokenBucket::new(c.rate as u64, burst)),
            None => self.cfg.rate.map(|r| TokenBucket::new(r, burst)),
        };
        let mut pass_rate = None;
        let mut pass_secs = 0.0;
        let mut pass = 0usize;
        // A resumed session's repair ESIs start above every earlier epoch's.
        let epoch_base = self.cfg.resume.map_or(0, |r| r.epoch * ESI_EPOCH_STRIDE);
        let mut next_repair_id = vec![epoch_base; nblocks];
        // A resumed session's first pass starts where the receivers are.
        if self.cfg.resume.is_some() {
            let from = rxs
                .values()
                .filter(|r| r.report.state != ReportState::Hello)
                .map(|r| r.report.blocks_done as usize)
                .min()
                .unwrap_or(0)
                .min(nblocks);
            tracing::info!(from, blocks = nblocks, receivers = rxs.len(), "resuming the session");
            pass = from;
            if pass == nblocks {
                pass_secs = 0.0;
            }
        }
        let mut owed = vec![0u32; nblocks];
        let mut due: Vec<Option<Instant>> = vec![None; nblocks];
        // Sequence number of the last packet sent for each block: a need is
        // current only from a receiver that has processed past it (FIFO path).
        let mut last_seq = vec![0u64; nblocks];
        let (mut source_packets, mut repair_packets, mut bursts) = (0u64, 0u64, 0u64);
        let mut last_poll = start;
        let mut last_progress = start;
        // Repair symbols the first pass lets through before its next block: each
        // first-pass block adds its own symbol count (at most one block's worth
        // is kept), so repair gets up to half the rate while the pass runs. One
        // burst per block was not enough: a block whose receivers report at
        // different times needs two, and at 5% loss the bursts fell behind the
        // pass by 54 of 256 blocks, leaving their decodes to the end.
        let mut repair_budget = 0u64;
        // Needs that wait (lossy outliers', late joiners'): served once the
        // first pass is over, and only while no other need is due.
        let mut waiting = Waiting::new(self.cfg.outliers_wait, &rxs, start);
        let mut owed_later = vec![0u32; nblocks];
        let mut due_later: Vec<Option<Instant>> = vec![None; nblocks];
        let mut outlier_repair_packets = 0u64;
        let ks: Vec<u32> = self.layout.blocks.iter().map(|b| b.k).collect();
        // Plans (`SenderConfig::plans`): the first burst of each block is
        // predicted and announced with the block's source symbols; every
        // need that raises a planned burst is announced at once.
        let mut predictor = feedback::Predictor::default();
        let mut predicted: Vec<Option<u32>> = vec![None; nblocks];
        let mut raised: Vec<usize> = Vec::new();
        let k_max = self.layout.k_max;
        // Repair symbols a block can still get: its ESIs must fit 24 bits.
        let esi_room = |next: u32| (MAX_ESI + 1 - k_max).saturating_sub(next);

        loop {
            let now = Instant::now();
            {
                let (owed, due, last_seq) = (&mut owed, &mut due, &last_seq);
                let (owed_later, due_later, waiting, ks) = (&mut owed_later, &mut due_later, &waiting, &ks);
                let (gather, raised) = (self.cfg.gather, &mut raised);
                self.drain_control(&mut rxs, &mut ctl_buf, &mut rejected_reports, &mut |rx, b, n, seen| {
                    let b = b as usize;
                    if b < nblocks && n > 0 && seen >= last_seq[b] {
                        if waiting.waits(rx, n, ks[b]) {
                            owed_later[b] = owed_later[b].max(n);
                            due_later[b].get_or_insert(now + gather);
                        } else {
                            if n > owed[b] {
                                raised.push(b);
                            }
                            owed[b] = owed[b].max(n);
                            due[b].get_or_insert(now + gather);
                        }
                    }
                })?;
            }
            if !raised.is_empty() {
                raised.sort_unstable();
                raised.dedup();
                if self.cfg.plans {
                    let entries: Vec<packet::PlanEntry> = raised
                        .iter()
                        .map(|&b| packet::PlanEntry {
                            block: b as u32,
                            first: k_max + next_repair_id[b],
                            count: owed[b],
                        })
                        .collect();
                    self.send_plan(self.cfg.expected_receivers.max(rxs.len()), &entries)?;
                }
                raised.clear();
            }
            if now.duration_since(waiting.last) >= CLASSIFY_INTERVAL {
                waiting.classify(&mut rxs, now);
            }
            if let Some(c) = rate_ctl.as_mut()
                && c.due(self.seq, now)
            {
                // Receivers still receiving (and not silent) judge the last window.
                let verdict = rxs
                    .values_mut()
                    .filter(|r| r.report.state == ReportState::Receiving && !r.timed_out)
                    .filter_map(|r| r.loss.sample(r.report.max_seq, r.report.received))
                    .reduce(|a, b| a || b);
                c.update(verdict, self.seq, self.wire_bytes, now);
                tracing::debug!(rate_mb_s = c.rate / 1e6, ?verdict, pass, "rate window");
                if let Some(b) = bucket.as_mut() {
                    b.rate = c.rate;
                }
            }
            for r in rxs.values_mut() {
                let finished = matches!(r.report.state, ReportState::Done | ReportState::Failed);
                if !finished && !r.timed_out && now.duration_since(r.last_seen) > self.cfg.receiver_timeout {
                    tracing::warn!(receiver = r.report.receiver, "receiver silent too long: no longer waited for");
                    r.timed_out = true;
                }
            }
            let waiting = rxs
                .values()
                .filter(|r| !r.timed_out && !matches!(r.report.state, ReportState::Done | ReportState::Failed))
                .count();
            let finished = rxs.len() - waiting;
            if now.duration_since(last_progress) >= Duration::from_millis(100) {
                last_progress = now;
                progress(&SenderProgress {
                    pass_blocks: pass,
                    total_blocks: nblocks,
                    receivers: statuses(&rxs, start),
                    bytes_sent: self.wire_bytes,
                    seq: self.seq,
                });
            }
            if pass == nblocks && waiting == 0 && finished >= self.cfg.expected_receivers {
                break;
            }
            if self.cancelled() {
                return Err(TransportError::Cancelled { receivers_left: waiting });
            }
            if let Some(e) = verified.take_error() {
                return Err(e);
            }
            if let Some(d) = self.cfg.deadline
                && now.duration_since(session_start) > d
            {
                return Err(TransportError::Deadline { secs: d.as_secs(), receivers_left: waiting });
            }
            if pass == nblocks && rxs.is_empty() && now.duration_since(start) > self.cfg.receiver_timeout {
                return Err(TransportError::Deadline {
                    secs: self.cfg.receiver_timeout.as_secs(),
                    receivers_left: self.cfg.expected_receivers,
                });
            }
            if pass == nblocks
                && waiting == 0
                && finished < self.cfg.expected_receivers
                && now.duration_since(start) > self.cfg.receiver_timeout
            {
                break; // Everyone we heard of is finished; the rest never joined.
            }

            // Once the first pass is over, poll on schedule even while repair
            // keeps the sender busy: a poll is what closes the last blocks at
            // the receivers. (Polled only when idle, on-time receivers could
            // not ask for their last blocks while a late joiner was being
            // served, and finished with it.)
            if pass == nblocks && now.duration_since(last_poll) >= self.cfg.poll_interval {
                self.send_poll(pass)?;
                last_poll = now;
            }

            // Pick work: a due repair burst while the budget allows (always once
            // the first pass is over), else the next first-pass block.
            let ready = (0..nblocks).find(|&b| due[b].is_some_and(|t| t <= now));
            let do_repair = ready.is_some() && (repair_budget > 0 || pass == nblocks);
            if let (true, Some(b)) = (do_repair, ready) {
                let n = owed[b].min(esi_room(next_repair_id[b]));
                if let Some(planned) = predicted[b].take() {
                    predictor.update(planned, n);
                }
                repair_budget = repair_budget.saturating_sub(u64::from(n));
                owed[b] = 0;
                due[b] = None;
                // Waiting needs for the block predate this burst, as the others'
                // do: the receivers' next reports say what is still missing.
                owed_later[b] = 0;
                due_later[b] = None;
                self.send_repair(b, next_repair_id[b], n, &mut bucket)?;
                last_seq[b] = self.seq - 1;
                next_repair_id[b] += n;
                repair_packets += u64::from(n);
                bursts += 1;
                continue;
            }
            // Once the first pass is over and no other need is due: waiting
            // needs, a slice at a time, so that a need of the others that
            // comes due meanwhile goes first.
            let ready_later =
                (pass == nblocks).then(|| (0..nblocks).find(|&b| due_later[b].is_some_and(|t| t <= now))).flatten();
            if let Some(b) = ready_later {
                let n = owed_later[b].min(LATER_SLICE).min(esi_room(next_repair_id[b]));
                owed_later[b] = if n == 0 { 0 } else { owed_later[b] - n };
                if owed_later[b] == 0 {
                    due_later[b] = None;
                }
                if n > 0 {
                    self.send_repair(b, next_repair_id[b], n, &mut bucket)?;
                    last_seq[b] = self.seq - 1;
                    next_repair_id[b] += n;
                    repair_packets += u64::from(n);
                    outlier_repair_packets += u64::from(n);
                    bursts += 1;
                }
                continue;
            }
            if pass < nblocks && pass >= verified.upto() {
                // The verifier (normally far ahead) has not checked this block yet.
                sys::wait_readable(&self.control, Duration::from_millis(1));
                continue;
            }
            if pass < nblocks {
                let k = self.send_source(pass, &mut bucket)?;
                source_packets += k;
                repair_budget = (repair_budget + k).min(u64::from(self.layout.k_max));
                last_seq[pass] = self.seq - 1;
                if self.cfg.plans {
                    // The block's predicted first burst (large fleets only),
                    // announced now: receivers whose needs it covers never
                    // speak about the block.
                    let receivers = self.cfg.expected_receivers.max(rxs.len());
                    let planned = if feedback::predicts(receivers) {
                        predictor.plan().min(esi_room(next_repair_id[pass]))
                    } else {
                        0
                    };
                    let mut entries = Vec::new();
                    if planned > 0 {
                        predicted[pass] = Some(planned);
                        owed[pass] = owed[pass].max(planned);
                        due[pass].get_or_insert(Instant::now() + self.cfg.gather);
                        entries.push(packet::PlanEntry {
                            block: pass as u32,
                            first: k_max + next_repair_id[pass],
                            count: owed[pass],
                        });
                    } else {
                        // Nothing planned: learn whether a burst was needed at all.
                        predicted[pass] = Some(0);
                    }
                    self.send_plan(self.cfg.expected_receivers.max(rxs.len()), &entries)?;
                }
                pass += 1;
                if pass == nblocks {
                    pass_rate = bucket.as_ref().map(|b| b.rate);
                    pass_secs = start.elapsed().as_secs_f64();
                }
                continue;
            }
            // Idle: wait for reports.
            let later = due_later.iter().flatten().filter(|_| pass == nblocks);
            let next_due = due.iter().flatten().chain(later).min().copied();
            let wait = next_due
                .map_or(Duration::from_millis(5), |t| t.saturating_duration_since(now))
                .min(Duration::from_millis(5));
            sys::wait_readable(&self.control, wait);
        }
        self.farewell(&mut rxs, &mut ctl_buf, &mut rejected_reports)?;
        let secs = rxs
            .values()
            .filter_map(|r| r.done_at)
            .max()
            .map_or(start.elapsed(), |t| t.duration_since(start))
            .as_secs_f64();
        let image_bytes = self.bundle.manifest().data_len;
        Ok(SenderSummary {
            session_id: self.spec.session_id,
            secs,
            image_bytes,
            wire_bytes: self.wire_bytes,
            wire_ratio: self.wire_bytes as f64 / image_bytes.max(1) as f64,
            source_packets,
            repair_packets,
            bursts,
            report_packets: self.report_packets,
            plan_packets: self.plan_packets,
            rejected_reports: rejected_reports.total(),
            rejected_by_reason: rejected_reports,
            peak_rate: rate_ctl.as_ref().map(|c| c.peak).or(bucket.as_ref().map(|b| b.rate)),
            pass_rate,
            pass_secs,
            rate_cuts: rate_ctl.as_ref().map_or(0, |c| c.cuts),
            outliers: rxs.values().filter(|r| r.outlier.is_some()).count() as u64,
            outlier_repair_packets,
            receivers: statuses(&rxs, start),
        })
    }

    /// Keeps acking done reports after the last receiver finished, until none
    /// has repeated its report for [`FAREWELL_QUIET`] (at most [`FAREWELL_MAX`]).
    /// An ack is lost as easily as a symbol, and a receiver repeats its done
    /// report every 50 ms until acked; without this, one lost ack left its
    /// receiver waiting out its whole linger (2 s) after the sender was gone.
    fn farewell(
        &mut self,
        rxs: &mut HashMap<u64, Rx>,
        buf: &mut [u8],
        rejected: &mut RejectedReports,
    ) -> Result<(), TransportError> {
        let end = Instant::now() + FAREWELL_MAX;
        loop {
            self.drain_control(rxs, buf, rejected, &mut |_, _, _, _| {})?;
            let now = Instant::now();
            let last_heard = rxs.values().filter(|r| r.report.state == ReportState::Done).map(|r| r.last_seen).max();
            if now >= end || last_heard.is_none_or(|t| now.duration_since(t) >= FAREWELL_QUIET) {
                return Ok(());
            }
            sys::wait_readable(&self.control, Duration::from_millis(10));
        }
    }

    /// Reads every pending control packet; records receivers, acks done
    /// reports, and hands each `(block, need)` to `on_need`. A report that is
    /// not newer than the last one taken from its receiver, or would move it
    /// back (see [`advances`]), is a replay: dropped and counted as stale,
    /// before it can change anything or be acked.
    fn drain_control(
        &mut self,
        rxs: &mut HashMap<u64, Rx>,
        buf: &mut [u8],
        rejected: &mut RejectedReports,
        on_need: &mut dyn FnMut(u64, u32, u32, u64),
    ) -> Result<(), TransportError> {
        loop {
            let (n, from) = match self.control.recv_from(buf) {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(TransportError::io("reading reports", e)),
            };
            self.report_packets += 1;
            let report = match packet::open(&self.spec.key, self.spec.session_id, 0, &buf[..n]) {
                Ok((h, body)) if h.kind == Kind::Report => Report::decode(body),
                Ok(_) => Err(packet::Reject::Invalid),
                Err(e) => Err(e),
            };
            let report = match report {
                Ok(r) => r,
                Err(reason) => {
                    tracing::debug!(%from, %reason, len = n, "control packet rejected");
                    rejected.count(reason);
                    continue;
                }
            };
            let before = rxs.get(&report.receiver).map(|e| e.report.state);
            if let Some(e) = rxs.get(&report.receiver)
                && !advances(&e.report, &report)
            {
                tracing::debug!(%from, receiver = report.receiver, counter = report.counter, last = e.report.counter,
                    state = ?report.state, "stale report rejected (a replay?)");
                rejected.stale += 1;
                continue;
            }
            tracing::trace!(receiver = report.receiver, counter = report.counter, state = ?report.state, needs = report.needs.len(), max_seq = report.max_seq, "report");
            if report.state == ReportState::Failed && before != Some(ReportState::Failed) {
                tracing::warn!(receiver = report.receiver, %from, reason = ?report.reason, "receiver failed");
            }
            let now = Instant::now();
            for &(b, k) in &report.needs {
                on_need(report.receiver, b, k, report.max_seq);
            }
            if report.state == ReportState::Done {
                let ack = packet::build(
                    &self.spec.key,
                    Kind::Ack,
                    self.spec.session_id,
                    0,
                    0,
                    &report.receiver.to_le_bytes(),
                );
                let _ = self.control.send_to(&ack, from);
            }
            let e = rxs.entry(report.receiver).or_insert_with(|| Rx {
                addr: from,
                last_seen: now,
                report: report.clone(),
                done_at: None,
                timed_out: false,
                loss: RxLoss::default(),
                meter: LossMeter::default(),
                outlier: None,
                reports: 0,
            });
            e.reports += 1;
            e.last_seen = now;
            e.addr = from;
            if report.state == ReportState::Receiving {
                e.meter.update(report.max_seq, report.received);
            }
            e.timed_out = false;
            if report.state == ReportState::Done && e.done_at.is_none() {
                e.done_at = Some(now);
            }
            // Blocks are never unwritten; a receiver restarted under the same id starts again from 0.
            let blocks_done = report.blocks_done.max(e.report.blocks_done);
            e.report = report;
            e.report.blocks_done = blocks_done;
        }
    }
}

/// How often the sender reclassifies receivers as outliers.
const CLASSIFY_INTERVAL: Duration = Duration::from_millis(20);
/// Most repair symbols sent at once for a waiting need (about 2 ms at
/// 800 Mbit/s): between slices, the others' needs that came due go first.
const LATER_SLICE: u32 = 128;

/// The outlier policy during a session (`docs/wire-protocol.md`, "Outliers
/// and late joiners"): whose large needs wait until the first pass is over.
struct Waiting {
    enabled: bool,
    /// Off by configuration, or while the flagged receivers are not a
    /// minority of those receiving (the policy protects a majority).
    active: bool,
    /// Receivers hearing the group when the first pass began and not
    /// flagged since: the large needs of anyone else wait.
    on_time: std::collections::HashSet<u64>,
    /// Loss above which a receiver is a lossy outlier ([`outlier::MIN_MARGIN`]
    /// until enough receivers are measured): also sets the need cap.
    threshold: f64,
    /// When receivers were last classified.
    last: Instant,
}

impl Waiting {
    fn new(enabled: bool, rxs: &HashMap<u64, Rx>, now: Instant) -> Self {
        let on_time =
            rxs.values().filter(|r| r.report.state != ReportState::Hello).map(|r| r.report.receiver).collect();
        Waiting { enabled, active: enabled, on_time, threshold: outlier::MIN_MARGIN, last: now }
    }

    /// Whether receiver `rx`'s need of `need` symbols for a block of `k`
    /// waits: it is flagged (a late joiner is from its first report; a lossy
    /// outlier once classified), the policy is active, and the need is larger
    /// than a receiver at the threshold loss would ask. A flagged receiver's
    /// healthy-sized needs are served at once.
    fn waits(&self, rx: u64, need: u32, k: u32) -> bool {
        self.active && !self.on_time.contains(&rx) && need > outlier::need_cap(k, self.threshold)
    }

    /// Flags receivers still receiving as late (not hearing the group when
    /// the first pass began) or lossy (loss above the threshold); a flag
    /// stays for the session. Then decides whether the policy is active.
    fn classify(&mut self, rxs: &mut HashMap<u64, Rx>, now: Instant) {
        self.last = now;
        let mut losses: Vec<f64> = rxs.values().filter(|r| !r.timed_out).filter_map(|r| r.meter.loss()).collect();
        let threshold = outlier::loss_threshold(&mut losses);
        self.threshold = threshold.unwrap_or(outlier::MIN_MARGIN);
        for r in rxs.values_mut() {
            if r.outlier.is_some() || r.timed_out || r.report.state != ReportState::Receiving {
                continue;
            }
            let id = r.report.receiver;
            let loss = r.meter.loss();
            r.outlier = if !self.on_time.contains(&id) {
                Some(OutlierKind::Late)
            } else if let (Some(t), Some(l)) = (threshold, loss)
                && l > t
            {
                Some(OutlierKind::Lossy)
            } else {
                None
            };
            if let Some(kind) = r.outlier {
                // A lossy receiver is treated as a late one from now on.
                self.on_time.remove(&id);
                tracing::warn!(receiver = id, addr = %r.addr, ?kind, loss = ?loss, threshold = ?threshold,
                    "outlier: its large needs wait until the first pass is over");
            }
        }
        let live = rxs.values().filter(|r| !r.timed_out && r.report.state != ReportState::Hello);
        let (receiving, flagged) = live.fold((0, 0), |(n, f), r| (n + 1, f + usize::from(r.outlier.is_some())));
        self.active = self.enabled && 2 * flagged < receiving;
    }
}

/// Whether `new` may replace `old`, the last report taken from the same
/// receiver: it must be newer (a higher counter, which a replay never has)
/// and must not move the receiver back (hello, receiving, then done or
/// failed, both final).
fn advances(old: &Report, new: &Report) -> bool {
    new.counter > old.counter
        && new.state.rank() >= old.state.rank()
        && (old.state.rank() < ReportState::Done.rank() || new.state == old.state)
}

/// How far the chunk verifier got, shared with the sending loop.
#[derive(Default)]
struct Verification {
    /// Blocks checked so far, in send order: the first pass sends only below it.
    upto: AtomicUsize,
    /// Set once `error` holds what stopped the verifier.
    failed: AtomicBool,
    error: Mutex<Option<TransportError>>,
    /// Set when the session ends: the verifier stops.
    stop: AtomicBool,
}

impl Verification {
    fn upto(&self) -> usize {
        self.upto.load(Ordering::Acquire)
    }

    /// What stopped the verifier, if anything (handed out once).
    fn take_error(&self) -> Option<TransportError> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    fn fail(&self, e: TransportError) {
        *self.error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
        self.failed.store(true, Ordering::Release);
    }
}

/// Checks every block's stored chunk against the manifest (decompressed and
/// hashed, as a receiver will), in send order, publishing its progress in `v`.
fn verify_chunks(image: &dyn StoredImage, layout: &Layout, v: &Verification) {
    let mut zstd = match zstd::bulk::Decompressor::new() {
        Ok(z) => z,
        Err(e) => return v.fail(TransportError::io("zstd decompressor", e)),
    };
    let (mut stored, mut out) = (Vec::new(), Vec::new());
    for (b, blk) in layout.blocks.iter().enumerate() {
        if v.stop.load(Ordering::Relaxed) {
            return;
        }
        stored.resize(blk.len as usize, 0);
        if let Err(e) = image.read_data(blk.offset, &mut stored) {
            return v.fail(e.into());
        }
        if let Err(source) =
            metalcast_image::check_or_decode_chunk(image.manifest(), blk.chunk, &stored, &mut zstd, &mut out)
        {
            tracing::error!(chunk = blk.chunk, block = b, "{source}");
            return v.fail(TransportError::CorruptChunk { chunk: blk.chunk, source });
        }
        v.upto.store(b + 1, Ordering::Release);
    }
}

fn statuses(rxs: &HashMap<u64, Rx>, start: Instant) -> Vec<ReceiverStatus> {
    let mut v: Vec<_> = rxs
        .values()
        .map(|r| ReceiverStatus {
            id: r.report.receiver,
            addr: r.addr.to_string(),
            state: if r.timed_out {
                "timed-out".into()
            } else {
                match r.report.state {
                    ReportState::Hello => "joined",
                    ReportState::Receiving => "receiving",
                    ReportState::Done => "done",
                    ReportState::Failed => "failed",
                }
                .into()
            },
            blocks_done: r.report.blocks_done,
            received: r.report.received,
            rejected: r.report.rejected,
            done_secs: r.done_at.map(|t| t.saturating_duration_since(start).as_secs_f64()),
            failure: (r.report.state == ReportState::Failed).then_some(r.report.reason),
            loss: r.meter.loss(),
            reports: r.reports,
            outlier: r.outlier,
        })
        .collect();
    v.sort_by_key(|r| r.id);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver in `state` whose reports showed `loss` over 10,000 packets.
    fn rx(id: u64, state: ReportState, loss: Option<f64>) -> Rx {
        let mut meter = LossMeter::default();
        if let Some(l) = loss {
            meter.update(0, 0);
            meter.update(10_000, ((1.0 - l) * 10_000.0).round() as u64);
        }
        let report = Report {
            receiver: id,
            counter: 1,
            state,
            reason: FailReason::None,
            blocks_done: 0,
            received: 0,
            rejected: 0,
            max_seq: 0,
            needs: vec![],
        };
        let addr = "10.0.0.1:5000".parse().expect("an address");
        let (loss, outlier) = (RxLoss::default(), None);
        Rx {
            addr,
            last_seen: Instant::now(),
            report,
            done_at: None,
            timed_out: false,
            loss,
            meter,
            outlier,
            reports: 0,
        }
    }

    #[test]
    fn a_lossy_and_a_late_receiver_wait_while_they_are_a_minority() {
        let now = Instant::now();
        let mut rxs: HashMap<u64, Rx> = (1..=7).map(|i| (i, rx(i, ReportState::Receiving, Some(0.01)))).collect();
        rxs.insert(8, rx(8, ReportState::Receiving, Some(0.3)));
        let mut w = Waiting::new(true, &rxs, now);
        // Not classified yet: the lossy receiver is served like anyone.
        assert!(!w.waits(8, 300, 737));
        // A late joiner's large needs wait from its first report on; small ones do not.
        assert!(w.waits(9, 737, 737) && !w.waits(9, 10, 737));
        rxs.insert(9, rx(9, ReportState::Receiving, None));
        w.classify(&mut rxs, now);
        assert_eq!(rxs[&8].outlier, Some(OutlierKind::Lossy));
        assert_eq!(rxs[&9].outlier, Some(OutlierKind::Late));
        assert!((1..=7).all(|i| rxs[&i].outlier.is_none()));
        // The bar is 6% (median 1%): 49 of 737 symbols are served at once, more wait.
        assert!(w.waits(8, 300, 737) && w.waits(8, 50, 737) && !w.waits(8, 49, 737));
        assert!(!w.waits(1, 300, 737), "a healthy receiver's need never waits");
        // Seven flagged among fourteen: no majority left to protect, nothing waits.
        for i in 10..=14 {
            rxs.insert(i, rx(i, ReportState::Receiving, None));
        }
        w.classify(&mut rxs, now);
        assert!(!w.waits(8, 300, 737) && !w.waits(10, 737, 737));
        // Off by configuration: nothing waits, late or lossy.
        let mut off = Waiting::new(false, &HashMap::new(), now);
        off.classify(&mut rxs, now);
        assert!(!off.waits(8, 300, 737) && !off.waits(15, 737, 737));
    }
}
