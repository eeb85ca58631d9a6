//! Integration tests of the fabric itself (need root; SKIP otherwise).

mod common;

use std::net::SocketAddrV4;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{GROUP, count_group_frames, drain, mcast_receiver, mcast_sender, sniffer, udp_receiver, wait_until};
use metalcast_fabric::{Fabric, FabricError, Flow, Rate, skip_unless_root};

#[test]
fn ping_across_the_bridge() {
    skip_unless_root!();
    let fabric = Fabric::builder().receivers(2).ipv6(true).build().expect("build fabric");
    let sender = fabric.sender();
    for r in fabric.receivers() {
        let out = sender
            .command("ping")
            .args(["-c", "2", "-i", "0.2", "-W", "2", &r.ipv4().to_string()])
            .output()
            .expect("run ping");
        assert!(out.status.success(), "ping {} failed: {}", r.ipv4(), String::from_utf8_lossy(&out.stdout));
        let v6 = r.ipv6().expect("ipv6 enabled").to_string();
        let out = sender.command("ping").args(["-6", "-c", "1", "-W", "2", &v6]).output().expect("run ping -6");
        assert!(out.status.success(), "ping {v6} failed: {}", String::from_utf8_lossy(&out.stdout));
    }
    // The host is isolated from everything but the fabric: no default route.
    let out = sender.command("ip").args(["route", "get", "192.0.2.1"]).output().expect("ip route get");
    assert!(!out.status.success(), "fabric host unexpectedly has a route out");
}

#[test]
fn accessors_are_consistent() {
    skip_unless_root!();
    let fabric = Fabric::builder().receivers(3).host("attacker").tap("vm0").build().expect("build fabric");
    let names: Vec<_> = fabric.hosts().iter().map(|h| h.name().to_owned()).collect();
    assert_eq!(names, ["sender", "r0", "r1", "r2", "attacker"]);
    assert_eq!(fabric.receivers().len(), 3);
    for (i, h) in fabric.hosts().iter().enumerate() {
        assert_eq!(h.ipv4().octets(), [10, 77, 0, i as u8 + 1]);
        assert!(h.netns_name().starts_with(fabric.prefix()));
        assert!(h.ifname().len() <= 15 && h.switch_port().len() <= 15);
        // What the kernel says, seen from inside the namespace.
        let out = h.command("cat").arg(format!("/sys/class/net/{}/address", h.ifname())).output().expect("cat");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), h.mac_string());
        let idx = h.run_in(|| nix::net::if_::if_nametoindex(h.ifname()).expect("if_nametoindex")).expect("run_in");
        assert_eq!(idx, h.ifindex());
    }
    let tap = fabric.tap("vm0").expect("tap");
    let out = fabric.switch().netns().command("ip").args(["-d", "link", "show", tap.ifname()]).output().expect("ip");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tun") && text.contains(&format!("master {}", fabric.switch().bridge())), "{text}");
    assert!(matches!(fabric.try_host("nope"), Err(FabricError::UnknownHost { .. })));
}

#[test]
fn multicast_reaches_every_joined_receiver_and_snooping_spares_others() {
    skip_unless_root!();
    const N: usize = 4;
    const PACKETS: u32 = 200;
    let fabric = Fabric::builder().receivers(N).host("bystander").build().expect("build fabric");
    let port = 5000;
    // Receivers join and signal readiness, then count what arrives.
    let joined = Arc::new(Barrier::new(N + 1));
    let mut handles = Vec::new();
    for r in fabric.receivers() {
        let addr = r.ipv4();
        let joined = Arc::clone(&joined);
        handles.push(
            r.spawn_in(move || {
                let sock = mcast_receiver(GROUP, port, addr);
                joined.wait();
                drain(&sock, Duration::from_millis(500), Duration::from_secs(10)).len()
            })
            .expect("spawn receiver"),
        );
    }
    joined.wait();
    // The bystander did not join: snooping must keep the group's traffic off
    // its port (counted at its interface, not at a socket).
    let bystander = fabric.host("bystander").run_in(sniffer).expect("bystander sniffer");
    // Control: the same sniffer on a member's port sees every frame.
    let member_sniffer = fabric.receivers()[0].run_in(sniffer).expect("member sniffer");
    // Readiness: the switch has learned every receiver's membership.
    let ports: Vec<String> = fabric.receivers().iter().map(|r| r.switch_port().to_owned()).collect();
    let group = GROUP.to_string();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let mdb = fabric.switch().mdb().expect("mdb");
            ports.iter().all(|p| mdb.iter().any(|(mp, g)| mp == p && *g == group))
        }),
        "the bridge never learned all joins: {:?}",
        fabric.switch().mdb()
    );
    let src = fabric.sender().ipv4();
    fabric
        .sender()
        .run_in(|| {
            let sock = mcast_sender(src);
            for i in 0..PACKETS {
                sock.send_to(&i.to_be_bytes(), SocketAddrV4::new(GROUP, port)).expect("send");
                if i % 50 == 49 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
        .expect("run sender");
    for (r, h) in fabric.receivers().iter().zip(handles) {
        let got = h.join().expect("receiver thread");
        assert_eq!(got, PACKETS as usize, "receiver {} got {got}/{PACKETS}", r.name());
    }
    let seen = count_group_frames(&member_sniffer, GROUP, Duration::from_millis(300));
    assert_eq!(seen, PACKETS as usize, "the sniffer must see a member's group frames");
    let leaked = count_group_frames(&bystander, GROUP, Duration::from_millis(300));
    assert_eq!(leaked, 0, "snooping leaked {leaked} group frames to a non-member's port");
}

#[test]
fn receiver_that_leaves_the_group_is_pruned_by_the_switch() {
    skip_unless_root!();
    const PACKETS: u32 = 200;
    let fabric = Fabric::builder().receivers(2).build().expect("build fabric");
    let port = 5001;
    let (r0, r1) = (&fabric.receivers()[0], &fabric.receivers()[1]);
    // Sockets stay in the namespace they were created in, wherever used.
    let stayer = r0.run_in(|| mcast_receiver(GROUP, port, r0.ipv4())).expect("r0 socket");
    let leaver = r1.run_in(|| mcast_receiver(GROUP, port, r1.ipv4())).expect("r1 socket");
    let group = GROUP.to_string();
    let member = |p: &str| fabric.switch().mdb().expect("mdb").iter().any(|(mp, g)| mp == p && *g == group);
    assert!(
        wait_until(Duration::from_secs(5), || member(r0.switch_port()) && member(r1.switch_port())),
        "joins not learned: {:?}",
        fabric.switch().mdb()
    );
    leaver.leave_multicast_v4(&GROUP, &r1.ipv4()).expect("leave");
    assert!(
        wait_until(Duration::from_secs(10), || !member(r1.switch_port())),
        "leave not learned: {:?}\n{}\n{}",
        fabric.switch().mdb(),
        String::from_utf8_lossy(&r1.command("ip").args(["maddr", "show"]).output().expect("maddr").stdout),
        String::from_utf8_lossy(&r1.command("cat").arg("/proc/net/igmp").output().expect("igmp").stdout),
    );
    assert!(member(r0.switch_port()), "r0's membership must survive r1's leave");

    let r1_sniffer = r1.run_in(sniffer).expect("r1 sniffer");
    let stayer = std::thread::spawn(move || drain(&stayer, Duration::from_millis(500), Duration::from_secs(10)).len());
    let src = fabric.sender().ipv4();
    fabric
        .sender()
        .run_in(|| {
            let sock = mcast_sender(src);
            for i in 0..PACKETS {
                sock.send_to(&i.to_be_bytes(), SocketAddrV4::new(GROUP, port)).expect("send");
            }
        })
        .expect("run sender");
    assert_eq!(stayer.join().expect("r0 thread"), PACKETS as usize, "r0 must still get everything");
    let leaked = count_group_frames(&r1_sniffer, GROUP, Duration::from_millis(300));
    assert_eq!(leaked, 0, "{leaked} group frames reached the port of a receiver that left");
    drop(leaver);
}

#[test]
fn vlan_filtering_isolates_and_connects() {
    skip_unless_root!();
    let fabric = match Fabric::builder().receivers(0).host("a").host("b").host("c").vlan_filtering(true).build() {
        Err(FabricError::Unsupported { feature, detail }) => {
            eprintln!("SKIP vlan_filtering_isolates_and_connects: {feature} unsupported: {detail}");
            return;
        }
        other => other.expect("build fabric"),
    };
    let sw = fabric.switch();
    sw.set_access_vlan(fabric.host("a").switch_port(), 10).expect("vlan a");
    sw.set_access_vlan(fabric.host("b").switch_port(), 10).expect("vlan b");
    sw.set_access_vlan(fabric.host("c").switch_port(), 20).expect("vlan c");
    let ping = |from: &str, to: &str| {
        fabric
            .host(from)
            .command("ping")
            .args(["-c", "1", "-W", "1", &fabric.host(to).ipv4().to_string()])
            .output()
            .expect("ping")
            .status
            .success()
    };
    assert!(ping("a", "b"), "same VLAN must connect");
    assert!(!ping("a", "c"), "different VLANs must be isolated");
    sw.set_access_vlan(fabric.host("c").switch_port(), 10).expect("move c");
    sw.vlan_del(fabric.host("c").switch_port(), 20).expect("del 20");
    assert!(ping("a", "c"), "after moving c to VLAN 10 it must connect");
}

#[test]
fn rate_limit_caps_throughput() {
    skip_unless_root!();
    const MBIT: u64 = 20;
    let fabric = Fabric::builder().receivers(1).link_rate("r0", Flow::ToHost, Rate::mbit(MBIT)).build().expect("build");
    let r0 = fabric.host("r0");
    let dst = r0.ipv4();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let rx = r0
        .spawn_in(move || {
            let sock = udp_receiver(dst, 6000);
            ready_tx.send(()).expect("signal ready");
            let mut buf = [0u8; 2048];
            let mut bytes = 0u64;
            let mut first = None;
            let mut last = Instant::now();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        first.get_or_insert_with(Instant::now);
                        last = Instant::now();
                        bytes += n as u64;
                    }
                    Err(_) if first.is_some() && last.elapsed() > Duration::from_millis(300) => break,
                    Err(_) => {}
                }
            }
            let secs = last.duration_since(first.expect("received nothing")).as_secs_f64();
            bytes as f64 * 8.0 / secs
        })
        .expect("spawn rx");
    ready_rx.recv_timeout(Duration::from_secs(5)).expect("receiver ready");
    let src = fabric.sender().ipv4();
    fabric
        .sender()
        .run_in(|| {
            let sock = std::net::UdpSocket::bind((src, 0)).expect("bind");
            let payload = [0x5au8; 1200];
            let start = Instant::now();
            // Offer well above the limit (about 5x) for 2 seconds.
            let mut sent = 0u64;
            while start.elapsed() < Duration::from_secs(2) {
                let _ = sock.send_to(&payload, (dst, 6000));
                sent += 1;
                if sent.is_multiple_of(10) {
                    let due = Duration::from_secs_f64(sent as f64 * 1200.0 * 8.0 / (MBIT as f64 * 5e6));
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
        })
        .expect("sender");
    let bps = rx.join().expect("rx thread");
    let limit = MBIT as f64 * 1e6;
    eprintln!("rate limit {MBIT} Mbit/s: measured {:.1} Mbit/s", bps / 1e6);
    assert!(bps < 2.0 * limit, "throughput {bps} bit/s exceeds 2x the {limit} bit/s limit");
    assert!(bps > 0.3 * limit, "throughput {bps} bit/s is implausibly low for a {limit} bit/s limit");
}

#[test]
fn drop_deletes_exactly_its_namespaces() {
    skip_unless_root!();
    let fabric = Fabric::builder().receivers(2).build().expect("build fabric");
    let other = Fabric::builder().receivers(1).build().expect("build second fabric");
    assert_ne!(fabric.prefix(), other.prefix());
    let names = fabric.namespaces().to_vec();
    assert_eq!(names.len(), 4, "switch + sender + 2 receivers: {names:?}");
    for ns in &names {
        assert!(Path::new("/run/netns").join(ns).exists(), "{ns} missing while fabric alive");
    }
    drop(fabric);
    for ns in &names {
        assert!(!Path::new("/run/netns").join(ns).exists(), "{ns} still exists after drop");
    }
    for ns in other.namespaces() {
        assert!(Path::new("/run/netns").join(ns).exists(), "dropping one fabric removed {ns} of another");
    }
}

#[test]
fn failed_build_cleans_up() {
    skip_unless_root!();
    let before = std::fs::read_dir("/run/netns").map(|d| d.count()).unwrap_or(0);
    // Unknown host in link_rate fails after all namespaces were created.
    let err = Fabric::builder().receivers(2).link_rate("nobody", Flow::ToHost, Rate::mbit(1)).build();
    assert!(matches!(err, Err(FabricError::UnknownHost { .. })), "{err:?}");
    let after = std::fs::read_dir("/run/netns").map(|d| d.count()).unwrap_or(0);
    // Other tests may run concurrently; our 4 namespaces must not linger.
    assert!(after <= before + 8, "namespaces leaked: {before} -> {after}");
}
