//! The contenders: one [`Contender`] per way of putting an image onto N
//! nodes. Each starts its receivers, then its sending side (time starts),
//! waits for every receiver to be done (time stops), and stops everything it
//! started, so nothing of one run sends during the next.
//!
//! | name | sending side | receivers | done when |
//! |---|---|---|---|
//! | `metalcast` | `transport::Sender` (thread) | `transport::Receiver` (threads, socket path) | every receiver wrote every verified chunk |
//! | `metalcast-xdp` | as above | the AF_XDP receive path (`metalcast_node::rx_path`, no socket fallback; frames hold at most MTU-1500 symbols) | |
//! | `udpcast` | `udp-sender` | `udp-receiver` | every `udp-receiver` exited 0 |
//! | `http` | `nginx` (sendfile) | `curl` | every `curl` exited 0 |
//! | `bittorrent` | `opentracker` + seeding `aria2c` | `aria2c`, seeding to each other (BootTorrent) | every `aria2c` completed (hook) |
//! | `blaster` | raw multicast, no coding, no repair | counting sockets | end marker seen: the fabric's limit |

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use metalcast_image::{BundleError, Manifest};
use metalcast_node::rx_path::RxPath;
use metalcast_transport::layout::Layout;
use metalcast_transport::{ChunkSink, Receiver, ReceiverConfig, Sender, SenderConfig, SessionSpec};

// Listed among the contenders' names; defined with the contract the blaster implements.
pub use crate::contender::BLASTER;
use crate::contender::{Contender, Env, Outcome, check_files};
use crate::sys::{Proc, thread_cpu_secs};

/// Every contender name, in the default order.
pub const ALL: &[&str] = &["metalcast", "metalcast-xdp", "udpcast", "http", "bittorrent", BLASTER];

/// The contender called `name`.
pub fn by_name(name: &str) -> anyhow::Result<Box<dyn Contender>> {
    Ok(match name {
        "metalcast" => Box::new(Metalcast { path: MetalcastPath::Socket }),
        "metalcast-xdp" => Box::new(Metalcast { path: MetalcastPath::Xdp }),
        "udpcast" => Box::new(Udpcast),
        "http" => Box::new(Http),
        "bittorrent" => Box::new(BitTorrent),
        BLASTER => Box::new(crate::blaster::Blaster),
        _ => bail!("unknown contender `{name}` (known: {})", ALL.join(", ")),
    })
}

fn have_tool(bin: &str, package: &str) -> Result<(), String> {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file())).unwrap_or(false);
    if found { Ok(()) } else { Err(format!("`{bin}` not found (apt-get install {package}; or bash perf/ci-setup.sh)")) }
}

/// Waits for every process to exit successfully; returns the elapsed time from `t0` when the
/// last one did. Kills them all on failure or after `limit`.
fn wait_all(procs: &mut [Proc], t0: Instant, limit: Duration) -> anyhow::Result<f64> {
    let until = t0 + limit;
    let mut last = 0.0;
    let mut pending: Vec<usize> = (0..procs.len()).collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for i in pending {
            match procs[i].try_wait()? {
                Some(e) if e.success() => last = t0.elapsed().as_secs_f64(),
                Some(e) => bail!("{} failed (wait status {:#x})", procs[i].label, e.status),
                None => still.push(i),
            }
        }
        pending = still;
        if Instant::now() > until && !pending.is_empty() {
            bail!("{} not done within {limit:?}", procs[pending[0]].label);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(last)
}

/// stdin from /dev/null; stdout and stderr go to `<work>/<name>.log` (see [`log_tail`]).
fn logged<'c>(c: &'c mut Command, work: &Path, name: &str) -> anyhow::Result<&'c mut Command> {
    let f = std::fs::File::create(work.join(format!("{name}.log")))?;
    Ok(c.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f))
}

/// The last lines of every `*.log` in `work`, for error messages.
pub(crate) fn log_tail(work: &Path) -> String {
    let mut out = String::new();
    let mut logs: Vec<_> = std::fs::read_dir(work).into_iter().flatten().flatten().map(|e| e.path()).collect();
    logs.sort();
    for p in logs.into_iter().filter(|p| p.extension().is_some_and(|e| e == "log")) {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if !lines.is_empty() {
            let name = p.file_stem().unwrap_or_default().to_string_lossy();
            out += &format!("\n  {name}: {}", lines[lines.len().saturating_sub(3)..].join(" / "));
        }
    }
    out
}

/// Which receive path metalcast's receivers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetalcastPath {
    /// `recvmmsg` on a UDP socket (`transport::Receiver`).
    Socket,
    /// The XDP/AF_XDP receive path of `metalcast-node receive --rx-path xdp`;
    /// sender, timing, counters, tables and plots are shared with the socket path.
    Xdp,
}

/// metalcast's transport, in process (sender and receivers are threads in their namespaces).
#[derive(Debug)]
pub struct Metalcast {
    /// Receive path.
    pub path: MetalcastPath,
}

/// Writes verified chunks into a file at their offset, or just counts them.
struct Sink {
    file: Option<std::fs::File>,
    bytes: u64,
}

impl ChunkSink for Sink {
    fn write_chunk(&mut self, m: &Manifest, index: usize, data: &[u8]) -> Result<(), BundleError> {
        if let Some(f) = &self.file {
            let (_, off) =
                m.locate(index).ok_or_else(|| BundleError::invalid(format!("chunks[{index}]"), "no part"))?;
            f.write_all_at(data, off).map_err(|e| BundleError::invalid("bench sink", e.to_string()))?;
        }
        self.bytes += data.len() as u64;
        Ok(())
    }
}

type ReceiverJoin = std::thread::JoinHandle<anyhow::Result<(u64, f64)>>;

impl Metalcast {
    fn start_receiver(
        &self,
        env: &Env<'_>,
        i: usize,
        spec: &SessionSpec,
        manifest: &Arc<Manifest>,
        out: Option<PathBuf>,
    ) -> anyhow::Result<ReceiverJoin> {
        match self.path {
            MetalcastPath::Socket => {
                let h = &env.fabric.receivers()[i];
                let (spec, m, ip) = (spec.clone(), Arc::clone(manifest), h.ipv4());
                Ok(h.spawn_in(move || -> anyhow::Result<(u64, f64)> {
                    let cpu0 = thread_cpu_secs();
                    let cfg = ReceiverConfig { id: i as u64 + 1, iface: ip, ..Default::default() };
                    let file = out.map(std::fs::File::create).transpose()?;
                    let mut sink = Sink { file, bytes: 0 };
                    let s = Receiver::new(&spec, &m, cfg)?.run(&mut sink, &mut |_| {})?;
                    Ok((sink.bytes, thread_cpu_secs() - cpu0 + s.decode_cpu_secs))
                })?)
            }
            MetalcastPath::Xdp => {
                let h = &env.fabric.receivers()[i];
                let (spec, m, ip) = (spec.clone(), Arc::clone(manifest), h.ipv4());
                Ok(h.spawn_in(move || -> anyhow::Result<(u64, f64)> {
                    let cpu0 = thread_cpu_secs();
                    let nblocks = Layout::new(&m, spec.symbol_size).blocks.len() as u32;
                    // The same path `metalcast-node receive --rx-path xdp` opens; no fallback here.
                    let mut source = metalcast_node::rx_path::open(RxPath::Xdp, &spec, nblocks, ip)?;
                    let cfg = ReceiverConfig { id: i as u64 + 1, iface: ip, ..Default::default() };
                    let file = out.map(std::fs::File::create).transpose()?;
                    let mut sink = Sink { file, bytes: 0 };
                    let s =
                        Receiver::with_source(&spec, &m, cfg, Box::new(&mut source))?.run(&mut sink, &mut |_| {})?;
                    Ok((sink.bytes, thread_cpu_secs() - cpu0 + s.decode_cpu_secs))
                })?)
            }
        }
    }
}

impl Contender for Metalcast {
    fn name(&self) -> &'static str {
        match self.path {
            MetalcastPath::Socket => "metalcast",
            MetalcastPath::Xdp => "metalcast-xdp",
        }
    }

    fn udp(&self) -> bool {
        true
    }

    fn delivers_raw(&self) -> bool {
        true
    }

    fn available(&self) -> Result<(), String> {
        match self.path {
            MetalcastPath::Socket => Ok(()),
            MetalcastPath::Xdp if !nix::unistd::geteuid().is_root() => Err("the XDP path needs root".into()),
            MetalcastPath::Xdp => Ok(()),
        }
    }

    fn run(&self, env: &Env<'_>) -> anyhow::Result<Outcome> {
        let f = env.fabric;
        let manifest = Arc::new(metalcast_image::Bundle::open(&env.image.bundle)?.manifest);
        let spec = SessionSpec::new(
            &manifest.root_hash,
            SocketAddrV4::new(Ipv4Addr::new(239, 77, 9, 9), env.port),
            SocketAddrV4::new(f.sender().ipv4(), env.port + 1),
            env.mtu as usize,
        )?;
        let files: Vec<Option<PathBuf>> =
            (0..f.receivers().len()).map(|i| env.verify.then(|| env.work.join(format!("r{i}.raw")))).collect();
        let rx: Vec<ReceiverJoin> = files
            .iter()
            .enumerate()
            .map(|(i, out)| self.start_receiver(env, i, &spec, &manifest, out.clone()))
            .collect::<anyhow::Result<_>>()?;
        // With an emulated link, cap the payload rate at the link's (as an operator would).
        let sym = usize::from(spec.symbol_size) as u64;
        // Token bucket on UDP payload (symbol + 44); frames on the link are symbol + 44 + 28 + 14.
        let link_payload = env.link_mbit * 125_000 * (sym + 44) / (sym + 44 + 28 + 14);
        let rate = match (env.rate_mbit * 125_000, link_payload) {
            (0, 0) => None,
            (0, l) | (l, 0) => Some(l),
            (a, b) => Some(a.min(b)),
        };
        let t0 = Instant::now();
        let (b, ip, n, deadline) = (env.image.bundle.clone(), f.sender().ipv4(), f.receivers().len(), env.timeout);
        let sender = f.sender().spawn_in(move || -> anyhow::Result<f64> {
            let cpu0 = thread_cpu_secs();
            let bundle = metalcast_image::Bundle::open(&b)?;
            let cfg =
                SenderConfig { local: ip, rate, expected_receivers: n, deadline: Some(deadline), ..Default::default() };
            let s = Sender::new(&spec, &bundle, cfg)?.run(&mut |_| {})?;
            let done = || s.receivers.iter().filter_map(|r| r.done_secs);
            let (first, last) = (done().reduce(f64::min).unwrap_or(0.0), done().reduce(f64::max).unwrap_or(0.0));
            eprintln!(
                "metalcast sender: {:.2} s (first pass {:.2} s), wire/image {:.3}, {} source + {} repair in {} bursts, \
                 rate {:.0} MB/s at pass end (peak {:.0}), {} cuts, receivers done at {:.2}-{:.2} s",
                s.secs,
                s.pass_secs,
                s.wire_ratio,
                s.source_packets,
                s.repair_packets,
                s.bursts,
                s.pass_rate.unwrap_or(0.0) / 1e6,
                s.peak_rate.unwrap_or(0.0) / 1e6,
                s.rate_cuts,
                first,
                last
            );
            Ok(thread_cpu_secs() - cpu0)
        })?;
        let mut out = Outcome::default();
        let mut failure = None;
        for h in rx {
            match h.join().map_err(|_| anyhow::anyhow!("receiver panicked")).and_then(|r| r) {
                Ok((got, cpu)) => {
                    out.delivered.push(got);
                    out.receiver_cpu += cpu;
                }
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        out.secs = t0.elapsed().as_secs_f64();
        let sent = sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))?;
        if let Some(e) = failure {
            return Err(e.context("a metalcast receiver failed"));
        }
        out.sender_cpu = sent?;
        if env.verify {
            let paths: Vec<PathBuf> = files.into_iter().flatten().collect();
            let (_, same) = check_files(&paths, env.image.raw_hash)?;
            out.identical = Some(same);
        }
        Ok(out)
    }
}

/// udpcast (Debian's `udp-sender` / `udp-receiver`), defaults except the
/// packet size, which follows the fabric MTU up to udpcast's maximum (1456),
/// and a receive timeout, which only ends a hung receiver sooner.
#[derive(Debug)]
pub struct Udpcast;

/// Seconds a `udp-receiver` waits without a packet, once the transfer has
/// started, before it gives up (`--receive-timeout`; no limit by default).
/// Far above any pause of a working transfer on the fabric.
pub const UDPCAST_RECEIVE_TIMEOUT_SECS: u32 = 20;

/// udpcast's largest packet payload (`--blocksize`; its default and maximum).
pub const UDPCAST_MAX_BLOCKSIZE: u32 = 1456;

/// udpcast's block size for a link MTU: IP + UDP headers (28) and udpcast's data header (16) off.
pub fn udpcast_blocksize(mtu: u32) -> u32 {
    mtu.saturating_sub(44).min(UDPCAST_MAX_BLOCKSIZE)
}

impl Contender for Udpcast {
    fn name(&self) -> &'static str {
        "udpcast"
    }

    fn udp(&self) -> bool {
        true
    }

    fn available(&self) -> Result<(), String> {
        have_tool("udp-sender", "udpcast").and(have_tool("udp-receiver", "udpcast"))
    }

    fn run(&self, env: &Env<'_>) -> anyhow::Result<Outcome> {
        let f = env.fabric;
        let n = f.receivers().len();
        let port = env.port.to_string();
        // Control goes by broadcast on the fabric's subnet (udpcast's default); data to a group
        // in 239/8 (udpcast would otherwise derive one in 232/8 from the sender's address).
        let files: Vec<PathBuf> = (0..n).map(|i| env.work.join(format!("r{i}.bin"))).collect();
        let mut rx = Vec::new();
        for (h, file) in f.receivers().iter().zip(&files) {
            let out = if env.verify { file.as_os_str() } else { "/dev/null".as_ref() };
            let mut c = h.command("udp-receiver");
            c.arg("--file").arg(out);
            c.args(["--nokbd", "--interface", h.ifname(), "--portbase", &port]);
            // A receiver that missed the sender's last message would wait forever (seen at 1% and
            // 5% loss with 8-16 receivers): it gives up after this long without a packet, and the
            // run counts as failed at once instead of at the bench's timeout.
            c.args(["--receive-timeout", &UDPCAST_RECEIVE_TIMEOUT_SECS.to_string()]);
            let log = format!("udp-receiver-{}", h.name());
            rx.push(
                Proc::spawn(format!("udp-receiver on {}", h.name()), logged(&mut c, env.work, &log)?)
                    .context("udp-receiver")?,
            );
        }
        let mut c = f.sender().command("udp-sender");
        c.arg("--file").arg(&env.image.bundle);
        c.args(["--nokbd", "--interface", f.sender().ifname(), "--portbase", &port]);
        c.args(["--mcast-data-address", "239.77.9.11", "--blocksize", &udpcast_blocksize(env.mtu).to_string()]);
        c.args(["--min-receivers", &n.to_string(), "--max-wait", "60"]);
        if env.link_mbit > 0 {
            c.args(["--max-bitrate", &format!("{}m", env.link_mbit)]);
        }
        let t0 = Instant::now();
        let mut sender = Proc::spawn("udp-sender", logged(&mut c, env.work, "udp-sender")?).context("udp-sender")?;
        let secs = wait_all(&mut rx, t0, env.timeout)?;
        let s = sender.wait_for(Duration::from_secs(30))?.context("udp-sender did not exit after its receivers")?;
        anyhow::ensure!(s.success(), "udp-sender failed (wait status {:#x})", s.status);
        let mut out = Outcome { secs, sender_cpu: s.cpu_secs, ..Default::default() };
        for p in &mut rx {
            out.receiver_cpu += p.try_wait()?.map_or(0.0, |e| e.cpu_secs);
        }
        if env.verify {
            let (sizes, same) = check_files(&files, env.image.bundle_hash)?;
            out.delivered = sizes;
            out.identical = Some(same);
        } else {
            out.delivered = vec![env.image.bundle_bytes; n];
        }
        Ok(out)
    }
}

/// Waits until something listens on `addr` inside `host`'s namespace.
fn wait_listening(host: &metalcast_fabric::Host, addr: SocketAddrV4, what: &str) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if host.run_in(|| std::net::TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_ok())? {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("{what} is not listening on {addr} after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// HTTP unicast: nginx (sendfile) on the sender, one `curl` per receiver.
#[derive(Debug)]
pub struct Http;

fn nginx_conf(work: &Path, root: &Path, listen: SocketAddrV4) -> String {
    let w = work.display();
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nuser root;\npid {w}/nginx.pid;\n\
         error_log {w}/nginx-error.log warn;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  default_type application/octet-stream;\n\
         \x20 client_body_temp_path {w}/body;\n  proxy_temp_path {w}/proxy;\n  fastcgi_temp_path {w}/fastcgi;\n\
         \x20 server {{ listen {listen}; root {}; }}\n}}\n",
        root.display()
    )
}

impl Contender for Http {
    fn name(&self) -> &'static str {
        "http"
    }

    fn udp(&self) -> bool {
        false
    }

    fn available(&self) -> Result<(), String> {
        have_tool("nginx", "nginx-light").and(have_tool("curl", "curl"))
    }

    fn run(&self, env: &Env<'_>) -> anyhow::Result<Outcome> {
        let f = env.fabric;
        let listen = SocketAddrV4::new(f.sender().ipv4(), env.port);
        let conf = env.work.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(env.work, &env.image.dir, listen))?;
        let mut c = f.sender().command("nginx");
        c.arg("-p").arg(env.work).arg("-e").arg(env.work.join("nginx-error.log")).arg("-c").arg(&conf);
        let mut server = Proc::spawn("nginx", logged(&mut c, env.work, "nginx")?).context("starting nginx")?;
        if let Err(e) = wait_listening(f.sender(), listen, "nginx") {
            let log = std::fs::read_to_string(env.work.join("nginx-error.log")).unwrap_or_default();
            return Err(e.context(format!("nginx error log: {}", log.trim())));
        }
        let name = env.image.bundle.file_name().expect("bundle has a name").to_string_lossy().into_owned();
        let url = format!("http://{listen}/{name}");
        let files: Vec<PathBuf> = (0..f.receivers().len()).map(|i| env.work.join(format!("r{i}.bin"))).collect();
        let t0 = Instant::now();
        let mut rx = Vec::new();
        for (h, file) in f.receivers().iter().zip(&files) {
            let out = if env.verify { file.as_os_str() } else { "/dev/null".as_ref() };
            let mut c = h.command("curl");
            c.args(["-sS", "--fail", "--max-time", &env.timeout.as_secs().to_string(), "-o"]).arg(out).arg(&url);
            let log = format!("curl-{}", h.name());
            rx.push(
                Proc::spawn(format!("curl on {}", h.name()), logged(&mut c, env.work, &log)?)
                    .context("starting curl")?,
            );
        }
        let secs = wait_all(&mut rx, t0, env.timeout);
        let s = server.stop(Duration::from_secs(5))?;
        let mut out = Outcome { secs: secs?, sender_cpu: s.cpu_secs, ..Default::default() };
        for p in &mut rx {
            out.receiver_cpu += p.try_wait()?.map_or(0.0, |e| e.cpu_secs);
        }
        if env.verify {
            let (sizes, same) = check_files(&files, env.image.bundle_hash)?;
            out.delivered = sizes;
            out.identical = Some(same);
        } else {
            out.delivered = vec![env.image.bundle_bytes; files.len()];
        }
        Ok(out)
    }
}

/// BitTorrent the BootTorrent way: a local `opentracker` and a seeding
/// `aria2c` on the sender; every receiver's `aria2c` downloads and seeds to
/// the others at once (DHT and local peer discovery off, PEX on). Pieces of
/// 1 MiB (`mktorrent -l 20`). Done = every receiver's completion hook ran.
#[derive(Debug)]
pub struct BitTorrent;

/// aria2c with this run's tracker and listening port.
fn aria2c(host: &metalcast_fabric::Host, dir: &Path, torrent: &Path, tracker: SocketAddrV4, port: u16) -> Command {
    let mut c = host.command("aria2c");
    c.args([
        "--no-conf=true",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=true",
        "--seed-ratio=0.0",
        "--bt-max-peers=0",
        "--file-allocation=none",
        "--check-integrity=false",
        // The seeder's file is complete: seed it without hashing it first.
        "--bt-seed-unverified=true",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--summary-interval=0",
        "--console-log-level=notice",
        "--max-overall-upload-limit=0",
    ]);
    // The torrent names no real tracker; every run has its own (fresh ports: no TIME_WAIT clashes).
    c.arg("--bt-exclude-tracker=*").arg(format!("--bt-tracker=http://{tracker}/announce"));
    c.arg(format!("--listen-port={port}"));
    c.arg(format!("--dir={}", dir.display())).arg(torrent);
    c
}

impl Contender for BitTorrent {
    fn name(&self) -> &'static str {
        "bittorrent"
    }

    fn udp(&self) -> bool {
        false
    }

    fn available(&self) -> Result<(), String> {
        have_tool("aria2c", "aria2")
            .and(have_tool("opentracker", "opentracker"))
            .and(have_tool("mktorrent", "mktorrent"))
    }

    fn run(&self, env: &Env<'_>) -> anyhow::Result<Outcome> {
        let f = env.fabric;
        let (tracker, peer_port) = (SocketAddrV4::new(f.sender().ipv4(), env.port), env.port + 1);
        // The torrent (SHA-1 of every piece) is made once per image, outside the timing.
        let torrent = env.image.dir.join("image.torrent");
        if !torrent.exists() {
            let st = Command::new("mktorrent")
                .args(["-l", "20", "-a", "http://tracker.invalid/announce", "-o"])
                .arg(&torrent)
                .arg(&env.image.bundle)
                .stdout(Stdio::null())
                .status()
                .context("running mktorrent")?;
            anyhow::ensure!(st.success(), "mktorrent failed");
        }
        // Debian's opentracker serves only whitelisted torrents: list this one's info hash.
        let show = Command::new("aria2c").arg("-S").arg(&torrent).output().context("aria2c -S")?;
        let info_hash = String::from_utf8_lossy(&show.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Info Hash: ").map(|h| h.trim().to_owned()))
            .context("no info hash in `aria2c -S` output")?;
        std::fs::write(env.work.join("whitelist"), format!("{info_hash}\n"))?;
        let mut c = f.sender().command("opentracker");
        c.current_dir(env.work).args(["-w", "whitelist"]);
        c.args(["-i", &tracker.ip().to_string(), "-p", &env.port.to_string(), "-P", &env.port.to_string()]);
        // It chroots into -d and drops to user nobody (it refuses to run as root).
        c.arg("-d").arg(env.work);
        let mut side =
            vec![Proc::spawn("opentracker", logged(&mut c, env.work, "opentracker")?).context("starting opentracker")?];
        wait_listening(f.sender(), tracker, "opentracker")?;
        let name = env.image.bundle.file_name().expect("bundle has a name").to_owned();
        let mut rx = Vec::new();
        let mut markers = Vec::new();
        for (i, h) in f.receivers().iter().enumerate() {
            let dir = env.work.join(format!("r{i}"));
            std::fs::create_dir_all(&dir)?;
            let marker = env.work.join(format!("r{i}.done"));
            let hook = env.work.join(format!("hook-r{i}.sh"));
            std::fs::write(&hook, format!("#!/bin/sh\ntouch '{}'\n", marker.display()))?;
            std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
            let mut c = aria2c(h, &dir, &torrent, tracker, peer_port);
            c.arg(format!("--on-bt-download-complete={}", hook.display()));
            let log = format!("aria2c-{}", h.name());
            rx.push(
                Proc::spawn(format!("aria2c on {}", h.name()), logged(&mut c, env.work, &log)?)
                    .context("starting aria2c")?,
            );
            markers.push((marker, dir.join(&name)));
        }
        // Let the receivers announce (they find each other; the seeder connects to all of them).
        std::thread::sleep(Duration::from_millis(500));
        let t0 = Instant::now();
        let mut c = aria2c(f.sender(), &env.image.dir, &torrent, tracker, peer_port);
        side.push(
            Proc::spawn("aria2c seeder", logged(&mut c, env.work, "aria2c-seeder")?)
                .context("starting the seeding aria2c")?,
        );
        let mut secs = None;
        while t0.elapsed() < env.timeout {
            if markers.iter().all(|(m, _)| m.exists()) {
                secs = Some(t0.elapsed().as_secs_f64());
                break;
            }
            if let Some(p) =
                rx.iter_mut().chain(side.iter_mut()).find_map(|p| p.try_wait().ok().flatten().map(|_| p.label.clone()))
            {
                bail!("{p} exited before every receiver was done");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut out = Outcome::default();
        for p in &mut side {
            out.sender_cpu += p.stop(Duration::from_millis(200))?.cpu_secs;
        }
        for p in &mut rx {
            out.receiver_cpu += p.stop(Duration::from_millis(200))?.cpu_secs;
        }
        out.secs = secs.with_context(|| format!("not every aria2c completed within {:?}", env.timeout))?;
        let files: Vec<PathBuf> = markers.into_iter().map(|(_, f)| f).collect();
        if env.verify {
            let (sizes, same) = check_files(&files, env.image.bundle_hash)?;
            out.delivered = sizes;
            out.identical = Some(same);
        } else {
            out.delivered =
                files.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).collect::<Vec<_>>();
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udpcast_blocksize_follows_mtu_up_to_its_maximum() {
        assert_eq!(udpcast_blocksize(1500), 1456);
        assert_eq!(udpcast_blocksize(9000), UDPCAST_MAX_BLOCKSIZE);
        assert_eq!(udpcast_blocksize(1280), 1236);
    }

    #[test]
    fn every_name_resolves() {
        for n in ALL {
            assert_eq!(by_name(n).unwrap().name(), *n);
        }
        assert!(by_name("ftp").is_err());
    }
}
