//! VM mode and seed mode on a namespace fabric (root, CAP_BPF, QEMU): a
//! real agent A receives a bundle with a small `vm-disk` (sparse, not
//! bootable: SeaBIOS finding no bootable device is fine) into memory with
//! hand-over `vm`; a QEMU process runs, as the agent's child inside the
//! agent's namespace, on the disk memfd, with `-nic none`. While it runs, A
//! refuses to seed an image it does not hold, then serves the image it holds
//! as the sender of a new session to a plain receiver B whose link loses 5%
//! of UDP packets (so A's repair symbols are needed); B's image matches the
//! manifest. A second deployment stops the VM (reaped, its exit reported)
//! and starts a new one, which exits when the agent is killed.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use metalcast_fabric::{Fabric, Flow, LossConfig, skip_unless_root};
use metalcast_image::{Bundle, Manifest, spec_from_inputs};
use metalcast_runtime_api::server::{NodeRecord, RuntimeApi};
use metalcast_runtime_api::{Action, Handover, Phase, Report, Seed, Status, Target};
use metalcast_transport::{MemorySink, Receiver, ReceiverConfig, SessionSpec};

const NODE: &str = env!("CARGO_BIN_EXE_metalcast-node");
const MIB: usize = 1 << 20;

/// An 8 MiB sparse raw disk with 2 MiB of data in two places; returns its bytes.
fn vm_disk(path: &Path) -> Vec<u8> {
    let mut disk = vec![0u8; 8 * MIB];
    let mut x = 0x6a09_e667_f3bc_c908u64;
    for (start, len) in [(0, MIB), (5 * MIB, MIB)] {
        for b in &mut disk[start..start + len] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    std::fs::write(path, &disk).unwrap();
    disk
}

/// The NUL-separated arguments of process `pid`.
fn cmdline(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// Field 4 of `/proc/<pid>/stat`: the parent pid.
fn ppid(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit(") ").next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn netns(pid: &str) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap()
}

/// Checks every chunk of `parts` against the manifest: stored chunks by
/// BLAKE3, holes all zero.
fn verify_against_manifest(m: &Manifest, parts: &[Vec<u8>]) {
    for i in 0..m.chunks.len() {
        let (part, off) = m.locate(i).unwrap();
        let pi = m.parts.iter().position(|p| p.name == part.name).unwrap();
        let bytes = &parts[pi][off as usize..off as usize + m.chunks[i].len as usize];
        match m.chunk_hash(i).unwrap() {
            Some(h) => assert_eq!(blake3::hash(bytes).as_bytes(), &h, "chunk {i}"),
            None => assert!(bytes.iter().all(|b| *b == 0), "hole {i}"),
        }
    }
}

/// Waits for `node`'s report of `phase` for `instruction` (failed or not).
fn wait_report(api: &RuntimeApi, node: &str, instruction: u64, phase: Phase) -> (NodeRecord, Report) {
    let r = wait_until(Duration::from_secs(90), &format!("{phase:?} report of {instruction}"), || {
        api.node(node).filter(|r| r.reports.iter().any(|x| x.instruction == instruction && x.phase == phase))
    });
    let rep = r.reports.iter().find(|x| x.instruction == instruction && x.phase == phase).unwrap().clone();
    (r, rep)
}

#[test]
fn vm_handover_runs_qemu_without_network_seeds_the_image_and_reaps_the_vm() {
    skip_unless_root!(bpf);
    if let Err(reason) = metalcast_fabric::qemu::qemu() {
        assert!(!metalcast_fabric::require_privileged(), "cannot run: {reason}");
        eprintln!("SKIP vm_handover_runs_qemu_without_network_seeds_the_image_and_reaps_the_vm: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = vm_disk(&d.join("vm.img"));
    let (key, pubkey) = keypair(d);
    let vm_args = vec!["-m".to_string(), "64".to_string()];
    let spec = spec_from_inputs("vm-test", None, vec![], String::new(), None, None, Some((d.join("vm.img"), vm_args)))
        .unwrap();
    let bundle_path = d.join("vm.mcb");
    metalcast_image::build(&spec, &bundle_path, Some(&key), &indicatif::ProgressBar::hidden()).unwrap();
    let bundle = Bundle::open(&bundle_path).unwrap();

    let f = Fabric::builder().receivers(2).build().unwrap();
    let (a, b) = (&f.receivers()[0], &f.receivers()[1]);
    let port = 18090;
    let server = Server::start(f.sender(), port, RuntimeApi::new());
    let agent = Killed(
        a.command(NODE)
            .args(["agent", "--control-plane", &format!("http://{}:{port}", f.sender().ipv4())])
            .args(["--iface", a.ifname(), "--addr", &a.ipv4().to_string(), "--poll-wait", "5", "--key"])
            .arg(&pubkey)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let agent_pid = agent.0.id();
    let ma = a.mac_string();
    wait_checkins(&server.api, &ma, 1, Duration::from_secs(30));

    let spec = session(&bundle, f.sender().ipv4(), 1);
    let tx = start_sender(f.sender(), &bundle_path, &spec, 1, 200);
    let i = server.api.push(&ma, deploy(&bundle, &spec, Target::Memory, Handover::Vm, "")).unwrap();
    assert_eq!(tx.join().unwrap().done(), 1);
    let r = wait_phase(&server.api, &ma, i, Phase::Handover, Duration::from_secs(60));
    let h = r.reports.iter().find(|x| x.instruction == i && x.phase == Phase::Handover).unwrap();
    let qemu = h.data["qemu_pid"].as_u64().unwrap_or_else(|| panic!("no qemu pid: {h:?}")) as u32;

    // QEMU runs as the agent's child, in the agent's namespace (not the host's), without a NIC,
    // with the bundle's arguments, on the vm-disk memfd reopened through the agent's /proc entry.
    assert_eq!(ppid(qemu), agent_pid);
    assert_eq!(netns(&qemu.to_string()), netns(&agent_pid.to_string()));
    assert_ne!(netns(&qemu.to_string()), netns("self"), "QEMU must not run in the host's namespace");
    let args = cmdline(qemu);
    assert!(args.windows(2).any(|w| w == ["-nic", "none"]), "{args:?}");
    assert!(args.windows(2).any(|w| w == ["-m", "64"]), "{args:?}");
    let drive = format!("file=/proc/{agent_pid}/fd/");
    assert!(args.iter().any(|x| x.starts_with(&drive) && x.ends_with(",format=raw,if=virtio")), "{args:?}");
    // QEMU opens its drive while it starts: poll until it holds the memfd.
    wait_until(Duration::from_secs(30), "QEMU to open the vm-disk memfd", || {
        std::fs::read_dir(format!("/proc/{qemu}/fd"))
            .ok()?
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .find(|l| l.to_string_lossy().contains("memfd:metalcast-vm-disk"))
    });

    // Seed mode, while the VM runs. A seed session: A's address as the sender, a new group and key.
    let port2 = 30000 + (std::process::id() % 10000) as u16 * 2;
    let seed_session = |root: &str| {
        SessionSpec::new(
            root,
            std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(239, 77, 6, 2), port2),
            std::net::SocketAddrV4::new(a.ipv4(), port2 + 1),
            1500,
        )
        .unwrap()
    };
    let seed = |session: SessionSpec| {
        Action::Seed(Seed { session, rate_bytes_per_sec: 25_000_000, expected_receivers: 1, join_timeout_secs: 60 })
    };
    // An image A does not hold: refused (class 2), and what it holds stays.
    let i_other = server.api.push(&ma, seed(seed_session(&"00".repeat(32)))).unwrap();
    let (_, rep) = wait_report(&server.api, &ma, i_other, Phase::Seed);
    assert_eq!((rep.status, rep.exit_code), (Status::Failed, 2), "{rep:?}");
    assert!(rep.detail.contains("does not hold"), "{}", rep.detail);

    // The image A holds, to B over a lossy link.
    b.set_loss(Flow::ToHost, LossConfig { drop_ppm: 50_000, udp_only: true, ..LossConfig::none() }).unwrap();
    let sspec = seed_session(&bundle.manifest.root_hash);
    let (m, rspec, b_addr) = (bundle.manifest.clone(), sspec.clone(), b.ipv4());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let rx = b
        .spawn_in(move || {
            let cfg = ReceiverConfig { iface: b_addr, idle_timeout: Duration::from_secs(60), ..Default::default() };
            let r = Receiver::new(&rspec, &m, cfg).unwrap();
            ready_tx.send(()).unwrap();
            let mut sink = MemorySink::new(&m);
            let s = r.run(&mut sink, &mut |_| {}).unwrap();
            (s, sink.parts)
        })
        .unwrap();
    ready_rx.recv_timeout(Duration::from_secs(10)).expect("receiver B joined");
    let i_seed = server.api.push(&ma, seed(sspec)).unwrap();
    let (got, parts) = rx.join().unwrap();
    verify_against_manifest(&bundle.manifest, &parts);
    let vm_part = bundle.manifest.parts.iter().position(|p| p.name == "vm-disk").unwrap();
    assert_eq!(parts[vm_part], disk, "B's vm-disk is the image");
    let dropped = b.loss_stats(Flow::ToHost).unwrap().unwrap().dropped;
    assert!(dropped > 0, "the loss injector dropped nothing");
    let (_, rep) = wait_report(&server.api, &ma, i_seed, Phase::Seed);
    assert_eq!(rep.status, Status::Ok, "{rep:?}");
    let repair = rep.data["repair_packets"].as_u64().unwrap();
    assert!(repair > 0, "B lost {dropped} packets but A sent no repair symbols: {rep:?}");
    assert_eq!(rep.data["receivers"][0]["state"], "done", "{rep:?}");
    eprintln!("seed: {}; B: {got:?}", rep.detail);
    assert!(Path::new(&format!("/proc/{qemu}")).exists(), "the VM ran on while A seeded");

    // A new deployment replaces the VM: the agent stops it, reaps it and reports its exit, then starts
    // the new one.
    let spec2 = session(&bundle, f.sender().ipv4(), 3);
    let tx = start_sender(f.sender(), &bundle_path, &spec2, 1, 200);
    let i2 = server.api.push(&ma, deploy(&bundle, &spec2, Target::Memory, Handover::Vm, "")).unwrap();
    assert_eq!(tx.join().unwrap().done(), 1);
    let (_, e) = wait_report(&server.api, &ma, i, Phase::VmExit);
    assert_eq!(e.data["qemu_pid"].as_u64(), Some(u64::from(qemu)), "{e:?}");
    assert!(!Path::new(&format!("/proc/{qemu}")).exists(), "the first QEMU was reaped");
    let r = wait_phase(&server.api, &ma, i2, Phase::Handover, Duration::from_secs(60));
    let h = r.reports.iter().find(|x| x.instruction == i2 && x.phase == Phase::Handover).unwrap();
    let qemu2 = h.data["qemu_pid"].as_u64().unwrap() as u32;
    assert_eq!(ppid(qemu2), agent_pid);

    // The VM does not outlive the agent.
    drop(agent);
    wait_until(Duration::from_secs(30), "the second QEMU to exit with the agent", || {
        // Gone, or a zombie of whoever adopted it.
        match std::fs::read_to_string(format!("/proc/{qemu2}/stat")) {
            Err(_) => Some(()),
            Ok(stat) => (stat.rsplit(") ").next()?.starts_with('Z')).then_some(()),
        }
    });
}
