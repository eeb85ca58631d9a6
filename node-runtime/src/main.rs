//! `metalcast-node`: the node runtime's command line.

use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use metalcast_image::PublicKey;
use metalcast_node::{exit, receive, rx_path::RxPath};

#[derive(Parser)]
#[command(name = "metalcast-node", version, about = "metalcast node runtime")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Receive one image from a multicast session and write its parts to a directory.
    ///
    /// Exit codes: 0 done, 1 failure, 2 usage, 3 manifest not trusted, 4 timed out, 5 write failed.
    Receive {
        /// Signed manifest file (from `metalcast send --manifest-out` or `metalcast-image export-manifest`).
        #[arg(long)]
        manifest: PathBuf,
        /// Session spec file (from `metalcast send --session-out`).
        #[arg(long)]
        session: PathBuf,
        /// Trusted public key file (repeatable).
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
        /// Accept an unsigned manifest (chunk hashes are still checked).
        #[arg(long)]
        allow_unsigned: bool,
        /// Output directory; parts appear there only when complete.
        #[arg(short, long)]
        output: PathBuf,
        /// Address of the interface to receive on (default: any).
        #[arg(long, default_value = "0.0.0.0")]
        iface_addr: Ipv4Addr,
        /// Receiver id reported to the sender (default: random).
        #[arg(long)]
        id: Option<u64>,
        /// Give up after this many seconds without data.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Receive path: XDP/AF_XDP fast path, plain UDP socket, or XDP when
        /// available and the socket otherwise (the reason is logged).
        #[arg(long, value_enum, default_value_t = RxPath::Auto)]
        rx_path: RxPath,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let Cmd::Receive { manifest, session, keys, allow_unsigned, output, iface_addr, id, timeout, rx_path, json, quiet } =
        Cli::parse().cmd;
    let trusted: Result<Vec<_>, _> = keys.iter().map(|k| PublicKey::load(k)).collect();
    let trusted = match trusted {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    if trusted.is_empty() && !allow_unsigned {
        eprintln!("error: give a trusted key with --key, or --allow-unsigned");
        return ExitCode::from(exit::USAGE);
    }
    let job = receive::ReceiveJob {
        manifest,
        session,
        trusted,
        allow_unsigned,
        out: output,
        iface: iface_addr,
        id: id.unwrap_or_else(|| metalcast_transport::ReceiverConfig::default().id),
        idle_timeout: Duration::from_secs(timeout),
        rx_path,
    };
    let bar = if quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("receiving [{bar:40}] {pos}/{len} blocks {per_sec} eta {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        b
    };
    let result = receive::run_with_rx_report(&job, &mut |p| {
        bar.set_length(p.total_blocks as u64);
        bar.set_position(p.blocks_done as u64);
    });
    bar.finish_and_clear();
    match result {
        Ok((s, paths, rx)) => {
            if json {
                println!("{}", serde_json::json!({ "summary": s, "files": paths, "rx_path": rx }));
            } else {
                println!(
                    "received {} blocks ({:.1} MiB written) in {:.2}s: {} packets, {} redundant, {} rejected (bad MAC {}, other session {}, malformed {}), {} blocks decoded, loss ~{:.1}%",
                    s.blocks,
                    s.bytes_written as f64 / (1 << 20) as f64,
                    s.secs,
                    s.received,
                    s.redundant,
                    s.rejected.total(),
                    s.rejected.bad_mac,
                    s.rejected.other_session,
                    s.rejected.malformed,
                    s.decoded_blocks,
                    s.loss_estimate * 100.0
                );
                match (&rx.xdp, &rx.fallback_reason) {
                    (Some(x), _) => println!(
                        "rx path: xdp ({} mode on {}, {} AF_XDP queues): {} seen, {} redirected, {} early-dropped in the kernel, {} passed to the stack, {} dropped at the AF_XDP socket",
                        x.mode,
                        x.ifname,
                        x.queues,
                        x.session.seen,
                        x.session.redirected,
                        x.session.early_dropped,
                        x.session.passed,
                        x.xsk.rx_dropped
                    ),
                    (None, Some(why)) => println!("rx path: socket (XDP unavailable: {why})"),
                    (None, None) => println!("rx path: socket"),
                }
                for p in paths {
                    println!("{}", p.display());
                }
            }
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
