//! Netboot benchmark (issue 25), on one namespace fabric with QEMU (TCG)
//! guests: power-on -> runtime checked in, booted by `metalcast serve`'s
//! built-in netboot vs by dnsmasq (DHCP + TFTP) with the same kernel,
//! initramfs and command line, and a direct kernel boot (QEMU `-kernel`,
//! no firmware netboot) as the floor; then TFTP throughput of `ipxe.efi`
//! from both servers with and without windowsize (RFC 7440).
//!
//! - `metalcast`: `serve --netboot-mode full`; QEMU's iPXE ROM (`-boot n`)
//!   gets an address and the node's signed script URL by DHCP, fetches the
//!   script, kernel and initramfs over HTTP.
//! - `dnsmasq`: `serve` without netboot (it only takes the check-in), and
//!   dnsmasq hands out the address and, to iPXE (user class), `boot.ipxe`
//!   over TFTP, whose kernel and initrd lines are TFTP too: the classic
//!   dnsmasq-only setup.
//! - `direct`: the same kernel and initramfs given to QEMU, no network boot
//!   (the runtime's own DHCP still answered by `metalcast serve`).
//!
//! Spans from QEMU's start: to the runtime's first console line
//! (`metalcast-init:`, firmware + downloads + kernel boot) and to the
//! check-in seen by the control plane (`GET /v1/nodes/{n}/runtime`, polled
//! every 50 ms from the sender namespace). Methods alternate within each
//! repetition; the control plane restarts between methods (same database).
//!
//! TFTP: `metalcast-bench`'s own client ([`crate::tftp_client`]) in a node
//! namespace reads `ipxe.efi` from each server (async-tftp in `metalcast
//! serve`, dnsmasq's) with blksize 1468, at each window size, several reads
//! per sample; every read is checked byte for byte against the file.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use metalcast_fabric::qemu::{Guest, GuestBoot, GuestSpec};
use metalcast_fabric::{Fabric, Host};
use metalcast_image::SecretKey;
use metalcast_image::initramfs::{InitramfsSpec, build_initramfs};

use crate::stats::Summary;

/// What to run (`metalcast-bench netboot`).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// The `metalcast` binary [default: `metalcast` next to metalcast-bench].
    #[arg(long)]
    pub metalcast: Option<PathBuf>,
    /// Static metalcast-node for the runtime's initramfs (see kexec-boot).
    #[arg(long)]
    pub node_static: PathBuf,
    /// Boot methods, alternating in this order within each repetition: metalcast, dnsmasq, direct.
    #[arg(long, value_delimiter = ',', default_value = "metalcast,dnsmasq,direct")]
    pub methods: Vec<String>,
    /// Repetitions per boot method (0: TFTP only).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 512)]
    pub memory_mb: u32,
    /// TFTP window sizes (empty: no TFTP part).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub windows: Vec<u16>,
    /// TFTP samples per server and window size.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub tftp_samples: u16,
    /// Reads of ipxe.efi per TFTP sample.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub tftp_reads: u16,
}

/// One measured span.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// What was measured (`metalcast`, `dnsmasq`, `direct`; `tftp metalcast w16`).
    pub method: String,
    /// The span or unit.
    pub span: String,
    /// Samples.
    pub samples: Vec<f64>,
    /// Their summary.
    pub summary: Summary,
}

const PORT: u16 = 7000;
const CMDLINE: &str = "console=ttyS0 quiet panic=-1";
const IPXE_DIR: &str = "/usr/lib/ipxe";

/// Kills the child on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Bed<'a> {
    cfg: &'a Config,
    metalcast: PathBuf,
    fabric: &'a Fabric,
    dir: &'a Path,
    db: String,
    token: String,
    url: String,
    kernel: PathBuf,
    initrd: PathBuf,
}

impl Bed<'_> {
    /// `metalcast serve` in the sender namespace, with `--netboot-mode mode` or without netboot,
    /// once it answers.
    fn serve(&self, mode: Option<&str>) -> anyhow::Result<Killed> {
        let s = self.fabric.sender();
        let ip = s.ipv4();
        let log = std::fs::File::options().create(true).append(true).open(self.dir.join("server.log"))?;
        let mut cmd = s.command(&self.metalcast);
        cmd.args(["serve", "--listen", &format!("{ip}:{PORT}"), "--database-url", &self.db]).args([
            "--data-dir",
            &self.dir.join("data").display().to_string(),
            "--provision-addr",
            &ip.to_string(),
        ]);
        if let Some(mode) = mode {
            let [a, b, c, _] = ip.octets();
            cmd.args(["--netboot-mode", mode, "--netboot-interface", s.ifname()])
                .args(["--netboot-pool", &format!("{a}.{b}.{c}.100-{a}.{b}.{c}.150")])
                .args(["--netboot-kernel", &self.kernel.display().to_string()])
                .args(["--netboot-initrd", &self.initrd.display().to_string(), "--netboot-cmdline", CMDLINE]);
        }
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().context("starting metalcast serve")?;
        let server = Killed(child);
        let t0 = Instant::now();
        while get(s, &format!("{}/v1/health", self.url), None).is_err() {
            ensure!(
                t0.elapsed() < Duration::from_secs(30),
                "metalcast serve did not answer; {}/server.log",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = self
            .fabric
            .sender()
            .command(&self.metalcast)
            .args(args)
            .env("METALCAST_URL", &self.url)
            .env("METALCAST_TOKEN", &self.token)
            .env_remove("METALCAST_USER")
            .env_remove("METALCAST_PASSWORD")
            .output()?;
        ensure!(out.status.success(), "metalcast {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }

    /// Boots one guest; (power-on -> runtime init, power-on -> checked in), seconds.
    fn boot(&self, method: &str, node: &str, mac: &str) -> anyhow::Result<(f64, f64)> {
        let boot = match method {
            "direct" => GuestBoot::Kernel {
                kernel: &self.kernel,
                initrd: &self.initrd,
                append: format!("{CMDLINE} ip=dhcp metalcast.cp={}", self.url),
            },
            _ => GuestBoot::BiosPxe,
        };
        let log = self.dir.join(format!("{node}.console"));
        let spec =
            GuestSpec { name: node, boot, nic_model: "virtio-net-pci", mac, disk: None, memory_mb: self.cfg.memory_mb };
        let tap = self.fabric.tap("g").context("tap")?;
        let t0 = Instant::now();
        let mut guest = Guest::start(tap, &spec, log).context("starting QEMU")?;
        let url = format!("{}/v1/nodes/{node}/runtime", self.url);
        let limit = Duration::from_secs(600);
        let checked_in = loop {
            if let Ok(v) = get(self.fabric.sender(), &url, Some(&self.token))
                && v["checked_in"] == true
            {
                break t0.elapsed();
            }
            ensure!(guest.running(), "{node}: QEMU ended before the check-in; console {}", guest.log.display());
            ensure!(t0.elapsed() < limit, "{node}: no check-in within {limit:?}; console {}", guest.log.display());
            std::thread::sleep(Duration::from_millis(50));
        };
        let (_, init_at, _) =
            guest.try_wait_line("metalcast-init:", 0, Duration::from_secs(5)).map_err(anyhow::Error::msg)?;
        Ok(((init_at - t0).as_secs_f64(), checked_in.as_secs_f64()))
    }
}

/// GET `url` as JSON from inside `host`'s namespace (bounded: 2 s).
fn get(host: &Host, url: &str, token: Option<&str>) -> anyhow::Result<serde_json::Value> {
    let (url, token) = (url.to_string(), token.map(str::to_string));
    host.run_in(move || -> anyhow::Result<serde_json::Value> {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(2))).build().into();
        let mut req = agent.get(&url);
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        Ok(req.call()?.body_mut().read_json()?)
    })?
}

/// dnsmasq in `host`: TFTP from `root`, and with `dhcp` also DHCP (iPXE gets `boot.ipxe`).
fn dnsmasq(host: &Host, root: &Path, dhcp: bool, dir: &Path) -> anyhow::Result<Killed> {
    let [a, b, c, _] = host.ipv4().octets();
    let mut cmd = host.command("dnsmasq");
    cmd.args(["--no-daemon", "--conf-file=/dev/null", "--bind-interfaces", "--port=0", "--no-ping", "--enable-tftp"])
        .arg(format!("--interface={}", host.ifname()))
        .arg(format!("--tftp-root={}", root.display()));
    if dhcp {
        cmd.arg(format!("--dhcp-range={a}.{b}.{c}.100,{a}.{b}.{c}.150,255.255.255.0,1h"))
            .arg(format!("--dhcp-leasefile={}", dir.join("dnsmasq.leases").display()))
            .args([
                "--dhcp-userclass=set:ipxe,iPXE",
                "--dhcp-boot=tag:ipxe,boot.ipxe",
                "--dhcp-boot=tag:!ipxe,undionly.kpxe",
            ]);
    }
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("starting dnsmasq")?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(Killed(child))
}

/// TFTP reads of `ipxe.efi` from `server` in `client`'s namespace: seconds per sample of `reads` reads.
fn tftp_sample(client: &Host, server: Ipv4Addr, window: u16, reads: usize, want: &[u8]) -> anyhow::Result<(f64, u16)> {
    let want = want.to_vec();
    client.run_in(move || -> anyhow::Result<(f64, u16)> {
        let t0 = Instant::now();
        let mut used = 1;
        for _ in 0..reads {
            let f = crate::tftp_client::fetch(
                SocketAddr::from((server, 69)),
                "ipxe.efi",
                1468,
                window,
                Duration::from_secs(1),
            )?;
            ensure!(
                f.data == want,
                "ipxe.efi over TFTP differs from the file ({} of {} bytes)",
                f.data.len(),
                want.len()
            );
            used = f.windowsize;
        }
        Ok((t0.elapsed().as_secs_f64(), used))
    })?
}

/// Runs the benchmark (root, QEMU, dnsmasq, Debian's ipxe).
pub fn run(cfg: &Config) -> anyhow::Result<Vec<Row>> {
    let metalcast = match &cfg.metalcast {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("locating metalcast-bench")?.with_file_name("metalcast"),
    };
    ensure!(metalcast.is_file(), "{} missing: cargo build --release -p metalcast-cli", metalcast.display());
    for m in &cfg.methods {
        ensure!(["metalcast", "dnsmasq", "direct"].contains(&m.as_str()), "method {m:?}: metalcast, dnsmasq or direct");
    }
    for f in ["undionly.kpxe", "ipxe.efi"] {
        ensure!(Path::new(IPXE_DIR).join(f).is_file(), "{IPXE_DIR}/{f} missing: apt-get install ipxe");
    }
    ensure!(Command::new("dnsmasq").arg("--version").output().is_ok(), "dnsmasq missing: apt-get install dnsmasq-base");
    metalcast_fabric::qemu::qemu().map_err(anyhow::Error::msg)?;
    let (vmlinuz, modules) = metalcast_fabric::qemu::kernel().map_err(anyhow::Error::msg)?;
    let scratch = crate::interrupt::scratch_dir(Path::new("/var/tmp"))?;
    let d = scratch.path();
    SecretKey::generate().save(&d.join("site"))?;
    let initrd = d.join("initrd.img");
    build_initramfs(
        &InitramfsSpec {
            init: cfg.node_static.clone(),
            modules_root: Some(modules),
            modules: metalcast_fabric::qemu::GUEST_MODULES.iter().map(|m| m.to_string()).collect(),
            files: vec![(d.join("site.pub"), "/etc/metalcast/trusted/site.pub".into())],
            programs: Vec::new(),
            zstd_level: 9,
        },
        &initrd,
    )?;
    // dnsmasq's TFTP root: the same files, and the classic script.
    let root = d.join("tftp");
    std::fs::create_dir(&root)?;
    for f in ["undionly.kpxe", "ipxe.efi"] {
        std::fs::copy(std::fs::canonicalize(Path::new(IPXE_DIR).join(f))?, root.join(f))?;
    }
    std::fs::copy(&vmlinuz, root.join("vmlinuz"))?;
    std::fs::copy(&initrd, root.join("initrd.img"))?;
    eprintln!(
        "kernel {:.1} MiB, initramfs {:.1} MiB",
        std::fs::metadata(&vmlinuz)?.len() as f64 / 1048576.0,
        std::fs::metadata(&initrd)?.len() as f64 / 1048576.0
    );

    let fabric = Fabric::builder().receivers(1).tap("g").build()?;
    let sender = fabric.sender();
    let url = format!("http://{}:{PORT}", sender.ipv4());
    std::fs::write(
        root.join("boot.ipxe"),
        format!("#!ipxe\nkernel vmlinuz {CMDLINE} ip=dhcp metalcast.cp={url}\ninitrd initrd.img\nboot\n"),
    )?;
    let db = format!("sqlite://{}?mode=rwc", d.join("m.db").display());
    let out = Command::new(&metalcast)
        .args(["admin", "bootstrap", "--database-url", &db, "--admin-user", "admin"])
        .output()
        .with_context(|| format!("running {}", metalcast.display()))?;
    ensure!(out.status.success(), "admin bootstrap: {}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("token:").map(|t| t.trim().to_string()))
        .context("no token from admin bootstrap")?;
    let bed = Bed { cfg, metalcast, fabric: &fabric, dir: d, db, token, url, kernel: vmlinuz, initrd };

    // Every guest is a new node and MAC, so no earlier check-in counts.
    let mut runs = Vec::new();
    {
        let _server = bed.serve(None)?;
        for rep in 0..cfg.reps {
            for (m, method) in cfg.methods.iter().enumerate() {
                let (node, mac) = (format!("nb-{method}-{rep}"), format!("52:54:00:6e:{m:02x}:{rep:02x}"));
                bed.cli(&["node", "register", &node, "--obm", "{\"type\":\"none\"}"])?;
                bed.cli(&["node", "nic", "add", &node, "eth0", &mac])?;
                runs.push((method.clone(), node, mac));
            }
        }
    }
    let mut init: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut checkin: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for (i, (method, node, mac)) in runs.iter().enumerate() {
        // `direct` needs a DHCP server for the runtime's own `ip=dhcp`: metalcast's (an address only,
        // as for any client that is not a netboot ROM).
        let _server = bed.serve((method != "dnsmasq").then_some("full"))?;
        let _dns = if method == "dnsmasq" { Some(dnsmasq(sender, &root, true, d)?) } else { None };
        let (a, b) = bed.boot(method, node, mac)?;
        eprintln!("[{}/{}] {method}: runtime init at {a:.2}s, checked in at {b:.2}s", i + 1, runs.len());
        init.entry(method.clone()).or_default().push(a);
        checkin.entry(method.clone()).or_default().push(b);
    }
    let mut rows = Vec::new();
    for m in &cfg.methods {
        if let (Some(a), Some(b)) = (init.get(m), checkin.get(m)) {
            let row = |span: &str, s: &Vec<f64>| Row {
                method: m.clone(),
                span: span.into(),
                samples: s.clone(),
                summary: Summary::of(s),
            };
            rows.push(row("power-on -> runtime init (s)", a));
            rows.push(row("power-on -> checked in (s)", b));
        }
    }

    if !cfg.windows.is_empty() {
        let want = std::fs::read(root.join("ipxe.efi"))?;
        let client = fabric.receivers().first().context("a node namespace")?;
        let mib = (want.len() * usize::from(cfg.tftp_reads)) as f64 / 1048576.0;
        let mut samples: std::collections::BTreeMap<(String, u16), (Vec<f64>, u16)> = Default::default();
        for _ in 0..cfg.tftp_samples {
            for server in ["metalcast", "dnsmasq"] {
                // `--netboot-mode off`: TFTP and /boot without DHCP; dnsmasq TFTP only. One at a time on 69.
                let _serve = if server == "metalcast" { Some(bed.serve(Some("off"))?) } else { None };
                let _dns = if server == "dnsmasq" { Some(dnsmasq(sender, &root, false, d)?) } else { None };
                for &w in &cfg.windows {
                    let (secs, used) = tftp_sample(client, sender.ipv4(), w, cfg.tftp_reads.into(), &want)?;
                    let e = samples.entry((server.to_string(), w)).or_default();
                    e.0.push(mib / secs);
                    e.1 = used;
                }
            }
        }
        for ((server, w), (s, used)) in samples {
            rows.push(Row {
                method: format!("tftp {server}, windowsize {w}"),
                span: format!("MiB/s (ipxe.efi x{}, blksize 1468; window in use: {used})", cfg.tftp_reads),
                summary: Summary::of(&s),
                samples: s,
            });
        }
    }
    Ok(rows)
}

/// The rows as a Markdown table, with the boot ratios.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from("| method | span | median | min | max |\n|---|---|---:|---:|---:|\n");
    for r in rows {
        s += &format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} |\n",
            r.method, r.span, r.summary.median, r.summary.min, r.summary.max
        );
    }
    let median =
        |m: &str, span: &str| rows.iter().find(|r| r.method == m && r.span.starts_with(span)).map(|r| r.summary.median);
    if let (Some(mc), Some(dn)) = (median("metalcast", "power-on -> checked"), median("dnsmasq", "power-on -> checked"))
    {
        s += &format!("\npower-on -> checked in, dnsmasq / metalcast (medians): {:.2}x\n", dn / mc);
    }
    if let (Some(mc), Some(di)) = (median("metalcast", "power-on -> checked"), median("direct", "power-on -> checked"))
    {
        s += &format!("power-on -> checked in, metalcast netboot / direct kernel boot (medians): {:.2}x\n", mc / di);
    }
    s
}
