//! Arguments and drivers of the `suite`, `simulate`, `recursion`, `plot` and `plot-results` subcommands.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use metalcast_bench::suite::{self, Loss};
use metalcast_bench::{contenders, report, sim, validate};

/// `metalcast-bench suite`.
#[derive(clap::Args, Debug)]
pub struct SuiteArgs {
    /// Contenders, alternating in this order (metalcast, metalcast-xdp, udpcast, http, bittorrent, blaster).
    #[arg(long, value_delimiter = ',', default_values_t = contenders::ALL.iter().map(|s| s.to_string()))]
    contenders: Vec<String>,
    /// Receiver counts (one fabric each).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    receivers: Vec<usize>,
    /// Loss per receiver link: percent random, `bursty` (Gilbert, about 1% in bursts of 5), or `ge:<enter%>:<leave%>`.
    #[arg(long, value_delimiter = ',', default_value = "0,1,5,bursty", value_parser = Loss::parse)]
    loss: Vec<Loss>,
    /// Image sizes, MiB.
    #[arg(long, value_delimiter = ',', default_value = "256,1024")]
    size_mib: Vec<usize>,
    /// Bundle chunk size, KiB (`metalcast-image build --chunk-size`): one chunk is one RaptorQ
    /// source block. Every contender sends the same bundle.
    #[arg(long, default_value_t = metalcast_image::manifest::DEFAULT_CHUNK_SIZE >> 10)]
    chunk_kib: u32,
    /// Emulated link rates in Mbit/s, every link, both directions (0: unthrottled). Pick one where the
    /// blaster reaches >= 98% of it at the largest N (its `vs blaster` and wire columns tell).
    #[arg(long, value_delimiter = ',', default_value = "0,200")]
    link_mbit: Vec<u64>,
    /// Repetitions per contender and scenario.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// metalcast's send rate cap, Mbit/s of UDP payload (0: none; the rate adapts below it); with an emulated
    /// link, the link rate caps it too.
    #[arg(long, default_value_t = 0)]
    rate_mbit: u64,
    /// Fabric MTU (udpcast's --blocksize follows it up to its maximum of 1456).
    #[arg(long, default_value_t = 1500)]
    mtu: u32,
    /// Leave TSO/GSO/GRO on on the veths (default off: 1500-byte packets for TCP too, as on a wire).
    #[arg(long)]
    offloads: bool,
    /// Receivers keep their data and every copy is checked byte for byte (needs disk: N x image).
    #[arg(long)]
    verify: bool,
    /// Give up on one run after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// Scratch directory for images and received files.
    #[arg(long, default_value = "/var/tmp")]
    scratch: PathBuf,
    /// Output directory: report.md, report.json, time-vs-*.svg/png.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
}

impl SuiteArgs {
    fn config(&self) -> suite::Config {
        suite::Config {
            contenders: self.contenders.clone(),
            receivers: self.receivers.clone(),
            losses: self.loss.clone(),
            sizes_mib: self.size_mib.clone(),
            chunk_bytes: self.chunk_kib << 10,
            link_mbit: self.link_mbit.clone(),
            reps: self.reps,
            rate_mbit: self.rate_mbit,
            mtu: self.mtu,
            offloads: self.offloads,
            scratch: self.scratch.clone(),
            verify: self.verify,
            timeout: Duration::from_secs(self.timeout_secs),
        }
    }
}

/// Runs the suite and writes its outputs. After every scenario the rows so
/// far go to `report.partial.md` and `report.partial.json` in the output
/// directory (`metalcast-bench plot` draws them too), which the complete
/// report replaces at the end.
pub fn suite(args: SuiteArgs) -> anyhow::Result<()> {
    let (md, json) = (args.out.join("report.partial.md"), args.out.join("report.partial.json"));
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let r = suite::run_with(&args.config(), &mut |r| {
        std::fs::write(&md, report::markdown(r)).with_context(|| format!("writing {}", md.display()))?;
        std::fs::write(&json, serde_json::to_string_pretty(r)?).with_context(|| format!("writing {}", json.display()))
    })?;
    println!("{}", report::markdown(&r));
    for f in report::write(&r, &args.out)? {
        eprintln!("wrote {}", f.display());
    }
    for f in [md, json] {
        std::fs::remove_file(&f).with_context(|| format!("removing {}", f.display()))?;
    }
    Ok(())
}

/// `metalcast-bench simulate`.
#[derive(clap::Args, Debug)]
pub struct SimArgs {
    /// Receiver counts.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000")]
    receivers: Vec<usize>,
    /// Loss per receiver: percent random, `bursty`, or `ge:<enter%>:<leave%>`.
    #[arg(long, value_delimiter = ',', default_value = "0,1,5,bursty", value_parser = Loss::parse)]
    loss: Vec<Loss>,
    /// Image size, MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: usize,
    /// Bundle chunk size, KiB: one chunk is one RaptorQ source block
    /// (`metalcast-image build --chunk-size`). Bigger blocks need
    /// relatively less repair for the worst of many receivers; the CPU
    /// constants stay those of 1 MiB blocks (--validate times the decoders
    /// at this size).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(64..=16384))]
    chunk_kib: u64,
    /// Link MTU.
    #[arg(long, default_value_t = 1500)]
    mtu: usize,
    /// Sender link rate, Mbit/s.
    #[arg(long, default_value_t = 1000)]
    link_mbit: u64,
    /// metalcast's payload rate cap, Mbit/s (0: none).
    #[arg(long, default_value_t = 0)]
    rate_mbit: u64,
    /// Round trip time, microseconds.
    #[arg(long, default_value_t = 200)]
    rtt_us: u64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Sender and receivers share this many cores (a one-box fabric); default: each host has its own.
    #[arg(long)]
    shared_cores: Option<f64>,
    /// Also write the predictions as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Validate against real fabric runs of metalcast instead (root): first measures this machine's
    /// CPU costs (metalcast at 0% loss, and the decoder), then runs the first --receivers value (use
    /// 8) at every --loss, --size-mib, --link-mbit; prints prediction vs measurement (target: within
    /// 10%; the 0% row is the calibration itself).
    #[arg(long)]
    validate: bool,
    /// Repetitions of each real run when validating.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Scratch directory for the validation's image.
    #[arg(long, default_value = "/var/tmp")]
    scratch: PathBuf,
}

/// Runs the simulation (or its validation).
pub fn simulate(a: SimArgs) -> anyhow::Result<()> {
    let base = sim::Config {
        receivers: a.receivers[0],
        loss: a.loss[0],
        image_bytes: a.size_mib as u64 * (1 << 20),
        chunk_bytes: a.chunk_kib << 10,
        mtu: a.mtu,
        link_mbit: a.link_mbit as f64,
        rate_mbit: a.rate_mbit as f64,
        rtt: a.rtt_us as f64 * 1e-6,
        seed: a.seed,
        shared_cores: a.shared_cores,
        ..sim::Config::default()
    };
    if a.validate {
        let cfg = suite::Config {
            contenders: vec!["metalcast".into()],
            receivers: vec![a.receivers[0]],
            losses: a.loss.clone(),
            sizes_mib: vec![a.size_mib],
            chunk_bytes: u32::try_from(a.chunk_kib << 10).context("--chunk-kib")?,
            link_mbit: vec![a.link_mbit],
            reps: a.reps,
            rate_mbit: a.rate_mbit,
            mtu: a.mtu as u32,
            offloads: false,
            scratch: a.scratch.clone(),
            verify: false,
            timeout: Duration::from_secs(900),
        };
        let (cal, v) = validate::validate(&cfg, &base)?;
        println!(
            "Calibrated at 0% loss: sender {:.2} us/packet; rest of the machine {:.2} us/packet/receiver; \
             decode {:.3} ms/block + {:.3} ms/lost symbol, full RaptorQ decode {:.2} ms/block; \
             {}.\n",
            cal.tx_packet_cpu * 1e6,
            cal.rx_packet_cpu * 1e6,
            cal.decode_cpu * 1e3,
            cal.decode_symbol_cpu * 1e3,
            cal.full_decode_cpu * 1e3,
            if cal.cpu_bound {
                format!("CPU efficiency {:.2} of {} cores (CPU-bound calibration run)", cal.cpu_efficiency, cal.cores)
            } else {
                format!(
                    "link-bound calibration run, CPU efficiency not fitted ({} cores taken as fully usable)",
                    cal.cores
                )
            }
        );
        println!(
            "| N | loss | measured s | predicted s | error | measured wire/image | predicted | error | within 10% |"
        );
        println!("|---:|---|---:|---:|---:|---:|---:|---:|---|");
        for x in &v {
            let (et, ew) = x.errors();
            let loss = if x.calibration {
                format!("{} (calibration)", x.scenario.loss.label())
            } else {
                x.scenario.loss.label()
            };
            println!(
                "| {} | {} | {:.2} | {:.2} | {:.1}% | {:.4} | {:.4} | {:.1}% | {} |",
                x.scenario.receivers,
                loss,
                x.measured_secs,
                x.predicted_secs,
                et * 100.0,
                x.measured_wire_ip,
                x.predicted_wire_ip,
                ew * 100.0,
                if et <= 0.10 && ew <= 0.10 { "yes" } else { "NO" }
            );
        }
        if let Some(j) = a.json {
            let doc = serde_json::json!({ "calibration": cal, "validation": v });
            std::fs::write(&j, serde_json::to_string_pretty(&doc)?)
                .with_context(|| format!("writing {}", j.display()))?;
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for &loss in &a.loss {
        for &n in &a.receivers {
            let t = std::time::Instant::now();
            rows.extend(sim::all(&sim::Config { receivers: n, loss, ..base.clone() }));
            eprintln!("simulated N={n} loss {}: {:.1}s", loss.label(), t.elapsed().as_secs_f64());
        }
    }
    println!("{}", sim::markdown(&rows));
    for r in rows.iter().filter(|r| r.scheme == "metalcast" && r.receivers == 10_000 && r.loss_percent == 1.0) {
        let ok = |w: f64| if w <= 1.08 { "met" } else { "NOT met" };
        println!(
            "Target (issue 9): 10,000 receivers at 1% loss, wire/image <= 1.08: IP level {:.4} ({}), UDP payload level {:.4} ({})",
            r.wire_ip,
            ok(r.wire_ip),
            r.wire_payload,
            ok(r.wire_payload)
        );
    }
    if let Some(j) = a.json {
        std::fs::write(&j, serde_json::to_string_pretty(&rows)?).with_context(|| format!("writing {}", j.display()))?;
    }
    Ok(())
}

/// Re-renders a suite report from its JSON.
pub fn plot(json: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read(json).with_context(|| format!("reading {}", json.display()))?;
    let r: suite::Report = serde_json::from_slice(&text).with_context(|| format!("parsing {}", json.display()))?;
    println!("{}", report::markdown(&r));
    for f in report::write(&r, out)? {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}

/// Draws the plots of `results::PLOTS` from the tables of `results` (a RESULTS.md) into `out`.
pub fn plot_results(results: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    let md = std::fs::read_to_string(results).with_context(|| format!("reading {}", results.display()))?;
    let files = metalcast_bench::results::write(&md, out)
        .with_context(|| format!("drawing the plots of {} into {}", results.display(), out.display()))?;
    for (f, p) in files.iter().zip(metalcast_bench::results::PLOTS) {
        eprintln!("wrote {} (from \"{}\")", f.display(), p.heading);
    }
    Ok(())
}

/// `metalcast-bench recursion`.
#[derive(clap::Args, Debug)]
pub struct RecursionArgs {
    /// Deepest nesting level (0: the root only; 2: root -> tenant -> tenant's tenant).
    #[arg(long, default_value_t = 2)]
    max_depth: usize,
    /// Repetitions per call and depth (medians are reported).
    #[arg(long, default_value_t = 20)]
    reps: usize,
    /// Also write the rows as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs the recursion benchmark and prints its markdown table.
pub fn recursion(args: RecursionArgs) -> anyhow::Result<()> {
    let cfg = metalcast_bench::recursion::Config { max_depth: args.max_depth, reps: args.reps };
    let rows = metalcast_bench::recursion::run(&cfg)?;
    println!("{}", metalcast_bench::recursion::markdown(&rows));
    if let Some(j) = args.json {
        std::fs::write(&j, serde_json::to_string_pretty(&rows)?).with_context(|| format!("writing {}", j.display()))?;
    }
    Ok(())
}
