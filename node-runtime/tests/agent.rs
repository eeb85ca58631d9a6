//! The lifecycle agent on a namespace fabric (root): two agents (one with a
//! static address, one configured by DHCP from dnsmasq) check in to the
//! runtime API, survive a control-plane restart (re-check-in with backoff),
//! receive one bundle in one multicast session into memory, verify it and
//! report every phase. A DHCP agent keeps its lease (renew, rebind, and
//! after a NAK a new lease and a new check-in) while it waits. Hand-over is
//! `none` here (the host kernel has no kexec); the QEMU tests cover kexec.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use metalcast_fabric::{Fabric, skip_unless_root};
use metalcast_image::{Bundle, spec_from_inputs};
use metalcast_runtime_api::server::RuntimeApi;
use metalcast_runtime_api::{Handover, Phase, Role, Status, Target};

const NODE: &str = env!("CARGO_BIN_EXE_metalcast-node");

fn dnsmasq_available() -> bool {
    Command::new("dnsmasq").arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn agents_check_in_survive_restart_receive_and_report() {
    skip_unless_root!();
    if !dnsmasq_available() {
        assert!(!metalcast_fabric::require_privileged(), "dnsmasq missing (node-runtime/ci-setup.sh installs it)");
        eprintln!("SKIP agents_check_in_survive_restart_receive_and_report: dnsmasq not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_key, pubkey, bundle_path) = make_bundle(dir.path());
    let bundle = Bundle::open(&bundle_path).unwrap();

    let f = Fabric::builder().receivers(2).build().unwrap();
    let (r0, r1) = (&f.receivers()[0], &f.receivers()[1]);
    let port = 18080;
    let cp = format!("http://{}:{port}", f.sender().ipv4());
    // r0 is given two control-plane URLs, the first of which nobody serves: it moves on to the second.
    let cp_list = format!("http://{}:1,{cp}", f.sender().ipv4());
    let server = Server::start(f.sender(), port, RuntimeApi::new());

    let _dnsmasq = Killed(
        f.sender()
            .command("dnsmasq")
            .args(["--no-daemon", "--conf-file=/dev/null", "--bind-interfaces", "--port=0", "--no-ping"])
            .arg(format!("--interface={}", f.sender().ifname()))
            .arg("--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,1h")
            .arg(format!("--dhcp-leasefile={}", dir.path().join("leases").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let agent = |host: &metalcast_fabric::Host, net: &[String]| {
        let cp = if host.name() == r0.name() { &cp_list } else { &cp };
        Killed(
            host.command(NODE)
                .args(["agent", "--control-plane", cp, "--iface", host.ifname(), "--handover", "none", "--once"])
                .args(["--max-backoff", "1", "--poll-wait", "5", "--key"])
                .arg(&pubkey)
                .args(net)
                .spawn()
                .unwrap(),
        )
    };
    let mut a0 = agent(r0, &["--addr".into(), r0.ipv4().to_string()]);
    let mut a1 = agent(r1, &["--dhcp".into()]);
    let (m0, m1) = (r0.mac_string(), r1.mac_string());
    let c0 = wait_checkins(&server.api, &m0, 1, Duration::from_secs(30));
    let c1 = wait_checkins(&server.api, &m1, 1, Duration::from_secs(30));
    let c1 = c1.last_checkin().unwrap().clone();
    assert_eq!(c0.last_checkin().unwrap().address, r0.ipv4().to_string());
    let dhcp_addr: std::net::Ipv4Addr = c1.address.parse().unwrap();
    assert!((100..=150).contains(&dhcp_addr.octets()[3]), "r1 got {dhcp_addr} by DHCP");
    assert_eq!(c1.role, Role::Runtime);
    assert!(c1.inventory.nics.iter().any(|n| n.mac == m1), "inventory lists the NIC: {:?}", c1.inventory);
    assert!(c1.inventory.cpus >= 1 && c1.inventory.memory_bytes > 0);

    // Control-plane restart: a new server process knows no node; both agents
    // notice (poll fails, then 404) and check in again.
    server.stop();
    std::thread::sleep(Duration::from_secs(2));
    let server = Server::start(f.sender(), port, RuntimeApi::new());
    wait_checkins(&server.api, &m0, 1, Duration::from_secs(60));
    wait_checkins(&server.api, &m1, 1, Duration::from_secs(60));

    let spec = session(&bundle, f.sender().ipv4(), 1);
    let tx = start_sender(f.sender(), &bundle_path, &spec, 2, 200);
    let i0 = server.api.push(&m0, deploy(&bundle, &spec, Target::Memory, Handover::Kexec, "")).unwrap();
    let i1 = server.api.push(&m1, deploy(&bundle, &spec, Target::Memory, Handover::Kexec, "")).unwrap();
    let sent = tx.join().unwrap();
    assert_eq!(sent.done(), 2, "{sent:?}");
    for (m, i) in [(&m0, i0), (&m1, i1)] {
        let r = wait_phase(&server.api, m, i, Phase::Handover, Duration::from_secs(60));
        let phases: Vec<Phase> = r.reports.iter().filter(|x| x.instruction == i).map(|x| x.phase).collect();
        assert_eq!(phases, [Phase::Accept, Phase::Receive, Phase::Verify, Phase::Handover], "{m}");
        assert!(r.reports.iter().all(|x| x.status == Status::Ok), "{:?}", r.reports);
        let rx = r.reports.iter().find(|x| x.phase == Phase::Receive).unwrap();
        assert_eq!(rx.data["bytes_written"], serde_json::json!(4 << 20), "{m}: {rx:?}");
        let v = r.reports.iter().find(|x| x.phase == Phase::Verify).unwrap();
        assert!(v.detail.starts_with(&format!("{} bytes", 4 << 20)), "{}", v.detail);
        // Memory target: every chunk hash-checked on arrival, nothing re-read.
        assert_eq!((v.data["on_arrival_bytes"].as_u64(), v.data["reread_bytes"].as_u64()), (Some(4 << 20), Some(0)));
    }
    assert_eq!(a0.0.wait().unwrap().code(), Some(0));
    assert_eq!(a1.0.wait().unwrap().code(), Some(0));

    // An instruction whose manifest is signed by another key is refused at accept (exit class 3).
    let mut a0 = agent(r0, &["--addr".into(), r0.ipv4().to_string()]);
    wait_checkins(&server.api, &m0, 2, Duration::from_secs(30));
    let other = metalcast_image::SecretKey::generate();
    let forged_path = dir.path().join("forged.mcb");
    metalcast_image::build(
        &spec_from_inputs("forged", Some(dir.path().join("kernel")), vec![], String::new(), None, None, None).unwrap(),
        &forged_path,
        Some(&other),
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    let forged = Bundle::open(&forged_path).unwrap();
    let fspec = session(&forged, f.sender().ipv4(), 2);
    let i = server.api.push(&m0, deploy(&forged, &fspec, Target::Memory, Handover::None, "")).unwrap();
    let r = wait_until(Duration::from_secs(30), "the refusal", || {
        server.api.node(&m0).filter(|r| r.reports.iter().any(|x| x.instruction == i))
    });
    let rep = r.reports.iter().find(|x| x.instruction == i).unwrap();
    assert_eq!((rep.phase, rep.status, rep.exit_code), (Phase::Accept, Status::Failed, 3), "{rep:?}");
    assert_eq!(a0.0.wait().unwrap().code(), Some(3));
}

/// A signed bootable bundle: a 3 MiB "kernel" and a 1 MiB "initrd", random-ish so every chunk is stored.
fn make_bundle(dir: &std::path::Path) -> (metalcast_image::SecretKey, std::path::PathBuf, std::path::PathBuf) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    std::fs::write(dir.join("kernel"), bytes(3 << 20)).unwrap();
    std::fs::write(dir.join("initrd"), bytes(1 << 20)).unwrap();
    let spec = spec_from_inputs(
        "agent-test",
        Some(dir.join("kernel")),
        vec![dir.join("initrd")],
        "console=ttyS0".into(),
        None,
        None,
        None,
    )
    .unwrap();
    let (key, pubkey) = keypair(dir);
    let bundle_path = dir.join("b.mcb");
    metalcast_image::build(&spec, &bundle_path, Some(&key), &indicatif::ProgressBar::hidden()).unwrap();
    (key, pubkey, bundle_path)
}

#[test]
fn attended_mode_boots_the_image_chosen_at_the_console() {
    skip_unless_root!();
    let dir = tempfile::tempdir().unwrap();
    let (_key, pubkey, bundle_path) = make_bundle(dir.path());
    let bundle = Bundle::open(&bundle_path).unwrap();
    let f = Fabric::builder().receivers(1).build().unwrap();
    let r0 = &f.receivers()[0];
    let port = 18081;
    let server = Server::start(f.sender(), port, RuntimeApi::new());
    let spec = session(&bundle, f.sender().ipv4(), 3);
    let m0 = r0.mac_string();
    let offer = |tag: &str| deploy(&bundle, &spec, Target::Memory, Handover::None, tag);
    server.api.offer(&m0, "first (default)", offer("first"), true).unwrap();
    server.api.offer(&m0, "second", offer("second"), false).unwrap();
    let tx = start_sender(f.sender(), &bundle_path, &spec, 1, 200);
    let mut a0 = Killed(
        r0.command(NODE)
            .args(["agent", "--control-plane", &format!("http://{}:{port}", f.sender().ipv4())])
            .args(["--iface", r0.ifname(), "--addr", &r0.ipv4().to_string(), "--once", "--attended", "60", "--key"])
            .arg(&pubkey)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Wait for the menu on the console, then choose the second image.
    let out = a0.0.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(out));
    let menu: Vec<String> = lines.by_ref().map_while(Result::ok).take_while(|l| !l.contains("choose 1-2")).collect();
    assert!(menu.iter().any(|l| l.contains("2) second")), "{menu:?}");
    std::io::Write::write_all(a0.0.stdin.as_mut().unwrap(), b"2\n").unwrap();
    std::thread::spawn(move || lines.for_each(drop));
    assert_eq!(tx.join().unwrap().done(), 1);
    let r = wait_until(Duration::from_secs(60), "the choice", || server.api.node(&m0).filter(|r| !r.chosen.is_empty()));
    let (index, id) = r.chosen[0];
    assert_eq!(index, 1, "the second offer was chosen");
    wait_phase(&server.api, &m0, id, Phase::Handover, Duration::from_secs(60));
    assert_eq!(a0.0.wait().unwrap().code(), Some(0));
}

/// The expiry time dnsmasq's lease file records for `mac` (its first field).
fn lease_expiry(leases: &std::path::Path, mac: &str) -> Option<u64> {
    let text = std::fs::read_to_string(leases).ok()?;
    text.lines().find(|l| l.split_whitespace().nth(1) == Some(mac))?.split_whitespace().next()?.parse().ok()
}

/// Lines of a child's stdout, read by a thread.
fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok) {
            eprintln!("[agent] {l}");
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns it.
fn wait_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str, timeout: Duration) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(_) => {}
            Err(e) => panic!("no agent line with {needle:?} within {timeout:?}: {e}"),
        }
    }
}

#[test]
fn dhcp_lease_is_renewed_and_rebound_while_waiting() {
    skip_unless_root!();
    if !dnsmasq_available() {
        assert!(!metalcast_fabric::require_privileged(), "dnsmasq missing (node-runtime/ci-setup.sh installs it)");
        eprintln!("SKIP dhcp_lease_is_renewed_and_rebound_while_waiting: dnsmasq not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_key, pubkey) = keypair(dir.path());
    let f = Fabric::builder().receivers(1).build().unwrap();
    let r0 = &f.receivers()[0];
    let port = 18082;
    let server = Server::start(f.sender(), port, RuntimeApi::new());
    let leases = dir.path().join("leases");
    // dnsmasq's shortest lease is 2 minutes; T1 4 s and T2 7 s make the renewals come in seconds.
    let dnsmasq = || {
        Killed(
            f.sender()
                .command("dnsmasq")
                .args(["--no-daemon", "--conf-file=/dev/null", "--bind-interfaces", "--port=0", "--no-ping"])
                .arg(format!("--interface={}", f.sender().ifname()))
                .args(["--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,2m"])
                .args(["--dhcp-option=option:T1,4", "--dhcp-option=option:T2,7"])
                .arg(format!("--dhcp-leasefile={}", leases.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let d = dnsmasq();
    let mut agent = Killed(
        r0.command(NODE)
            .args(["agent", "--control-plane", &format!("http://{}:{port}", f.sender().ipv4())])
            .args(["--iface", r0.ifname(), "--dhcp", "--handover", "none", "--poll-wait", "5", "--key"])
            .arg(&pubkey)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = stdout_lines(&mut agent.0);
    let m0 = r0.mac_string();
    let c = wait_checkins(&server.api, &m0, 1, Duration::from_secs(30)).last_checkin().unwrap().clone();
    let e0 = wait_until(Duration::from_secs(10), "the lease in dnsmasq's lease file", || lease_expiry(&leases, &m0));
    // Renewed at T1 (unicast REQUEST) while the agent long-polls, twice: the renewed lease's timers are honoured.
    for _ in 0..2 {
        let l = wait_line(&lines, "renewed by", Duration::from_secs(30));
        assert!(l.contains(&c.address) && l.contains("T1 4s, T2 7s"), "{l}");
    }
    wait_until(Duration::from_secs(10), "the lease's expiry to advance in dnsmasq's lease file", || {
        lease_expiry(&leases, &m0).filter(|e| *e > e0)
    });
    // The server goes away: renewals go unanswered, at T2 the agent broadcasts (rebinding);
    // a server back with the same lease database answers and the lease is kept.
    drop(d);
    let l = wait_line(&lines, "rebinding (broadcast)", Duration::from_secs(30));
    assert!(l.contains(&c.address), "{l}");
    let _d = dnsmasq();
    let l = wait_line(&lines, "rebound by", Duration::from_secs(30));
    assert!(l.contains(&c.address), "{l}");
    // The agent kept waiting for instructions the whole time: one check-in, the same address.
    let r = server.api.node(&m0).unwrap();
    assert_eq!(r.checkins.len(), 1, "no re-check-in: the address never went away");
    assert_eq!(r.last_checkin().unwrap().address, c.address);
    // An authoritative server whose range no longer holds the address refuses the renewal (NAK):
    // the agent drops the address, DISCOVERs, gets one from the new range and checks in with it.
    drop(_d);
    let _d = Killed(
        f.sender()
            .command("dnsmasq")
            .args(["--no-daemon", "--conf-file=/dev/null", "--bind-interfaces", "--port=0", "--no-ping"])
            .arg(format!("--interface={}", f.sender().ifname()))
            .args(["--dhcp-authoritative", "--dhcp-range=10.77.0.160,10.77.0.170,255.255.255.0,2m"])
            .arg(format!("--dhcp-leasefile={}", dir.path().join("leases2").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_line(&lines, "(NAK)", Duration::from_secs(30));
    let l = wait_line(&lines, "dropped from", Duration::from_secs(10));
    assert!(l.contains(&c.address), "{l}");
    let l = wait_line(&lines, "DHCP new lease of 10.77.0.1", Duration::from_secs(30));
    let new_addr = l.split_whitespace().nth(5).unwrap().to_string();
    assert_ne!(new_addr, c.address, "{l}");
    let r = wait_checkins(&server.api, &m0, 2, Duration::from_secs(30));
    assert_eq!(r.last_checkin().unwrap().address, new_addr, "checked in again with the new address");
    let shown = r0.command("ip").args(["-4", "-o", "addr", "show", "dev", r0.ifname()]).output().unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains(&new_addr) && !shown.contains(&format!("{}/", c.address)), "{shown}");
    assert!(matches!(agent.0.try_wait(), Ok(None)), "the agent still runs");
}
