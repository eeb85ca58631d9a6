//! `metalcast demo`: the README's main job. Stands up a namespace fabric on
//! this machine (a bridge with IGMP snooping, a sender and N nodes), builds a
//! signed sample bundle, starts the real node runtime (`metalcast-node
//! receive`) in every node, multicasts the bundle to all of them with live
//! progress, checks every node's files against the originals, prints the
//! summary, and removes everything it made.

use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use metalcast_fabric::{Fabric, Flow, LossConfig};
use metalcast_image::{Bundle, SecretKey};
use metalcast_transport::{Sender, SenderConfig, SessionSpec};

/// Arguments of `metalcast demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Namespace nodes to deploy to.
    #[arg(long, default_value_t = 8)]
    pub nodes: usize,
    /// Size of the sample disk image, MiB (a quarter of it is data, the rest holes).
    #[arg(long, default_value_t = 256)]
    pub disk_mib: u64,
    /// Random packet loss on every node's link, percent (injected by eBPF).
    #[arg(long, default_value_t = 1.0)]
    pub loss: f64,
    /// Send rate cap, Mbit/s.
    #[arg(long, default_value_t = 800)]
    pub rate_mbit: u64,
    /// Keep the work directory (bundle, keys, node outputs) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
}

fn sample_inputs(dir: &Path, disk_mib: u64) -> anyhow::Result<(PathBuf, PathBuf)> {
    let kernel = dir.join("vmlinuz");
    let host_kernel = std::fs::read_dir("/boot")
        .ok()
        .and_then(|d| d.filter_map(Result::ok).map(|e| e.path()).find(|p| p.to_string_lossy().contains("vmlinuz")));
    match host_kernel.and_then(|k| std::fs::copy(k, &kernel).ok()) {
        Some(_) => {}
        None => std::fs::write(&kernel, pseudo_random(8 << 20, 1)).context("writing a sample kernel")?,
    }
    let disk = dir.join("disk.raw");
    let f = std::fs::File::create(&disk).context("creating the sample disk")?;
    f.set_len(disk_mib << 20)?;
    let islands = 4u64;
    let island = (disk_mib << 20) / 4 / islands;
    for i in 0..islands {
        f.write_all_at(&pseudo_random(island as usize, i + 2), i * (disk_mib << 20) / islands)?;
    }
    Ok((kernel, disk))
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn node_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating metalcast")?;
    let p = me.with_file_name("metalcast-node");
    anyhow::ensure!(p.exists(), "{} not found: build the workspace (cargo build --release)", p.display());
    Ok(p)
}

fn hash_file(p: &Path) -> anyhow::Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    let mut f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    std::io::copy(&mut f, &mut h).with_context(|| format!("hashing {}", p.display()))?;
    Ok(h.finalize())
}

/// Runs the demo.
pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    metalcast_fabric::bpf_capable().context("the demo builds a network fabric on this machine: run it as root")?;
    let node_bin = node_binary()?;
    let work = tempfile::Builder::new().prefix("metalcast-demo-").tempdir_in("/var/tmp")?;
    let dir = work.path();
    eprintln!("== work directory {}", dir.display());

    eprintln!("== building a signed sample bundle: a kernel and a {} MiB sparse disk", a.disk_mib);
    let (kernel, disk) = sample_inputs(dir, a.disk_mib)?;
    let key = SecretKey::generate();
    key.save(&dir.join("demo"))?;
    let spec = metalcast_image::spec_from_inputs(
        "demo",
        Some(kernel.clone()),
        vec![],
        "console=ttyS0".into(),
        None,
        Some(disk.clone()),
        None,
    )?;
    let bundle_path = dir.join("demo.mcb");
    let built = metalcast_image::build(&spec, &bundle_path, Some(&key), &ProgressBar::hidden())?;
    eprintln!(
        "   {} of parts -> {} MiB bundle ({} chunks, {} holes)",
        built.input_bytes >> 20,
        built.bundle_bytes >> 20,
        built.chunks,
        built.holes
    );
    let bundle = Bundle::open(&bundle_path)?;

    eprintln!("== fabric: bridge with IGMP snooping, a sender and {} nodes, {}% loss per node link", a.nodes, a.loss);
    let fabric = Fabric::builder().receivers(a.nodes).build().context("building the namespace fabric")?;
    for n in fabric.receivers() {
        n.set_loss(Flow::ToHost, LossConfig::random_drop_percent(a.loss).udp_only())?;
    }
    let session = SessionSpec::new(
        &bundle.manifest.root_hash,
        SocketAddrV4::new(Ipv4Addr::new(239, 77, 0, 1), 47000),
        SocketAddrV4::new(fabric.sender().ipv4(), 47001),
        1500,
    )?;
    let session_path = dir.join("session.json");
    std::fs::write(&session_path, serde_json::to_vec_pretty(&session)?)?;
    let manifest_path = dir.join("demo.mcm");
    std::fs::write(&manifest_path, bundle.signed_manifest().to_bytes())?;

    eprintln!("== starting metalcast-node receive on every node");
    let mut nodes: Vec<(String, PathBuf, Child)> = Vec::new();
    for (i, n) in fabric.receivers().iter().enumerate() {
        let out = dir.join(format!("node{i}"));
        let child = n
            .command(&node_bin)
            .args(["receive", "--quiet", "--json", "--id", &(i + 1).to_string()])
            .arg("--manifest")
            .arg(&manifest_path)
            .arg("--session")
            .arg(&session_path)
            .arg("--key")
            .arg(dir.join("demo.pub"))
            .arg("--iface-addr")
            .arg(n.ipv4().to_string())
            .arg("--output")
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting metalcast-node")?;
        nodes.push((n.name().to_string(), out, child));
    }

    eprintln!("== multicasting to {} nodes", a.nodes);
    let multi = MultiProgress::new();
    if !std::io::stderr().is_terminal() {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} blocks {msg}")
        .expect("static template")
        .progress_chars("=> ");
    let bars: Vec<ProgressBar> = (0..a.nodes)
        .map(|i| multi.add(ProgressBar::new(0).with_style(style.clone()).with_prefix(format!("node{i}"))))
        .collect();
    let (ip, n_nodes, rate, bp) = (fabric.sender().ipv4(), a.nodes, a.rate_mbit, bundle_path.clone());
    let sess = session.clone();
    let t0 = Instant::now();
    let summary = fabric
        .sender()
        .run_in(move || -> anyhow::Result<_> {
            let bundle = Bundle::open(&bp)?;
            let cfg = SenderConfig {
                local: ip,
                rate: Some(rate * 125_000),
                expected_receivers: n_nodes,
                join_timeout: Duration::from_secs(20),
                deadline: Some(Duration::from_secs(600)),
                ..Default::default()
            };
            let s = Sender::new(&sess, &bundle, cfg)?.run(&mut |p| {
                for r in &p.receivers {
                    if let Some(b) = bars.get(r.id as usize - 1) {
                        b.set_length(p.total_blocks as u64);
                        b.set_position(u64::from(r.blocks_done));
                        b.set_message(r.state.clone());
                    }
                }
            })?;
            for b in &bars {
                b.finish();
            }
            Ok(s)
        })
        .context("entering the sender's namespace")??;
    let wall = t0.elapsed();
    multi.clear().ok();

    eprintln!("== checking every node's files against the originals");
    let want_kernel = hash_file(&kernel)?;
    let want_disk = hash_file(&disk)?;
    let mut bad = 0;
    println!("{:>8} {:>8} {:>10} {:>9} {:>9} {:>7}  RESULT", "NODE", "SECS", "PACKETS", "REJECTED", "DECODED", "LOSS%");
    for (name, out, child) in nodes {
        let o = child.wait_with_output()?;
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        let s = &report["summary"];
        let ok = o.status.success()
            && hash_file(&out.join("kernel")).ok() == Some(want_kernel)
            && hash_file(&out.join("disk")).ok() == Some(want_disk);
        if !ok {
            bad += 1;
        }
        println!(
            "{:>8} {:>8.2} {:>10} {:>9} {:>9} {:>7.2}  {}",
            name,
            s["secs"].as_f64().unwrap_or(f64::NAN),
            s["received"].as_u64().unwrap_or(0),
            s["rejected"]["bad_mac"].as_u64().unwrap_or(0) + s["rejected"]["malformed"].as_u64().unwrap_or(0),
            s["decoded_blocks"].as_u64().unwrap_or(0),
            s["loss_estimate"].as_f64().unwrap_or(0.0) * 100.0,
            if ok {
                "byte-identical".to_string()
            } else {
                format!("FAILED ({}) {}", o.status, String::from_utf8_lossy(&o.stderr).trim())
            }
        );
    }
    let image = summary.image_bytes as f64;
    println!(
        "\n{} nodes got a {:.0} MiB image ({:.0} MiB of parts) in {:.2}s: {:.0} MB/s aggregate, wire/image {:.3}, {} repair symbols for {} source",
        a.nodes,
        image / (1 << 20) as f64,
        built.input_bytes as f64 / (1 << 20) as f64,
        wall.as_secs_f64(),
        a.nodes as f64 * image / wall.as_secs_f64() / 1e6,
        summary.wire_ratio,
        summary.repair_packets,
        summary.source_packets,
    );
    drop(fabric);
    if a.keep {
        eprintln!("== kept {}", work.keep().display());
    }
    if bad > 0 {
        bail!("{bad} of {} nodes did not end with a byte-identical image", a.nodes);
    }
    Ok(())
}
