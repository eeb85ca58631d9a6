//! The imaging comparison: every contender puts the same image onto the same
//! namespace fabric, alternating, for every scenario (receivers, loss, image
//! size, link rate), several repetitions each; medians and spread.
//!
//! What is measured, per run:
//! - **time**: from starting the sending side (receivers already waiting) to
//!   the last receiver done, as each contender defines done (see
//!   [`crate::contenders`]);
//! - **wire bytes**: the sum of what every host (sender and receivers) put on
//!   its link, from the veths' `tx_bytes`/`tx_packets` counters, so peer
//!   uploads (BitTorrent), ACKs and repair requests count too. Reported at the
//!   IP level (`tx_bytes - 14 x packets`) and at the transport-payload level
//!   (IP level minus 28 bytes per packet for UDP contenders, 52 for TCP ones:
//!   20 IP + 32 TCP with timestamps, Linux's default);
//! - **CPU**: user + system seconds of the sending side and of all receivers
//!   (`wait4` resource usage of spawned processes; `RUSAGE_THREAD` of the
//!   in-process sender and receiver threads).
//!
//! Loss is injected on every receiver's download (`Flow::ToHost`): UDP only
//! for UDP contenders (so IGMP/ARP survive), every packet for TCP contenders
//! (so TCP sees the same data loss). With a link rate, every link is shaped in
//! both directions (tbf).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use metalcast_fabric::{Fabric, Flow, GilbertElliott, LossConfig, Rate};

use crate::contender::{Contender, Env, Image};
use crate::contenders;
use crate::stats::Summary;

/// A loss scenario on every receiver link.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Loss {
    /// Independent random drop, percent.
    Random(f64),
    /// Gilbert model: percent chance per packet of entering / leaving the bad (all-lost) state.
    Bursty {
        /// Good -> bad, percent per packet.
        enter: f64,
        /// Bad -> good, percent per packet (mean burst = 100 / leave packets).
        leave: f64,
    },
}

impl Loss {
    /// The default bursty model: about 1% loss in bursts of 5 packets on average.
    pub const BURSTY: Loss = Loss::Bursty { enter: 0.2, leave: 20.0 };

    /// Parses `0`, `1`, `5` (percent random), `bursty`, or `ge:<enter%>:<leave%>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "bursty" {
            return Ok(Self::BURSTY);
        }
        if let Some(rest) = s.strip_prefix("ge:") {
            let (a, b) = rest.split_once(':').ok_or("ge:<enter%>:<leave%>")?;
            let enter: f64 = a.parse().map_err(|e| format!("{a}: {e}"))?;
            let leave: f64 = b.parse().map_err(|e| format!("{b}: {e}"))?;
            if !((0.0..=100.0).contains(&enter) && leave > 0.0 && leave <= 100.0) {
                return Err(format!("{s}: percentages out of range"));
            }
            return Ok(Loss::Bursty { enter, leave });
        }
        let p: f64 = s.trim_end_matches('%').parse().map_err(|e| format!("loss `{s}`: {e}"))?;
        if !(0.0..100.0).contains(&p) {
            return Err(format!("loss `{s}`: percent must be in [0, 100)"));
        }
        Ok(Loss::Random(p))
    }

    /// Long-run loss rate, percent.
    pub fn mean_percent(&self) -> f64 {
        match *self {
            Loss::Random(p) => p,
            Loss::Bursty { enter, leave } => 100.0 * enter / (enter + leave),
        }
    }

    /// Short label for tables and plots.
    pub fn label(&self) -> String {
        match *self {
            Loss::Random(p) => format!("{p}%"),
            Loss::Bursty { enter, leave } => {
                format!("bursty {:.1}% (burst {:.0})", self.mean_percent(), 100.0 / leave).replace(".0%", "%")
                    + if (enter, leave) == (0.2, 20.0) { "" } else { "*" }
            }
        }
    }

    /// The injector's configuration; `udp_only` spares non-UDP packets.
    pub fn config(&self, udp_only: bool) -> LossConfig {
        let c = match *self {
            Loss::Random(p) => LossConfig::random_drop_percent(p),
            Loss::Bursty { enter, leave } => LossConfig::bursty(GilbertElliott::gilbert(enter, leave)),
        };
        if udp_only { c.udp_only() } else { c }
    }
}

/// One scenario.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scenario {
    /// Receivers.
    pub receivers: usize,
    /// Loss on every receiver link.
    pub loss: Loss,
    /// Image size, MiB.
    pub size_mib: usize,
    /// Emulated link rate, Mbit/s (0: none, veth speed).
    pub link_mbit: u64,
}

/// The whole comparison's parameters.
#[derive(Debug, Clone)]
pub struct Config {
    /// Contenders, in the order they alternate.
    pub contenders: Vec<String>,
    /// Receiver counts.
    pub receivers: Vec<usize>,
    /// Loss scenarios.
    pub losses: Vec<Loss>,
    /// Image sizes, MiB.
    pub sizes_mib: Vec<usize>,
    /// Bundle chunk size, bytes (one chunk is one RaptorQ source block).
    pub chunk_bytes: u32,
    /// Emulated link rates, Mbit/s (0: unthrottled).
    pub link_mbit: Vec<u64>,
    /// Repetitions per contender and scenario.
    pub reps: usize,
    /// metalcast's send-rate cap, Mbit/s of UDP payload (0: none).
    pub rate_mbit: u64,
    /// Fabric MTU.
    pub mtu: u32,
    /// Leave TSO/GSO on on the veths (off by default, as on a real NIC path: 1500-byte packets).
    pub offloads: bool,
    /// Scratch directory (images, received files).
    pub scratch: PathBuf,
    /// Receivers keep what they receive and it is checked byte for byte.
    pub verify: bool,
    /// Give up on one run after this long.
    pub timeout: Duration,
}

/// One run's measurements (an [`Outcome`](crate::contender::Outcome) plus what the framework counted).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Seconds until all done.
    pub secs: f64,
    /// Wire bytes (IP level) / image bytes.
    pub wire_ip: f64,
    /// Wire bytes (transport payload) / image bytes.
    pub wire_payload: f64,
    /// Sender CPU seconds per GB delivered to one receiver (per image GB).
    pub sender_cpu_per_gb: f64,
    /// Receiver CPU seconds per GB received (mean over receivers).
    pub receiver_cpu_per_gb: f64,
    /// Fraction of the image the receivers got (mean; 1.0 for complete contenders).
    pub delivered_fraction: f64,
    /// Byte-for-byte check, when asked for.
    pub identical: Option<bool>,
}

/// JSON has no NaN (serde_json writes null): read null back as NaN.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One contender in one scenario: medians over the repetitions.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// Contender name.
    pub contender: String,
    /// The scenario.
    pub scenario: Scenario,
    /// Loss label.
    pub loss_label: String,
    /// Seconds until all receivers are done.
    pub secs: Option<Summary>,
    /// N x image / median seconds, MB/s (delivered fraction counted for the blaster).
    #[serde(deserialize_with = "null_as_nan")]
    pub aggregate_mb_s: f64,
    /// The raw blaster's median seconds / this contender's (1.0 = the fabric's limit).
    pub vs_limit: Option<f64>,
    /// Median wire bytes / image, IP level.
    #[serde(deserialize_with = "null_as_nan")]
    pub wire_ip: f64,
    /// Median wire bytes / image, transport payload level.
    #[serde(deserialize_with = "null_as_nan")]
    pub wire_payload: f64,
    /// Median sender CPU seconds per image GB.
    #[serde(deserialize_with = "null_as_nan")]
    pub sender_cpu_per_gb: f64,
    /// Median receiver CPU seconds per received GB.
    #[serde(deserialize_with = "null_as_nan")]
    pub receiver_cpu_per_gb: f64,
    /// Median delivered fraction.
    #[serde(deserialize_with = "null_as_nan")]
    pub delivered_fraction: f64,
    /// Runs that failed.
    pub failures: usize,
    /// First failure's message, if any.
    pub error: Option<String>,
    /// Every run.
    pub samples: Vec<Sample>,
}

/// The whole result, as written to JSON.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Command line that produced it.
    pub command: String,
    /// Machine: kernel, CPUs.
    pub machine: String,
    /// Fabric MTU.
    pub mtu: u32,
    /// TSO/GSO on the veths.
    pub offloads: bool,
    /// metalcast's rate cap, Mbit/s (0: none).
    pub metalcast_rate_mbit: u64,
    /// Contenders that could not run, with the reason.
    pub unavailable: Vec<(String, String)>,
    /// Rows.
    pub rows: Vec<Row>,
}

/// (tx_bytes, tx_packets) of `dev` in the calling thread's namespace.
pub(crate) fn dev_tx(dev: &str) -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev").context("reading /proc/thread-self/net/dev")?;
    for line in text.lines() {
        if let Some((name, rest)) = line.split_once(':')
            && name.trim() == dev
        {
            let f: Vec<u64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            anyhow::ensure!(f.len() >= 10, "short /proc/net/dev line for {dev}");
            return Ok((f[8], f[9]));
        }
    }
    bail!("{dev} not in /proc/net/dev")
}

/// Sum over every host of its veth's (tx_bytes, tx_packets).
pub fn fabric_tx(f: &Fabric) -> anyhow::Result<(u64, u64)> {
    let mut total = (0, 0);
    for h in f.hosts() {
        let dev = h.ifname().to_owned();
        let (b, p) = h.run_in(move || dev_tx(&dev))??;
        total.0 += b;
        total.1 += p;
    }
    Ok(total)
}

/// Turns TSO/GSO/GRO on or off on every veth end of the fabric.
pub(crate) fn set_offloads(f: &Fabric, on: bool) -> anyhow::Result<()> {
    let v = if on { "on" } else { "off" };
    let mut ends: Vec<(&metalcast_fabric::Netns, &str)> = Vec::new();
    for h in f.hosts() {
        ends.push((h.netns(), h.ifname()));
        ends.push((f.switch().netns(), h.switch_port()));
    }
    for (ns, dev) in ends {
        let st = ns
            .command("ethtool")
            .args(["-K", dev, "tso", v, "gso", v, "gro", v])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("running ethtool (apt-get install ethtool)")?;
        anyhow::ensure!(st.success(), "ethtool -K {dev} tso/gso/gro {v} failed");
    }
    if !on {
        // The fabric segments UDP GSO batches in software already; keep that.
        for h in f.hosts() {
            let _ = h.command("ethtool").args(["-K", h.ifname(), "tx-udp-segmentation", "off"]).status();
        }
    }
    Ok(())
}

fn machine() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned()))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / (1 << 20))
        .unwrap_or(0);
    format!("Linux {}, {cpus} CPUs, {mem} GiB", kernel.trim())
}

/// Runs every scenario and contender; prints one line per run to stderr.
pub fn run(cfg: &Config) -> anyhow::Result<Report> {
    run_with(cfg, &mut |_| Ok(()))
}

/// [`run`], handing the report so far to `checkpoint` after every scenario
/// (a sweep takes hours: an interrupted one keeps what it measured).
pub fn run_with(cfg: &Config, checkpoint: &mut dyn FnMut(&Report) -> anyhow::Result<()>) -> anyhow::Result<Report> {
    metalcast_fabric::bpf_capable().context("this benchmark builds a namespace fabric with loss injection")?;
    anyhow::ensure!(cfg.reps > 0, "--reps must be at least 1");
    let mut all: Vec<Box<dyn Contender>> = Vec::new();
    let mut unavailable = Vec::new();
    for name in &cfg.contenders {
        let c = contenders::by_name(name)?;
        match c.available() {
            Ok(()) => all.push(c),
            Err(why) => {
                eprintln!("contender {name} skipped: {why}");
                unavailable.push((name.clone(), why));
            }
        }
    }
    eprintln!(
        "veth offloads (TSO/GSO/GRO): {} ({})",
        if cfg.offloads { "on" } else { "off" },
        if cfg.offloads {
            "64 KB TCP segments cross the fabric: hides per-packet cost"
        } else {
            "every contender puts MTU-sized packets on the wire"
        }
    );
    let root =
        crate::interrupt::scratch_dir(&cfg.scratch).with_context(|| format!("scratch in {}", cfg.scratch.display()))?;
    let mut rows = Vec::new();
    let mut port: u16 = 41000;
    for &size_mib in &cfg.sizes_mib {
        let image = Image::make(&root.path().join(format!("img{size_mib}")), size_mib, cfg.chunk_bytes)?;
        for &n in &cfg.receivers {
            let f = Fabric::builder().receivers(n).mtu(cfg.mtu).build().context("building the fabric")?;
            set_offloads(&f, cfg.offloads)?;
            for &link_mbit in &cfg.link_mbit {
                for h in f.hosts() {
                    let rate = (link_mbit > 0).then(|| Rate::mbit(link_mbit));
                    h.set_rate(Flow::ToHost, rate)?;
                    h.set_rate(Flow::FromHost, rate)?;
                }
                for &loss in &cfg.losses {
                    let scenario = Scenario { receivers: n, loss, size_mib, link_mbit };
                    let mut per: Vec<(Vec<Sample>, usize, Option<String>)> = vec![(Vec::new(), 0, None); all.len()];
                    for rep in 0..cfg.reps {
                        for (ci, c) in all.iter().enumerate() {
                            for h in f.receivers() {
                                h.set_loss(Flow::ToHost, loss.config(c.udp()))?;
                            }
                            let work = root.path().join(format!("run-{port}"));
                            std::fs::create_dir_all(&work)?;
                            let env = Env {
                                fabric: &f,
                                image: &image,
                                work: &work,
                                port,
                                mtu: cfg.mtu,
                                link_mbit,
                                rate_mbit: cfg.rate_mbit,
                                verify: cfg.verify,
                                timeout: cfg.timeout,
                            };
                            port = port.wrapping_add(10).max(41000);
                            let res = measure(&**c, &env)
                                .map_err(|e| anyhow::anyhow!("{e:#}{}", contenders::log_tail(&work)));
                            keep_logs(&work, c.name());
                            let _ = std::fs::remove_dir_all(&work);
                            let tag = format!(
                                "N={n} loss={} size={size_mib}MiB link={} rep {rep}: {}",
                                loss.label(),
                                if link_mbit == 0 { "none".into() } else { format!("{link_mbit}Mbit") },
                                c.name()
                            );
                            match res {
                                Ok(s) => {
                                    eprintln!(
                                        "{tag} {:.2}s wire ip {:.3} payload {:.3} cpu/GB tx {:.2} rx {:.2} got {:.3}{}",
                                        s.secs,
                                        s.wire_ip,
                                        s.wire_payload,
                                        s.sender_cpu_per_gb,
                                        s.receiver_cpu_per_gb,
                                        s.delivered_fraction,
                                        match s.identical {
                                            Some(true) => " identical",
                                            Some(false) => " NOT IDENTICAL",
                                            None => "",
                                        }
                                    );
                                    per[ci].0.push(s);
                                }
                                Err(e) => {
                                    eprintln!("{tag} FAILED: {e:#}");
                                    per[ci].1 += 1;
                                    per[ci].2.get_or_insert_with(|| format!("{e:#}"));
                                }
                            }
                        }
                    }
                    let first = rows.len();
                    for (c, (samples, failures, error)) in all.iter().zip(per) {
                        rows.push(summarise(c.name(), scenario, &image, samples, failures, error));
                    }
                    let limit = rows[first..]
                        .iter()
                        .find(|r| r.contender == crate::contender::BLASTER)
                        .and_then(|r| r.secs.as_ref().map(|s| s.median));
                    for r in &mut rows[first..] {
                        r.vs_limit = limit.zip(r.secs.as_ref()).map(|(l, s)| l / s.median);
                    }
                    checkpoint(&report(cfg, &unavailable, &rows))?;
                }
            }
            drop(f);
        }
    }
    Ok(report(cfg, &unavailable, &rows))
}

fn report(cfg: &Config, unavailable: &[(String, String)], rows: &[Row]) -> Report {
    Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: machine(),
        mtu: cfg.mtu,
        offloads: cfg.offloads,
        metalcast_rate_mbit: cfg.rate_mbit,
        unavailable: unavailable.to_vec(),
        rows: rows.to_vec(),
    }
}

/// With `METALCAST_BENCH_KEEP_LOGS=<dir>`, copies a run's `*.log` files to `<dir>/<run>-<contender>/`.
fn keep_logs(work: &Path, contender: &str) {
    let Some(dir) = std::env::var_os("METALCAST_BENCH_KEEP_LOGS") else { return };
    let run = work.file_name().unwrap_or_default().to_string_lossy();
    let to = Path::new(&dir).join(format!("{run}-{contender}"));
    for e in std::fs::read_dir(work).into_iter().flatten().flatten() {
        if e.path().extension().is_some_and(|x| x == "log") && std::fs::create_dir_all(&to).is_ok() {
            let _ = std::fs::copy(e.path(), to.join(e.file_name()));
        }
    }
}

fn measure(c: &dyn Contender, env: &Env<'_>) -> anyhow::Result<Sample> {
    let (b0, p0) = fabric_tx(env.fabric)?;
    let out = c.run(env)?;
    let (b1, p1) = fabric_tx(env.fabric)?;
    let (bytes, pkts) = (b1 - b0, p1 - p0);
    let ip = bytes.saturating_sub(14 * pkts);
    let payload = ip.saturating_sub(if c.udp() { 28 } else { 52 } * pkts);
    // metalcast delivers the raw image (decompressed); the others deliver the bundle file.
    let size = if c.delivers_raw() { env.image.raw_bytes } else { env.image.bundle_bytes } as f64;
    let got: u64 = out.delivered.iter().sum();
    let n = env.fabric.receivers().len() as f64;
    let fraction = got as f64 / (size * n);
    if let Some(false) = out.identical {
        bail!("a receiver's data differs from the image");
    }
    Ok(Sample {
        secs: out.secs,
        wire_ip: ip as f64 / size,
        wire_payload: payload as f64 / size,
        sender_cpu_per_gb: out.sender_cpu / (size / 1e9),
        receiver_cpu_per_gb: out.receiver_cpu / (got.max(1) as f64 / 1e9),
        delivered_fraction: fraction,
        identical: out.identical,
    })
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    if v.is_empty() { f64::NAN } else { Summary::of(&v).median }
}

fn summarise(
    name: &str,
    scenario: Scenario,
    image: &Image,
    samples: Vec<Sample>,
    failures: usize,
    error: Option<String>,
) -> Row {
    let secs = (!samples.is_empty()).then(|| Summary::of(&samples.iter().map(|s| s.secs).collect::<Vec<_>>()));
    let fraction = median(samples.iter().map(|s| s.delivered_fraction));
    let aggregate_mb_s = secs
        .as_ref()
        .map(|s| scenario.receivers as f64 * image.raw_bytes as f64 * fraction.min(1.0) / s.median / 1e6)
        .unwrap_or(0.0);
    Row {
        contender: name.to_owned(),
        scenario,
        loss_label: scenario.loss.label(),
        aggregate_mb_s,
        vs_limit: None,
        wire_ip: median(samples.iter().map(|s| s.wire_ip)),
        wire_payload: median(samples.iter().map(|s| s.wire_payload)),
        sender_cpu_per_gb: median(samples.iter().map(|s| s.sender_cpu_per_gb)),
        receiver_cpu_per_gb: median(samples.iter().map(|s| s.receiver_cpu_per_gb)),
        delivered_fraction: fraction,
        secs,
        failures,
        error,
        samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_interface_counters() {
        let (bytes, packets) = dev_tx("lo").expect("every namespace has lo");
        assert!(bytes >= packets);
        assert!(dev_tx("nosuchif0").is_err());
    }

    #[test]
    fn loss_parsing() {
        assert_eq!(Loss::parse("1").unwrap(), Loss::Random(1.0));
        assert_eq!(Loss::parse("5%").unwrap(), Loss::Random(5.0));
        assert_eq!(Loss::parse("bursty").unwrap(), Loss::BURSTY);
        assert_eq!(Loss::parse("ge:1:20").unwrap(), Loss::Bursty { enter: 1.0, leave: 20.0 });
        assert!(Loss::parse("100").is_err());
        assert!(Loss::parse("ge:1").is_err());
        assert!(Loss::parse("x").is_err());
        assert!((Loss::BURSTY.mean_percent() - 0.990).abs() < 0.001);
        assert_eq!(Loss::Random(1.0).label(), "1%");
    }
}
