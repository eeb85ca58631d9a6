//! `metalcast-node`: the node runtime's command line.

use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use metalcast_image::PublicKey;
use metalcast_node::config::{NetConfig, parse_cmdline};
use metalcast_node::kexec::KexecMethod;
use metalcast_node::{agent, exit, init, receive, rx_path::RxPath};
use metalcast_runtime_api::{Handover, Role};

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
    /// Exit codes: 0 done, 1 failure, 2 usage, 3 manifest not trusted, 4 timed out, 5 write failed,
    /// 9 the image as sent is corrupt (a block failed its hash 3 times), 130/143 stopped by
    /// SIGINT/SIGTERM. On every failure the partial outputs are removed.
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
        /// Give up after this many seconds without new data (replayed packets do not count).
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
    /// Run the lifecycle agent: network up, check in, wait for instructions, deploy, hand over.
    ///
    /// Runs until handed over (kexec) unless --once. Exit codes as for `receive`, plus
    /// 6 hand-over failed and 7 network could not be brought up (see docs/node-runtime.md).
    Agent(AgentArgs),
    /// Run as PID 1 of the bootstrap initramfs (automatic when the process is PID 1, unless told `agent` or `receive`).
    Init,
}

#[derive(clap::Args)]
struct AgentArgs {
    /// Read settings from a kernel command line file (e.g. /proc/cmdline); flags given as well win.
    #[arg(long)]
    from_cmdline: Option<PathBuf>,
    /// Control plane base URL (`metalcast.cp=` on the kernel command line); several replicas'
    /// URLs separated by commas: the next is tried when one fails.
    #[arg(long, env = "METALCAST_CONTROL_PLANE")]
    control_plane: Option<String>,
    /// Interface to use (default: the first one besides lo).
    #[arg(long)]
    iface: Option<String>,
    /// Use this already configured address (no network configuration).
    #[arg(long, conflicts_with_all = ["static_addr", "dhcp"])]
    addr: Option<Ipv4Addr>,
    /// Configure this address, ADDR/PREFIX.
    #[arg(long = "static", conflicts_with = "dhcp")]
    static_addr: Option<String>,
    /// Configure the interface by DHCP.
    #[arg(long)]
    dhcp: bool,
    /// What this system is: runtime or tenant.
    #[arg(long)]
    role: Option<String>,
    /// Trusted public key file (repeatable). With --from-cmdline, /etc/metalcast/trusted/*.pub too.
    #[arg(long = "key")]
    keys: Vec<PathBuf>,
    /// Accept unsigned manifests (chunk hashes are still checked).
    #[arg(long)]
    allow_unsigned: bool,
    /// Override every instruction's hand-over (kexec, vm, none).
    #[arg(long)]
    handover: Option<String>,
    /// How a kexec hand-over stages the kernel: kexec_file_load, falling back to the legacy
    /// kexec_load (kexec-tools' `kexec`) when the kernel refuses file load (auto); or only
    /// one of them (`metalcast.kexec=` on the kernel command line) [default: auto].
    #[arg(long, value_enum)]
    kexec_method: Option<KexecMethod>,
    /// Exit after the first deployment (exit code = its outcome).
    #[arg(long)]
    once: bool,
    /// Longest pause between reconnection attempts, seconds.
    #[arg(long, default_value_t = 10)]
    max_backoff: u64,
    /// Long-poll duration, seconds.
    #[arg(long, default_value_t = 25)]
    poll_wait: u64,
    /// Attended mode: list the images offered on the console, boot the default after SECS.
    #[arg(long, value_name = "SECS")]
    attended: Option<u64>,
    /// Block devices this agent may wipe or deploy to although it is not the
    /// node's runtime (an agent started by hand or by a test): exactly these,
    /// repeatable or comma-separated. Without it only the runtime started by
    /// `metalcast-node init` writes disks (docs/node-runtime.md, "Disk-write guard").
    #[arg(long, value_name = "DEV", value_delimiter = ',')]
    allow_disk_writes: Vec<PathBuf>,
    /// Check-in token from the control plane's netboot (`metalcast.token=` on the kernel command line).
    #[arg(long, env = "METALCAST_NODE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

fn parse_handover(s: &str) -> anyhow::Result<Handover> {
    Ok(match s {
        "kexec" => Handover::Kexec,
        "vm" => Handover::Vm,
        "none" => Handover::None,
        _ => anyhow::bail!("hand-over {s:?}: use kexec, vm or none"),
    })
}

fn agent_config(a: AgentArgs) -> anyhow::Result<agent::AgentConfig> {
    use anyhow::Context;
    let boot = match &a.from_cmdline {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            parse_cmdline(&text).map_err(anyhow::Error::msg)?
        }
        None => Default::default(),
    };
    let control_plane = a
        .control_plane
        .or(boot.control_plane)
        .context("no control plane: give --control-plane or metalcast.cp= on the kernel command line")?;
    let net = if let Some(addr) = a.addr {
        NetConfig::Existing { addr }
    } else if let Some(s) = a.static_addr {
        let (addr, prefix) = s.split_once('/').context("--static wants ADDR/PREFIX")?;
        NetConfig::Static { addr: addr.parse()?, prefix: prefix.parse()?, gateway: None }
    } else if a.dhcp {
        NetConfig::Dhcp
    } else {
        boot.net.unwrap_or(NetConfig::Dhcp)
    };
    let role = match a.role.or(boot.role).as_deref() {
        None | Some("runtime") => Role::Runtime,
        Some("tenant") => Role::Tenant,
        Some(r) => anyhow::bail!("role {r:?}: use runtime or tenant"),
    };
    let mut keys = a.keys;
    if a.from_cmdline.is_some()
        && let Ok(rd) = std::fs::read_dir("/etc/metalcast/trusted")
    {
        keys.extend(rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "pub")));
    }
    let trusted = keys
        .iter()
        .map(|k| PublicKey::load(k).with_context(|| format!("loading {}", k.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let allow_unsigned = a.allow_unsigned || boot.allow_unsigned;
    if trusted.is_empty() && !allow_unsigned {
        anyhow::bail!("no trusted key: give --key (or /etc/metalcast/trusted/*.pub), or --allow-unsigned");
    }
    let handover_override = a.handover.or(boot.handover).as_deref().map(parse_handover).transpose()?;
    let kexec_method = match (a.kexec_method, boot.kexec) {
        (Some(m), _) => m,
        (None, Some(s)) => s.parse().map_err(anyhow::Error::msg)?,
        (None, None) => KexecMethod::Auto,
    };
    Ok(agent::AgentConfig {
        control_plane,
        net,
        iface: a.iface.or(boot.iface),
        role,
        trusted,
        allow_unsigned,
        handover_override,
        once: a.once,
        max_backoff: Duration::from_secs(a.max_backoff.max(1)),
        poll_wait: Duration::from_secs(a.poll_wait.clamp(1, metalcast_runtime_api::MAX_WAIT_SECS)),
        attended: a.attended.or(boot.attended).map(Duration::from_secs),
        kexec_method,
        allow_disk_writes: a.allow_disk_writes,
        token: a.token.or(boot.token),
    })
}

fn main() -> ExitCode {
    let command = std::env::args_os().nth(1);
    if std::process::id() == 1 && !command.as_ref().is_some_and(|c| c == "agent" || c == "receive") {
        // The kernel starts /init (with at most the command line's unknown
        // words as arguments): be the init. An explicit `agent` or `receive`,
        // e.g. as PID 1 of a PID namespace, runs as asked.
        init::run();
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let (manifest, session, keys, allow_unsigned, output, iface_addr, id, timeout, rx_path, json, quiet) =
        match Cli::parse().cmd {
            Cmd::Receive {
                manifest,
                session,
                keys,
                allow_unsigned,
                output,
                iface_addr,
                id,
                timeout,
                rx_path,
                json,
                quiet,
            } => (manifest, session, keys, allow_unsigned, output, iface_addr, id, timeout, rx_path, json, quiet),
            Cmd::Init => init::run(),
            Cmd::Agent(a) => {
                return match agent_config(a) {
                    Ok(cfg) => ExitCode::from(agent::run(&cfg)),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        ExitCode::from(exit::USAGE)
                    }
                };
            }
        };
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
    // Before any thread starts: SIGINT and SIGTERM stop the receive, which then cleans up.
    let stop = match receive::StopSignals::catch() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: catching SIGINT and SIGTERM: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
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
        cancel: Some(Arc::clone(&stop.cancel)),
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
            ExitCode::from(stop.exit_code(&e))
        }
    }
}
