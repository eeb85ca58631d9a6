//! Built-in netboot end to end (root, QEMU under TCG, Debian's `ipxe` and
//! `ovmf`, the Debian kernel from `node-runtime/fetch-kernel.sh`): QEMU
//! guests on a namespace fabric power on with `-boot n`, and nothing but
//! `metalcast serve` answers them (plus, in proxy mode, a site DHCP server
//! that hands out addresses and no boot options).
//!
//! - `uefi_full_mode_and_enrollment`: full mode with enrollment on. A known
//!   node on OVMF with the NIC's option ROM disabled: EDK2's own PXE client
//!   takes an address and `ipxe.efi` over TFTP, iPXE fetches the signed
//!   script, kernel and initrd over HTTP, and the runtime checks in with its
//!   token; the node's events show each step. An unknown machine (SeaBIOS
//!   with QEMU's iPXE ROM) boots the runtime in enrollment mode and appears
//!   as a pending enrollment with its inventory; an admin accepts it as a
//!   node. Both hold leases from the pool.
//! - `proxy_mode_beside_a_site_dhcp_server`: dnsmasq in another namespace
//!   hands out addresses only; metalcast answers as proxyDHCP with the boot
//!   file, and the known node boots the runtime and checks in; an unknown
//!   MAC gets nothing from metalcast (counted).
//!
//! The BIOS path through a deployment and kexec is the demo's
//! (`deploy_e2e.rs`: its guests netboot the same way).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use metalcast_fabric::qemu::{Guest, GuestBoot, GuestSpec};
use metalcast_fabric::{Fabric, skip_unless_root};
use serde_json::Value;

const PORT: u16 = 7000;
const BIN: &str = env!("CARGO_BIN_EXE_metalcast");

fn prerequisites() -> Result<(), String> {
    metalcast_fabric::qemu::qemu()?;
    metalcast_fabric::qemu::kernel()?;
    for f in ["/usr/lib/ipxe/ipxe.efi", "/usr/lib/ipxe/undionly.kpxe", metalcast_fabric::qemu::OVMF] {
        if !Path::new(f).is_file() {
            return Err(format!("{f} missing (node-runtime/ci-setup.sh installs ipxe and ovmf)"));
        }
    }
    if Command::new("dnsmasq").arg("--version").output().is_err() {
        return Err("dnsmasq not installed (the proxy test's site DHCP server)".into());
    }
    Ok(())
}

/// Kills the child on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fabric with `metalcast serve` (netboot on) in its sender namespace.
struct Bed {
    fabric: Fabric,
    dir: tempfile::TempDir,
    url: String,
    token: String,
    _server: Killed,
}

impl Bed {
    /// `hosts`: extra namespaces; `taps`: guest taps; `netboot`: the mode flags.
    fn start(hosts: &[&str], taps: &[&str], netboot: &[&str]) -> Bed {
        let mut fb = Fabric::builder().receivers(0);
        for h in hosts {
            fb = fb.host(*h);
        }
        for t in taps {
            fb = fb.tap(*t);
        }
        let fabric = fb.build().expect("building the fabric");
        let dir = tempfile::Builder::new().prefix("metalcast-netboot-").tempdir_in("/var/tmp").unwrap();
        let (kernel, initrd) = runtime(dir.path());
        let db = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
        let out = Command::new(BIN)
            .args(["admin", "bootstrap", "--database-url", &db, "--admin-user", "admin"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let token = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("token:").map(|t| t.trim().to_string()))
            .expect("token");
        let ip = fabric.sender().ipv4();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let server = fabric
            .sender()
            .command(BIN)
            .args(["serve", "--listen", &format!("{ip}:{PORT}"), "--database-url", &db])
            .args(["--data-dir", &dir.path().join("data").display().to_string()])
            .args(["--provision-addr", &ip.to_string(), "--netboot-interface", fabric.sender().ifname()])
            .args(["--netboot-kernel", &kernel.display().to_string()])
            .args(["--netboot-initrd", &initrd.display().to_string()])
            .args(["--netboot-cmdline", "console=ttyS0 quiet panic=-1"])
            .args(netboot)
            .env("METALCAST_LOG", "info,metalcast_netboot=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting metalcast serve");
        let bed = Bed { fabric, url: format!("http://{ip}:{PORT}"), token, _server: Killed(server), dir };
        let t0 = Instant::now();
        while !bed.cli(&["whoami"]).status.success() {
            assert!(t0.elapsed() < Duration::from_secs(30), "the server did not answer: {}", bed.server_log());
            std::thread::sleep(Duration::from_millis(200));
        }
        bed
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `metalcast ARGS` in the sender namespace, as the admin.
    fn cli(&self, args: &[&str]) -> Output {
        self.fabric
            .sender()
            .command(BIN)
            .args(args)
            .env("METALCAST_URL", &self.url)
            .env("METALCAST_TOKEN", &self.token)
            .env_remove("METALCAST_USER")
            .env_remove("METALCAST_PASSWORD")
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["-o", "json"];
        a.extend_from_slice(args);
        let out = self.cli(&a);
        assert!(out.status.success(), "metalcast {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn register(&self, node: &str, mac: &str) {
        for a in [
            vec!["node", "register", node, "--obm", "{\"type\":\"none\"}"],
            vec!["node", "nic", "add", node, "eth0", mac],
        ] {
            let out = self.cli(&a);
            assert!(out.status.success(), "{a:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }

    /// The node's netboot events, once `done` is among them (bounded).
    fn wait_events(&self, node: &str, done: &str, guest: &mut Guest) -> Vec<String> {
        let t0 = Instant::now();
        loop {
            let v = self.json(&["events", "--node", node]);
            let ev: Vec<String> = v
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["kind"] == "netboot")
                .map(|e| e["reason"].as_str().unwrap().to_string())
                .collect();
            if ev.iter().any(|e| e.contains(done)) {
                return ev;
            }
            assert!(guest.running(), "{}: QEMU ended; events {ev:?}; console {}", node, guest.log.display());
            assert!(
                t0.elapsed() < Duration::from_secs(480),
                "{node}: no {done:?} within 480 s; events {ev:?}; console {}; server log:\n{}",
                guest.log.display(),
                self.server_log()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn metric(&self, name: &str) -> u64 {
        let out =
            self.fabric.sender().command("curl").args(["-sf", &format!("{}/metrics", self.url)]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0)
    }

    fn guest(&self, tap: &str, mac: &str, boot: GuestBoot<'_>) -> Guest {
        Guest::start(
            self.fabric.tap(tap).unwrap(),
            &GuestSpec { name: tap, boot, nic_model: "virtio-net-pci", mac, disk: None, memory_mb: 512 },
            self.dir.path().join(format!("{tap}.console")),
        )
        .expect("starting QEMU")
    }
}

/// The runtime's kernel and initramfs (the static `metalcast-node` as init).
fn runtime(dir: &Path) -> (PathBuf, PathBuf) {
    let (vmlinuz, modules) = metalcast_fabric::qemu::kernel().unwrap();
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let node = metalcast_fabric::qemu::static_node(ws).unwrap();
    let key = metalcast_image::SecretKey::generate();
    key.save(&dir.join("site")).unwrap();
    let initrd = dir.join("runtime.img");
    metalcast_image::initramfs::build_initramfs(
        &metalcast_image::initramfs::InitramfsSpec {
            init: node,
            modules_root: Some(modules),
            modules: metalcast_fabric::qemu::GUEST_MODULES.iter().map(|m| m.to_string()).collect(),
            files: vec![(dir.join("site.pub"), "/etc/metalcast/trusted/site.pub".into())],
            programs: Vec::new(),
            zstd_level: 3,
        },
        &initrd,
    )
    .unwrap();
    (vmlinuz, initrd)
}

fn runnable() -> bool {
    if let Err(reason) = prerequisites() {
        assert!(!metalcast_fabric::require_privileged(), "cannot run: {reason}");
        eprintln!("SKIP: {reason}");
        return false;
    }
    true
}

#[test]
fn uefi_full_mode_and_enrollment() {
    skip_unless_root!();
    if !runnable() {
        return;
    }
    let t0 = Instant::now();
    let bed = Bed::start(
        &[],
        &["u0", "e0"],
        &["--netboot-mode", "full", "--netboot-pool", "10.77.0.100-10.77.0.150", "--netboot-enroll"],
    );
    // The pool must be on the fabric's subnet.
    let [a, b, c, _] = bed.fabric.sender().ipv4().octets();
    assert_eq!([a, b, c], [10, 77, 0], "the fabric's subnet moved; adjust the pool");
    let (uefi_mac, new_mac) = ("52:54:00:4e:00:01", "52:54:00:4e:00:02");
    bed.register("u0", uefi_mac);
    let mut uefi = bed.guest("u0", uefi_mac, GuestBoot::UefiPxe);
    let mut newcomer = bed.guest("e0", new_mac, GuestBoot::BiosPxe);

    let ev = bed.wait_events("u0", "runtime checked in from", &mut uefi);
    eprintln!("u0 events after {:.0}s: {ev:#?}", t0.elapsed().as_secs_f64());
    for want in ["DHCP offered", "with ipxe.efi", "ipxe.efi sent over TFTP", "iPXE script fetched: the runtime"] {
        assert!(ev.iter().any(|e| e.contains(want)), "{want:?} in {ev:?}");
    }
    for want in ["kernel fetched", "initrd fetched"] {
        assert!(ev.iter().any(|e| e == want), "{want:?} in {ev:?}");
    }
    assert!(ev.iter().all(|e| !e.contains("?t=s.")), "no token in the event log: {ev:?}");

    // The unknown machine enrolls itself with its inventory.
    let t1 = Instant::now();
    let pending = loop {
        let list = bed.json(&["enrollment", "list"]);
        if let Some(e) = list.as_array().unwrap().iter().find(|e| e["mac"] == new_mac) {
            break e.clone();
        }
        assert!(newcomer.running(), "e0: QEMU ended; console {}", newcomer.log.display());
        let log = bed.server_log();
        // An address without a boot file means enrollment is off: fail now, not after the bound.
        assert!(!log.contains(&format!("address only mac={new_mac}")), "e0 got no boot file: {log}");
        assert!(t1.elapsed() < Duration::from_secs(480), "e0 did not enroll: {log}");
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(pending["state"], "pending");
    assert!(pending["inventory"]["cpus"].as_u64().unwrap() >= 1, "{pending}");
    assert!(pending["inventory"]["memory_bytes"].as_u64().unwrap() > 256 << 20, "{pending}");
    let v = bed.json(&["enrollment", "accept", new_mac, "--node", "rack1-n1"]);
    assert_eq!((v["state"].as_str(), v["node"].as_str()), (Some("accepted"), Some("rack1-n1")));
    let node = bed.json(&["node", "show", "rack1-n1"]);
    assert_eq!(node["nics"][0]["macaddr"], new_mac, "{node}");

    let leases = bed.json(&["netboot", "leases"]);
    for (mac, node) in [(uefi_mac, Value::from("u0")), (new_mac, Value::from("rack1-n1"))] {
        let l = leases.as_array().unwrap().iter().find(|l| l["mac"] == mac).unwrap_or_else(|| panic!("{leases}"));
        assert_eq!((&l["state"], &l["node"]), (&Value::from("bound"), &node), "{l}");
    }
    assert!(bed.metric("metalcast_netboot_total{what=\"tftp_sent\"}") >= 1);
    eprintln!("netboot UEFI + enrollment wall time: {:.1}s", t0.elapsed().as_secs_f64());
}

#[test]
fn proxy_mode_beside_a_site_dhcp_server() {
    skip_unless_root!();
    if !runnable() {
        return;
    }
    let t0 = Instant::now();
    let bed = Bed::start(&["site"], &["p0", "x0"], &["--netboot-mode", "proxy"]);
    // The site's DHCP server: addresses only, no boot options, in its own namespace.
    let site = bed.fabric.host("site");
    let [a, b, c, _] = site.ipv4().octets();
    let _dhcp = Killed(
        site.command("dnsmasq")
            .args(["--no-daemon", "--conf-file=/dev/null", "--bind-interfaces", "--port=0", "--no-ping"])
            .arg(format!("--interface={}", site.ifname()))
            .arg(format!("--dhcp-range={a}.{b}.{c}.100,{a}.{b}.{c}.150,255.255.255.0,1h"))
            .arg(format!("--dhcp-leasefile={}", bed.dir.path().join("site.leases").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dnsmasq"),
    );
    let (known, unknown) = ("52:54:00:50:00:01", "52:54:00:50:00:02");
    bed.register("p0", known);
    let mut g = bed.guest("p0", known, GuestBoot::BiosPxe);
    let stranger = bed.guest("x0", unknown, GuestBoot::BiosPxe);
    let ev = bed.wait_events("p0", "runtime checked in from", &mut g);
    eprintln!("p0 events after {:.0}s: {ev:#?}", t0.elapsed().as_secs_f64());
    assert!(ev.iter().any(|e| e.contains("proxyDHCP offered")), "{ev:?}");
    assert!(ev.iter().all(|e| !e.contains("DHCP offered 10.")), "proxy mode never hands out an address: {ev:?}");
    // Its address came from the site server.
    let leases = std::fs::read_to_string(bed.dir.path().join("site.leases")).unwrap_or_default();
    assert!(leases.contains(known), "the site DHCP server leased p0 an address: {leases}");
    // The unknown MAC was asked about and got nothing from metalcast.
    drop(stranger);
    assert!(bed.metric("metalcast_netboot_total{what=\"unknown_or_denied\"}") >= 1, "{}", bed.server_log());
    assert!(bed.json(&["enrollment", "list"]).as_array().unwrap().is_empty());
    eprintln!("netboot proxy wall time: {:.1}s", t0.elapsed().as_secs_f64());
}
