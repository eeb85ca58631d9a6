//! The receiver: collects authenticated symbols per block, decodes a block
//! as soon as it can (no decoding at all when every source symbol arrived),
//! checks the chunk against the signed manifest, hands it to a sink, and
//! tells the sender what it still needs.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::{SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use metalcast_image::{BundleError, Manifest, PartFiles};
use raptorq::{EncodingPacket, PayloadId, SourceBlockDecoder};

use crate::erasure::{FewErasures, fast_erasure_limit};
use crate::error::TransportError;
use crate::feedback::{self, ASK_RETRY, PLAN_HOLD};
use crate::layout::Layout;
use crate::packet::{self, FailReason, Kind, MAX_NEEDS_PER_REPORT, Plan, Reject, Report, ReportState};
use crate::session::SessionSpec;
use crate::source::{PacketSource, SocketSource};
use crate::sys;

/// Where verified chunks go.
pub trait ChunkSink {
    /// Writes chunk `index`, already decompressed and checked against the manifest.
    fn write_chunk(&mut self, manifest: &Manifest, index: usize, data: &[u8]) -> Result<(), BundleError>;

    /// Chunk `index`'s stored bytes, exactly as the session carried them (the
    /// decoded block, which decompressed to the data just passed to
    /// [`write_chunk`](Self::write_chunk)), for sinks that keep the image in
    /// its stored form to send it on (the node runtime's seed mode). Called
    /// right after `write_chunk`; ignored by default.
    fn stored_chunk(&mut self, manifest: &Manifest, index: usize, stored: &[u8]) -> Result<(), BundleError> {
        let _ = (manifest, index, stored);
        Ok(())
    }
}

impl ChunkSink for PartFiles {
    fn write_chunk(&mut self, manifest: &Manifest, index: usize, data: &[u8]) -> Result<(), BundleError> {
        PartFiles::write_chunk(self, manifest, index, data)
    }
}

/// Parts held in memory (holes stay zero): the node runtime's memory target.
#[derive(Debug)]
pub struct MemorySink {
    /// One buffer per part, in manifest order.
    pub parts: Vec<Vec<u8>>,
}

impl MemorySink {
    /// Zeroed buffers sized for every part.
    pub fn new(m: &Manifest) -> Self {
        MemorySink { parts: m.parts.iter().map(|p| vec![0u8; p.size as usize]).collect() }
    }
}

impl ChunkSink for MemorySink {
    fn write_chunk(&mut self, m: &Manifest, index: usize, data: &[u8]) -> Result<(), BundleError> {
        let (part, off) =
            m.locate(index).ok_or_else(|| BundleError::invalid(format!("chunks[{index}]"), "outside every part"))?;
        let pi = m.parts.iter().position(|p| std::ptr::eq(p, part)).expect("part of this manifest");
        self.parts[pi][off as usize..off as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
}

/// Receiver tuning; every field has a default.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// Stable identity reported to the sender (default: random).
    pub id: u64,
    /// Address of the interface to join the group on and report from (default 0.0.0.0).
    pub iface: std::net::Ipv4Addr,
    /// Give up when nothing advances the session for this long (default 30
    /// s): no new packet of the sender (a sequence number above every one
    /// seen) and no symbol the receiver lacked. Authentic duplicates (a
    /// replay of captured packets after the sender died) do not count.
    pub idle_timeout: Duration,
    /// Interval between reports until the sender announces its own in a
    /// plan (default 5 ms): a version 3 sender, or one with
    /// `SenderConfig::plans` off, hears from every receiver this often.
    /// Once plans come, a receiver sends a status report at the interval
    /// they give and asks for repair only when no plan covers its need
    /// (`docs/wire-protocol.md`, "Feedback").
    pub report_interval: Duration,
    /// Most blocks buffered at once; symbols of further blocks wait for the
    /// carousel. Bounds memory to about this many chunks (default 64).
    pub max_pending_blocks: usize,
    /// How long to repeat the done report until the sender acknowledges it (default 2 s).
    pub linger: Duration,
    /// Set to stop the receive early (checked every loop turn, at least every
    /// `report_interval`; `run` then reports failure to the sender and returns
    /// [`TransportError::ReceiveCancelled`]). Default none.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).expect("the OS random number generator is available");
        ReceiverConfig {
            id: u64::from_le_bytes(id),
            iface: std::net::Ipv4Addr::UNSPECIFIED,
            idle_timeout: Duration::from_secs(30),
            report_interval: Duration::from_millis(5),
            max_pending_blocks: 64,
            linger: Duration::from_secs(2),
            cancel: None,
        }
    }
}

/// Counts of rejected packets, by reason.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Rejected {
    /// Too short, wrong magic, version or kind.
    pub malformed: u64,
    /// Another session's packet.
    pub other_session: u64,
    /// MAC did not verify (forged or corrupted).
    pub bad_mac: u64,
    /// Authentic but invalid (block or symbol out of range).
    pub invalid: u64,
}

impl Rejected {
    /// All rejections.
    pub fn total(&self) -> u64 {
        self.malformed + self.other_session + self.bad_mac + self.invalid
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

/// Progress snapshot.
#[derive(Debug, Clone)]
pub struct ReceiverProgress {
    /// Blocks written.
    pub blocks_done: usize,
    /// Blocks in the image.
    pub total_blocks: usize,
    /// Authentic packets so far.
    pub received: u64,
}

/// What a finished receive reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReceiverSummary {
    /// Receiver id.
    pub id: u64,
    /// Seconds from the first authentic packet to the last block written.
    pub secs: f64,
    /// Blocks (stored chunks) written.
    pub blocks: usize,
    /// Uncompressed bytes written.
    pub bytes_written: u64,
    /// Authentic packets received.
    pub received: u64,
    /// Symbols for blocks already complete.
    pub redundant: u64,
    /// Symbols dropped because too many blocks were buffered already.
    pub deferred: u64,
    /// Rejected packets, by reason.
    pub rejected: Rejected,
    /// Blocks that needed RaptorQ decoding (a source symbol was lost).
    pub decoded_blocks: u64,
    /// Decode attempts that needed one more symbol.
    pub decode_retries: u64,
    /// Decoded blocks whose chunk failed the manifest hash (never written; fetched again).
    pub hash_failures: u64,
    /// Loss rate estimated from sequence gaps.
    pub loss_estimate: f64,
    /// Whether the sender acknowledged the done report.
    pub acked: bool,
    /// CPU seconds of the decode thread (decoding, decompressing and
    /// verifying blocks); the receive thread's own are the caller's to measure.
    pub decode_cpu_secs: f64,
    /// Report packets sent (hello, status, need, done and failed reports).
    pub reports: u64,
}

struct Pend {
    have: Vec<u64>,
    n_src: u32,
    buf: Vec<u8>,
    repairs: Vec<(u32, Vec<u8>)>,
    extra: u32,
}

impl Pend {
    /// Adds symbol `esi`; false if the block already had it.
    fn add(&mut self, esi: u32, sym: &[u8], t: usize, kmax: u32) -> bool {
        if esi < kmax {
            let (w, bit) = (esi as usize / 64, 1u64 << (esi % 64));
            if self.have[w] & bit != 0 {
                return false;
            }
            self.have[w] |= bit;
            self.n_src += 1;
            self.buf[esi as usize * t..(esi as usize + 1) * t].copy_from_slice(sym);
        } else {
            if self.repairs.iter().any(|(e, _)| *e == esi) {
                return false;
            }
            self.repairs.push((esi, sym.to_vec()));
        }
        true
    }

    /// Whether there are enough symbols to try a decode.
    fn ready(&self, kmax: u32) -> bool {
        self.n_src + self.repairs.len() as u32 >= kmax + self.extra
    }
}

enum Slot {
    Idle,
    Pending(Box<Pend>),
    /// With the decode thread.
    Busy,
    Done,
}

/// Times one block may decode to a chunk that fails the manifest's hash
/// before the receive stops with [`TransportError::CorruptBlock`]. Each
/// failure discards every symbol of the block and fetches it afresh, so one
/// bad symbol (a corrupting path, a key holder's forgery) costs one failure;
/// the same block failing again from fresh symbols means the sender's copy
/// of the chunk is wrong, and asking again would loop forever.
pub const MAX_HASH_FAILURES: u32 = 3;

/// Copies of the failed report sent when a receive fails (reports are best
/// effort; the sender otherwise learns of the failure only by its timeout).
const FAILED_REPORTS: usize = 3;

/// Blocks handed to the decode thread at most this far ahead of it.
const DECODE_QUEUE: usize = 2;
/// Nice steps the decode thread runs below the receive thread.
const DECODE_NICE: i32 = 5;
/// Most symbols kept for blocks with the decode thread (about 0.6 MB of jumbo symbols).
const MAX_LATE: usize = 64;

/// A block with enough symbols, for the decode thread.
struct Job {
    b: usize,
    pend: Box<Pend>,
    /// Room for the verified chunk (reused).
    out: Vec<u8>,
}

/// What the decode thread did with a [`Job`].
enum Outcome {
    /// The chunk, decompressed and checked against the manifest, is in
    /// `data`; `spare` is the job's other buffer, for reuse.
    Ready { b: usize, data: Vec<u8>, spare: Vec<u8>, decoded: bool },
    /// The symbols do not determine the block yet: one more is needed.
    Short { b: usize, pend: Box<Pend>, out: Vec<u8> },
    /// Decoded, but not what the manifest says: never written.
    Corrupt { b: usize, error: BundleError, buf: Vec<u8>, out: Vec<u8>, decoded: bool },
}

/// The decode thread's state: decodes (when a source symbol is missing),
/// decompresses and verifies blocks off the receive thread, so the receive
/// thread keeps draining the socket meanwhile.
struct BlockDecoder {
    layout: Layout,
    manifest: Manifest,
    few: FewErasures,
    /// Most missing source symbols `few` recovers; a full decode beyond.
    fast_limit: usize,
    zstd: zstd::bulk::Decompressor<'static>,
}

impl BlockDecoder {
    fn work(&mut self, job: Job) -> Outcome {
        let Job { b, mut pend, mut out } = job;
        let p = &mut *pend;
        let t = usize::from(self.layout.symbol_size);
        let (blk, kmax) = (self.layout.blocks[b], self.layout.k_max);
        let decoded = p.n_src < kmax;
        let bytes = if !decoded {
            Some(std::mem::take(&mut p.buf))
        } else {
            let missing: Vec<u32> = (0..blk.k).filter(|e| p.have[*e as usize / 64] & (1 << (e % 64)) == 0).collect();
            if missing.len() <= self.fast_limit {
                self.few.decode(&mut p.buf, t, blk.k, &missing, &p.repairs).then(|| std::mem::take(&mut p.buf))
            } else {
                let mut d = SourceBlockDecoder::new(0, &self.layout.oti(), self.layout.padded_len() as u64);
                let src = (0..kmax).filter(|e| p.have[*e as usize / 64] & (1 << (e % 64)) != 0).map(|e| {
                    EncodingPacket::new(PayloadId::new(0, e), p.buf[e as usize * t..(e as usize + 1) * t].to_vec())
                });
                let rep = p.repairs.iter().map(|(e, s)| EncodingPacket::new(PayloadId::new(0, *e), s.clone()));
                d.decode(src.chain(rep).collect::<Vec<_>>())
            }
        };
        let Some(mut bytes) = bytes else { return Outcome::Short { b, pend, out } };
        bytes.truncate(blk.len as usize);
        // A chunk stored raw is checked where it lies and written from the block buffer (no copy).
        match metalcast_image::check_or_decode_chunk(&self.manifest, blk.chunk, &bytes, &mut self.zstd, &mut out) {
            Ok(true) => Outcome::Ready { b, data: bytes, spare: out, decoded },
            Ok(false) => Outcome::Ready { b, data: out, spare: bytes, decoded },
            Err(error) => Outcome::Corrupt { b, error, buf: bytes, out, decoded },
        }
    }
}

/// The decode thread's ends: jobs in, outcomes out, and the thread, which
/// ends when the job sender is dropped and returns the CPU seconds it used.
type DecodeThread = (mpsc::SyncSender<Job>, mpsc::Receiver<Outcome>, std::thread::JoinHandle<f64>);

/// One receive of one session.
pub struct Receiver<'a> {
    spec: &'a SessionSpec,
    manifest: &'a Manifest,
    layout: Layout,
    cfg: ReceiverConfig,
    data: Box<dyn PacketSource + 'a>,
    reports: Reports<'a>,
}

/// The report socket, and the counter that makes every report fresh.
struct Reports<'a> {
    spec: &'a SessionSpec,
    control: UdpSocket,
    /// Where reports go: `spec.sender`, until a sender that resumed the
    /// session announces itself.
    to: Cell<SocketAddrV4>,
    /// The last report's counter.
    counter: Cell<u64>,
    /// Reports sent.
    sent: Cell<u64>,
}

impl Reports<'_> {
    /// Sends `report` under the next counter value. Reports are best effort:
    /// a lost one is repeated at the next interval.
    fn send(&self, mut report: Report) {
        report.counter = self.counter.get() + 1;
        self.counter.set(report.counter);
        self.sent.set(self.sent.get() + 1);
        let mut body = Vec::with_capacity(64 + 8 * report.needs.len());
        report.encode(&mut body);
        let p = packet::build(&self.spec.key, Kind::Report, self.spec.session_id, 0, 0, &body);
        let _ = self.control.send_to(&p, self.to.get());
    }
}

impl std::fmt::Debug for Receiver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").field("session", &self.spec.session_id).field("id", &self.cfg.id).finish()
    }
}

impl<'a> Receiver<'a> {
    /// Joins the group and opens the report socket. Call [`Receiver::run`] next.
    pub fn new(spec: &'a SessionSpec, manifest: &'a Manifest, cfg: ReceiverConfig) -> Result<Self, TransportError> {
        spec.validate()?;
        let data = SocketSource::join(spec, cfg.iface)?;
        Self::with_source(spec, manifest, cfg, Box::new(data))
    }

    /// Like [`Receiver::new`], with datagrams from `data` (which must deliver the group's packets).
    pub fn with_source(
        spec: &'a SessionSpec,
        manifest: &'a Manifest,
        cfg: ReceiverConfig,
        data: Box<dyn PacketSource + 'a>,
    ) -> Result<Self, TransportError> {
        spec.validate()?;
        if spec.root_hash != manifest.root_hash {
            return Err(TransportError::Config("session spec is for another image (root hash differs)".into()));
        }
        let layout = Layout::new(manifest, spec.symbol_size);
        layout.check_wire()?;
        let control = sys::control_socket(SocketAddrV4::new(cfg.iface, 0))?;
        control.set_nonblocking(true).map_err(|e| TransportError::io("report socket", e))?;
        // Report counters start at the clock in microseconds, so a receiver
        // restarted under the same id carries on above its earlier reports
        // (it reports far less often than once a microsecond).
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let reports = Reports {
            spec,
            control,
            to: Cell::new(spec.sender),
            counter: Cell::new(u64::try_from(now.as_micros()).unwrap_or(u64::MAX / 2)),
            sent: Cell::new(0),
        };
        Ok(Receiver { spec, manifest, layout, cfg, data, reports })
    }

    /// Starts the decode thread: [`Job`]s in, [`Outcome`]s out.
    fn start_decoder(&self) -> Result<DecodeThread, TransportError> {
        let zstd = zstd::bulk::Decompressor::new().map_err(|e| TransportError::io("zstd decompressor", e))?;
        let mut worker = BlockDecoder {
            layout: self.layout.clone(),
            manifest: self.manifest.clone(),
            few: FewErasures::new(self.layout.k_max),
            fast_limit: fast_erasure_limit(),
            zstd,
        };
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(DECODE_QUEUE);
        let (out_tx, out_rx) = mpsc::channel::<Outcome>();
        // Ends when `job_tx` is dropped; returns the CPU seconds it used.
        let decoder = std::thread::Builder::new()
            .name("metalcast-decode".into())
            .spawn(move || {
                // Decoding can lag; the receive thread must not (a full socket
                // buffer is loss), nor, on a shared machine, a sender.
                sys::lower_thread_priority(DECODE_NICE);
                for job in job_rx {
                    if out_tx.send(worker.work(job)).is_err() {
                        break;
                    }
                }
                sys::thread_cpu_secs()
            })
            .map_err(|e| TransportError::io("starting the decode thread", e))?;
        Ok((job_tx, out_rx, decoder))
    }

    /// Receives until every block is written to `sink`, or fails.
    pub fn run(
        mut self,
        sink: &mut dyn ChunkSink,
        progress: &mut dyn FnMut(&ReceiverProgress),
    ) -> Result<ReceiverSummary, TransportError> {
        let nblocks = self.layout.blocks.len();
        let (job_tx, out_rx, decoder) = self.start_decoder()?;
        let mut st = RxState::new(&self.layout, self.manifest, &self.cfg, job_tx);

        let mut receive = || -> Result<(), TransportError> {
            while st.done < nblocks {
                if self.cfg.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                    return Err(TransportError::ReceiveCancelled { blocks_left: nblocks - st.done });
                }
                let wait =
                    if st.busy > 0 || st.backoff_pending { Duration::from_millis(1) } else { self.cfg.report_interval };
                let n = self.data.recv(wait)?;
                let now = Instant::now();
                for i in 0..n {
                    st.on_datagram(self.spec, self.data.get(i), now)?;
                }
                if let Some((to, epoch)) = st.moved.take() {
                    tracing::info!(%to, epoch, from = %self.reports.to.get(), "the session was resumed by another sender: reporting to it");
                    self.reports.to.set(to);
                }
                while let Ok(o) = out_rx.try_recv() {
                    st.on_outcome(o, sink, &mut *self.data)?;
                }
                let now = Instant::now();
                st.on_progress_tick(now, progress);
                if st.done == nblocks {
                    break;
                }
                if now.duration_since(st.last_packet) > self.cfg.idle_timeout {
                    return Err(st.timeout(self.cfg.idle_timeout));
                }
                if let Some(report) = st.on_report_tick(now, &self.cfg, &*self.data) {
                    self.reports.send(report);
                }
            }
            Ok(())
        };
        if let Err(e) = receive() {
            let reason = match e {
                TransportError::Timeout { .. } => FailReason::TimedOut,
                TransportError::CorruptBlock { .. } => FailReason::CorruptBlock,
                TransportError::Sink { .. } => FailReason::WriteFailed,
                TransportError::ReceiveCancelled { .. } => FailReason::Cancelled,
                _ => FailReason::Other,
            };
            tracing::warn!(?reason, "receive failed: {e}");
            for _ in 0..FAILED_REPORTS {
                self.reports
                    .send(Report { reason, ..st.report(self.cfg.id, ReportState::Failed, st.received, vec![]) });
            }
            return Err(e);
        }

        let secs = st.first_packet.map_or(0.0, |t| t.elapsed().as_secs_f64());
        progress(&st.progress());
        // Before lingering: the fast path keeps dropping the session's symbols meanwhile.
        let loss_estimate = st.seq.loss(st.received + self.data.dropped_on_purpose());
        let acked = self.say_done(st.done as u32, st.received, st.rejected.total(), st.seq.max());
        let reports = self.reports.sent.get();
        Ok(ReceiverSummary { reports, ..st.finish(self.cfg.id, secs, loss_estimate, acked, decoder) })
    }

    /// Repeats the done report until the sender acknowledges it or `linger` passes.
    fn say_done(&self, blocks: u32, received: u64, rejected: u64, max_seq: u64) -> bool {
        let report = Report {
            receiver: self.cfg.id,
            counter: 0,
            state: ReportState::Done,
            reason: FailReason::None,
            blocks_done: blocks,
            received,
            rejected,
            max_seq,
            needs: vec![],
        };
        let until = Instant::now() + self.cfg.linger;
        let mut buf = [0u8; 256];
        while Instant::now() < until {
            self.reports.send(report.clone());
            sys::wait_readable(&self.reports.control, Duration::from_millis(50));
            while let Ok(n) = self.reports.control.recv(&mut buf) {
                if let Ok((h, body)) = packet::open(&self.spec.key, self.spec.session_id, 0, &buf[..n])
                    && h.kind == Kind::Ack
                    && body == self.cfg.id.to_le_bytes()
                {
                    return true;
                }
            }
        }
        false
    }
}

/// What [`Receiver::run`] keeps between events: the blocks' slots, the
/// buffers in reuse, the counters of the summary and the clocks of reports,
/// progress and the idle timeout. One method per event: a datagram arrived
/// ([`on_datagram`](Self::on_datagram), then [`on_poll`](Self::on_poll) or
/// [`on_symbol`](Self::on_symbol)), the decode thread finished a block
/// ([`on_outcome`](Self::on_outcome)), a turn of the loop ended
/// ([`on_progress_tick`](Self::on_progress_tick),
/// [`on_report_tick`](Self::on_report_tick)), the session ended
/// ([`finish`](Self::finish)).
struct RxState<'r> {
    layout: &'r Layout,
    manifest: &'r Manifest,
    /// Symbol size.
    t: usize,
    /// Bytes of a block buffer (see [`recycle`]).
    padded: usize,
    /// [`ReceiverConfig::max_pending_blocks`].
    max_pending_blocks: usize,
    slots: Vec<Slot>,
    /// Blocks pending or with the decode thread.
    pending: usize,
    done: usize,
    first_not_done: usize,
    closed_upto: usize,
    /// Blocks with the decode thread.
    busy: usize,
    /// Symbols that arrived for blocks with the decode thread.
    late: Vec<(usize, u32, Vec<u8>)>,
    /// Block and chunk buffers are reused: fresh memory costs a page fault per 4 KiB on first touch.
    pool: Vec<Vec<u8>>,
    outs: Vec<Vec<u8>>,
    /// To the decode thread, which ends when this is dropped.
    jobs: mpsc::SyncSender<Job>,
    rejected: Rejected,
    received: u64,
    redundant: u64,
    deferred: u64,
    decoded_blocks: u64,
    decode_retries: u64,
    hash_failures: u64,
    /// Hash failures per block, for [`MAX_HASH_FAILURES`].
    block_hash_failures: HashMap<usize, u32>,
    bytes_written: u64,
    /// The sequence numbers heard, for the loss estimate.
    seq: crate::seq::SeqRange,
    /// The session's report address and epoch, once a sender that resumed
    /// it said where it is (a fresh poll that carries them): taken by the
    /// loop, which sends the reports there from then on.
    moved: Option<(SocketAddrV4, u16)>,
    /// The highest epoch heard: a poll of an older one moves nothing.
    epoch: u16,
    last_report: Instant,
    /// When the last packet that advanced the session arrived (see
    /// [`ReceiverConfig::idle_timeout`]).
    last_packet: Instant,
    first_packet: Option<Instant>,
    last_progress: Instant,
    report_now: bool,
    /// What the sender's plans set (None until the first plan: then every
    /// `report_interval` brings a report, as in version 3).
    plans: Option<PlanParams>,
    /// Per block: the plan covering it, repair seen, asks.
    fb: Vec<BlockFeedback>,
    /// A back-off is running: the loop wakes every millisecond.
    backoff_pending: bool,
    /// When the needs are next checked against the plans.
    next_check: Instant,
    /// xorshift state for back-offs.
    rng: u64,
}

/// What the sender's plans ask of a receiver.
#[derive(Debug, Clone, Copy)]
struct PlanParams {
    /// Interval of status reports.
    status: Duration,
    /// Longest back-off before asking for what no plan covers.
    backoff_max: Duration,
}

/// How often needs are checked against the plans (back-offs run on this grain).
const CHECK_INTERVAL: Duration = Duration::from_millis(1);
/// After a repair symbol of a block, no ask for it for this long: the rest
/// of its burst may be on the way (a burst's symbols go back to back, about
/// 60 us apart at 200 Mbit/s).
const REPAIR_QUIET: Duration = Duration::from_millis(2);

/// The repair a plan announced for one block.
#[derive(Debug, Clone, Copy)]
struct Cover {
    /// ESIs `first..end`.
    first: u32,
    end: u32,
    /// Taken as covering the block until then at most ([`PLAN_HOLD`]).
    until: Instant,
    /// Sequence number of the burst's last symbol, once one of its symbols
    /// arrived (a burst's symbols have consecutive sequence numbers).
    last_seq: Option<u64>,
}

/// Feedback state of one block.
#[derive(Debug, Clone, Copy, Default)]
struct BlockFeedback {
    cover: Option<Cover>,
    /// One past the highest repair ESI received (0: none).
    repair_end: u32,
    /// When a report last asked for the block.
    asked: Option<Instant>,
    /// No ask before then: a repair symbol of the block arrived just now, so
    /// a burst may still be coming (its plan may have been lost).
    quiet: Option<Instant>,
    /// When the running back-off ends.
    backoff: Option<Instant>,
}

impl BlockFeedback {
    /// Repair symbols a plan still promises the block: none once its burst
    /// is over (its last sequence number passed, or its last ESI seen) or
    /// the plan is older than [`PLAN_HOLD`].
    fn coming(&self, now: Instant, seq_max: u64) -> u32 {
        match self.cover {
            Some(c) if now < c.until && c.last_seq.is_none_or(|s| seq_max < s) && self.repair_end < c.end => {
                c.end - c.first.max(self.repair_end)
            }
            _ => 0,
        }
    }
}

impl<'r> RxState<'r> {
    fn new(layout: &'r Layout, manifest: &'r Manifest, cfg: &ReceiverConfig, jobs: mpsc::SyncSender<Job>) -> Self {
        RxState {
            layout,
            manifest,
            t: usize::from(layout.symbol_size),
            padded: layout.padded_len(),
            max_pending_blocks: cfg.max_pending_blocks,
            slots: (0..layout.blocks.len()).map(|_| Slot::Idle).collect(),
            pending: 0,
            done: 0,
            first_not_done: 0,
            closed_upto: 0,
            busy: 0,
            late: Vec::new(),
            pool: Vec::new(),
            outs: Vec::new(),
            jobs,
            rejected: Rejected::default(),
            received: 0,
            redundant: 0,
            deferred: 0,
            decoded_blocks: 0,
            decode_retries: 0,
            hash_failures: 0,
            block_hash_failures: HashMap::new(),
            bytes_written: 0,
            seq: crate::seq::SeqRange::default(),
            moved: None,
            epoch: 0,
            last_report: Instant::now() - cfg.report_interval,
            last_packet: Instant::now(),
            first_packet: None,
            last_progress: Instant::now(),
            report_now: true,
            plans: None,
            fb: vec![BlockFeedback::default(); layout.blocks.len()],
            backoff_pending: false,
            next_check: Instant::now(),
            rng: cfg.id ^ 0x9e37_79b9_7f4a_7c15 | 1,
        }
    }

    /// A datagram of the group, received at `now`: counted as rejected, or
    /// authentic and handed on by kind. Only a packet that advances the
    /// session restarts the idle timeout: one newer than every packet seen
    /// (sequence numbers count up, and a replay can not raise its own), or a
    /// symbol the receiver lacked.
    #[inline]
    fn on_datagram(&mut self, spec: &SessionSpec, pkt: &[u8], now: Instant) -> Result<(), TransportError> {
        let (h, body) = match packet::open(&spec.key, spec.session_id, self.seq.max(), pkt) {
            Ok(x) => x,
            Err(r) => {
                self.rejected.count(r);
                return Ok(());
            }
        };
        // A resumed sender's jump is a handover, not loss (`seq` module docs).
        let fresh = self.seq.see(h.seq);
        self.received += 1;
        if self.first_packet.is_none() {
            // It hears the group: the sender is waiting to know.
            self.report_now = true;
            self.first_packet = Some(now);
        }
        let advanced = match h.kind {
            Kind::Poll => fresh | self.on_poll(body, fresh),
            Kind::Symbol => fresh | self.on_symbol(h.a, h.esi, h.seq, body, now)?,
            Kind::Plan => fresh && self.on_plan(body, now),
            _ => {
                self.rejected.invalid += 1;
                false
            }
        };
        if advanced {
            self.last_packet = now;
        }
        Ok(())
    }

    /// An authentic poll: the sender's cursor closes the blocks before it; a
    /// `fresh` one (not a replay) asks for a report at once. Returns whether
    /// it closed a block.
    #[inline]
    fn on_poll(&mut self, body: &[u8], fresh: bool) -> bool {
        let Ok(poll) = packet::Poll::decode(body) else {
            self.rejected.invalid += 1;
            return false;
        };
        if let Some((to, epoch)) = poll.moved
            && fresh
            && epoch > self.epoch
        {
            // A sender that took the session over: reports go to it now.
            self.epoch = epoch;
            self.moved = Some((to, epoch));
            self.report_now = true;
        }
        let cursor = poll.pass_blocks as usize;
        let before = self.closed_upto;
        self.closed_upto = self.closed_upto.max(cursor.min(self.slots.len()));
        // Once plans come, a poll asks only for needs no plan covers (checked on the next tick).
        self.report_now |= fresh && self.plans.is_none();
        self.closed_upto > before
    }

    /// An authentic plan newer than every packet seen (a replayed one is
    /// ignored): the status interval, and the repair planned per block,
    /// which covers the block's needs for at most [`PLAN_HOLD`]. Returns
    /// whether it was valid.
    fn on_plan(&mut self, body: &[u8], now: Instant) -> bool {
        let Ok(plan) = Plan::decode(body) else {
            self.rejected.invalid += 1;
            return false;
        };
        self.plans = Some(PlanParams {
            status: Duration::from_millis(u64::from(plan.status_ms)),
            backoff_max: Duration::from_micros(u64::from(plan.backoff_us)),
        });
        for e in plan.entries {
            let Some(fb) = self.fb.get_mut(e.block as usize) else {
                self.rejected.invalid += 1;
                continue;
            };
            let end = e.first.saturating_add(e.count).min(packet::MAX_ESI + 1);
            fb.cover = Some(Cover { first: e.first, end, until: now + PLAN_HOLD, last_seq: None });
            // A new plan: whatever it leaves uncovered is asked for afresh.
            fb.asked = None;
            fb.backoff = None;
        }
        true
    }

    /// An authentic symbol `sym` of block `b`, ESI `esi`, sequence number
    /// `seq`, received at `now`: buffered, and the block handed to the decode
    /// thread once it has enough. Returns whether it was new to a block being
    /// collected.
    #[inline]
    fn on_symbol(&mut self, b: u32, esi: u32, seq: u64, sym: &[u8], now: Instant) -> Result<bool, TransportError> {
        let b = b as usize;
        let t = self.t;
        if b >= self.slots.len() || sym.len() != t {
            self.rejected.invalid += 1;
            return Ok(false);
        }
        let (k, kmax) = (self.layout.blocks[b].k, self.layout.k_max);
        if esi >= k && esi < kmax {
            // Implicit zero padding is never sent.
            self.rejected.invalid += 1;
            return Ok(false);
        }
        if esi < k {
            self.closed_upto = self.closed_upto.max(b);
        } else {
            // A repair symbol: where the block's planned burst stands.
            // The sender sent a burst for the block: if it leaves the block
            // short, ask again as soon as it is past (not [`ASK_RETRY`] after
            // the last ask), but not while it is still coming.
            let fb = &mut self.fb[b];
            fb.asked = None;
            fb.quiet = Some(now + REPAIR_QUIET);
            fb.repair_end = fb.repair_end.max(esi + 1);
            if let Some(c) = fb.cover.as_mut()
                && c.last_seq.is_none()
                && (c.first..c.end).contains(&esi)
            {
                c.last_seq = Some(seq + u64::from(c.end - 1 - esi));
            }
        }
        if matches!(self.slots[b], Slot::Done) {
            self.redundant += 1;
            return Ok(false);
        }
        if matches!(self.slots[b], Slot::Busy) {
            // Kept in case the decode needs more symbols; dropped once the block is done.
            if self.late.len() < MAX_LATE {
                self.late.push((b, esi, sym.to_vec()));
            } else {
                self.redundant += 1;
            }
            return Ok(false);
        }
        if matches!(self.slots[b], Slot::Idle) {
            if self.pending >= self.max_pending_blocks {
                self.deferred += 1;
                return Ok(false);
            }
            // Symbols past the block's data are zeros both ends know: count them as received.
            let mut have = vec![0u64; (kmax as usize).div_ceil(64)];
            for e in k..kmax {
                have[e as usize / 64] |= 1 << (e % 64);
            }
            let mut buf = self.pool.pop().unwrap_or_else(|| vec![0u8; kmax as usize * t]);
            buf[k as usize * t..].fill(0);
            self.slots[b] = Slot::Pending(Box::new(Pend { have, n_src: kmax - k, buf, repairs: Vec::new(), extra: 0 }));
            self.pending += 1;
        }
        let Slot::Pending(p) = &mut self.slots[b] else { unreachable!("made pending above") };
        if !p.add(esi, sym, t, kmax) {
            self.redundant += 1;
            return Ok(false);
        }
        if !p.ready(kmax) {
            return Ok(true);
        }
        // Enough symbols: to the decode thread (which decodes only if a source symbol is missing).
        let Slot::Pending(pend) = std::mem::replace(&mut self.slots[b], Slot::Busy) else {
            unreachable!("pending above")
        };
        self.busy += 1;
        submit(&self.jobs, Job { b, pend, out: self.outs.pop().unwrap_or_default() })?;
        Ok(true)
    }

    /// The decode thread is done with a block.
    fn on_outcome(
        &mut self,
        o: Outcome,
        sink: &mut dyn ChunkSink,
        packets: &mut dyn PacketSource,
    ) -> Result<(), TransportError> {
        self.busy -= 1;
        match o {
            Outcome::Ready { b, data, spare, decoded } => self.on_block_ready(b, data, spare, decoded, sink, packets),
            Outcome::Short { b, pend, out } => self.on_block_short(b, pend, out),
            Outcome::Corrupt { b, error, buf, out, decoded } => self.on_block_corrupt(b, error, buf, out, decoded),
        }
    }

    /// Block `b` decoded and verified: written to the sink, and done.
    fn on_block_ready(
        &mut self,
        b: usize,
        data: Vec<u8>,
        spare: Vec<u8>,
        decoded: bool,
        sink: &mut dyn ChunkSink,
        packets: &mut dyn PacketSource,
    ) -> Result<(), TransportError> {
        self.redundant += self.late.extract_if(.., |x| x.0 == b).count() as u64;
        let chunk = self.layout.blocks[b].chunk;
        sink.write_chunk(self.manifest, chunk, &data).map_err(|source| TransportError::Sink { chunk, source })?;
        // A raw chunk's data is its stored form; otherwise `spare` holds the block.
        let stored = if self.manifest.chunks[chunk].raw { &data } else { &spare };
        sink.stored_chunk(self.manifest, chunk, stored).map_err(|source| TransportError::Sink { chunk, source })?;
        self.bytes_written += data.len() as u64;
        self.decoded_blocks += u64::from(decoded);
        self.slots[b] = Slot::Done;
        self.pending -= 1;
        packets.block_done(b as u32);
        self.done += 1;
        while self.first_not_done < self.slots.len() && matches!(self.slots[self.first_not_done], Slot::Done) {
            self.first_not_done += 1;
        }
        recycle(&mut self.pool, &mut self.outs, data, spare, self.padded);
        Ok(())
    }

    /// Block `b`'s symbols did not determine it: it waits for one more.
    fn on_block_short(&mut self, b: usize, mut pend: Box<Pend>, out: Vec<u8>) -> Result<(), TransportError> {
        self.decoded_blocks += 1;
        self.decode_retries += 1;
        pend.extra += 1;
        for (_, esi, sym) in self.late.extract_if(.., |x| x.0 == b) {
            if !pend.add(esi, &sym, self.t, self.layout.k_max) {
                self.redundant += 1;
            }
        }
        if pend.ready(self.layout.k_max) {
            self.busy += 1;
            submit(&self.jobs, Job { b, pend, out })?;
        } else {
            self.slots[b] = Slot::Pending(pend);
            recycle(&mut self.pool, &mut self.outs, Vec::new(), out, self.padded);
        }
        Ok(())
    }

    /// Block `b` decoded to something the manifest does not sign: fetched
    /// afresh, unless it failed [`MAX_HASH_FAILURES`] times already.
    fn on_block_corrupt(
        &mut self,
        b: usize,
        error: BundleError,
        buf: Vec<u8>,
        out: Vec<u8>,
        decoded: bool,
    ) -> Result<(), TransportError> {
        self.decoded_blocks += u64::from(decoded);
        self.late.retain(|x| x.0 != b);
        // Never written. Forget every symbol of the block and fetch it afresh.
        tracing::warn!("block {b}: {error}; discarding its symbols");
        self.hash_failures += 1;
        self.slots[b] = Slot::Idle;
        self.pending -= 1;
        self.report_now = true;
        recycle(&mut self.pool, &mut self.outs, buf, out, self.padded);
        let failures = self.block_hash_failures.entry(b).or_insert(0);
        *failures += 1;
        if *failures >= MAX_HASH_FAILURES {
            return Err(TransportError::CorruptBlock {
                block: b,
                chunk: self.layout.blocks[b].chunk,
                failures: *failures,
            });
        }
        Ok(())
    }

    fn progress(&self) -> ReceiverProgress {
        ReceiverProgress { blocks_done: self.done, total_blocks: self.slots.len(), received: self.received }
    }

    /// Hands `progress` a snapshot at most every 100 ms.
    fn on_progress_tick(&mut self, now: Instant, progress: &mut dyn FnMut(&ReceiverProgress)) {
        if now.duration_since(self.last_progress) >= Duration::from_millis(100) {
            self.last_progress = now;
            progress(&self.progress());
        }
    }

    /// A report from receiver `id` in `state`.
    fn report(&self, id: u64, state: ReportState, received: u64, needs: Vec<(u32, u32)>) -> Report {
        Report {
            receiver: id,
            counter: 0,
            state,
            reason: FailReason::None,
            blocks_done: self.done as u32,
            received,
            rejected: self.rejected.total(),
            max_seq: self.seq.max(),
            needs,
        }
    }

    /// The need report to send now, if one is due (asked for, or an interval since the last).
    ///
    /// Until the first plan: every `report_interval`, with every need. Then a
    /// status report (every need) at the plans' interval, and between them a
    /// need report when a block's need exceeds what the plans still promise
    /// it and its back-off ran out (unless a report asked for it less than
    /// [`ASK_RETRY`] ago), with the needs no plan covers.
    fn on_report_tick(&mut self, now: Instant, cfg: &ReceiverConfig, packets: &dyn PacketSource) -> Option<Report> {
        let interval = self.plans.map_or(cfg.report_interval, |p| p.status);
        let status = self.report_now || now.duration_since(self.last_report) >= interval;
        if !status && (self.plans.is_none() || now < self.next_check) {
            return None;
        }
        self.next_check = now + CHECK_INTERVAL;
        let p_loss = self.seq.loss(self.received + packets.dropped_on_purpose());
        let inflate = |need: u32| need + ((f64::from(need) * p_loss / (1.0 - p_loss)).ceil() as u32);
        let room = cfg.max_pending_blocks.saturating_sub(self.pending);
        let nblocks = self.slots.len();
        let mut needs =
            needs(self.layout, &self.slots, self.first_not_done..self.closed_upto.min(nblocks), room, inflate);
        if !status {
            needs = self.uncovered(needs, now)?;
        }
        self.report_now = false;
        self.last_report = now;
        for &(b, need) in &needs {
            // A status report carries covered needs too; only the others count as asked.
            let fb = &mut self.fb[b as usize];
            if need > fb.coming(now, self.seq.max()) {
                fb.asked = Some(now);
                fb.backoff = None;
            }
        }
        self.backoff_pending = self.fb.iter().any(|f| f.backoff.is_some());
        let state = if self.first_packet.is_none() { ReportState::Hello } else { ReportState::Receiving };
        Some(self.report(cfg.id, state, self.received + packets.dropped_on_purpose(), needs))
    }

    /// Of `needs`, those to ask for now: the needs no plan covers and no
    /// recent report asked for, if the back-off of one of them ran out (None
    /// if none did). A block's back-off starts when its need first exceeds
    /// what the plans promise, and is shorter the larger the excess
    /// ([`feedback::backoff`]); a plan that covers the need stops it.
    fn uncovered(&mut self, needs: Vec<(u32, u32)>, now: Instant) -> Option<Vec<(u32, u32)>> {
        let backoff_max = self.plans.map_or(Duration::ZERO, |p| p.backoff_max);
        let seq_max = self.seq.max();
        let mut fire = false;
        let mut out = Vec::new();
        for (b, need) in needs {
            let fb = &mut self.fb[b as usize];
            let coming = fb.coming(now, seq_max);
            if need <= coming
                || fb.asked.is_some_and(|t| now.duration_since(t) < ASK_RETRY)
                || fb.quiet.is_some_and(|t| now < t)
            {
                fb.backoff = None;
                continue;
            }
            let at = match fb.backoff {
                Some(at) => at,
                None => {
                    self.rng ^= self.rng << 13;
                    self.rng ^= self.rng >> 7;
                    self.rng ^= self.rng << 17;
                    let u = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
                    *fb.backoff.insert(now + feedback::backoff(backoff_max, need - coming, u))
                }
            };
            fire |= at <= now;
            out.push((b, need));
        }
        self.backoff_pending = self.fb.iter().any(|f| f.backoff.is_some());
        fire.then_some(out)
    }

    /// Nothing advanced the session for `idle_timeout`: what the receive got stuck on.
    fn timeout(&self, idle_timeout: Duration) -> TransportError {
        let secs = idle_timeout.as_secs();
        let (first_not_done, closed_upto, pending) = (self.first_not_done, self.closed_upto, self.pending);
        let detail = match self.slots.get(first_not_done) {
            Some(Slot::Pending(p)) => format!(
                "first missing block {first_not_done}: {} source + {} repair of {} symbols, {} extra wanted, closed_upto {closed_upto}",
                p.n_src,
                p.repairs.len(),
                self.layout.k_max,
                p.extra
            ),
            _ => format!(
                "first missing block {first_not_done}: nothing received, closed_upto {closed_upto}, {pending} pending"
            ),
        };
        TransportError::Timeout { secs, blocks_left: self.slots.len() - self.done, detail }
    }

    /// The session is over: stops the decode thread, waits for it and sums up.
    fn finish(
        self,
        id: u64,
        secs: f64,
        loss_estimate: f64,
        acked: bool,
        decoder: std::thread::JoinHandle<f64>,
    ) -> ReceiverSummary {
        drop(self.jobs);
        let decode_cpu_secs = decoder.join().unwrap_or(0.0);
        ReceiverSummary {
            id,
            secs,
            blocks: self.done,
            bytes_written: self.bytes_written,
            received: self.received,
            redundant: self.redundant,
            deferred: self.deferred,
            rejected: self.rejected,
            decoded_blocks: self.decoded_blocks,
            decode_retries: self.decode_retries,
            hash_failures: self.hash_failures,
            loss_estimate,
            acked,
            decode_cpu_secs,
            reports: 0,
        }
    }
}

/// Hands a block to the decode thread (waits while it is [`DECODE_QUEUE`] blocks behind).
fn submit(jobs: &mpsc::SyncSender<Job>, job: Job) -> Result<(), TransportError> {
    jobs.send(job).map_err(|_| TransportError::io("decode thread", std::io::Error::other("the decode thread stopped")))
}

/// Keeps a few emptied buffers for reuse: those big enough for a block (at
/// `padded` bytes, as fresh block buffers are) in `pool`, others in `outs`.
fn recycle(pool: &mut Vec<Vec<u8>>, outs: &mut Vec<Vec<u8>>, a: Vec<u8>, b: Vec<u8>, padded: usize) {
    for mut v in [a, b] {
        if v.capacity() >= padded && pool.len() < 4 {
            v.resize(padded, 0);
            pool.push(v);
        } else if outs.len() < 4 {
            outs.push(v);
        }
    }
}

/// The needs to report: for closed blocks not yet written, lowest first, how
/// many more symbols each wants (inflated for the observed loss). Blocks with
/// nothing buffered are asked for only while `room` allows, which keeps the
/// receiver's memory bounded.
fn needs(
    layout: &Layout,
    slots: &[Slot],
    closed: std::ops::Range<usize>,
    mut room: usize,
    inflate: impl Fn(u32) -> u32,
) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let start = closed.start;
    let closed_slots = slots.get(closed).unwrap_or_default();
    for (b, slot) in closed_slots.iter().enumerate().map(|(i, s)| (i + start, s)) {
        if out.len() == MAX_NEEDS_PER_REPORT {
            break;
        }
        match slot {
            Slot::Done => {}
            Slot::Pending(p) => {
                let have = p.n_src + p.repairs.len() as u32;
                out.push((b as u32, inflate((layout.k_max + p.extra).saturating_sub(have).max(1))));
            }
            Slot::Idle if room > 0 => {
                room -= 1;
                out.push((b as u32, inflate(layout.blocks[b].k)));
            }
            Slot::Idle | Slot::Busy => {}
        }
    }
    out
}
