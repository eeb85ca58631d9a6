//! `metalcast send`: stream one bundle to a multicast group until every
//! expected receiver reports done, with a progress bar per receiver.

use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use metalcast_image::Bundle;
use metalcast_transport::{Sender, SenderConfig, SenderSummary, SessionSpec};

/// Arguments of `metalcast send`.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The bundle to send.
    #[arg(long)]
    pub bundle: PathBuf,
    /// Multicast group (administratively scoped 239.0.0.0/8).
    #[arg(long, default_value = "239.77.0.1")]
    pub group: Ipv4Addr,
    /// UDP port of the group; the control socket uses PORT+1.
    #[arg(long, default_value_t = 47000)]
    pub port: u16,
    /// Local interface address to send from and receive reports on.
    #[arg(long)]
    pub bind: Ipv4Addr,
    /// Receivers that must report done.
    #[arg(long, default_value_t = 1)]
    pub receivers: usize,
    /// Send rate cap in megabits per second of UDP payload (0: no cap). Below it the rate adapts to
    /// the receivers' reported loss, starting at 800.
    #[arg(long, default_value_t = 0)]
    pub rate_mbit: u64,
    /// Link MTU: sets the symbol size (1500 standard, 9000 jumbo).
    #[arg(long, default_value_t = 1500)]
    pub mtu: usize,
    /// Seconds to wait for receivers to join before starting anyway.
    #[arg(long, default_value_t = 30)]
    pub join_timeout: u64,
    /// Seconds of silence after which a receiver is given up on.
    #[arg(long, default_value_t = 15)]
    pub receiver_timeout: u64,
    /// Give up on the whole session after this many seconds, joining included (0: never), and
    /// exit 1: bounds how long receivers that never finish (a broken path, a misbehaving key
    /// holder) can keep the sender running. Raise it for images that take longer to send.
    #[arg(long, default_value_t = 3600)]
    pub deadline: u64,
    /// Write the session spec (includes the session key: mode 0600) here, for receivers.
    #[arg(long)]
    pub session_out: PathBuf,
    /// Write the signed manifest here, for receivers.
    #[arg(long)]
    pub manifest_out: PathBuf,
    /// Disable UDP GSO (one system call per datagram).
    #[arg(long)]
    pub no_gso: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

fn write_private(path: &PathBuf, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("writing {}", path.display()))
}

/// Runs `metalcast send`.
pub fn run(a: SendArgs) -> anyhow::Result<SenderSummary> {
    let bundle = Bundle::open(&a.bundle).with_context(|| format!("opening {}", a.bundle.display()))?;
    let spec = SessionSpec::new(
        &bundle.manifest.root_hash,
        SocketAddrV4::new(a.group, a.port),
        SocketAddrV4::new(a.bind, a.port.checked_add(1).context("port + 1 overflows")?),
        a.mtu,
    )?;
    write_private(&a.session_out, &serde_json::to_vec_pretty(&spec)?, 0o600)?;
    write_private(&a.manifest_out, &bundle.signed_manifest().to_bytes(), 0o644)?;
    let cfg = SenderConfig {
        local: a.bind,
        rate: (a.rate_mbit > 0).then_some(a.rate_mbit * 1_000_000 / 8),
        expected_receivers: a.receivers,
        join_timeout: Duration::from_secs(a.join_timeout),
        receiver_timeout: Duration::from_secs(a.receiver_timeout),
        deadline: (a.deadline > 0).then(|| Duration::from_secs(a.deadline)),
        gso: !a.no_gso,
        ..Default::default()
    };
    let sender = Sender::new(&spec, &bundle, cfg).context("starting the sender")?;
    eprintln!(
        "session {:08x}: {} blocks to {}:{}, waiting for {} receivers",
        spec.session_id,
        bundle.manifest.stored_chunks().count(),
        a.group,
        a.port,
        a.receivers
    );
    let multi = MultiProgress::new();
    if !std::io::stderr().is_terminal() {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template("{prefix:>20} [{bar:40}] {pos}/{len} {msg}")
        .expect("static template")
        .progress_chars("=> ");
    let pass = multi.add(ProgressBar::new(0).with_style(style.clone()).with_prefix("first pass"));
    let mut bars: Vec<(u64, ProgressBar)> = Vec::new();
    let summary = sender.run(&mut |p| {
        pass.set_length(p.total_blocks as u64);
        pass.set_position(p.pass_blocks as u64);
        pass.set_message(format!("{:.1} MiB sent", p.bytes_sent as f64 / (1 << 20) as f64));
        for r in &p.receivers {
            let bar = match bars.iter().find(|(id, _)| *id == r.id) {
                Some((_, b)) => b.clone(),
                None => {
                    let b = multi.add(
                        ProgressBar::new(p.total_blocks as u64)
                            .with_style(style.clone())
                            .with_prefix(format!("rx {:x}", r.id)),
                    );
                    bars.push((r.id, b.clone()));
                    b
                }
            };
            bar.set_position(u64::from(r.blocks_done));
            bar.set_message(r.state.clone());
        }
    })?;
    multi.clear().ok();
    Ok(summary)
}

/// Prints a summary table.
pub fn print_summary(s: &SenderSummary) {
    outln!(
        "session {:08x}: {} of {} receivers done in {:.2}s; wire/image {:.3} ({:.1} MiB on the wire for {:.1} MiB), {} source + {} repair symbols in {} bursts, {} reports rejected ({} bad MAC, {} stale/replayed, {} other session, {} malformed, {} invalid)",
        s.session_id,
        s.done(),
        s.receivers.len(),
        s.secs,
        s.wire_ratio,
        s.wire_bytes as f64 / (1 << 20) as f64,
        s.image_bytes as f64 / (1 << 20) as f64,
        s.source_packets,
        s.repair_packets,
        s.bursts,
        s.rejected_reports,
        s.rejected_by_reason.bad_mac,
        s.rejected_by_reason.stale,
        s.rejected_by_reason.other_session,
        s.rejected_by_reason.malformed,
        s.rejected_by_reason.invalid,
    );
    outln!(
        "{:>18} {:>22} {:>10} {:>8} {:>10} {:>9} {:>8}",
        "RECEIVER",
        "ADDRESS",
        "STATE",
        "BLOCKS",
        "PACKETS",
        "REJECTED",
        "DONE_S"
    );
    for r in &s.receivers {
        outln!(
            "{:>18x} {:>22} {:>10} {:>8} {:>10} {:>9} {:>8}",
            r.id,
            r.addr,
            match r.failure {
                Some(why) => format!("{} ({why})", r.state),
                None => r.state.clone(),
            },
            r.blocks_done,
            r.received,
            r.rejected,
            r.done_secs.map_or("-".into(), |d| format!("{d:.2}"))
        );
    }
}
