//! The lifecycle agent: network up, check in with the inventory, long-poll
//! for instructions (re-checking in with backoff whenever the control plane
//! is unreachable or has forgotten the node), and carry out deployments:
//! accept (manifest trusted) -> receive -> flush -> verify -> hand over,
//! reporting every phase with its wall time. The API is in
//! `docs/runtime-api.md`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use metalcast_image::{PublicKey, SignedManifest};
use metalcast_runtime_api::{
    Action, CheckIn, CheckInReply, Chosen, Deploy, Handover, Instruction, Offers, Phase, Report, Role, Seed, Status,
    Target, Wipe, WipeMode,
};
use metalcast_transport::{Receiver, ReceiverConfig, TransportError};

use crate::config::NetConfig;
use crate::guard::{self, Authority, RuntimeFacts};
use crate::seed::{Held, Keeping, SeedError};
use crate::target::{TargetError, Targets};
use crate::{exit, inventory, net, sys};

/// Agent settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Control plane base URL, e.g. `http://10.77.0.1:8080`.
    pub control_plane: String,
    /// How to bring the network up.
    pub net: NetConfig,
    /// Interface to use (default: first non-loopback).
    pub iface: Option<String>,
    /// What this system is.
    pub role: Role,
    /// Trusted manifest signing keys.
    pub trusted: Vec<PublicKey>,
    /// Accept unsigned manifests (hashes are still checked).
    pub allow_unsigned: bool,
    /// Replace every instruction's hand-over (e.g. `none` where kexec is impossible).
    pub handover_override: Option<Handover>,
    /// Return after the first deployment instead of waiting for more.
    pub once: bool,
    /// Longest pause between reconnection attempts.
    pub max_backoff: Duration,
    /// Long-poll duration to ask for.
    pub poll_wait: Duration,
    /// Attended mode: show the images offered on the console and boot the
    /// default after this countdown unless someone chooses.
    pub attended: Option<Duration>,
    /// How a kexec hand-over stages the kernel (`kexec_file_load`, legacy `kexec_load`, or file then load).
    pub kexec_method: crate::kexec::KexecMethod,
    /// Block devices an agent that is not the node's runtime may write
    /// (`--allow-disk-writes`); empty: the node's disks if this is the
    /// runtime, else none ([`crate::guard`]).
    pub allow_disk_writes: Vec<PathBuf>,
    /// The netboot check-in token (`metalcast.token=`), sent with every check-in.
    pub token: Option<String>,
}

/// Talks to the control plane.
#[derive(Debug, Clone)]
struct Client {
    /// The control plane's base URLs (replicas); requests go to `bases[current]`.
    bases: Arc<Vec<String>>,
    /// Which one answers now: moves on to the next when it fails (module docs of [`Client::new`]).
    current: Arc<AtomicUsize>,
    http: ureq::Agent,
}

enum PollError {
    /// 404: the server does not know us (restarted): check in again.
    Unknown,
    /// Unreachable, timed out, or an unexpected answer.
    Other(String),
}

impl Client {
    /// A client of the control plane at `bases`: one base URL, or several
    /// separated by commas (replicas without a load balancer in front,
    /// `docs/scale-out.md`). Every request goes to the current one; when it
    /// cannot be reached or answers 5xx, the next one is current for the
    /// following requests (a check-in, poll or report retry).
    fn new(bases: &str) -> Self {
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(3)))
            .build()
            .into();
        let mut list: Vec<String> =
            bases.split(',').map(|b| b.trim().trim_end_matches('/').to_string()).filter(|b| !b.is_empty()).collect();
        if list.is_empty() {
            list.push(String::new());
        }
        Client { bases: Arc::new(list), current: Arc::new(AtomicUsize::new(0)), http }
    }

    /// The base URL requests go to now.
    fn base(&self) -> &str {
        &self.bases[self.current.load(Ordering::Relaxed) % self.bases.len()]
    }

    /// The current base failed: the next one is tried from now on.
    fn next_base(&self) {
        if self.bases.len() > 1 {
            let i = self.current.fetch_add(1, Ordering::Relaxed).wrapping_add(1) % self.bases.len();
            eprintln!("metalcast: trying the control plane at {} next", self.bases[i]);
        }
    }

    /// `e`, after moving on to the next base.
    fn failed<E>(&self, e: E) -> E {
        self.next_base();
        e
    }

    fn checkin(&self, c: &CheckIn) -> Result<CheckInReply, String> {
        let mut r = self
            .http
            .post(format!("{}/v1/runtime/checkin", self.base()))
            .config()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .send_json(c)
            .map_err(|e| self.failed(e.to_string()))?;
        if r.status().is_server_error() {
            self.next_base();
        }
        if r.status() != 200 {
            return Err(format!(
                "check-in answered {}: {}",
                r.status(),
                r.body_mut().read_to_string().unwrap_or_default()
            ));
        }
        r.body_mut().read_json().map_err(|e| format!("check-in reply: {e}"))
    }

    fn poll(&self, node: &str, wait: Duration) -> Result<Option<Instruction>, PollError> {
        let mut r = self
            .http
            .get(format!("{}/v1/runtime/nodes/{node}/instruction?wait={}", self.base(), wait.as_secs()))
            .config()
            .timeout_global(Some(wait + Duration::from_secs(10)))
            .build()
            .call()
            .map_err(|e| self.failed(PollError::Other(e.to_string())))?;
        match r.status().as_u16() {
            200 => r.body_mut().read_json().map(Some).map_err(|e| PollError::Other(format!("instruction: {e}"))),
            204 => Ok(None),
            404 => Err(PollError::Unknown),
            s if s >= 500 => Err(self.failed(PollError::Other(format!("poll answered {s}")))),
            s => Err(PollError::Other(format!("poll answered {s}"))),
        }
    }

    fn offers(&self, node: &str) -> Result<Offers, String> {
        let mut r = self
            .http
            .get(format!("{}/v1/runtime/nodes/{node}/offers", self.base()))
            .config()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .call()
            .map_err(|e| e.to_string())?;
        if r.status() != 200 {
            return Err(format!("offers answered {}", r.status()));
        }
        r.body_mut().read_json().map_err(|e| format!("offers: {e}"))
    }

    fn choose(&self, node: &str, index: usize) -> Result<Chosen, String> {
        let mut r = self
            .http
            .post(format!("{}/v1/runtime/nodes/{node}/offers/{index}", self.base()))
            .config()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .send_empty()
            .map_err(|e| e.to_string())?;
        if r.status() != 200 {
            return Err(format!("choosing offer {index} answered {}", r.status()));
        }
        r.body_mut().read_json().map_err(|e| format!("choice: {e}"))
    }

    /// Posts a report, retrying while the control plane is unreachable or
    /// failing (a restart, or a replica taking the deployment over, resumes
    /// it and wants the report), for at most [`REPORT_RETRY_FOR`].
    fn report(&self, node: &str, r: &Report) {
        let until = std::time::Instant::now() + REPORT_RETRY_FOR;
        for attempt in 0u32.. {
            let url = format!("{}/v1/runtime/nodes/{node}/reports", self.base());
            match self.http.post(&url).config().timeout_global(Some(Duration::from_secs(5))).build().send_json(r) {
                Ok(resp) if resp.status().is_success() => return,
                // Refused for good (e.g. 409: an instruction of an earlier server process): do not repeat it.
                Ok(resp) if resp.status().is_client_error() => {
                    eprintln!("metalcast: report {:?} refused ({}); not retried", r.phase, resp.status());
                    return;
                }
                Ok(resp) => {
                    eprintln!("metalcast: report {:?} answered {}", r.phase, resp.status());
                    self.next_base();
                }
                Err(e) => {
                    eprintln!("metalcast: report {:?}: {e}", r.phase);
                    self.next_base();
                }
            }
            let wait = (Duration::from_millis(200) * 2u32.pow(attempt.min(5))).min(Duration::from_secs(5));
            if std::time::Instant::now() + wait > until {
                eprintln!("metalcast: report {:?} given up after {REPORT_RETRY_FOR:?}", r.phase);
                return;
            }
            std::thread::sleep(wait);
        }
    }
}

/// How long a report is retried while the control plane cannot take it: a
/// restart, or a replica's takeover after its dead timeout (30 s by default).
const REPORT_RETRY_FOR: Duration = Duration::from_secs(90);

enum ReportMsg {
    Post(String, Box<Report>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// Posts phase reports from a background thread, in order, so the control
/// plane never sits on a deployment's critical path (e.g. a connection
/// whose SYN is lost while the NIC is still flooded by the session costs a
/// 1 s retransmission); [`Reporter::flush`] waits for them, bounded, before
/// a kexec or an exit.
#[derive(Clone)]
struct Reporter {
    tx: std::sync::mpsc::Sender<ReportMsg>,
}

impl Reporter {
    fn new(client: Client) -> Reporter {
        let (tx, rx) = std::sync::mpsc::channel::<ReportMsg>();
        std::thread::spawn(move || {
            for m in rx {
                match m {
                    ReportMsg::Post(node, r) => client.report(&node, &r),
                    ReportMsg::Flush(ack) => {
                        let _ = ack.send(());
                    }
                }
            }
        });
        Reporter { tx }
    }

    fn post(&self, node: &str, r: Report) {
        let _ = self.tx.send(ReportMsg::Post(node.to_string(), Box::new(r)));
    }

    /// Waits until every report queued so far was posted (or dropped after
    /// its retries), at most `timeout`; returns whether they all were.
    fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = std::sync::mpsc::channel();
        self.tx.send(ReportMsg::Flush(ack)).is_ok() && done.recv_timeout(timeout).is_ok()
    }
}

/// Longest wait for queued reports before a kexec or an exit.
const REPORT_FLUSH: Duration = Duration::from_secs(10);

/// Result of one phase: Ok(detail, data) or Err(exit code, detail).
type PhaseResult = Result<(String, serde_json::Value), (u8, String)>;

struct Run<'a> {
    reporter: &'a Reporter,
    /// What this agent may write.
    authority: &'a Authority,
    node: String,
    boot_id: String,
    instruction: u64,
    /// The instruction's multicast session (deploy, seed): every report names it.
    session: Option<u64>,
}

impl Run<'_> {
    /// Runs one phase, prints and reports it; returns whether it succeeded.
    fn phase(&self, phase: Phase, f: impl FnOnce() -> PhaseResult) -> bool {
        let t = Instant::now();
        let r = f();
        let secs = t.elapsed().as_secs_f64();
        let (status, exit_code, detail, data) = match r {
            Ok((d, data)) => (Status::Ok, exit::OK, d, data),
            Err((code, d)) => (Status::Failed, code, d, serde_json::Value::Null),
        };
        println!("metalcast: phase {phase:?} {status:?} in {secs:.2}s at {:.2}s uptime: {detail}", inventory::uptime());
        let report = Report {
            instruction: self.instruction,
            boot_id: self.boot_id.clone(),
            phase,
            status,
            secs,
            exit_code,
            detail,
            data,
            session: self.session,
        };
        self.reporter.post(&self.node, report);
        status == Status::Ok
    }
}

fn target_code(e: &TargetError) -> u8 {
    match e {
        TargetError::Unsuitable(_) => exit::USAGE,
        _ => exit::WRITE,
    }
}

/// Carries out one deployment. Returns only if it did not hand over by
/// kexec (failure, or hand-over `none` or `vm`); the exit code says how it
/// ended. After a `none` or `vm` hand-over `held` is the received image in
/// its stored form (seed mode); a deployment that gets past `accept` first
/// stops a running VM and drops the image held before.
fn deploy(cfg: &AgentConfig, run: &Run<'_>, iface: Ipv4Addr, d: &Deploy, held: &mut Option<Held>) -> u8 {
    let mut manifest = None;
    // A disk target is checked and claimed before anything else happens, and
    // stays claimed while it is written and verified.
    let mut claim = None;
    let ok = run.phase(Phase::Accept, || {
        if let Target::Disk { device } = &d.target {
            let c = guard::claim(run.authority, std::path::Path::new(device))
                .map_err(|e| (exit::REFUSED, e.to_string()))?;
            claim = Some(c);
        }
        let bytes = d.manifest_bytes().map_err(|e| (exit::USAGE, e.to_string()))?;
        let sm = SignedManifest::from_bytes(&bytes).map_err(|e| (exit::UNTRUSTED, e.to_string()))?;
        sm.verify_signature(&cfg.trusted, cfg.allow_unsigned).map_err(|e| (exit::UNTRUSTED, e.to_string()))?;
        if d.session.root_hash != sm.manifest.root_hash {
            return Err((exit::UNTRUSTED, "session is for another image (root hash differs)".into()));
        }
        let detail =
            format!("{} ({} parts, root {})", sm.manifest.name, sm.manifest.parts.len(), &sm.manifest.root_hash[..16]);
        manifest = Some(sm.manifest);
        Ok((detail, serde_json::Value::Null))
    });
    let Some(m) = manifest.filter(|_| ok) else {
        return if claim.is_none() && device_of(d).is_some() { exit::REFUSED } else { exit::UNTRUSTED };
    };
    // One tenant at a time: a new deployment replaces the VM (which may be using the disk).
    let stopped = crate::vm::stop_all(Duration::from_secs(10));
    if stopped > 0 {
        println!("metalcast: stopped the running VM before the new deployment");
    }
    *held = None;
    let handover = cfg.handover_override.unwrap_or(d.handover);
    // Seed mode: after a hand-over that leaves the runtime up, keep the stored chunks.
    let mut keep = match handover {
        Handover::Kexec => None,
        Handover::None | Handover::Vm => crate::seed::fits(&m, d.target == Target::Memory, inventory::mem_available())
            .and_then(|()| Held::new(&m).map_err(|e| e.to_string()))
            .map_err(|e| eprintln!("metalcast: not keeping the image for seeding: {e}"))
            .ok(),
    };
    let device = device_of(d);
    let mut targets = None;
    let ok = run.phase(Phase::Receive, || {
        let mut t = Targets::new(&m, device.as_deref()).map_err(|e| (target_code(&e), e.to_string()))?;
        let rcfg =
            ReceiverConfig { iface, idle_timeout: Duration::from_secs(d.idle_timeout_secs), ..Default::default() };
        let rx = Receiver::new(&d.session, &m, rcfg).map_err(|e| (exit::FAILURE, e.to_string()))?;
        let r = match keep.as_mut() {
            Some(held) => rx.run(&mut Keeping { sink: &mut t, held }, &mut |_| {}),
            None => rx.run(&mut t, &mut |_| {}),
        };
        let s = r.map_err(|e| {
            let code = match e {
                TransportError::Timeout { .. } => exit::TIMEOUT,
                TransportError::Sink { .. } => exit::WRITE,
                TransportError::CorruptBlock { .. } => exit::CORRUPT,
                _ => exit::FAILURE,
            };
            (code, e.to_string())
        })?;
        println!("metalcast: last byte received at {:.2}s uptime", inventory::uptime());
        targets = Some(t);
        let detail = format!(
            "{:.1} MiB in {:.2}s, {} packets, {} blocks decoded, loss ~{:.1}%",
            s.bytes_written as f64 / f64::from(1 << 20),
            s.secs,
            s.received,
            s.decoded_blocks,
            s.loss_estimate * 100.0
        );
        Ok((detail, serde_json::to_value(&s).unwrap_or_default()))
    });
    let Some(mut t) = targets.filter(|_| ok) else { return exit::WRITE };
    // A disk target's kexec stages the kernel while the device is flushed and
    // verified: staging reads only the kernel and initrd memfds (each chunk
    // hash-checked on arrival), never the device. Unstaged if they fail.
    let mut early: Option<EarlyStaging> = None;
    if handover == Handover::Kexec
        && device.is_some()
        && let (Some(boot), Some(bzimage)) = (m.boot.as_ref(), t.kernel())
    {
        let kernel = crate::kexec::Kernel { bzimage, elf: t.kernel_elf() };
        match crate::kexec::stage_in_background(cfg.kexec_method, kernel, t.initrd(), kexec_cmdline(boot, d)) {
            Ok(h) => early = Some(h),
            Err(e) => eprintln!("metalcast: staging in the background: {e}; staging after verification instead"),
        }
    }
    if device.is_some()
        && !run.phase(Phase::Flush, || {
            t.flush().map_err(|e| (exit::WRITE, e.to_string()))?;
            Ok(("device flushed".into(), serde_json::Value::Null))
        })
    {
        unstage(early);
        return exit::WRITE;
    }
    if !run.phase(Phase::Verify, || {
        let v = t.verify(&m).map_err(|e| (exit::WRITE, e.to_string()))?;
        Ok((
            format!(
                "{} bytes verified: {} re-read from the device and matched the manifest, {} in memory hash-checked on arrival",
                v.total(),
                v.reread,
                v.on_arrival
            ),
            serde_json::json!({ "reread_bytes": v.reread, "on_arrival_bytes": v.on_arrival }),
        ))
    }) {
        unstage(early);
        return exit::WRITE;
    }
    match handover {
        Handover::None => {
            run.phase(Phase::Handover, || {
                Ok(("hand-over none: staying in the runtime".into(), serde_json::json!({ "handover": "none" })))
            });
            hold(held, keep);
            exit::OK
        }
        Handover::Vm => {
            let on_exit = vm_exit_reporter(run);
            let ok = run.phase(Phase::Handover, || crate::vm::start(&m, &t, device.as_deref(), on_exit));
            if !ok {
                return exit::HANDOVER;
            }
            hold(held, keep);
            exit::OK
        }
        Handover::Kexec => {
            let ok = run.phase(Phase::Handover, || {
                let boot = m.boot.as_ref().ok_or((exit::USAGE, "the bundle has no boot description".to_string()))?;
                let bzimage = t.kernel().ok_or((exit::USAGE, "the bundle has no kernel part".to_string()))?;
                let kernel = crate::kexec::Kernel { bzimage, elf: t.kernel_elf() };
                let cmdline = kexec_cmdline(boot, d);
                let (staged, secs, during) = match early.take() {
                    Some(h) => {
                        let r = h.join().map_err(|_| (exit::HANDOVER, "the staging thread panicked".to_string()))?;
                        let (s, secs) = r.map_err(|e| (exit::HANDOVER, e.to_string()))?;
                        (s, secs, " (during flush and verify)")
                    }
                    None => {
                        let t0 = Instant::now();
                        let s = crate::kexec::stage(cfg.kexec_method, kernel, t.initrd(), &cmdline)
                            .map_err(|e| (exit::HANDOVER, e.to_string()))?;
                        (s, t0.elapsed(), "")
                    }
                };
                let how = match (staged.method, &staged.fallback_reason) {
                    ("elf", _) => "kexec_load of the kernel ELF (kexec-tools)".to_string(),
                    ("file", Some(why)) => format!("kexec_file_load (after {why})"),
                    ("file", _) => "kexec_file_load".to_string(),
                    (_, Some(why)) => {
                        format!("kexec_load of the bzImage (kexec-tools; kexec_file_load refused: {why})")
                    }
                    _ => "kexec_load of the bzImage (kexec-tools)".to_string(),
                };
                let mut data = serde_json::json!({ "handover": "kexec", "kexec_method": staged.method });
                if let Some(why) = &staged.fallback_reason {
                    data["fallback_reason"] = why.clone().into();
                }
                data["staging_secs"] = secs.as_secs_f64().into();
                Ok((
                    format!(
                        "kernel staged in {:.2}s{during} with {how}, rebooting into it; cmdline {cmdline:?}",
                        secs.as_secs_f64()
                    ),
                    data,
                ))
            });
            if !ok {
                return exit::HANDOVER;
            }
            if !run.reporter.flush(REPORT_FLUSH) {
                eprintln!("metalcast: reports still pending after {REPORT_FLUSH:?}; handing over anyway");
            }
            println!("metalcast: kexec now at {:.2}s uptime", inventory::uptime());
            let e = sys::reboot_kexec();
            eprintln!("metalcast: reboot(LINUX_REBOOT_CMD_KEXEC): {e}");
            exit::HANDOVER
        }
    }
}

/// Keeps a complete received image for seeding.
fn hold(held: &mut Option<Held>, keep: Option<Held>) {
    match keep {
        Some(h) if h.complete() => {
            println!(
                "metalcast: holding {} (root {}) for seeding: {:.1} MiB stored",
                h.manifest().name,
                &h.manifest().root_hash[..16],
                h.stored_bytes() as f64 / f64::from(1 << 20)
            );
            *held = Some(h);
        }
        Some(h) => eprintln!(
            "metalcast: not holding the image for seeding: {}",
            h.failure().unwrap_or("its stored chunks are incomplete")
        ),
        None => {}
    }
}

/// Reports (under the deploy's instruction) when the VM it started exits.
fn vm_exit_reporter(run: &Run<'_>) -> Box<dyn FnOnce(crate::vm::VmExit) + Send> {
    let (reporter, node, boot_id, instruction, session) =
        (run.reporter.clone(), run.node.clone(), run.boot_id.clone(), run.instruction, run.session);
    Box::new(move |e| {
        let code = e.status.and_then(|s| s.code());
        let signal = e.status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s));
        let clean = code == Some(0);
        let how = match (code, signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "an unknown status".into(),
        };
        let detail = format!("qemu (pid {}) exited with {how} after {:.1}s", e.pid, e.secs);
        println!("metalcast: {detail}");
        reporter.post(
            &node,
            Report {
                instruction,
                boot_id,
                phase: Phase::VmExit,
                status: if clean { Status::Ok } else { Status::Failed },
                secs: e.secs,
                exit_code: if clean { exit::OK } else { exit::HANDOVER },
                detail,
                data: serde_json::json!({ "qemu_pid": e.pid, "exit_code": code, "signal": signal }),
                session,
            },
        );
    })
}

/// Serves a held image (a `seed` instruction); refuses, losing nothing, when it is not held.
fn seed(run: &Run<'_>, s: &Seed, local: Ipv4Addr, held: Option<&Held>) -> bool {
    run.phase(Phase::Seed, || {
        let sum = crate::seed::serve(held, s, local).map_err(|e| {
            let code = match e {
                SeedError::NotHeld { .. } | SeedError::Invalid(_) => exit::USAGE,
                SeedError::Transport(_) => exit::FAILURE,
            };
            (code, e.to_string())
        })?;
        let detail = format!(
            "served {:.1} MiB to {} of {} receivers in {:.2}s: {} source + {} repair packets, wire ratio {:.3}",
            sum.image_bytes as f64 / f64::from(1 << 20),
            sum.done(),
            s.expected_receivers,
            sum.secs,
            sum.source_packets,
            sum.repair_packets,
            sum.wire_ratio
        );
        let data = serde_json::to_value(&sum).unwrap_or_default();
        if sum.done() < s.expected_receivers {
            return Err((exit::FAILURE, format!("not every receiver finished: {detail}")));
        }
        Ok((detail, data))
    })
}

/// A kernel staged in the background.
type EarlyStaging = std::thread::JoinHandle<Result<(crate::kexec::Staged, Duration), crate::kexec::StageError>>;

/// Waits for a background staging and unloads what it staged (the hand-over is off).
fn unstage(early: Option<EarlyStaging>) {
    if let Some(Ok(Ok(_))) = early.map(|h| h.join())
        && let Err(e) = crate::kexec::unstage()
    {
        eprintln!("metalcast: unloading the staged kernel: {e}");
    }
}

/// The next kernel's command line: the bundle's, then the instruction's addition.
fn kexec_cmdline(boot: &metalcast_image::BootSpec, d: &Deploy) -> String {
    [boot.cmdline.as_str(), d.cmdline_append.as_str()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The block device a deployment writes, if any.
fn device_of(d: &Deploy) -> Option<PathBuf> {
    match &d.target {
        Target::Memory => None,
        Target::Disk { device } => Some(PathBuf::from(device)),
    }
}

/// Erases the node's disks (reclaim): only with the guard's authority
/// (the node's own runtime, or devices named with `--allow-disk-writes`),
/// and only once every device passed its checks ([`guard::claim`]).
fn wipe(run: &Run<'_>, w: &Wipe) -> bool {
    run.phase(Phase::Wipe, || {
        if let Authority::Denied(why) = run.authority {
            return Err((exit::REFUSED, format!("wipe {}", guard::GuardError::NotRuntime(why.clone()))));
        }
        let devices: Vec<PathBuf> = if w.devices.is_empty() {
            run.authority.disks().iter().map(|d| PathBuf::from(format!("/dev/{}", d.name))).collect()
        } else {
            w.devices.iter().map(PathBuf::from).collect()
        };
        // Every device is checked and claimed before the first is opened for writing.
        let claims = devices
            .iter()
            .map(|dev| guard::claim(run.authority, dev))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| (exit::REFUSED, format!("wipe {e}")))?;
        // A VM may be using the disk (without claiming it): it goes first.
        if crate::vm::stop_all(Duration::from_secs(10)) > 0 {
            println!("metalcast: stopped the running VM before wiping");
        }
        let zero = w.mode == WipeMode::Zero;
        let mut done = Vec::new();
        for c in &claims {
            let dev = &c.path;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(dev)
                .map_err(|e| (exit::WRITE, format!("opening {}: {e}", dev.display())))?;
            let len = sys::block_size_bytes(&f).map_err(|e| (exit::WRITE, format!("{}: size: {e}", dev.display())))?;
            sys::erase_block_device(&f, len, zero).map_err(|e| {
                let hint = if zero { "" } else { " (the device may not support discard: wipe with zero)" };
                (exit::WRITE, format!("{} {}: {e}{hint}", if zero { "zeroing" } else { "discarding" }, dev.display()))
            })?;
            f.sync_all().map_err(|e| (exit::WRITE, format!("{}: flush: {e}", dev.display())))?;
            done.push(format!("{} ({} MiB)", dev.display(), len >> 20));
        }
        if done.is_empty() {
            return Ok(("no disks to erase".into(), serde_json::Value::Null));
        }
        Ok((format!("{:?}: {}", w.mode, done.join(", ")).to_lowercase(), serde_json::Value::Null))
    })
}

/// Attended mode: lists the offers on the console and reads a choice from
/// stdin (the console) until the countdown ends; returns the offer index.
fn menu(offers: &Offers, countdown: Duration, input: &std::sync::mpsc::Receiver<String>) -> Option<usize> {
    if offers.offers.is_empty() {
        return None;
    }
    let default = offers.offers.iter().find(|o| o.default).unwrap_or(&offers.offers[0]).index;
    println!("metalcast: images offered:");
    for o in &offers.offers {
        println!("  {}) {}{}", o.index + 1, o.name, if o.index == default { " (default)" } else { "" });
    }
    let n = offers.offers.len();
    let t0 = Instant::now();
    let mut shown = u64::MAX;
    while let Some(left) = countdown.checked_sub(t0.elapsed()) {
        if left.as_secs() != shown {
            shown = left.as_secs();
            println!("metalcast: choose 1-{n} and Enter (Enter alone: the default); default in {}s", shown + 1);
        }
        match input.recv_timeout(left.min(Duration::from_millis(250))) {
            Ok(line) if line.trim().is_empty() => return Some(default),
            Ok(line) => match line.trim().parse::<usize>() {
                Ok(k) if (1..=n).contains(&k) => return Some(offers.offers[k - 1].index),
                _ => println!("metalcast: {:?} is not one of 1-{n}", line.trim()),
            },
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(left.min(Duration::from_millis(250)))
            }
        }
    }
    Some(default)
}

/// Lines typed on stdin, read by a background thread (the read blocks).
fn console_lines() -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(l) = line else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs the agent. Returns only with `once` (after the first deployment) or
/// when the network cannot be brought up.
pub fn run(cfg: &AgentConfig) -> u8 {
    let netinfo = match net::bring_up(&cfg.net, cfg.iface.as_deref(), Duration::from_secs(30)) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("metalcast: network: {e}");
            return exit::NETWORK;
        }
    };
    println!(
        "metalcast: network up: {} {} {} ({}) in {:.2}s",
        netinfo.iface, netinfo.mac, netinfo.addr, netinfo.method, netinfo.secs
    );
    let authority = Authority::establish(&cfg.allow_disk_writes, &RuntimeFacts::read());
    println!("metalcast: disk writes: {}", authority.describe());
    let client = Client::new(&cfg.control_plane);
    let reporter = Reporter::new(client.clone());
    let boot_id = inventory::boot_id();
    let mut backoff = Duration::from_millis(500);
    let mut epoch = None;
    let mut attended = cfg.attended.map(|c| (c, console_lines()));
    // The image held for seeding (after a `none` or `vm` hand-over).
    let mut held: Option<Held> = None;
    loop {
        let checkin = CheckIn {
            node: netinfo.mac.clone(),
            role: cfg.role,
            boot_id: boot_id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            address: netinfo.addr_now().unwrap_or(netinfo.addr).to_string(),
            uptime_secs: inventory::uptime(),
            network_secs: netinfo.secs,
            inventory: inventory::collect(authority.disks()),
            token: cfg.token.clone(),
        };
        let reply = match client.checkin(&checkin) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("metalcast: check-in to {}: {e}; retrying in {backoff:?}", cfg.control_plane);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(cfg.max_backoff);
                continue;
            }
        };
        if epoch.is_some_and(|e| e != reply.server_epoch) {
            println!("metalcast: control plane restarted (epoch changed)");
        }
        epoch = Some(reply.server_epoch);
        println!("metalcast: checked in as {} ({:?}) at {:.2}s after boot", reply.node, cfg.role, checkin.uptime_secs);
        backoff = Duration::from_millis(500);
        if let Some((countdown, input)) = &attended {
            // Once per agent run, and only when the control plane offers something.
            match client.offers(&reply.node) {
                Ok(o) => {
                    if let Some(k) = menu(&o, *countdown, input) {
                        match client.choose(&reply.node, k) {
                            Ok(c) => println!("metalcast: chose offer {} (instruction {})", k + 1, c.instruction),
                            Err(e) => eprintln!("metalcast: {e}"),
                        }
                    }
                    attended = None;
                }
                Err(e) => eprintln!("metalcast: attended mode: {e}"),
            }
        }
        let wait = cfg.poll_wait.min(Duration::from_secs(reply.wait_secs.max(1)));
        loop {
            // A new DHCP lease (after expiry or a NAK) may have changed the address: tell the control plane.
            if netinfo.addr_now().is_some_and(|a| a.to_string() != checkin.address) {
                println!("metalcast: address changed from {}; checking in again", checkin.address);
                break;
            }
            match client.poll(&reply.node, wait) {
                Ok(None) => continue,
                Ok(Some(i)) => {
                    println!("metalcast: instruction {}", i.id);
                    let run = Run {
                        reporter: &reporter,
                        authority: &authority,
                        node: reply.node.clone(),
                        boot_id: boot_id.clone(),
                        instruction: i.id,
                        session: i.action.session_id(),
                    };
                    match i.action {
                        Action::Deploy(d) => {
                            let addr = netinfo.addr_now().unwrap_or(netinfo.addr);
                            let code = deploy(cfg, &run, addr, &d, &mut held);
                            if cfg.once {
                                // A VM is the agent's child and would not outlive it: wait for it.
                                crate::vm::wait_all();
                                reporter.flush(REPORT_FLUSH);
                                return code;
                            }
                        }
                        Action::Wipe(w) => {
                            wipe(&run, &w);
                        }
                        Action::Seed(s) => {
                            seed(&run, &s, netinfo.addr_now().unwrap_or(netinfo.addr), held.as_ref());
                        }
                        Action::CheckIn => break,
                        Action::PowerOff => {
                            // Only the node's own runtime (the guard's proof) powers the machine off,
                            // never the host an agent was started on by hand or by a test.
                            if authority.is_runtime() {
                                reporter.flush(REPORT_FLUSH);
                                let e = sys::power_off();
                                eprintln!("metalcast: power off: {e}");
                            } else {
                                eprintln!("metalcast: power-off refused: {}", authority.describe());
                            }
                        }
                    }
                }
                Err(PollError::Unknown) => {
                    println!("metalcast: the control plane does not know this node; checking in again");
                    break;
                }
                Err(PollError::Other(e)) => {
                    eprintln!("metalcast: poll: {e}; checking in again in {backoff:?}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(cfg.max_backoff);
                    break;
                }
            }
        }
    }
}
