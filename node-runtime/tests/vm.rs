//! VM mode on a namespace fabric (root, QEMU): a real agent receives a
//! bundle with a small `vm-disk` (sparse, not bootable: SeaBIOS finding no
//! bootable device is fine) into memory with hand-over `vm`; a QEMU process
//! runs, as the agent's child inside the agent's namespace, on the disk
//! memfd, with `-nic none`; when it exits the agent reaps it and reports it.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use metalcast_fabric::{Fabric, skip_unless_root};
use metalcast_image::{Bundle, spec_from_inputs};
use metalcast_runtime_api::server::RuntimeApi;
use metalcast_runtime_api::{Handover, Phase, Target};

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

#[test]
fn vm_handover_runs_qemu_without_network_and_reaps_it() {
    skip_unless_root!(bpf);
    if let Err(reason) = metalcast_fabric::qemu::qemu() {
        assert!(!metalcast_fabric::require_privileged(), "cannot run: {reason}");
        eprintln!("SKIP vm_handover_runs_qemu_without_network_and_reaps_it: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    vm_disk(&d.join("vm.img"));
    let (key, pubkey) = keypair(d);
    let vm_args = vec!["-m".to_string(), "64".to_string()];
    let spec = spec_from_inputs("vm-test", None, vec![], String::new(), None, None, Some((d.join("vm.img"), vm_args)))
        .unwrap();
    let bundle_path = d.join("vm.mcb");
    metalcast_image::build(&spec, &bundle_path, Some(&key), &indicatif::ProgressBar::hidden()).unwrap();
    let bundle = Bundle::open(&bundle_path).unwrap();

    let f = Fabric::builder().receivers(2).build().unwrap();
    let a = &f.receivers()[0];
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

    // The VM exits (here: stopped from outside); the agent reaps it and reports it.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(qemu as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let r = wait_until(Duration::from_secs(30), "the vm-exit report", || {
        server.api.node(&ma).filter(|r| r.reports.iter().any(|x| x.instruction == i && x.phase == Phase::VmExit))
    });
    let e = r.reports.iter().find(|x| x.phase == Phase::VmExit).unwrap();
    assert_eq!(e.data["qemu_pid"].as_u64(), Some(u64::from(qemu)), "{e:?}");
    assert!(!Path::new(&format!("/proc/{qemu}")).exists(), "QEMU was reaped");
    drop(agent);
}
