//! Receive path cost: AF_XDP (the XDP fast path of `metalcast-node`) versus a
//! UDP socket with `recvmmsg`, one sender and one receiver on a namespace
//! fabric, the same offered load for both, alternating.
//!
//! The sender blasts metalcast symbol packets (1500-byte MTU, UDP GSO in
//! 64 KB sends, segmented by the sender's veth like a NIC would) at a fixed
//! packet rate, then as fast as it can. The receiver takes them through
//! either path and does the same small work per packet on both (header and
//! session check, byte count; no MAC, no decoding), so the difference is the
//! receive path. Reported per run:
//!
//! - received packets/s and MB/s (UDP payload);
//! - **machine CPU seconds per GB received**: busy time of every CPU
//!   (`/proc/stat`) over the run. On veth the receive stack runs in softirq
//!   context, often on the sender's CPU and not in the receiver's thread, so
//!   only the whole machine's time captures it. The sender's own cost is the
//!   same for both paths at the same offered load; run on a quiet machine;
//! - the receiver thread's own CPU seconds per GB (`RUSAGE_THREAD`);
//! - packets lost (sent but not received).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::sys::{machine_busy_secs, thread_cpu_secs};
use metalcast_fabric::Fabric;
use metalcast_node::rx_path::XdpSource;
use metalcast_transport::packet::{Header, Kind, OVERHEAD, VERSION};
use metalcast_transport::{PacketSource, SessionKey, SessionSpec, SocketSource};
use nix::sys::socket::{setsockopt, sockopt};

/// Benchmark parameters.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seconds of sending per run.
    pub secs: f64,
    /// Offered load for the fixed-rate runs, thousands of packets per second.
    pub rate_kpps: u64,
    /// Also run with the sender unpaced (max packets/s).
    pub max_rate: bool,
    /// Repetitions per path and load.
    pub reps: usize,
}

/// Which receive path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    /// AF_XDP via the XDP program.
    Xdp,
    /// UDP socket, `recvmmsg`.
    Socket,
}

/// One run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// Receive path.
    pub path: Path,
    /// Offered load, kpps (0: unpaced).
    pub offered_kpps: u64,
    /// Packets sent.
    pub sent: u64,
    /// Packets received.
    pub received: u64,
    /// Seconds from the first to the last packet received.
    pub secs: f64,
    /// Received packets per second.
    pub rx_pps: f64,
    /// Received UDP payload, MB/s.
    pub rx_mb_s: f64,
    /// Busy CPU seconds of the whole machine per GB received.
    pub machine_cpu_s_per_gb: f64,
    /// The receiver thread's CPU seconds per GB received.
    pub rx_thread_cpu_s_per_gb: f64,
    /// XDP path: AF_XDP socket drops (ring full / fill ring empty).
    pub xsk_dropped: u64,
}

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 77, 9, 1);
const PORT: u16 = 47900;

fn spec(sender: Ipv4Addr) -> SessionSpec {
    SessionSpec {
        session_id: 0xbe4c_0000 + std::process::id(),
        group: GROUP,
        port: PORT,
        sender: SocketAddrV4::new(sender, PORT + 1),
        key: SessionKey::generate(),
        symbol_size: SessionSpec::symbol_size_for_mtu(1500).expect("1500 fits"),
        root_hash: "rx-path-bench".into(),
    }
}

struct RxOutcome {
    received: u64,
    bytes: u64,
    secs: f64,
    cpu: f64,
    xsk_dropped: u64,
}

/// Receives until `stop` is set and nothing arrived for 300 ms.
fn receive(
    path: Path,
    spec: &SessionSpec,
    iface: Ipv4Addr,
    ready: mpsc::Sender<()>,
    stop: &AtomicBool,
) -> anyhow::Result<RxOutcome> {
    let mut xdp = None;
    let mut sock = None;
    let src: &mut dyn PacketSource = match path {
        Path::Xdp => xdp.insert(XdpSource::open(spec, 1, iface).context("XDP path")?),
        Path::Socket => sock.insert(SocketSource::join(spec, iface).context("socket path")?),
    };
    let sid = spec.session_id.to_le_bytes();
    let _ = ready.send(());
    let cpu0 = thread_cpu_secs();
    let (mut received, mut bytes) = (0u64, 0u64);
    let (mut first, mut last) = (None, Instant::now());
    loop {
        let n = src.recv(Duration::from_millis(50))?;
        let now = Instant::now();
        for i in 0..n {
            let p = src.get(i);
            if p.len() >= OVERHEAD && p[0] == VERSION && p[2..6] == sid {
                received += 1;
                bytes += p.len() as u64;
            }
        }
        if n > 0 {
            first.get_or_insert(now);
            last = now;
        } else if stop.load(Ordering::Relaxed) && now.duration_since(last) > Duration::from_millis(300) {
            break;
        }
    }
    let cpu = thread_cpu_secs() - cpu0;
    let secs = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    let xsk_dropped = xdp.as_ref().map_or(0, |x| x.report().xsk.rx_dropped);
    Ok(RxOutcome { received, bytes, secs, cpu, xsk_dropped })
}

/// Sends symbol packets to the group for `secs` at `kpps` (0: unpaced) with
/// UDP GSO; returns how many.
fn send(spec: &SessionSpec, local: Ipv4Addr, secs: f64, kpps: u64) -> anyhow::Result<u64> {
    let sock = UdpSocket::bind(SocketAddrV4::new(local, 0)).context("sender socket")?;
    sock.set_multicast_ttl_v4(1)?;
    let seg = OVERHEAD + usize::from(spec.symbol_size);
    setsockopt(&sock, sockopt::UdpGsoSegment, &(seg as i32)).context("UDP GSO")?;
    let per_send = (65000 / seg).min(64);
    let mut buf = vec![0xA5u8; per_send * seg];
    let (start, mut sent, mut seq) = (Instant::now(), 0u64, 0u64);
    let dest = spec.group_addr();
    while start.elapsed().as_secs_f64() < secs {
        if kpps > 0 {
            let due = (start.elapsed().as_secs_f64() * kpps as f64 * 1000.0) as u64;
            if sent >= due {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
        }
        for p in buf.chunks_mut(seg) {
            Header { kind: Kind::Symbol, session: spec.session_id, seq, a: 0, esi: 0 }.write(p);
            seq += 1;
        }
        match sock.send_to(&buf, dest) {
            Ok(_) => sent += per_send as u64,
            // A full socket buffer under an unpaced run: try again.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.raw_os_error() == Some(ENOBUFS) => {}
            Err(e) => return Err(e).context("sending"),
        }
    }
    Ok(sent)
}

const ENOBUFS: i32 = nix::errno::Errno::ENOBUFS as i32;

fn one(f: &Fabric, path: Path, cfg: &Config, kpps: u64) -> anyhow::Result<Row> {
    let spec = spec(f.sender().ipv4());
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let r0 = &f.receivers()[0];
    let rx = {
        let (spec, stop, ip) = (spec.clone(), Arc::clone(&stop), r0.ipv4());
        r0.spawn_in(move || receive(path, &spec, ip, ready_tx, &stop))?
    };
    if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
        stop.store(true, Ordering::Relaxed);
        return match rx.join() {
            Ok(Err(e)) => Err(e),
            _ => bail!("receiver did not start"),
        };
    }
    // Let the IGMP join reach the bridge's snooping table.
    std::thread::sleep(Duration::from_millis(300));
    let busy0 = machine_busy_secs()?;
    let (spec2, ip, secs) = (spec.clone(), f.sender().ipv4(), cfg.secs);
    let sent = f.sender().spawn_in(move || send(&spec2, ip, secs, kpps))?.join().expect("sender thread");
    stop.store(true, Ordering::Relaxed);
    let out = rx.join().expect("receiver thread")?;
    let busy = machine_busy_secs()? - busy0;
    let sent = sent?;
    let gb = out.bytes as f64 / 1e9;
    let per_gb = |s: f64| if gb > 0.0 { s / gb } else { f64::NAN };
    Ok(Row {
        path,
        offered_kpps: kpps,
        sent,
        received: out.received,
        secs: out.secs,
        rx_pps: if out.secs > 0.0 { out.received as f64 / out.secs } else { 0.0 },
        rx_mb_s: if out.secs > 0.0 { out.bytes as f64 / 1e6 / out.secs } else { 0.0 },
        machine_cpu_s_per_gb: per_gb(busy),
        rx_thread_cpu_s_per_gb: per_gb(out.cpu),
        xsk_dropped: out.xsk_dropped,
    })
}

/// Runs every path at the fixed load (and unpaced), alternating paths, `reps` times.
pub fn run(cfg: &Config) -> anyhow::Result<Vec<Row>> {
    metalcast_fabric::bpf_capable().context("the rx-path benchmark needs root (namespaces, XDP)")?;
    let f = Fabric::builder().receivers(1).build().context("building the fabric")?;
    let mut loads = vec![cfg.rate_kpps];
    if cfg.max_rate {
        loads.push(0);
    }
    let mut rows = Vec::new();
    for &kpps in &loads {
        for rep in 0..cfg.reps {
            for path in [Path::Socket, Path::Xdp] {
                let row = one(&f, path, cfg, kpps).with_context(|| format!("{path:?} at {kpps} kpps, rep {rep}"))?;
                eprintln!(
                    "{path:?} offered {kpps} kpps: {} of {} packets, {:.0} pps, {:.3} machine CPU s/GB",
                    row.received, row.sent, row.rx_pps, row.machine_cpu_s_per_gb
                );
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A Markdown table: medians per path and load, and the XDP/socket CPU ratio.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| offered | path | rx kpps | rx MB/s | lost | machine CPU s/GB | rx thread CPU s/GB | XDP/socket CPU |\n\
         |--------:|------|--------:|--------:|-----:|-----------------:|-------------------:|---------------:|\n",
    );
    let mut loads: Vec<u64> = rows.iter().map(|r| r.offered_kpps).collect();
    loads.dedup();
    for kpps in loads {
        let of = |p: Path| rows.iter().filter(|r| r.offered_kpps == kpps && r.path == p).collect::<Vec<_>>();
        let cpu = |p: Path| median(of(p).iter().map(|r| r.machine_cpu_s_per_gb).collect());
        for p in [Path::Socket, Path::Xdp] {
            let rs = of(p);
            let lost: u64 = rs.iter().map(|r| r.sent.saturating_sub(r.received)).sum();
            let sent: u64 = rs.iter().map(|r| r.sent).sum();
            let ratio = if p == Path::Xdp { format!("{:.2}x", cpu(Path::Xdp) / cpu(Path::Socket)) } else { "".into() };
            out.push_str(&format!(
                "| {} | {} | {:.0} | {:.0} | {:.2}% | {:.2} | {:.2} | {} |\n",
                if kpps == 0 { "max".to_string() } else { format!("{kpps} kpps") },
                if p == Path::Xdp { "AF_XDP" } else { "recvmmsg" },
                median(rs.iter().map(|r| r.rx_pps / 1000.0).collect()),
                median(rs.iter().map(|r| r.rx_mb_s).collect()),
                if sent > 0 { lost as f64 * 100.0 / sent as f64 } else { 0.0 },
                cpu(p),
                median(rs.iter().map(|r| r.rx_thread_cpu_s_per_gb).collect()),
                ratio
            ));
        }
    }
    out
}
