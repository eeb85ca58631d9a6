//! `metalcast-bench`: reproducible imaging benchmarks (see perf/README.md).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use metalcast_bench::suite::Loss;

mod cli;
use cli::{RecursionArgs, SimArgs, SuiteArgs};

#[derive(Parser)]
#[command(
    name = "metalcast-bench",
    version,
    about = "Reproducible metalcast benchmarks, side by side with today's tools"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bundle build throughput vs `zstd -T1 | b3sum` on the same 1 GiB inputs.
    ImageBuild {
        /// Repetitions per contender (alternating).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Scratch directory (needs about 3 GiB free).
        #[arg(long, default_value = "/var/tmp")]
        scratch: PathBuf,
        /// Also write the rows as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// One image to N namespace receivers: metalcast vs udpcast, same fabric, alternating (root).
    Multicast {
        /// Receivers.
        #[arg(long, default_value_t = 8)]
        receivers: usize,
        /// Image size, MiB.
        #[arg(long, default_value_t = 1024)]
        size_mib: usize,
        /// Loss per receiver link: percent random, `bursty`, or `ge:<enter%>:<leave%>` (comma separated).
        #[arg(long, value_delimiter = ',', default_value = "0,1", value_parser = Loss::parse)]
        loss: Vec<Loss>,
        /// Repetitions per contender and loss rate.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// metalcast's send rate cap, Mbit/s (0: none; the rate adapts below it); the default is `metalcast send`'s.
        #[arg(long, default_value_t = 0)]
        rate_mbit: u64,
        /// Link MTU of the fabric (udpcast's --blocksize follows it, up to udpcast's maximum of 1456).
        #[arg(long, default_value_t = 1500)]
        mtu: u32,
        /// Scratch directory for the image.
        #[arg(long, default_value = "/var/tmp")]
        scratch: PathBuf,
        /// Also write the rows as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Report packets per receiver at the sender with plans off (every receiver every 5 ms, wire version
    /// 3's feedback) and on, alternately on one fabric (root).
    Feedback {
        /// Receivers.
        #[arg(long, default_value_t = 16)]
        receivers: usize,
        /// Image size, MiB.
        #[arg(long, default_value_t = 256)]
        size_mib: usize,
        /// Random loss on every link, percent (one case each).
        #[arg(long, value_delimiter = ',', default_value = "1,5")]
        loss: Vec<f64>,
        /// Emulated link rates, Mbit/s, every link both ways (0: unthrottled).
        #[arg(long, value_delimiter = ',', default_value = "0")]
        link_mbit: Vec<u64>,
        /// Repetitions.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// The sender's rate cap, Mbit/s of UDP payload (0: none; an emulated link caps it too).
        #[arg(long, default_value_t = 0)]
        rate_mbit: u64,
        /// Give up on one session after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
        /// Scratch directory for the image.
        #[arg(long, default_value = "/var/tmp")]
        scratch: PathBuf,
        /// Also write the rows as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// One lossy or late receiver among N: the healthy receivers' completion time over their own in a run
    /// without it (root).
    Outliers {
        /// Receivers, the outlier (the last one) included.
        #[arg(long, default_value_t = 16)]
        receivers: usize,
        /// Image size, MiB.
        #[arg(long, default_value_t = 256)]
        size_mib: usize,
        /// Random loss on every link, percent.
        #[arg(long, default_value_t = 1.0)]
        base_loss: f64,
        /// The lossy outlier's loss, percent (one case each; empty: none).
        #[arg(long, value_delimiter = ',', default_value = "20,30")]
        outlier_loss: Vec<f64>,
        /// When the late joiner joins, percent of the first pass (one case each; empty: none).
        #[arg(long, value_delimiter = ',', default_value = "25,50")]
        late: Vec<f64>,
        /// Emulated link rates, Mbit/s, every link both ways (0: unthrottled).
        #[arg(long, value_delimiter = ',', default_value = "0,200")]
        link_mbit: Vec<u64>,
        /// Repetitions.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// The sender's rate cap, Mbit/s of UDP payload (0: none; an emulated link caps it too).
        #[arg(long, default_value_t = 0)]
        rate_mbit: u64,
        /// Also run every case with the sender's outlier policy off (before/after).
        #[arg(long)]
        compare_policy: bool,
        /// Give up on one session after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
        /// Scratch directory for the image.
        #[arg(long, default_value = "/var/tmp")]
        scratch: PathBuf,
        /// Also write the rows as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Receive CPU per GB and max packets/s: AF_XDP vs recvmmsg, one sender, one receiver (root).
    RxPath {
        /// Seconds of sending per run.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Offered load of the fixed-rate runs, kpps (1500-byte packets).
        #[arg(long, default_value_t = 150)]
        rate_kpps: u64,
        /// Skip the unpaced (max packets/s) runs.
        #[arg(long)]
        no_max: bool,
        /// Repetitions per path and load.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Also write the rows as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The imaging comparison: every contender, every scenario, alternating, on one fabric per N (root).
    Suite(SuiteArgs),
    /// Latency each recursive-HaaS nesting level adds to power cycle and network connect (root, QEMU).
    Recursion(RecursionArgs),
    /// The marketplace: settlement of --bids sealed bids on --nodes nodes, buy-now latency and throughput.
    Market {
        /// Database URL (an empty PostgreSQL database, e.g. postgres://u:p@127.0.0.1/db); default a fresh SQLite file.
        #[arg(long)]
        database_url: Option<String>,
        /// Nodes (auction units and buy-now offers).
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// Sealed bids.
        #[arg(long, default_value_t = 10_000)]
        bids: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Discrete-event simulation of 10 to 10,000 receivers: metalcast's repair vs NACK/ARQ vs unicast.
    Simulate(SimArgs),
    /// Redraws the table and plots of a suite's report.json (e.g. one recorded earlier).
    Plot {
        /// A report.json written by `suite`.
        json: PathBuf,
        /// Output directory.
        #[arg(long, default_value = "bench-out")]
        out: PathBuf,
    },
    /// Draws perf/plots/*.svg from the tables perf/RESULTS.md quotes (metalcast beside udpcast, HTTP, BitTorrent
    /// and the blaster).
    ///
    /// Which section, table, rows and columns each plot takes is listed in perf/src/results.rs; a section, table,
    /// column, row or number it cannot find is an error naming it, and then nothing is written. Run it from the
    /// workspace root after editing one of those tables and commit the SVGs: `cargo test -p metalcast-bench --test
    /// plots` fails while a committed SVG differs from what the tables draw.
    PlotResults {
        /// The markdown file to read the tables from.
        #[arg(long, default_value = "perf/RESULTS.md")]
        results: PathBuf,
        /// Output directory for the SVGs (created if missing; files of the same name are replaced).
        #[arg(long, default_value = "perf/plots")]
        out: PathBuf,
    },
    /// In a QEMU guest (TCG): last byte received -> tenant init by kexec, vs firmware boot + iPXE (root).
    KexecBoot {
        /// Unpacked Debian kernel package (node-runtime/fetch-kernel.sh).
        #[arg(long, default_value = "/var/cache/metalcast/linux-image")]
        kernel_dir: PathBuf,
        /// Static metalcast-node, a release build as on real nodes (RUSTFLAGS="-C target-feature=+crt-static"
        /// cargo build --release -p metalcast-node --target x86_64-unknown-linux-gnu).
        #[arg(long)]
        node_static: PathBuf,
        /// Repetitions per method.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Guest memory, MiB.
        #[arg(long, default_value_t = 512)]
        memory_mb: u32,
        /// How the runtime stages the tenant kernel, one kexec run per method and repetition (comma list):
        /// auto (the kernel ELF by kexec_load when the bundle has one, else kexec_file_load), file
        /// (kexec_file_load of the bzImage) or load (kexec_load); kexec-tools goes into the guest's initramfs.
        #[arg(long, default_value = "auto,file", value_delimiter = ',')]
        kexec_method: Vec<String>,
        /// Do not give the `auto` tenant bundle the kernel's ELF (`metalcast-image build --kexec-elf`).
        #[arg(long)]
        no_kexec_elf: bool,
    },
    /// QEMU guests (TCG): power-on -> runtime checked in, by metalcast's built-in netboot vs dnsmasq vs a
    /// direct kernel boot; TFTP throughput of ipxe.efi with and without windowsize (root).
    Netboot {
        #[command(flatten)]
        cfg: metalcast_bench::netboot::Config,
        /// Also write the rows as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating metalcast-bench")?;
    let p = me.with_file_name(name);
    anyhow::ensure!(p.exists(), "{} not found: build it first (cargo build --release --workspace)", p.display());
    Ok(p)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Ctrl-C or kill: stop the contenders and delete the fabric instead of leaving them behind.
    metalcast_bench::interrupt::install().context("installing the signal handler")?;
    match cli.cmd {
        Cmd::ImageBuild { reps, scratch, json } => {
            let dir = metalcast_bench::interrupt::scratch_dir(&scratch)
                .with_context(|| format!("scratch dir in {}", scratch.display()))?;
            let rows = metalcast_bench::image_build::run(&sibling("metalcast-image")?, dir.path(), reps)?;
            println!("{}", metalcast_bench::image_build::markdown(&rows));
            if let Some(j) = json {
                std::fs::write(&j, serde_json::to_string_pretty(&rows)?)
                    .with_context(|| format!("writing {}", j.display()))?;
            }
        }
        Cmd::Multicast { receivers, size_mib, loss, reps, rate_mbit, mtu, scratch, json } => {
            let cfg =
                metalcast_bench::multicast::Config { receivers, size_mib, losses: loss, reps, rate_mbit, scratch, mtu };
            let report = metalcast_bench::multicast::run(&cfg)?;
            println!("{}", metalcast_bench::report::markdown(&report));
            if let Some(j) = json {
                std::fs::write(&j, serde_json::to_string_pretty(&report)?)
                    .with_context(|| format!("writing {}", j.display()))?;
            }
        }
        Cmd::Feedback { receivers, size_mib, loss, link_mbit, reps, rate_mbit, timeout_secs, scratch, json } => {
            let cfg = metalcast_bench::feedback::Config {
                receivers,
                size_mib,
                losses: loss,
                link_mbit,
                reps,
                rate_mbit,
                scratch,
                timeout: std::time::Duration::from_secs(timeout_secs),
            };
            let rows = metalcast_bench::feedback::run(&cfg)?;
            println!("{}", metalcast_bench::feedback::markdown(&cfg, &rows));
            if let Some(j) = json {
                std::fs::write(&j, serde_json::to_string_pretty(&rows)?)
                    .with_context(|| format!("writing {}", j.display()))?;
            }
        }
        Cmd::Outliers {
            receivers,
            size_mib,
            base_loss,
            outlier_loss,
            late,
            link_mbit,
            reps,
            rate_mbit,
            compare_policy,
            timeout_secs,
            scratch,
            json,
        } => {
            let cfg = metalcast_bench::outliers::Config {
                receivers,
                size_mib,
                base_loss,
                outlier_loss,
                late,
                link_mbit,
                reps,
                rate_mbit,
                compare_policy,
                scratch,
                timeout: std::time::Duration::from_secs(timeout_secs),
            };
            let rows = metalcast_bench::outliers::run(&cfg)?;
            println!("{}", metalcast_bench::outliers::markdown(&cfg, &rows));
            if let Some(j) = json {
                std::fs::write(&j, serde_json::to_string_pretty(&rows)?)
                    .with_context(|| format!("writing {}", j.display()))?;
            }
        }
        Cmd::RxPath { secs, rate_kpps, no_max, reps, json } => {
            let cfg = metalcast_bench::rx_path::Config { secs, rate_kpps, max_rate: !no_max, reps };
            let rows = metalcast_bench::rx_path::run(&cfg)?;
            println!("{}", metalcast_bench::rx_path::markdown(&rows));
            if let Some(j) = json {
                std::fs::write(&j, serde_json::to_string_pretty(&rows)?)
                    .with_context(|| format!("writing {}", j.display()))?;
            }
        }
        Cmd::Suite(args) => cli::suite(args)?,
        Cmd::Simulate(args) => cli::simulate(args)?,
        Cmd::Recursion(args) => cli::recursion(args)?,
        Cmd::Market { database_url, nodes, bids, clients, json } => {
            let cfg = metalcast_bench::market::Config { database_url, nodes, bids, clients };
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let r = rt.block_on(metalcast_bench::market::run(&cfg))?;
            println!(
                "market ({}): {} nodes, {} bids placed at {:.0}/s; settle {:.3} s over HTTP (the rule alone {:.4} s), {} leases; \
                 buy-now {:.0}/s with {} clients, p50 {:.1} ms, p99 {:.1} ms; one client alone p50 {:.1} ms",
                r.backend,
                r.nodes,
                r.bids,
                r.bids_per_sec,
                r.settle_secs,
                r.rule_secs,
                r.leases,
                r.buys_per_sec,
                clients,
                r.buy_p50 * 1e3,
                r.buy_p99 * 1e3,
                r.buy_alone_p50 * 1e3
            );
            if let Some(p) = json {
                std::fs::write(&p, serde_json::to_string_pretty(&r)?)?;
            }
        }
        Cmd::Plot { json, out } => cli::plot(&json, &out)?,
        Cmd::PlotResults { results, out } => cli::plot_results(&results, &out)?,
        Cmd::Netboot { cfg, json } => {
            let rows = metalcast_bench::netboot::run(&cfg)?;
            println!("{}", metalcast_bench::netboot::markdown(&rows));
            if let Some(p) = json {
                std::fs::write(&p, serde_json::to_string_pretty(&rows)?)?;
            }
        }
        Cmd::KexecBoot { kernel_dir, node_static, reps, memory_mb, kexec_method, no_kexec_elf } => {
            let cfg = metalcast_bench::kexec_boot::Config {
                kernel_dir,
                node_static,
                reps: reps.max(1),
                memory_mb,
                kexec_methods: kexec_method,
                kexec_elf: !no_kexec_elf,
            };
            println!("{}", metalcast_bench::kexec_boot::markdown(&metalcast_bench::kexec_boot::run(&cfg)?));
        }
    }
    Ok(())
}
