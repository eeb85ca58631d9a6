//! The node runtime proved in QEMU guests (root, QEMU, the Debian 6.1
//! kernel from `node-runtime/fetch-kernel.sh`): two guests boot the
//! bootstrap bundle (one e1000 with a static address, one virtio-net by
//! DHCP, with a virtio disk) on taps of one namespace bridge, check in, and
//! receive a tenant bundle in one multicast session together with a
//! namespace receiver; the first into memory, the second to its disk.
//! Both kexec into the tenant kernel (QEMU runs with `-no-reboot`, so a
//! firmware reboot would end it), whose init prints the marker; the disk
//! guest's tenant init hashes its disk, which must match the image. The
//! first guest stages the tenant kernel with method `auto`: kexec-tools'
//! `kexec_load` (the `kexec` binary is carried in the bootstrap initramfs
//! with its shared libraries) of the tenant bundle's kernel ELF; the second
//! with `kexec_file_load` (`metalcast.kexec=file`).
//! Then the
//! first guest is reclaimed: it receives the bootstrap bundle, kexecs back
//! into the runtime and checks in again.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use metalcast_fabric::qemu::{self as guest, Guest, GuestBoot, GuestSpec};
use metalcast_fabric::{Fabric, skip_unless_root};
use metalcast_image::initramfs::{InitramfsSpec, build_initramfs};
use metalcast_image::{Bundle, spec_from_inputs};
use metalcast_runtime_api::server::RuntimeApi;
use metalcast_runtime_api::{Handover, Phase, Role, Target};

const NODE: &str = env!("CARGO_BIN_EXE_metalcast-node");
const MIB: usize = 1 << 20;

/// (vmlinuz, modules dir, kexec-tools' kexec), or why not.
fn prerequisites() -> Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf), String> {
    guest::qemu()?;
    if std::process::Command::new("dnsmasq").arg("--version").output().is_err() {
        return Err("dnsmasq not installed".into());
    }
    let kexec = ["/usr/sbin/kexec", "/sbin/kexec"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("kexec-tools not installed (node-runtime/ci-setup.sh installs it)")?;
    let (vmlinuz, modules) = guest::kernel()?;
    Ok((vmlinuz, modules, kexec))
}

/// A sparse disk image: 48 MiB with 6 MiB of data in three places.
fn disk_image(path: &Path) -> [u8; 32] {
    let mut disk = vec![0u8; 48 * MIB];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for (start, len) in [(0, MIB), (9 * MIB, 3 * MIB), (40 * MIB, 2 * MIB)] {
        for b in &mut disk[start..start + len] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    std::fs::write(path, &disk).unwrap();
    *blake3::hash(&disk).as_bytes()
}

#[test]
fn two_guests_kexec_into_tenant_then_reclaim() {
    skip_unless_root!();
    let (vmlinuz, modules, kexec_tool) = match prerequisites() {
        Ok(k) => k,
        Err(reason) => {
            assert!(!metalcast_fabric::require_privileged(), "cannot run: {reason}");
            eprintln!("SKIP two_guests_kexec_into_tenant_then_reclaim: {reason}");
            return;
        }
    };
    let t_start = Instant::now();
    let node_static = guest::static_node(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (key, pubkey) = keypair(d);
    // The bootstrap initramfs carries kexec-tools for the kexec_load paths.
    let initramfs = |name: &str, programs: Vec<(std::path::PathBuf, String)>| {
        let out = d.join(name);
        let s = build_initramfs(
            &InitramfsSpec {
                init: node_static.clone(),
                modules_root: Some(modules.clone()),
                modules: guest::GUEST_MODULES.iter().map(|m| m.to_string()).collect(),
                files: vec![(pubkey.clone(), "/etc/metalcast/trusted/site.pub".into())],
                programs,
                zstd_level: 9,
            },
            &out,
        )
        .unwrap();
        assert!(s.modules.contains(&"net_failover".to_string()), "virtio_net's dependencies: {:?}", s.modules);
        out
    };

    let f = Fabric::builder().receivers(1).tap("a").tap("b").build().unwrap();
    let cp_port = 18090;
    let cp = format!("http://{}:{cp_port}", f.sender().ipv4());
    let server = Server::start(f.sender(), cp_port, RuntimeApi::new());
    let _dnsmasq = Killed(guest::dhcp_server(f.sender(), &d.join("leases")).unwrap());
    // The bootstrap bundle (kernel + runtime initramfs), and the guests booted from its parts.
    let boot_initrd = initramfs("bootstrap.img", vec![(kexec_tool.clone(), "/sbin/kexec".into())]);
    let common_cmdline = format!("console=ttyS0 quiet panic=-1 metalcast.cp={cp}");
    let bootstrap_path = d.join("bootstrap.mcb");
    let spec = spec_from_inputs(
        "bootstrap",
        Some(vmlinuz.clone()),
        vec![boot_initrd],
        common_cmdline.clone(),
        None,
        None,
        None,
    )
    .unwrap();
    metalcast_image::build(&spec, &bootstrap_path, Some(&key), &indicatif::ProgressBar::hidden()).unwrap();
    let bootstrap = Bundle::open(&bootstrap_path).unwrap();
    bootstrap.verify_signature(&[key.public()], false).unwrap();
    let parts = d.join("bootstrap-parts");
    metalcast_image::extract(&bootstrap, &parts, &[], &indicatif::ProgressBar::hidden()).unwrap();

    // The tenant bundle: same kernel, an initramfs whose init prints the marker, and a sparse disk.
    // Its initramfs carries kexec-tools too, so the runtime in it can stage the reclaim with kexec_load.
    let tenant_initrd = initramfs("tenant.img", vec![(kexec_tool.clone(), "/sbin/kexec".into())]);
    let disk_hash = disk_image(&d.join("disk.img"));
    let marker = format!("tenant-{:08x}", std::process::id());
    let tenant_path = d.join("tenant.mcb");
    let mut spec = spec_from_inputs(
        "tenant",
        Some(vmlinuz.clone()),
        vec![tenant_initrd],
        format!("{common_cmdline} metalcast.role=tenant metalcast.marker={marker}"),
        None,
        Some(d.join("disk.img")),
        None,
    )
    .unwrap();
    // With the kernel's ELF, which guest a's auto method loads.
    spec.kexec_elf = true;
    metalcast_image::build(&spec, &tenant_path, Some(&key), &indicatif::ProgressBar::hidden()).unwrap();
    let tenant = Bundle::open(&tenant_path).unwrap();

    let a_ip = "10.77.0.101";
    let a_net = format!("ip={a_ip}:::255.255.255.0::eth0:off");
    let (mac_a, mac_b) = ("52:54:00:6d:00:0a", "52:54:00:6d:00:0b");
    let vdisk = d.join("vdisk.raw");
    std::fs::File::create(&vdisk).unwrap().set_len(64 * MIB as u64).unwrap();
    let (kernel, initrd) = (parts.join("kernel"), parts.join("initrd"));
    let mut ga = Guest::start(
        f.tap("a").unwrap(),
        &GuestSpec {
            name: "a",
            // a stages with method auto: kexec-tools' kexec_load of the tenant's kernel ELF (and, on
            // reclaim, of the bootstrap bundle's bzImage); b forces kexec_file_load.
            boot: GuestBoot::Kernel {
                kernel: &kernel,
                initrd: &initrd,
                append: format!("{common_cmdline} {a_net} metalcast.kexec=auto"),
            },
            nic_model: "e1000",
            mac: mac_a,
            disk: None,
            memory_mb: 512,
        },
        d.join("a.log"),
    )
    .unwrap();
    let mut gb = Guest::start(
        f.tap("b").unwrap(),
        &GuestSpec {
            name: "b",
            boot: GuestBoot::Kernel {
                kernel: &kernel,
                initrd: &initrd,
                append: format!("{common_cmdline} ip=dhcp metalcast.kexec=file"),
            },
            nic_model: "virtio-net-pci",
            mac: mac_b,
            disk: Some(&vdisk),
            memory_mb: 512,
        },
        d.join("b.log"),
    )
    .unwrap();
    // A namespace receiver in the same session (hand-over none: the host has no kexec).
    let r0 = &f.receivers()[0];
    let _agent = Killed(
        r0.command(NODE)
            .args(["agent", "--control-plane", &cp, "--iface", r0.ifname(), "--handover", "none", "--key"])
            .arg(&pubkey)
            .args(["--addr", &r0.ipv4().to_string()])
            .spawn()
            .unwrap(),
    );
    let boot_wait = Duration::from_secs(240);
    let ca = wait_checkins(&server.api, mac_a, 1, boot_wait).last_checkin().unwrap().clone();
    let cb = wait_checkins(&server.api, mac_b, 1, boot_wait).last_checkin().unwrap().clone();
    wait_checkins(&server.api, &r0.mac_string(), 1, boot_wait);
    let t_booted = Instant::now();
    assert_eq!((ca.role, ca.address.as_str()), (Role::Runtime, a_ip));
    assert_eq!(ca.inventory.nics[0].driver.as_deref(), Some("e1000"), "{:?}", ca.inventory);
    assert_eq!(cb.inventory.nics[0].driver.as_deref(), Some("virtio_net"), "{:?}", cb.inventory);
    assert!(cb.address.starts_with("10.77.0.1"), "b's DHCP address {}", cb.address);
    assert!(
        cb.inventory.disks.iter().any(|x| x.name == "vda" && x.size_bytes == 64 * MIB as u64),
        "{:?}",
        cb.inventory
    );

    // One session, three receivers: a -> memory, b -> its disk, r0 -> memory.
    let spec = session(&tenant, f.sender().ipv4(), 10);
    let tx = start_sender(f.sender(), &tenant_path, &spec, 3, 400);
    let disk_len = 48 * MIB;
    let ia = server.api.push(mac_a, deploy(&tenant, &spec, Target::Memory, Handover::Kexec, &a_net)).unwrap();
    let ib = server
        .api
        .push(
            mac_b,
            deploy(
                &tenant,
                &spec,
                Target::Disk { device: "/dev/vda".into() },
                Handover::Kexec,
                &format!("ip=dhcp metalcast.hash=/dev/vda:{disk_len}"),
            ),
        )
        .unwrap();
    let ir = server.api.push(&r0.mac_string(), deploy(&tenant, &spec, Target::Memory, Handover::None, "")).unwrap();
    let sent = tx.join().unwrap();
    assert_eq!(sent.done(), 3, "{sent:?}");
    wait_phase(&server.api, &r0.mac_string(), ir, Phase::Handover, Duration::from_secs(60));
    let kexec_wait = Duration::from_secs(180);
    let mut timings = Vec::new();
    for (g, i, mac) in [(&mut ga, ia, mac_a), (&mut gb, ib, mac_b)] {
        let (l0, t_last, _) = g.wait_line("metalcast: last byte received", 0, kexec_wait);
        let (l1, _, _) = g.wait_line("metalcast: kexec now", l0, kexec_wait);
        let (_, t_marker, _) = g.wait_line(&format!("metalcast-marker: {marker}"), l1, kexec_wait);
        timings.push((g.name.clone(), t_marker - t_last));
        let r = wait_phase(&server.api, mac, i, Phase::Handover, Duration::from_secs(10));
        let phases: Vec<Phase> = r.reports.iter().filter(|x| x.instruction == i).map(|x| x.phase).collect();
        let want: &[Phase] = if mac == mac_b {
            &[Phase::Accept, Phase::Receive, Phase::Flush, Phase::Verify, Phase::Handover]
        } else {
            &[Phase::Accept, Phase::Receive, Phase::Verify, Phase::Handover]
        };
        assert_eq!(phases, want, "{mac}");
        let h = r.reports.iter().find(|x| x.instruction == i && x.phase == Phase::Handover).unwrap();
        let method = if mac == mac_a { "elf" } else { "file" };
        assert_eq!(h.data["kexec_method"], method, "{mac}: {}", h.detail);
        // The disk target re-reads the device; memory chunks were hash-checked on arrival.
        let v = r.reports.iter().find(|x| x.instruction == i && x.phase == Phase::Verify).unwrap();
        let reread = v.data["reread_bytes"].as_u64().unwrap();
        if mac == mac_b {
            assert_eq!(reread, 6 * MIB as u64, "b's disk data re-read: {}", v.detail);
            assert!(h.detail.contains("during flush and verify"), "disk target: staged meanwhile: {}", h.detail);
        } else {
            assert_eq!(reread, 0, "{}", v.detail);
        }
    }
    // The tenant checks in as a tenant, with a new boot id: a new kernel, not the old one.
    let ta = wait_checkins(&server.api, mac_a, 2, kexec_wait).last_checkin().unwrap().clone();
    assert_eq!(ta.role, Role::Tenant);
    assert_ne!(ta.boot_id, ca.boot_id);
    let (_, _, h) = gb.wait_line("metalcast-hash: /dev/vda", 0, kexec_wait);
    assert_eq!(
        h.split_whitespace().last().unwrap(),
        hex(&disk_hash),
        "disk written from the sparse bundle must hash like the image: {h}"
    );
    assert!(ga.running() && gb.running(), "QEMU (-no-reboot) still running: no firmware reboot happened");
    let t_tenant = Instant::now();

    // Reclaim a: the runtime comes back by kexec (the bootstrap bundle over multicast) and checks in again.
    let spec = session(&bootstrap, f.sender().ipv4(), 11);
    let tx = start_sender(f.sender(), &bootstrap_path, &spec, 1, 400);
    let seen = server.api.node(mac_a).unwrap().checkins.len();
    let lines = ga.console.lock().unwrap().len();
    let ir = server.api.push(mac_a, deploy(&bootstrap, &spec, Target::Memory, Handover::Kexec, &a_net)).unwrap();
    assert_eq!(tx.join().unwrap().done(), 1);
    ga.wait_line("metalcast-init", lines, kexec_wait);
    let back = wait_checkins(&server.api, mac_a, seen + 1, kexec_wait).last_checkin().unwrap().clone();
    assert_eq!(back.role, Role::Runtime, "reclaimed node runs the runtime again");
    assert_ne!(back.boot_id, ta.boot_id);
    assert!(ga.running(), "reclaim without a firmware reboot");
    // The bootstrap bundle has no kernel ELF: auto (kexec-tools in the tenant's image) staged its bzImage with
    // kexec_load.
    let r = server.api.node(mac_a).unwrap();
    let h = r.reports.iter().find(|x| x.instruction == ir && x.phase == Phase::Handover).unwrap();
    assert_eq!(h.data["kexec_method"], "load", "reclaim: {}", h.detail);
    eprintln!(
        "qemu test wall time: {:.1}s (boot to check-in {:.1}s, deploy+kexec {:.1}s, reclaim {:.1}s); last byte -> tenant init: {}",
        t_start.elapsed().as_secs_f64(),
        (t_booted - t_start).as_secs_f64(),
        (t_tenant - t_booted).as_secs_f64(),
        t_tenant.elapsed().as_secs_f64(),
        timings.iter().map(|(n, t)| format!("{n} {:.2}s", t.as_secs_f64())).collect::<Vec<_>>().join(", ")
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
