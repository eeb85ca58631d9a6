//! The XDP/AF_XDP receive path on a real namespace fabric (root): receivers
//! on the fast path get byte-identical images at 0% and 5% loss, and symbols
//! of blocks they finished are dropped in the kernel; `auto` falls back to
//! the socket with a clear reason when XDP cannot be used.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use metalcast_ebpf::AttachMode;
use metalcast_fabric::{Fabric, Flow, LossConfig, skip_unless_root};
use metalcast_image::{Bundle, Manifest, spec_from_inputs};
use metalcast_node::rx_path::{self, RxPath, RxReport, RxSource, XdpSource};
use metalcast_transport::layout::Layout;
use metalcast_transport::{
    MemorySink, Receiver, ReceiverConfig, ReceiverSummary, Sender, SenderConfig, SessionKey, SessionSpec,
};

const MIB: usize = 1 << 20;

/// A 10 MiB bundle (mixed random and compressible "kernel", sparse "disk");
/// returns its path and each part's blake3.
fn make_bundle(dir: &Path) -> (PathBuf, Vec<[u8; 32]>) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let kernel: Vec<u8> =
        (0..6 * MIB).map(|i| if (i / 8192) % 3 == 0 { (i / 8192) as u8 } else { next() as u8 }).collect();
    std::fs::write(dir.join("kernel"), &kernel).unwrap();
    let mut disk = vec![0u8; 4 * MIB];
    for b in &mut disk[MIB..3 * MIB] {
        *b = next() as u8;
    }
    std::fs::write(dir.join("disk"), &disk).unwrap();
    let spec =
        spec_from_inputs("xdp", Some(dir.join("kernel")), vec![], "ro".into(), None, Some(dir.join("disk")), None)
            .unwrap();
    let out = dir.join("b.mcb");
    metalcast_image::build(&spec, &out, None, &indicatif::ProgressBar::hidden()).unwrap();
    (out, vec![*blake3::hash(&kernel).as_bytes(), *blake3::hash(&disk).as_bytes()])
}

fn session(f: &Fabric, manifest: &Manifest, port: u16) -> SessionSpec {
    SessionSpec {
        session_id: 0x0d9e_0000 + std::process::id() + u32::from(port),
        group: Ipv4Addr::new(239, 77, 4, 1),
        port,
        sender: SocketAddrV4::new(f.sender().ipv4(), port + 1),
        key: SessionKey::generate(),
        symbol_size: SessionSpec::symbol_size_for_mtu(1500).unwrap(),
        root_hash: manifest.root_hash.clone(),
    }
}

#[test]
fn xdp_receivers_get_identical_images_and_drop_finished_blocks_in_the_kernel() {
    skip_unless_root!(bpf);
    let dir = tempfile::tempdir().unwrap();
    let (bundle, hashes) = make_bundle(dir.path());
    let manifest: Arc<Manifest> = Arc::new(Bundle::open(&bundle).unwrap().manifest);
    let f = Fabric::builder().receivers(3).build().expect("build fabric");
    // r0: the real `metalcast-node receive` (rx path auto: XDP, native since
    // veth has it), no loss. r1: generic XDP (library), 5% loss. r2: socket path, 20% loss, so the
    // sender repairs every block and r0 keeps getting symbols of blocks it has.
    let plan = [(RxPath::Xdp, 0.0), (RxPath::Xdp, 5.0), (RxPath::Socket, 20.0)];
    for (h, (_, loss)) in f.receivers().iter().zip(plan) {
        h.set_loss(Flow::ToHost, LossConfig::random_drop_percent(loss).udp_only()).unwrap();
    }
    let spec = session(&f, &manifest, 47100);
    let nblocks = Layout::new(&manifest, spec.symbol_size).blocks.len() as u32;
    assert!(nblocks >= 8, "enough blocks to see early drops: {nblocks}");

    // r0 as a process, with its manifest, session and output in a temp dir.
    let files = tempfile::tempdir().unwrap();
    let (mpath, spath, opath) = (files.path().join("m"), files.path().join("s.json"), files.path().join("out"));
    std::fs::write(&mpath, Bundle::open(&bundle).unwrap().signed_manifest().to_bytes()).unwrap();
    std::fs::write(&spath, serde_json::to_vec(&spec).unwrap()).unwrap();
    let r0 = &f.receivers()[0];
    let node = r0
        .command(env!("CARGO_BIN_EXE_metalcast-node"))
        .args(["receive", "--allow-unsigned", "--json", "--quiet", "--timeout", "15", "--id", "1", "--iface-addr"])
        .arg(r0.ipv4().to_string())
        .arg("--manifest")
        .arg(&mpath)
        .arg("--session")
        .arg(&spath)
        .arg("--output")
        .arg(&opath)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start metalcast-node");

    let rx: Vec<_> = f
        .receivers()
        .iter()
        .zip(plan)
        .enumerate()
        .skip(1)
        .map(|(i, (h, (path, _)))| {
            let (spec, m, ip, hashes) = (spec.clone(), Arc::clone(&manifest), h.ipv4(), hashes.clone());
            h.spawn_in(move || -> (ReceiverSummary, RxReport) {
                let mut source = if i == 1 {
                    // Generic (skb) XDP, as on NICs without a native driver hook.
                    RxSource::Xdp(Box::new(XdpSource::open_mode(&spec, nblocks, ip, AttachMode::Generic).expect("XDP")))
                } else {
                    rx_path::open(path, &spec, nblocks, ip).expect("receive path")
                };
                let cfg = ReceiverConfig {
                    id: i as u64 + 1,
                    iface: ip,
                    idle_timeout: Duration::from_secs(15),
                    ..Default::default()
                };
                let rx = Receiver::with_source(&spec, &m, cfg, Box::new(&mut source)).expect("receiver");
                let mut sink = MemorySink::new(&m);
                let s = rx.run(&mut sink, &mut |_| {}).expect("receive completes");
                for (p, want) in sink.parts.iter().zip(&hashes) {
                    assert_eq!(blake3::hash(p).as_bytes(), want, "receiver {i} ({path:?}): part differs");
                }
                (s, source.report())
            })
            .unwrap()
        })
        .collect();
    let (bundle_path, ip, n) = (bundle.clone(), f.sender().ipv4(), plan.len());
    let sender = f
        .sender()
        .spawn_in(move || {
            let b = Bundle::open(&bundle_path).unwrap();
            let cfg = SenderConfig {
                local: ip,
                rate: Some(50_000_000),
                expected_receivers: n,
                deadline: Some(Duration::from_secs(60)),
                ..Default::default()
            };
            Sender::new(&spec, &b, cfg).unwrap().run(&mut |_| {}).unwrap()
        })
        .unwrap();
    let node = node.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&node.stderr);
    assert!(node.status.success(), "metalcast-node failed: {stderr}");
    let json: serde_json::Value = serde_json::from_slice(&node.stdout).expect("--json output");
    let results: Vec<(ReceiverSummary, RxReport)> =
        rx.into_iter().map(|h| h.join().expect("receiver thread")).collect();
    let sender = sender.join().expect("sender thread");
    assert_eq!(sender.done(), n, "every receiver done: {:?}", sender.receivers);
    assert!(sender.repair_packets > 0, "20% loss on r2 needs repairs");

    // r1 (generic XDP) and r2 (socket), through the library.
    for ((s, report), (i, (path, loss))) in results.iter().zip(plan.into_iter().enumerate().skip(1)) {
        eprintln!(
            "r{i} {path:?} at {loss}%: received {} redundant {} loss est {:.3}: {report:?}",
            s.received, s.redundant, s.loss_estimate
        );
        if path == RxPath::Socket {
            assert_eq!(report.path, "socket");
            continue;
        }
        assert_eq!(report.path, "xdp");
        let x = report.xdp.as_ref().expect("XDP counters");
        assert_eq!(x.mode, "generic");
        let c = x.session;
        assert!(c.redirected > 0, "r{i}: nothing redirected to AF_XDP: {c:?}");
        assert_eq!(c.seen, c.redirected + c.early_dropped + c.passed, "r{i}: counters add up");
        assert_eq!(c.passed, 0, "r{i}: every rx queue has an AF_XDP socket, nothing should be passed");
        assert!(s.received <= c.redirected, "r{i}: the receiver got its packets through AF_XDP");
        assert_eq!(x.mark_errors, 0);
    }

    // r0, the real node runtime: parts byte for byte, and its JSON summary.
    eprintln!("r0 (metalcast-node): {json}");
    let written: Vec<PathBuf> =
        json["files"].as_array().expect("files").iter().map(|p| PathBuf::from(p.as_str().unwrap())).collect();
    assert_eq!(written.len(), hashes.len());
    for (p, want) in written.iter().zip(&hashes) {
        assert_eq!(blake3::hash(&std::fs::read(p).unwrap()).as_bytes(), want, "node r0: {} differs", p.display());
    }
    let rx_json = &json["rx_path"];
    assert_eq!(rx_json["path"], "xdp", "r0 should take the XDP path as root: {stderr}");
    assert_eq!(rx_json["xdp"]["mark_errors"], 0);
    let c = |k: &str| rx_json["xdp"]["session"][k].as_u64().expect("counter");
    let (seen, redirected, early_dropped, passed) = (c("seen"), c("redirected"), c("early_dropped"), c("passed"));
    assert_eq!(seen, redirected + early_dropped + passed, "r0: counters add up");
    assert_eq!(passed, 0, "r0: nothing passed to the stack");
    let received = json["summary"]["received"].as_u64().unwrap();
    assert!(received > 0 && received <= redirected, "r0 got its packets through AF_XDP: {received} of {redirected}");
    // r0 lost nothing, so the repair symbols the sender sent for r1 and r2
    // reached it after it had finished those blocks: dropped in the kernel.
    assert!(early_dropped > 0, "r0 early-dropped nothing");
    // Early drops are not mistaken for loss.
    let loss = json["summary"]["loss_estimate"].as_f64().unwrap();
    assert!(loss < 0.02, "r0 loss estimate {loss}");
}

#[test]
fn auto_falls_back_to_the_socket_with_a_reason() {
    // Needs no privileges: every reason here is found before anything is loaded.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k"), vec![7u8; 4096]).unwrap();
    let spec = spec_from_inputs("fb", Some(dir.path().join("k")), vec![], "ro".into(), None, None, None).unwrap();
    let out = dir.path().join("b.mcb");
    metalcast_image::build(&spec, &out, None, &indicatif::ProgressBar::hidden()).unwrap();
    let m = Bundle::open(&out).unwrap().manifest;
    let mut spec = SessionSpec {
        session_id: 1,
        group: Ipv4Addr::LOCALHOST,
        port: 0,
        sender: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9),
        key: SessionKey::generate(),
        symbol_size: SessionSpec::symbol_size_for_mtu(1500).unwrap(),
        root_hash: m.root_hash.clone(),
    };
    let RxSource::Socket(_, Some(why)) = rx_path::open(RxPath::Auto, &spec, 1, Ipv4Addr::LOCALHOST).unwrap() else {
        panic!("auto must fall back for a unicast group")
    };
    assert!(why.contains("not multicast"), "{why}");
    let err = rx_path::open(RxPath::Xdp, &spec, 1, Ipv4Addr::LOCALHOST).expect_err("xdp must not fall back");
    assert!(err.to_string().contains("not multicast"), "{err}");
    assert!(matches!(rx_path::open(RxPath::Socket, &spec, 1, Ipv4Addr::LOCALHOST).unwrap(), RxSource::Socket(_, None)));

    // Jumbo symbols do not fit an AF_XDP frame (checked before privileges).
    spec.group = Ipv4Addr::new(239, 77, 4, 9);
    spec.symbol_size = SessionSpec::symbol_size_for_mtu(9000).unwrap();
    let err = rx_path::open(RxPath::Xdp, &spec, 1, Ipv4Addr::UNSPECIFIED).expect_err("jumbo");
    assert!(err.to_string().contains("AF_XDP frame"), "{err}");
}

#[test]
fn unprivileged_node_falls_back_and_says_why() {
    skip_unless_root!();
    // The real binary, run as nobody without capabilities inside a fabric host:
    // it must log the fallback reason and then simply wait on the socket path.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k"), vec![7u8; 4096]).unwrap();
    let bspec = spec_from_inputs("fb", Some(dir.path().join("k")), vec![], "ro".into(), None, None, None).unwrap();
    let out = dir.path().join("b.mcb");
    metalcast_image::build(&bspec, &out, None, &indicatif::ProgressBar::hidden()).unwrap();
    let b = Bundle::open(&out).unwrap();
    let f = Fabric::builder().receivers(1).build().expect("build fabric");
    let spec = session(&f, &b.manifest, 47200);
    let files = tempfile::Builder::new().prefix("mc-xdp-").tempdir_in("/tmp").unwrap();
    let (mpath, spath, opath) = (files.path().join("m"), files.path().join("s.json"), files.path().join("out"));
    std::fs::write(&mpath, b.signed_manifest().to_bytes()).unwrap();
    std::fs::write(&spath, serde_json::to_vec(&spec).unwrap()).unwrap();
    std::fs::create_dir(&opath).unwrap();
    Command::new("chown").args(["-R", "nobody"]).arg(files.path()).status().unwrap();
    std::fs::set_permissions(files.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let r0 = &f.receivers()[0];
    let o = r0
        .command("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .arg(env!("CARGO_BIN_EXE_metalcast-node"))
        .args(["receive", "--allow-unsigned", "--timeout", "1", "--rx-path", "auto", "--iface-addr"])
        .arg(r0.ipv4().to_string())
        .arg("--manifest")
        .arg(&mpath)
        .arg("--session")
        .arg(&spath)
        .arg("--output")
        .arg(&opath)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "no sender: the socket path times out (exit 4); stderr: {stderr}");
    assert!(
        stderr.contains("receive path: socket (XDP unavailable: not privileged: needs CAP_NET_ADMIN and CAP_BPF"),
        "no clear fallback reason in: {stderr}"
    );

    // And `--rx-path xdp` refuses instead of falling back.
    let o = r0
        .command("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .arg(env!("CARGO_BIN_EXE_metalcast-node"))
        .args(["receive", "--allow-unsigned", "--timeout", "1", "--rx-path", "xdp", "--iface-addr"])
        .arg(r0.ipv4().to_string())
        .arg("--manifest")
        .arg(&mpath)
        .arg("--session")
        .arg(&spath)
        .arg("--output")
        .arg(&opath)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("XDP receive path unavailable: not privileged"), "{stderr}");
}
