//! Report packets at the sender with and without plans (issue 23, item 8).
//!
//! N receivers on a namespace fabric, the same random loss on every link;
//! each repetition runs one session with the sender's plans off
//! (`SenderConfig::plans`: every receiver reports every 5 ms, as in wire
//! version 3) and one with them on, alternately, so both see the same
//! machine. Per run: report packets per receiver as the sender counted them,
//! the last receiver's completion time (first pass start to its done
//! report) and wire bytes over image bytes. The simulation (`simulate`)
//! predicts the same figures up to 10,000 receivers.

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
    /// Receivers.
    pub receivers: usize,
    /// Image size, MiB.
    pub size_mib: usize,
    /// Random loss on every link, percent (one case each).
    pub losses: Vec<f64>,
    /// Emulated link rates, Mbit/s, every link both ways (0: unthrottled).
    pub link_mbit: Vec<u64>,
    /// Repetitions.
    pub reps: usize,
    /// The sender's rate cap, Mbit/s of UDP payload (0: none; an emulated link caps it too).
    pub rate_mbit: u64,
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
    /// Random loss on every link, percent.
    pub loss: f64,
    /// Whether the sender announced plans.
    pub plans: bool,
    /// Report packets that reached the sender, per receiver.
    pub reports_per_receiver: Option<Summary>,
    /// Report packets the receivers sent, per receiver.
    pub sent_per_receiver: Option<Summary>,
    /// Seconds from the first pass start to the last receiver's done report.
    pub secs: Option<Summary>,
    /// Wire bytes over image bytes.
    pub wire_ratio: Option<Summary>,
    /// Plan packets sent.
    pub plan_packets: Option<Summary>,
    /// Runs that failed.
    pub failures: usize,
}

/// What one session gave.
struct Run {
    reports: f64,
    sent: f64,
    secs: f64,
    wire_ratio: f64,
    plans: f64,
    /// For the log: first pass seconds, rate cuts, repair symbols, bursts.
    detail: String,
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
    anyhow::ensure!(cfg.reps > 0 && cfg.receivers > 0, "needs --reps >= 1 and --receivers >= 1");
    let root =
        crate::interrupt::scratch_dir(&cfg.scratch).with_context(|| format!("scratch in {}", cfg.scratch.display()))?;
    let image = Image::make(&root.path().join("img"), cfg.size_mib, metalcast_image::manifest::DEFAULT_CHUNK_SIZE)?;
    let f = Fabric::builder().receivers(cfg.receivers).build().context("building the fabric")?;
    let mut port: u16 = 44000;
    let mut next_port = || {
        port = port.wrapping_add(10).max(44000);
        port
    };
    let mut rows = Vec::new();
    for &link_mbit in &cfg.link_mbit {
        for h in f.hosts() {
            let rate = (link_mbit > 0).then(|| Rate::mbit(link_mbit));
            h.set_rate(Flow::ToHost, rate)?;
            h.set_rate(Flow::FromHost, rate)?;
        }
        for &loss in &cfg.losses {
            for h in f.receivers() {
                h.set_loss(Flow::ToHost, LossConfig::random_drop_percent(loss).udp_only())?;
            }
            // A warm-up session, not counted: the first session on a fresh fabric runs slow.
            if let Err(e) = session(&f, &image, cfg, true, link_mbit, next_port()) {
                eprintln!("link {link_mbit} loss {loss}%: warm-up FAILED: {e:#}");
            }
            let mut got: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
            let mut failures = [0usize; 2];
            for rep in 0..cfg.reps {
                for plans in [false, true] {
                    let tag = format!("link {link_mbit} loss {loss}% rep {rep}: plans {}", on_off(plans));
                    match session(&f, &image, cfg, plans, link_mbit, next_port()) {
                        Ok(r) => {
                            eprintln!(
                                "{tag}: {:.1} report packets per receiver ({:.1} sent), done by {:.2}s, wire/image {:.3}, {} plans, {}",
                                r.reports, r.sent, r.secs, r.wire_ratio, r.plans, r.detail
                            );
                            got[usize::from(plans)].push(r);
                        }
                        Err(e) => {
                            eprintln!("{tag}: FAILED: {e:#}");
                            failures[usize::from(plans)] += 1;
                        }
                    }
                }
            }
            for plans in [false, true] {
                let runs = &got[usize::from(plans)];
                let of = |f: fn(&Run) -> f64| {
                    (!runs.is_empty()).then(|| Summary::of(&runs.iter().map(f).collect::<Vec<_>>()))
                };
                rows.push(Row {
                    link_mbit,
                    loss,
                    plans,
                    reports_per_receiver: of(|r| r.reports),
                    sent_per_receiver: of(|r| r.sent),
                    secs: of(|r| r.secs),
                    wire_ratio: of(|r| r.wire_ratio),
                    plan_packets: of(|r| r.plans),
                    failures: failures[usize::from(plans)],
                });
            }
        }
    }
    Ok(rows)
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// One session to every receiver, plans on or off.
fn session(f: &Fabric, image: &Image, cfg: &Config, plans: bool, link_mbit: u64, port: u16) -> anyhow::Result<Run> {
    let n = f.receivers().len();
    let cpu_start = crate::sys::process_cpu_secs();
    let manifest = Arc::new(metalcast_image::Bundle::open(&image.bundle)?.manifest);
    let spec = SessionSpec::new(
        &manifest.root_hash,
        SocketAddrV4::new(Ipv4Addr::new(239, 77, 9, 9), port),
        SocketAddrV4::new(f.sender().ipv4(), port + 1),
        1500,
    )?;
    let rx: Vec<_> = f
        .receivers()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let (spec, m, ip, timeout) = (spec.clone(), Arc::clone(&manifest), h.ipv4(), cfg.timeout);
            h.spawn_in(move || -> anyhow::Result<(u64, u64)> {
                let rc = ReceiverConfig { id: i as u64 + 1, iface: ip, idle_timeout: timeout, ..Default::default() };
                let mut sink = Count(0);
                let s = Receiver::new(&spec, &m, rc)?.run(&mut sink, &mut |_| {})?;
                Ok((sink.0, s.reports))
            })
        })
        .collect::<Result<_, _>>()?;
    // The sender's rate: the link's payload rate with an emulated link (as an operator would set it), the cap.
    let sym = u64::from(spec.symbol_size);
    let link_payload = link_mbit * 125_000 * (sym + 44) / (sym + 44 + 28 + 14);
    let rate = match (cfg.rate_mbit * 125_000, link_payload) {
        (0, 0) => None,
        (0, l) | (l, 0) => Some(l),
        (a, b) => Some(a.min(b)),
    };
    let (b, ip, deadline) = (image.bundle.clone(), f.sender().ipv4(), cfg.timeout);
    let sender = f.sender().spawn_in(move || -> anyhow::Result<metalcast_transport::SenderSummary> {
        let bundle = metalcast_image::Bundle::open(&b)?;
        let sc = SenderConfig {
            local: ip,
            rate,
            expected_receivers: n,
            deadline: Some(deadline),
            plans,
            ..Default::default()
        };
        Ok(Sender::new(&spec, &bundle, sc)?.run(&mut |_| {})?)
    })?;
    let mut failure = None;
    let mut sent = 0u64;
    for (i, h) in rx.into_iter().enumerate() {
        match h.join().map_err(|_| anyhow::anyhow!("receiver panicked")).and_then(|r| r) {
            Ok((bytes, reports)) if bytes == image.raw_bytes => sent += reports,
            Ok((bytes, _)) => failure = failure.or(Some(anyhow::anyhow!("receiver {i} wrote {bytes} bytes"))),
            Err(e) => failure = failure.or(Some(e.context(format!("receiver {i}")))),
        }
    }
    let s = sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    if let Some(e) = failure {
        return Err(e);
    }
    anyhow::ensure!(s.done() == n, "not every receiver reported done: {:?}", s.receivers);
    let secs = s.receivers.iter().filter_map(|r| r.done_secs).fold(0.0, f64::max);
    let cpu = crate::sys::process_cpu_secs() - cpu_start;
    Ok(Run {
        reports: s.report_packets as f64 / n as f64,
        sent: sent as f64 / n as f64,
        secs,
        wire_ratio: s.wire_ratio,
        plans: s.plan_packets as f64,
        detail: format!(
            "first pass {:.2}s, {} rate cuts, {} repair symbols in {} bursts, {cpu:.2} CPU s (sender and receivers)",
            s.pass_secs, s.rate_cuts, s.repair_packets, s.bursts
        ),
    })
}

/// The rows as a Markdown table: each case with plans off and on, and the
/// on/off ratios of report packets per receiver and of completion time.
pub fn markdown(cfg: &Config, rows: &[Row]) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "{} receivers, {} MiB, random loss on every link; plans off and on alternately, {} repetitions \
         (median [min-max]).\n\n\
         | link | loss | plans | report packets / receiver | sent / receiver | done by, s | wire/image | plan packets | on/off reports | on/off time | failed |\n\
         |---|---:|---|---|---:|---|---:|---:|---:|---:|---:|\n",
        cfg.receivers, cfg.size_mib, cfg.reps
    );
    let fmt = |s: &Option<Summary>, p: usize| {
        s.as_ref().map_or("-".into(), |s| format!("{:.p$} [{:.p$}-{:.p$}]", s.median, s.min, s.max))
    };
    fn med(s: &Option<Summary>) -> Option<f64> {
        s.as_ref().map(|s| s.median)
    }
    for r in rows {
        let off = rows.iter().find(|o| o.link_mbit == r.link_mbit && o.loss == r.loss && !o.plans);
        let ratio = |f: fn(&Row) -> Option<f64>| match (r.plans, off.and_then(f), f(r)) {
            (true, Some(b), Some(a)) if b > 0.0 => format!("{:.3}", a / b),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {}% | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            if r.link_mbit == 0 { "none".into() } else { format!("{} Mbit/s", r.link_mbit) },
            r.loss,
            on_off(r.plans),
            fmt(&r.reports_per_receiver, 1),
            med(&r.sent_per_receiver).map_or("-".into(), |v| format!("{v:.1}")),
            fmt(&r.secs, 2),
            med(&r.wire_ratio).map_or("-".into(), |v| format!("{v:.3}")),
            med(&r.plan_packets).map_or("-".into(), |v| format!("{v:.0}")),
            ratio(|r| med(&r.reports_per_receiver)),
            ratio(|r| med(&r.secs)),
            r.failures
        );
    }
    out
}
