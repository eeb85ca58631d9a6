//! One image to N receivers on a namespace fabric: metalcast versus udpcast
//! (Debian's `udp-sender`/`udp-receiver`), alternating in one run, on the
//! same fabric, the same loss, the same bytes.
//!
//! Both contenders send the same bundle file (incompressible data, so the
//! bundle is as large as the image) and both receivers discard the data
//! after receiving it (udpcast writes to /dev/null; metalcast still
//! decompresses and checks every chunk's hash). The sender's veth segments
//! UDP GSO batches in software, as a NIC would, so both contenders put
//! individual 1500-byte datagrams through the bridge. Time runs from
//! starting the sender (receivers already listening) to the last receiver
//! finished. Wire bytes are the sender veth's transmitted bytes (IP level).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use metalcast_fabric::{Fabric, Flow, LossConfig};
use metalcast_image::{BundleError, Manifest};
use metalcast_transport::{ChunkSink, Receiver, ReceiverConfig, Sender, SenderConfig, SessionSpec};

use crate::stats::Summary;

/// Benchmark parameters.
#[derive(Debug, Clone)]
pub struct Config {
    /// Receivers.
    pub receivers: usize,
    /// Image size in MiB.
    pub size_mib: usize,
    /// Random loss per receiver link, percent.
    pub losses: Vec<f64>,
    /// Repetitions per contender and loss.
    pub reps: usize,
    /// metalcast's send rate cap, Mbit/s of UDP payload (0: none).
    pub rate_mbit: u64,
    /// Scratch directory for the image.
    pub scratch: PathBuf,
    /// Link MTU of the fabric (1500, or 9000 for jumbo frames).
    pub mtu: u32,
}

/// One contender at one loss rate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// Contender.
    pub contender: String,
    /// Loss per link, percent.
    pub loss_percent: f64,
    /// Seconds until every receiver is done.
    pub secs: Summary,
    /// N x image size / median seconds, MB/s.
    pub aggregate_mb_s: f64,
    /// Sender veth bytes / image bytes, median.
    pub wire_ratio: f64,
    /// Runs that failed (not counted in the times).
    pub failures: usize,
}

/// Discards chunks after the receiver verified them; counts bytes.
struct Discard(u64);

impl ChunkSink for Discard {
    fn write_chunk(&mut self, _: &Manifest, _: usize, data: &[u8]) -> Result<(), BundleError> {
        self.0 += data.len() as u64;
        Ok(())
    }
}

fn make_image(dir: &Path, mib: usize) -> anyhow::Result<PathBuf> {
    let raw = dir.join("image.raw");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut f = std::io::BufWriter::new(std::fs::File::create(&raw)?);
    for _ in 0..mib {
        for w in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        std::io::Write::write_all(&mut f, &buf)?;
    }
    drop(f);
    let spec = metalcast_image::spec_from_inputs("bench", None, vec![], String::new(), None, Some(raw.clone()), None)?;
    let out = dir.join("image.mcb");
    metalcast_image::build(&spec, &out, None, &indicatif::ProgressBar::hidden())?;
    std::fs::remove_file(&raw)?;
    Ok(out)
}

fn tx_bytes(f: &Fabric) -> anyhow::Result<u64> {
    let s = f.sender();
    let out = s.command("cat").arg(format!("/sys/class/net/{}/statistics/tx_bytes", s.ifname())).output()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().context("reading tx_bytes")
}

fn wait_all(children: &mut [Child], limit: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + limit;
    for c in children.iter_mut() {
        loop {
            if let Some(st) = c.try_wait()? {
                if !st.success() {
                    bail!("a udpcast process failed: {st}");
                }
                break;
            }
            if Instant::now() > until {
                for c in children.iter_mut() {
                    let _ = c.kill();
                }
                bail!("udpcast did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

fn run_udpcast(f: &Fabric, bundle: &Path, port: u16) -> anyhow::Result<(f64, u64)> {
    let n = f.receivers().len();
    let mut rx: Vec<Child> = f
        .receivers()
        .iter()
        .map(|h| {
            h.command("udp-receiver")
                .args(["--file", "/dev/null", "--nokbd", "--interface", h.ifname(), "--portbase", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting udp-receiver (apt-get install udpcast)")
        })
        .collect::<anyhow::Result<_>>()?;
    let tx0 = tx_bytes(f)?;
    let t0 = Instant::now();
    let mut sender = f
        .sender()
        .command("udp-sender")
        .arg("--file")
        .arg(bundle)
        .args(["--nokbd", "--interface", f.sender().ifname(), "--portbase", &port.to_string()])
        .args(["--min-receivers", &n.to_string(), "--max-wait", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting udp-sender")?;
    // udp-receiver can wait forever when its last exchange is lost: give up after 5 minutes.
    let done = wait_all(&mut rx, Duration::from_secs(300));
    let secs = t0.elapsed().as_secs_f64();
    let sender_done = done.and_then(|()| wait_all(std::slice::from_mut(&mut sender), Duration::from_secs(30)));
    if let Err(e) = sender_done {
        // Leave nothing running that would send during the next contender's run.
        for c in rx.iter_mut().chain(std::iter::once(&mut sender)) {
            let _ = c.kill();
            let _ = c.wait();
        }
        return Err(e);
    }
    Ok((secs, tx_bytes(f)? - tx0))
}

fn run_metalcast(f: &Fabric, bundle: &Path, port: u16, rate_mbit: u64, mtu: u32) -> anyhow::Result<(f64, u64)> {
    let manifest = Arc::new(metalcast_image::Bundle::open(bundle)?.manifest);
    let spec = SessionSpec::new(
        &manifest.root_hash,
        std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(239, 77, 9, 9), port),
        std::net::SocketAddrV4::new(f.sender().ipv4(), port + 1),
        mtu as usize,
    )?;
    let rx: Vec<_> = f
        .receivers()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let (spec, m, ip) = (spec.clone(), Arc::clone(&manifest), h.ipv4());
            h.spawn_in(move || -> anyhow::Result<u64> {
                let cfg = ReceiverConfig { id: i as u64 + 1, iface: ip, ..Default::default() };
                let mut sink = Discard(0);
                Receiver::new(&spec, &m, cfg)?.run(&mut sink, &mut |_| {})?;
                Ok(sink.0)
            })
        })
        .collect::<Result<_, _>>()?;
    let tx0 = tx_bytes(f)?;
    let t0 = Instant::now();
    let (b, ip, n) = (bundle.to_path_buf(), f.sender().ipv4(), f.receivers().len());
    let sender = f.sender().spawn_in(move || -> anyhow::Result<()> {
        let bundle = metalcast_image::Bundle::open(&b)?;
        let cfg = SenderConfig {
            local: ip,
            rate: (rate_mbit > 0).then_some(rate_mbit * 125_000),
            expected_receivers: n,
            deadline: Some(Duration::from_secs(900)),
            ..Default::default()
        };
        Sender::new(&spec, &bundle, cfg)?.run(&mut |_| {})?;
        Ok(())
    })?;
    let want = manifest.total_size();
    for h in rx {
        let got = h.join().map_err(|_| anyhow::anyhow!("receiver panicked"))??;
        anyhow::ensure!(got == want, "a receiver got {got} of {want} bytes");
    }
    let secs = t0.elapsed().as_secs_f64();
    sender.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    Ok((secs, tx_bytes(f)? - tx0))
}

/// Runs the comparison.
pub fn run(cfg: &Config) -> anyhow::Result<Vec<Row>> {
    metalcast_fabric::bpf_capable().context("this benchmark builds a namespace fabric")?;
    let dir = tempfile::tempdir_in(&cfg.scratch)?;
    let bundle = make_image(dir.path(), cfg.size_mib)?;
    let image_bytes = std::fs::metadata(&bundle)?.len();
    // Hosts segment GSO batches in software like NICs (the fabric's default).
    let f = Fabric::builder().receivers(cfg.receivers).mtu(cfg.mtu).build()?;
    let mut rows = Vec::new();
    for &loss in &cfg.losses {
        for h in f.receivers() {
            h.set_loss(Flow::ToHost, LossConfig::random_drop_percent(loss).udp_only())?;
        }
        let mut results: [(Vec<f64>, Vec<f64>, usize); 2] = Default::default();
        for rep in 0..cfg.reps {
            let port = 40000 + (rep as u16) * 10;
            for (i, name) in ["udpcast", "metalcast"].into_iter().enumerate() {
                let run = if i == 0 {
                    run_udpcast(&f, &bundle, port)
                } else {
                    run_metalcast(&f, &bundle, port + 4, cfg.rate_mbit, cfg.mtu)
                };
                match run {
                    Ok((t, w)) => {
                        eprintln!("loss {loss}% rep {rep}: {name} {t:.2}s wire {:.3}", w as f64 / image_bytes as f64);
                        results[i].0.push(t);
                        results[i].1.push(w as f64 / image_bytes as f64);
                    }
                    Err(e) => {
                        eprintln!("loss {loss}% rep {rep}: {name} FAILED: {e:#}");
                        results[i].2 += 1;
                    }
                }
            }
        }
        for (name, (secs, wire, failures)) in ["udpcast", "metalcast"].iter().zip(results) {
            if secs.is_empty() {
                eprintln!("every {name} run failed at {loss}% loss: no row");
                continue;
            }
            let secs = Summary::of(&secs);
            rows.push(Row {
                contender: (*name).into(),
                loss_percent: loss,
                aggregate_mb_s: cfg.receivers as f64 * image_bytes as f64 / secs.median / 1e6,
                secs,
                wire_ratio: Summary::of(&wire).median,
                failures,
            });
        }
    }
    Ok(rows)
}

/// Markdown table with metalcast's ratio to udpcast at each loss rate.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| loss | contender | median s | spread | aggregate MB/s | vs udpcast | wire bytes / image | failed runs |\n|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let base = rows.iter().find(|b| b.loss_percent == r.loss_percent && b.contender == "udpcast").unwrap_or(r);
        s += &format!(
            "| {}% | {} | {:.2} | {:.0}% | {:.0} | {} | {:.3} | {} |\n",
            r.loss_percent,
            r.contender,
            r.secs.median,
            r.secs.spread() * 100.0,
            r.aggregate_mb_s,
            if std::ptr::eq(base, r) && r.contender != "udpcast" {
                "n/a (udpcast failed)".to_string()
            } else {
                format!("{:.2}x", r.aggregate_mb_s / base.aggregate_mb_s)
            },
            r.wire_ratio,
            r.failures
        );
    }
    s
}
