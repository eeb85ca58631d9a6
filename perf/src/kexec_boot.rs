//! Hand-over benchmark, inside a QEMU (TCG) guest: from the last byte of
//! the tenant bundle received to the tenant kernel's init (kexec), versus a
//! firmware boot + iPXE netboot of the same tenant kernel and initrd (DHCP +
//! TFTP from dnsmasq, QEMU's iPXE ROM), measured from QEMU's start (the
//! reset; this leaves out the old OS's shutdown, which favours PXE).
//!
//! Both timings come from host timestamps of serial console lines:
//! `metalcast: last byte received` (printed by the agent) and
//! `metalcast-marker: <m>` (printed by the tenant's init first thing, before
//! it loads modules). The kexec span is also split at `metalcast: kexec now`
//! (the runtime's part: verification, staging the kernel, reports; the
//! staging's own time comes from the agent's `handover` phase line) and the
//! kernel's part (kexec reboot, boot to init). Both methods boot the same
//! kernel, initrd and command line (`console=ttyS0 quiet ...`: the serial
//! console is slow under TCG, so the kernel prints little either way).
//! Everything runs in
//! the namespaces of one fabric: DHCP, TFTP, the runtime API server and the
//! multicast sender live in its sender namespace, the guest on a tap.

use std::io::{BufRead, BufReader};
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use metalcast_fabric::{Fabric, Tap};
use metalcast_image::initramfs::{InitramfsSpec, build_initramfs};
use metalcast_image::{Bundle, SecretKey, spec_from_inputs};
use metalcast_runtime_api::server::RuntimeApi;
use metalcast_runtime_api::{Action, Deploy, Handover, Target};
use metalcast_transport::{Sender, SenderConfig, SessionSpec};

use crate::stats::Summary;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Unpacked `linux-image-*-amd64` (`node-runtime/fetch-kernel.sh`).
    pub kernel_dir: PathBuf,
    /// The static `metalcast-node`.
    pub node_static: PathBuf,
    /// Repetitions per method.
    pub reps: usize,
    /// Guest memory, MiB.
    pub memory_mb: u32,
    /// How the runtime stages the tenant kernel (`metalcast.kexec=`), one
    /// kexec run per method and repetition: `auto`, `file` or `load`. The
    /// bootstrap initramfs carries kexec-tools' `kexec` (this host's, with
    /// its libraries) for `auto` and `load`.
    pub kexec_methods: Vec<String>,
    /// Give the tenant bundle of `auto` its kernel ELF (`--kexec-elf`);
    /// `load` and `file` get the bundle without, so the three show the ELF,
    /// `kexec_load` of the bzImage and `kexec_file_load`.
    pub kexec_elf: bool,
}

/// One method's timings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// `kexec` or `firmware+pxe`.
    pub method: String,
    /// What is timed.
    pub span: String,
    /// Seconds.
    pub secs: Summary,
}

struct Guest {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    started: Instant,
    /// The last console lines, for error messages.
    tail: std::collections::VecDeque<String>,
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Guest {
    fn start(tap: &Tap, memory_mb: u32, boot: &[String]) -> anyhow::Result<Guest> {
        let mut cmd = tap.netns().command("qemu-system-x86_64");
        cmd.args(["-accel", "tcg", "-smp", "1", "-no-reboot", "-display", "none", "-serial", "stdio"])
            .args(["-monitor", "none", "-device", "virtio-rng-pci", "-m", &memory_mb.to_string()])
            .arg("-netdev")
            .arg(format!("tap,id=n0,ifname={},script=no,downscript=no", tap.ifname()))
            .args(["-device", "e1000,netdev=n0,mac=52:54:00:6d:01:01"])
            .args(boot);
        let started = Instant::now();
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().context("starting QEMU")?;
        let out = child.stdout.take().context("QEMU stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).split(b'\n').map_while(Result::ok) {
                if tx.send((Instant::now(), String::from_utf8_lossy(&l).trim_end().to_string())).is_err() {
                    break;
                }
            }
        });
        Ok(Guest { child, lines, started, tail: Default::default() })
    }

    fn wait(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<Instant> {
        self.wait_line(needle, timeout).map(|(t, _)| t)
    }

    fn wait_line(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<(Instant, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = deadline.checked_duration_since(Instant::now()).map(|left| self.lines.recv_timeout(left));
            match got {
                Some(Ok((t, l))) => {
                    if std::env::var_os("METALCAST_BENCH_CONSOLE").is_some() {
                        eprintln!("[guest] {l}");
                    }
                    if l.contains(needle) {
                        return Ok((t, l));
                    }
                    self.tail.push_back(l);
                    if self.tail.len() > 30 {
                        self.tail.pop_front();
                    }
                }
                _ => bail!(
                    "guest console ended or timed out before {needle:?}; last lines:\n{}",
                    self.tail.iter().cloned().collect::<Vec<_>>().join("\n")
                ),
            }
        }
    }
}

fn find(dir: &Path, prefix: &str) -> anyhow::Result<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
        .collect();
    v.sort();
    v.pop().with_context(|| format!("nothing named {prefix}* in {}", dir.display()))
}

/// Runs the benchmark (root, QEMU, dnsmasq).
pub fn run(cfg: &Config) -> anyhow::Result<Vec<Row>> {
    let vmlinuz = find(&cfg.kernel_dir.join("boot"), "vmlinuz-")?;
    let modules = find(&cfg.kernel_dir.join("lib/modules"), "")?;
    let dir = crate::interrupt::scratch_dir(&std::env::temp_dir())?;
    let d = dir.path();
    let key = SecretKey::generate();
    key.save(&d.join("site"))?;
    // A release build keeps line tables (about 57 MB static): every byte of it is staged, hashed and
    // unpacked on the hand-over path (and TFTP'd on the PXE path). Real nodes carry it stripped.
    let size = std::fs::metadata(&cfg.node_static).with_context(|| cfg.node_static.display().to_string())?.len();
    if size > 24 << 20 {
        eprintln!(
            "warning: {} is {} MiB: not stripped? (CARGO_PROFILE_RELEASE_STRIP=symbols, or strip(1))",
            cfg.node_static.display(),
            size >> 20
        );
    }
    for m in &cfg.kexec_methods {
        if !["auto", "file", "load"].contains(&m.as_str()) {
            bail!("kexec method {m:?}: use auto, file or load");
        }
    }
    let kexec_tool = ["/usr/sbin/kexec", "/sbin/kexec"].iter().map(PathBuf::from).find(|p| p.is_file());
    if kexec_tool.is_none() && cfg.kexec_methods.iter().any(|m| m != "file") {
        bail!("kexec methods auto and load need kexec-tools installed (its kexec goes into the guest)");
    }
    let initramfs = |name: &str, programs: Vec<(PathBuf, String)>| -> anyhow::Result<PathBuf> {
        let out = d.join(name);
        build_initramfs(
            &InitramfsSpec {
                init: cfg.node_static.clone(),
                modules_root: Some(modules.clone()),
                modules: ["virtio_pci", "virtio_net", "virtio_rng", "e1000"].map(String::from).to_vec(),
                files: vec![(d.join("site.pub"), "/etc/metalcast/trusted/site.pub".into())],
                programs,
                zstd_level: 9,
            },
            &out,
        )?;
        Ok(out)
    };
    let f = Fabric::builder().receivers(0).ipv6(true).tap("g").build()?;
    let tap = f.tap("g").context("tap")?;
    let sender = f.sender();
    let cp_port = 18100;
    let cp = format!("http://{}:{cp_port}", sender.ipv4());
    let api = RuntimeApi::new();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (a, addr) = (api.clone(), SocketAddrV4::new(sender.ipv4(), cp_port));
    let server = sender.spawn_in(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind(addr).await?;
            let _ = ready_tx.send(());
            a.serve(l, async move {
                let _ = stop_rx.await;
            })
            .await?;
            anyhow::Ok(())
        })
    })?;
    ready_rx.recv_timeout(Duration::from_secs(10)).context("runtime API server did not start")?;

    // Tenant: same kernel, an init that prints the marker; served by multicast (kexec) and by TFTP (PXE).
    let common = format!("console=ttyS0 quiet panic=-1 metalcast.cp={cp}");
    let tenant_initrd = initramfs("tenant.img", Vec::new())?;
    let tenant_cmdline = format!("{common} ip=dhcp metalcast.role=tenant metalcast.marker=tenant-up");
    // Two tenant bundles of the same kernel, initrd and command line: with the kernel ELF (`--kexec-elf`) and without.
    let tenant_bundle = |name: &str, elf: bool| -> anyhow::Result<PathBuf> {
        let path = d.join(name);
        let mut spec = spec_from_inputs(
            "tenant",
            Some(vmlinuz.clone()),
            vec![tenant_initrd.clone()],
            tenant_cmdline.clone(),
            None,
            None,
            None,
        )?;
        spec.kexec_elf = elf;
        spec.zstd_level = 9;
        metalcast_image::build(&spec, &path, Some(&key), &indicatif::ProgressBar::hidden())?;
        let b = Bundle::open(&path)?;
        eprintln!(
            "tenant bundle {name}: {:.1} MiB stored ({:.1} MiB of parts)",
            b.manifest.data_len as f64 / 1048576.0,
            b.manifest.total_size() as f64 / 1048576.0
        );
        Ok(path)
    };
    let plain = tenant_bundle("tenant.mcb", false)?;
    let with_elf = if cfg.kexec_elf { tenant_bundle("tenant-elf.mcb", true)? } else { plain.clone() };
    let boot_initrd = initramfs("bootstrap.img", kexec_tool.map(|t| (t, "/sbin/kexec".into())).into_iter().collect())?;
    let methods: Vec<(String, PathBuf)> = cfg
        .kexec_methods
        .iter()
        .map(|m| (m.clone(), if m == "auto" { with_elf.clone() } else { plain.clone() }))
        .collect();
    let tftp = d.join("tftp");
    std::fs::create_dir_all(&tftp)?;
    std::fs::copy(&vmlinuz, tftp.join("vmlinuz"))?;
    std::fs::copy(&tenant_initrd, tftp.join("initrd.img"))?;
    std::fs::write(
        tftp.join("boot.ipxe"),
        format!(
            "#!ipxe\nkernel tftp://{ip}/vmlinuz {tenant_cmdline}\ninitrd tftp://{ip}/initrd.img\nboot\n",
            ip = sender.ipv4()
        ),
    )?;
    // The recipe from the machine facts: --no-ping and IPv6 RAs make iPXE start fast.
    let mut dnsmasq = sender
        .command("dnsmasq")
        .args(["--no-daemon", "--conf-file=/dev/null", "--bind-interfaces", "--port=0", "--no-ping"])
        .arg(format!("--interface={}", sender.ifname()))
        .args([
            "--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,1h",
            "--enable-ra",
            "--dhcp-range=fd00:77::,ra-only",
        ])
        .args(["--enable-tftp", "--dhcp-boot=boot.ipxe"])
        .arg(format!("--tftp-root={}", tftp.display()))
        .arg(format!("--dhcp-leasefile={}", d.join("leases").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting dnsmasq")?;

    let result = (|| -> anyhow::Result<Vec<Row>> {
        let long = Duration::from_secs(300);
        /// One kexec method's samples.
        #[derive(Default)]
        struct Samples {
            total: Vec<f64>,
            runtime: Vec<f64>,
            staging: Vec<f64>,
            kernel: Vec<f64>,
            receive: Vec<f64>,
            how: String,
        }
        let mut per_method: Vec<Samples> = methods.iter().map(|_| Samples::default()).collect();
        let mut pxe = Vec::new();
        let mut session = 0u16;
        for rep in 0..cfg.reps {
            for ((method, bundle_path), s) in methods.iter().zip(per_method.iter_mut()) {
                let tenant = Bundle::open(bundle_path)?;
                let mut g = Guest::start(
                    tap,
                    cfg.memory_mb,
                    &[
                        "-kernel".into(),
                        vmlinuz.display().to_string(),
                        "-initrd".into(),
                        boot_initrd.display().to_string(),
                        "-append".into(),
                        format!("{common} ip=dhcp metalcast.kexec={method}"),
                    ],
                )?;
                g.wait("metalcast: checked in", long)?;
                let mac = "52:54:00:6d:01:01";
                let port = 42000 + session * 2;
                session += 1;
                let spec = SessionSpec::new(
                    &tenant.manifest.root_hash,
                    SocketAddrV4::new(std::net::Ipv4Addr::new(239, 77, 7, 1), port),
                    SocketAddrV4::new(sender.ipv4(), port + 1),
                    1500,
                )?;
                let (bp, sp, local) = (bundle_path.clone(), spec.clone(), sender.ipv4());
                let tx = sender.spawn_in(move || -> anyhow::Result<()> {
                    let b = Bundle::open(&bp)?;
                    let c = SenderConfig {
                        local,
                        rate: Some(400_000_000 / 8),
                        join_timeout: Duration::from_secs(120),
                        ..Default::default()
                    };
                    Sender::new(&sp, &b, c)?.run(&mut |_| {})?;
                    Ok(())
                })?;
                api.push(
                    mac,
                    Action::Deploy(Deploy {
                        session: spec,
                        manifest_b64: Deploy::encode_manifest(&tenant.signed_manifest().to_bytes()),
                        target: Target::Memory,
                        handover: Handover::Kexec,
                        cmdline_append: String::new(),
                        idle_timeout_secs: 60,
                    }),
                )?;
                let t0 = g.wait("metalcast: last byte received", long)?;
                let (_, received) = g.wait_line("metalcast: phase Receive Ok in ", long)?;
                let (_, staged) = g.wait_line("metalcast: phase Handover Ok in ", long)?;
                let tk = g.wait("metalcast: kexec now", long)?;
                let t1 = g.wait("metalcast-marker: tenant-up", long)?;
                tx.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
                s.total.push((t1 - t0).as_secs_f64());
                s.runtime.push((tk - t0).as_secs_f64());
                s.kernel.push((t1 - tk).as_secs_f64());
                s.staging.push(staged_secs(&staged).with_context(|| format!("no staging time in {staged:?}"))?);
                s.receive.push(phase_secs(&received).with_context(|| format!("no time in {received:?}"))?);
                s.how = staged_with(&staged).unwrap_or("?").to_string();
                eprintln!(
                    "rep {rep} {method}: kexec {:.2}s (runtime {:.2}s of which staging {:.2}s, kernel {:.2}s; receive {:.2}s) with {}",
                    s.total[rep], s.runtime[rep], s.staging[rep], s.kernel[rep], s.receive[rep], s.how
                );
                drop(g);
            }

            let mut g = Guest::start(tap, cfg.memory_mb, &["-boot".into(), "n".into()])?;
            let t1 = g.wait("metalcast-marker: tenant-up", long)?;
            pxe.push((t1 - g.started).as_secs_f64());
            eprintln!("rep {rep}: firmware+pxe {:.2}s", pxe[rep]);
        }
        let mut rows = Vec::new();
        for ((method, bundle), s) in methods.iter().zip(per_method) {
            let elf = Bundle::open(bundle)?.manifest.boot.as_ref().is_some_and(|b| b.kernel_elf.is_some());
            let how = format!("kexec ({method}: {})", s.how);
            let bundle_note = if elf { "bundle with kernel ELF" } else { "bundle without kernel ELF" };
            rows.push(Row {
                method: format!("kexec ({method})"),
                span: "last byte received -> tenant init".into(),
                secs: Summary::of(&s.total),
            });
            rows.push(Row {
                method: how.clone(),
                span: "part: last byte -> `kexec now` (verify, stage kernel, reports)".into(),
                secs: Summary::of(&s.runtime),
            });
            rows.push(Row {
                method: how.clone(),
                span: "part: staging the kernel (agent's own timing, guest clock)".into(),
                secs: Summary::of(&s.staging),
            });
            rows.push(Row {
                method: how.clone(),
                span: "part: `kexec now` -> tenant init (kexec reboot, kernel boot)".into(),
                secs: Summary::of(&s.kernel),
            });
            rows.push(Row {
                method: how,
                span: format!("before it: receive phase ({bundle_note}; guest clock)"),
                secs: Summary::of(&s.receive),
            });
        }
        rows.push(Row {
            method: "firmware+pxe".into(),
            span: "QEMU start (reset) -> tenant init (iPXE, DHCP, TFTP)".into(),
            secs: Summary::of(&pxe),
        });
        Ok(rows)
    })();
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
    let _ = stop_tx.send(());
    let _ = server.join();
    result
}

/// The rows as a Markdown table, with the ratio.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from("| method | span | median s | min s | max s |\n|---|---|---:|---:|---:|\n");
    for r in rows {
        s += &format!("| {} | {} | {:.2} | {:.2} | {:.2} |\n", r.method, r.span, r.secs.median, r.secs.min, r.secs.max);
    }
    if let Some(p) = rows.iter().find(|r| r.method == "firmware+pxe") {
        s += "\n| ratio | median / median | fastest PXE / median kexec (conservative) |\n|---|---:|---:|\n";
        for k in rows.iter().filter(|r| r.method.starts_with("kexec (") && r.span.starts_with("last byte")) {
            s += &format!(
                "| firmware+pxe / {} | {:.2}x | {:.2}x |\n",
                k.method,
                p.secs.median / k.secs.median,
                p.secs.min / k.secs.median
            );
        }
    }
    s
}

/// The number of seconds right after `marker` in `line`.
fn secs_after(line: &str, marker: &str) -> Option<f64> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest[..rest.find('s')?].parse().ok()
}

/// The staging time in the agent's handover phase line (`... kernel staged in 1.23s with ...`).
fn staged_secs(line: &str) -> Option<f64> {
    secs_after(line, "kernel staged in ")
}

/// A phase line's own duration (`metalcast: phase Receive Ok in 3.21s at ...`).
fn phase_secs(line: &str) -> Option<f64> {
    secs_after(line, " Ok in ")
}

/// How the kernel was staged, from the handover phase line (`... with kexec_file_load, rebooting ...`).
fn staged_with(line: &str) -> Option<&str> {
    let rest = &line[line.find("s with ")? + "s with ".len()..];
    Some(&rest[..rest.find(", rebooting")?])
}

#[cfg(test)]
mod tests {
    #[test]
    fn phase_line() {
        let l = "metalcast: phase Handover Ok in 1.30s at 9.10s uptime: kernel staged in 1.25s with kexec_file_load";
        assert_eq!(super::staged_secs(l), Some(1.25));
        assert_eq!(super::staged_secs("metalcast: phase Handover Ok in 1.30s"), None);
        assert_eq!(super::phase_secs(l), Some(1.30));
        let l = "metalcast: phase Handover Ok in 0.50s at 9.10s uptime: kernel staged in 0.48s with kexec_load of \
                 the kernel ELF (kexec-tools), rebooting into it; cmdline \"x\"";
        assert_eq!(super::staged_with(l), Some("kexec_load of the kernel ELF (kexec-tools)"));
        assert_eq!(super::staged_with("metalcast: phase Handover Ok in 0.50s"), None);
    }
}
