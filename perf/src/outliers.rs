//! Whether one bad receiver holds the others back (issue 23, items 3 and 4).
//!
//! N receivers on a namespace fabric, the same base loss on every link.
//! After one uncounted warm-up session per link rate, each repetition runs
//! a **reference** session without any outlier, then the cases: one
//! receiver (the last) at a high random loss, or joining late (a given
//! fraction into the first pass). Every healthy receiver's completion
//! time (from the sender's summary: first pass start to its done report) is
//! divided by its own time in the same repetition's reference run; the table
//! gives the worst and the median of those ratios, with the outlier's own
//! time and the wire bytes beside them. With `--compare-policy` every case
//! also runs with the sender's outlier policy off
//! (`SenderConfig::outliers_wait`: max-deficit repair for everyone), for a
//! before/after in one run.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metalcast_fabric::{Fabric, Flow, LossConfig, Rate};
use metalcast_image::{BundleError, Manifest};
use metalcast_transport::{ChunkSink, Receiver, ReceiverConfig, Sender, SenderConfig, SessionSpec};

use crate::contender::Image;
use crate::stats::Summary;

/// Benchmark parameters.
#[derive(Debug, Clone)]
pub struct Config {
    /// Receivers, the outlier included.
    pub receivers: usize,
    /// Image size, MiB.
    pub size_mib: usize,
    /// Random loss on every link, percent.
    pub base_loss: f64,
    /// Loss of the lossy outlier's link, percent (one case each).
    pub outlier_loss: Vec<f64>,
    /// When the late joiner joins, percent of the first pass (one case each).
    pub late: Vec<f64>,
    /// Emulated link rates, Mbit/s, every link both ways (0: unthrottled).
    pub link_mbit: Vec<u64>,
    /// Repetitions.
    pub reps: usize,
    /// The sender's rate cap, Mbit/s of UDP payload (0: none; the link's rate caps it too).
    pub rate_mbit: u64,
    /// Also run every case with the outlier policy off.
    pub compare_policy: bool,
    /// Scratch directory for the image.
    pub scratch: PathBuf,
    /// Give up on one session after this long.
    pub timeout: Duration,
}

/// One case's figures over the repetitions.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// Emulated link rate, Mbit/s (0: none).
    pub link_mbit: u64,
    /// "20% loss", "late 25%".
    pub case: String,
    /// Whether the sender's outlier policy was on.
    pub policy: bool,
    /// Per repetition: the worst healthy receiver's time over its reference time.
    pub healthy_worst: Option<Summary>,
    /// Per repetition: the median healthy receiver's ratio.
    pub healthy_median: Option<Summary>,
    /// The reference runs' last healthy receiver, seconds.
    pub reference_secs: Option<Summary>,
    /// The outlier's own completion, seconds from the first pass start.
    pub outlier_secs: Option<Summary>,
    /// Wire bytes over image bytes, this case and its reference.
    pub wire_ratio: Option<Summary>,
    /// Wire bytes over image bytes of the reference runs.
    pub reference_wire_ratio: Option<Summary>,
    /// Repair symbols sent for the outlier's waiting needs, per source symbol.
    pub outlier_repair_share: Option<Summary>,
    /// Receivers the sender reported as outliers (median over repetitions).
    pub reported_outliers: f64,
    /// Runs that failed.
    pub failures: usize,
}

#[derive(Debug, Clone, Copy)]
enum Case {
    Reference,
    Lossy(f64),
    Late(f64),
}

impl Case {
    fn label(self) -> String {
        match self {
            Case::Reference => "reference".into(),
            Case::Lossy(p) => format!("{p}% loss"),
            Case::Late(p) => format!("late {p}%"),
        }
    }
}

/// What one session gave.
struct Run {
    /// Per receiver index: seconds from the first pass start to its done report.
    done: Vec<f64>,
    wire_ratio: f64,
    outlier_repair: u64,
    source: u64,
    outliers: u64,
}

/// Counts the bytes written, keeps none.
struct Count(u64);

impl ChunkSink for Count {
    fn write_chunk(&mut self, _: &Manifest, _: usize, data: &[u8]) -> Result<(), BundleError> {
        self.0 += data.len() as u64;
        Ok(())
    }
}

/// Runs the benchmark.
pub fn run(cfg: &Config) -> anyhow::Result<Vec<Row>> {
    metalcast_fabric::bpf_capable().context("this benchmark builds a namespace fabric with loss injection")?;
    anyhow::ensure!(cfg.reps > 0 && cfg.receivers >= 3, "needs --reps >= 1 and --receivers >= 3");
    let root =
        crate::interrupt::scratch_dir(&cfg.scratch).with_context(|| format!("scratch in {}", cfg.scratch.display()))?;
    let image = Image::make(&root.path().join("img"), cfg.size_mib, metalcast_image::manifest::DEFAULT_CHUNK_SIZE)?;
    let f = Fabric::builder().receivers(cfg.receivers).build().context("building the fabric")?;
    let cases: Vec<Case> =
        cfg.outlier_loss.iter().map(|&p| Case::Lossy(p)).chain(cfg.late.iter().map(|&p| Case::Late(p))).collect();
    let policies: &[bool] = if cfg.compare_policy { &[true, false] } else { &[true] };
    let mut port: u16 = 43000;
    let mut rows = Vec::new();
    for &link_mbit in &cfg.link_mbit {
        for h in f.hosts() {
            let rate = (link_mbit > 0).then(|| Rate::mbit(link_mbit));
            h.set_rate(Flow::ToHost, rate)?;
            h.set_rate(Flow::FromHost, rate)?;
        }
        // Per case and policy: the runs, each with its repetition's reference.
        let mut got: Vec<Vec<(Run, Run)>> = (0..cases.len() * policies.len()).map(|_| Vec::new()).collect();
        let mut failures = vec![0usize; got.len()];
        // A warm-up session, not counted: the first session on a fresh fabric runs slow.
        if let Err(e) = session(&f, &image, cfg, Case::Reference, true, link_mbit, port) {
            eprintln!("link {link_mbit}: warm-up FAILED: {e:#}");
        }
        port = port.wrapping_add(10).max(43000);
        for rep in 0..cfg.reps {
            let reference = match session(&f, &image, cfg, Case::Reference, true, link_mbit, port) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("link {link_mbit} rep {rep}: reference FAILED: {e:#}");
                    failures.iter_mut().for_each(|f| *f += 1);
                    continue;
                }
            };
            port = port.wrapping_add(10).max(43000);
            eprintln!("link {link_mbit} rep {rep}: reference {}", describe(&reference, None));
            for (ci, &case) in cases.iter().enumerate() {
                for (pi, &policy) in policies.iter().enumerate() {
                    let i = ci * policies.len() + pi;
                    let r = session(&f, &image, cfg, case, policy, link_mbit, port);
                    port = port.wrapping_add(10).max(43000);
                    let tag = format!("link {link_mbit} rep {rep}: {} policy {}", case.label(), on_off(policy));
                    match r {
                        Ok(r) => {
                            eprintln!("{tag}: {}", describe(&r, Some(&reference)));
                            got[i].push((r, reference.clone_run()));
                        }
                        Err(e) => {
                            eprintln!("{tag}: FAILED: {e:#}");
                            failures[i] += 1;
                        }
                    }
                }
            }
        }
        for (ci, &case) in cases.iter().enumerate() {
            for (pi, &policy) in policies.iter().enumerate() {
                let i = ci * policies.len() + pi;
                rows.push(summarise(link_mbit, case, policy, &got[i], failures[i]));
            }
        }
    }
    Ok(rows)
}

fn on_off(policy: bool) -> &'static str {
    if policy { "on" } else { "off" }
}

impl Run {
    fn clone_run(&self) -> Run {
        Run { done: self.done.clone(), ..*self }
    }

    /// Ratios of the healthy receivers (all but the last) to `reference`.
    fn healthy_ratios(&self, reference: &Run) -> Vec<f64> {
        let n = self.done.len() - 1;
        let mut v: Vec<f64> = (0..n).map(|i| self.done[i] / reference.done[i]).collect();
        v.sort_by(f64::total_cmp);
        v
    }
}

fn describe(r: &Run, reference: Option<&Run>) -> String {
    let n = r.done.len() - 1;
    let last_healthy = r.done[..n].iter().copied().fold(0.0, f64::max);
    let ratios = reference.map(|rf| r.healthy_ratios(rf)).unwrap_or_default();
    format!(
        "healthy done by {:.2}s{}, outlier {:.2}s, wire/image {:.3}, outlier repair {} ({} reported)",
        last_healthy,
        ratios.last().map_or(String::new(), |w| format!(" (worst ratio {w:.3})")),
        r.done[n],
        r.wire_ratio,
        r.outlier_repair,
        r.outliers
    )
}

fn summarise(link_mbit: u64, case: Case, policy: bool, runs: &[(Run, Run)], failures: usize) -> Row {
    let of = |v: Vec<f64>| (!v.is_empty()).then(|| Summary::of(&v));
    let n = |r: &Run| r.done.len() - 1;
    let mut outliers: Vec<f64> = runs.iter().map(|(r, _)| r.outliers as f64).collect();
    outliers.sort_by(f64::total_cmp);
    Row {
        link_mbit,
        case: case.label(),
        policy,
        healthy_worst: of(runs.iter().map(|(r, rf)| *r.healthy_ratios(rf).last().expect("healthy")).collect()),
        healthy_median: of(runs
            .iter()
            .map(|(r, rf)| {
                let v = r.healthy_ratios(rf);
                v[v.len() / 2]
            })
            .collect()),
        reference_secs: of(runs.iter().map(|(_, rf)| rf.done[..n(rf)].iter().copied().fold(0.0, f64::max)).collect()),
        outlier_secs: of(runs.iter().map(|(r, _)| r.done[n(r)]).collect()),
        wire_ratio: of(runs.iter().map(|(r, _)| r.wire_ratio).collect()),
        reference_wire_ratio: of(runs.iter().map(|(_, rf)| rf.wire_ratio).collect()),
        outlier_repair_share: of(runs.iter().map(|(r, _)| r.outlier_repair as f64 / r.source.max(1) as f64).collect()),
        reported_outliers: outliers.get(outliers.len() / 2).copied().unwrap_or(0.0),
        failures,
    }
}

/// One session: every receiver at `cfg.base_loss`, the last one as `case` says.
fn session(
    f: &Fabric,
    image: &Image,
    cfg: &Config,
    case: Case,
    policy: bool,
    link_mbit: u64,
    port: u16,
) -> anyhow::Result<Run> {
    let n = f.receivers().len();
    for (i, h) in f.receivers().iter().enumerate() {
        let pct = match case {
            Case::Lossy(p) if i == n - 1 => p,
            _ => cfg.base_loss,
        };
        h.set_loss(Flow::ToHost, LossConfig::random_drop_percent(pct).udp_only())?;
    }
    let manifest = Arc::new(metalcast_image::Bundle::open(&image.bundle)?.manifest);
    let spec = SessionSpec::new(
        &manifest.root_hash,
        SocketAddrV4::new(Ipv4Addr::new(239, 77, 8, 8), port),
        SocketAddrV4::new(f.sender().ipv4(), port + 1),
        1500,
    )?;
    let start = |i: usize| -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<u64>>> {
        let h = &f.receivers()[i];
        let (spec, m, ip, timeout) = (spec.clone(), Arc::clone(&manifest), h.ipv4(), cfg.timeout);
        Ok(h.spawn_in(move || -> anyhow::Result<u64> {
            let rc = ReceiverConfig { id: i as u64 + 1, iface: ip, idle_timeout: timeout, ..Default::default() };
            let mut sink = Count(0);
            Receiver::new(&spec, &m, rc)?.run(&mut sink, &mut |_| {})?;
            Ok(sink.0)
        })?)
    };
    let late = match case {
        Case::Late(p) => Some(p / 100.0),
        _ => None,
    };
    let mut rx: Vec<_> = (0..if late.is_some() { n - 1 } else { n }).map(start).collect::<anyhow::Result<_>>()?;
    // The sender's rate: the link's payload rate with an emulated link (as an operator would set it), the cap.
    let sym = u64::from(spec.symbol_size);
    let link_payload = link_mbit * 125_000 * (sym + 44) / (sym + 44 + 28 + 14);
    let rate = match (cfg.rate_mbit * 125_000, link_payload) {
        (0, 0) => None,
        (0, l) | (l, 0) => Some(l),
        (a, b) => Some(a.min(b)),
    };
    let (tx, joined) = std::sync::mpsc::channel();
    let (b, ip, deadline, spec) = (image.bundle.clone(), f.sender().ipv4(), cfg.timeout, spec.clone());
    let sender = f.sender().spawn_in(move || -> anyhow::Result<metalcast_transport::SenderSummary> {
        let bundle = metalcast_image::Bundle::open(&b)?;
        let sc = SenderConfig {
            local: ip,
            rate,
            expected_receivers: n,
            // A late joiner is not waited for: the pass starts with the others.
            join_timeout: Duration::from_secs(if late.is_some() { 1 } else { 10 }),
            deadline: Some(deadline),
            outliers_wait: policy,
            ..Default::default()
        };
        let mut signalled = false;
        Ok(Sender::new(&spec, &bundle, sc)?.run(&mut |p| {
            if let Some(frac) = late
                && !signalled
                && p.pass_blocks as f64 >= frac * p.total_blocks as f64
            {
                signalled = true;
                let _ = tx.send(());
            }
        })?)
    })?;
    if late.is_some() {
        joined.recv_timeout(cfg.timeout).context("the first pass never reached the late joiner's moment")?;
        rx.push(start(n - 1)?);
    }
    let mut failure = None;
    for (i, h) in rx.into_iter().enumerate() {
        match h.join().map_err(|_| anyhow::anyhow!("receiver panicked")).and_then(|r| r) {
            Ok(bytes) if bytes == image.raw_bytes => {}
            Ok(bytes) => failure = failure.or(Some(anyhow::anyhow!("receiver {i} wrote {bytes} bytes"))),
            Err(e) => failure = failure.or(Some(e.context(format!("receiver {i}")))),
        }
    }
    let s = sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    if let Some(e) = failure {
        return Err(e);
    }
    let mut done = vec![f64::NAN; n];
    for r in &s.receivers {
        let i = r.id.wrapping_sub(1) as usize;
        if let Some(t) = r.done_secs
            && i < n
        {
            done[i] = t;
        }
    }
    anyhow::ensure!(done.iter().all(|t| t.is_finite()), "not every receiver reported done: {:?}", s.receivers);
    Ok(Run {
        done,
        wire_ratio: s.wire_ratio,
        outlier_repair: s.outlier_repair_packets,
        source: s.source_packets,
        outliers: s.outliers,
    })
}

/// The rows as a Markdown table.
pub fn markdown(cfg: &Config, rows: &[Row]) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "{} receivers, {} MiB, {}% random loss on every link; the outlier is the last receiver; {} repetitions.\n\
         Healthy ratio: a healthy receiver's completion time over its own in the same repetition's run \
         without the outlier (median over repetitions, [min-max]).\n\n\
         | link | case | policy | healthy worst | healthy median | reference s | outlier s | wire/image (ref) | outlier repair / source | reported | failed |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
        cfg.receivers, cfg.size_mib, cfg.base_loss, cfg.reps
    );
    let fmt = |s: &Option<Summary>, p: usize| {
        s.as_ref().map_or("-".into(), |s| format!("{:.p$} [{:.p$}-{:.p$}]", s.median, s.min, s.max))
    };
    let med = |s: &Option<Summary>, p: usize| s.as_ref().map_or("-".into(), |s| format!("{:.p$}", s.median));
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} |",
            if r.link_mbit == 0 { "none".into() } else { format!("{} Mbit/s", r.link_mbit) },
            r.case,
            on_off(r.policy),
            fmt(&r.healthy_worst, 3),
            fmt(&r.healthy_median, 3),
            med(&r.reference_secs, 2),
            med(&r.outlier_secs, 2),
            med(&r.wire_ratio, 3),
            med(&r.reference_wire_ratio, 3),
            med(&r.outlier_repair_share, 3),
            r.reported_outliers,
            r.failures
        );
    }
    out
}
