//! The `qmp` BMC driver against a real QEMU: power, boot device (qdev
//! `bootindex` through QMP, read back independently) and the console log
//! (serial port on a unix socket; the guest is a 512-byte boot sector that
//! prints a line on COM1, so no kernel download is needed).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::Harness;

/// QEMU child process, killed (by its own handle) on drop.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the boot sector prints on the serial port.
const BOOT_MESSAGE: &str = "metalcast-console-ok";

/// A raw disk whose MBR writes [`BOOT_MESSAGE`] to COM1 (port 0x3f8) and halts.
fn boot_disk(path: &Path) {
    #[rustfmt::skip]
    let code: [u8; 23] = [
        0xFA,             // cli
        0xFC,             // cld
        0x31, 0xC0,       // xor ax, ax
        0x8E, 0xD8,       // mov ds, ax
        0xBE, 0x17, 0x7C, // mov si, 0x7c17 (the message, right after the code)
        0xAC,             // next: lodsb
        0x84, 0xC0,       // test al, al
        0x74, 0x06,       // jz done
        0xBA, 0xF8, 0x03, // mov dx, 0x3f8
        0xEE,             // out dx, al
        0xEB, 0xF5,       // jmp next
        0xF4,             // done: hlt
        0xEB, 0xFD,       // jmp done
    ];
    let mut img = vec![0u8; 64 * 1024];
    img[..code.len()].copy_from_slice(&code);
    let msg = format!("{BOOT_MESSAGE}\r\n\0");
    img[code.len()..code.len() + msg.len()].copy_from_slice(msg.as_bytes());
    img[510] = 0x55;
    img[511] = 0xAA;
    std::fs::write(path, img).unwrap();
}

fn have_qemu() -> bool {
    let probe = Command::new("qemu-system-x86_64").arg("--version").stdout(Stdio::null()).status();
    probe.is_ok_and(|s| s.success())
}

fn wait_for_socket(sock: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while UnixStream::connect(sock).is_err() {
        assert!(Instant::now() < deadline, "QEMU did not open {}", sock.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `qom-get <qdev id>.bootindex` over our own QMP connection (independent of
/// the driver under test).
fn bootindex(sock: &Path, id: &str) -> i64 {
    let s = UnixStream::connect(sock).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let get = json!({"execute": "qom-get", "arguments": {"path": format!("/machine/peripheral/{id}"), "property": "bootindex"}});
    let mut answers = Vec::new();
    for cmd in [json!({"execute": "qmp_capabilities"}), get] {
        writeln!(w, "{cmd}").unwrap();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            if let Some(ret) = v.get("return") {
                answers.push(ret.clone());
                break;
            }
            assert!(v.get("error").is_none(), "{v}");
        }
    }
    answers[1].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qmp_against_qemu() {
    if !have_qemu() {
        super::skip("qmp_against_qemu needs qemu-system-x86_64; run control-plane/ci-setup.sh");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let console = dir.path().join("console.sock");
    let disk = dir.path().join("boot.img");
    boot_disk(&disk);
    let _qemu = Qemu(
        Command::new("qemu-system-x86_64")
            .args(["-machine", "pc", "-accel", "tcg", "-m", "32", "-nodefaults", "-display", "none", "-S"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .arg("-chardev")
            .arg(format!("socket,id=ser0,path={},server=on,wait=off", console.display()))
            .args(["-serial", "chardev:ser0"])
            .arg("-drive")
            .arg(format!("file={},format=raw,if=none,id=d0", disk.display()))
            .args(["-device", "ide-hd,drive=d0,id=disk0,bootindex=1"])
            // A NIC without a backend: a boot target only, it never sends anything anywhere.
            .args(["-device", "e1000,id=nic0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn qemu"),
    );
    wait_for_socket(&sock);
    wait_for_socket(&console);

    let h = Harness::sqlite().await;
    h.ok("PUT", "/v0/project/pa", None).await;
    h.ok("PUT", "/v0/project/pb", None).await;
    let bob = h.user("bob", &["pb"]).await;
    let obm = json!({"type": "qmp", "socket": sock, "console": console, "disk_device": "disk0", "pxe_device": "nic0"});
    h.ok("PUT", "/v0/node/vm1", Some(json!({ "obm": obm }))).await;
    h.ok("POST", "/v0/project/pa/connect_node", Some(json!({"node": "vm1"}))).await;
    let power = || async { h.ok("GET", "/v0/node/vm1/power_status", None).await["power_status"].clone() };
    assert_eq!(power().await, "off", "started with -S");

    // Console: none before start; capture from power-on; other projects see nothing.
    let (s, v) = h.call("GET", "/v0/node/vm1/console", &h.admin, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    h.ok("PUT", "/v0/node/vm1/console", None).await;
    h.ok("PUT", "/v0/node/vm1/console", None).await; // idempotent
    h.ok("POST", "/v0/node/vm1/power_on", None).await;
    assert_eq!(power().await, "on");
    let log_with = |n: usize| {
        let h = &h;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let log = h.ok("GET", "/v0/node/vm1/console", None).await;
                let log = log.as_str().unwrap_or_default().to_string();
                if log.matches(BOOT_MESSAGE).count() >= n {
                    return log;
                }
                assert!(Instant::now() < deadline, "console never showed {n}x {BOOT_MESSAGE:?}: {log:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    log_with(1).await;
    let (s, _) = h.call("GET", "/v0/node/vm1/console", &bob, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Boot device: QEMU's bootindex properties, read back over our own QMP connection.
    let set = |dev: &'static str| {
        let h = &h;
        async move { h.ok("PUT", "/v0/node/vm1/boot_device", Some(json!({"bootdev": dev}))).await }
    };
    set("pxe").await;
    assert_eq!((bootindex(&sock, "disk0"), bootindex(&sock, "nic0")), (-1, 1));
    set("none").await;
    assert_eq!((bootindex(&sock, "disk0"), bootindex(&sock, "nic0")), (-1, -1));
    set("disk").await;
    assert_eq!((bootindex(&sock, "disk0"), bootindex(&sock, "nic0")), (1, -1));
    let (s, v) = h.call("PUT", "/v0/node/vm1/boot_device", &h.admin, Some(json!({"bootdev": "cdrom"}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    // A reset boots the disk again (the rewritten boot order is used).
    h.ok("POST", "/v0/node/vm1/power_cycle", None).await;
    assert_eq!(power().await, "on");
    log_with(2).await;
    h.ok("POST", "/v0/node/vm1/power_off", None).await;
    assert_eq!(power().await, "off");

    // Stop deletes the log; releasing the node stops a running capture.
    h.ok("DELETE", "/v0/node/vm1/console", None).await;
    let (s, _) = h.call("GET", "/v0/node/vm1/console", &h.admin, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    h.ok("PUT", "/v0/node/vm1/console", None).await;
    h.ok("POST", "/v0/project/pa/detach_node", Some(json!({"node": "vm1"}))).await;
    let (s, _) = h.call("GET", "/v0/node/vm1/console", &h.admin, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a released node's console log must be gone");
    h.finish().await;
}

/// Drivers without console support (or a qmp node without a console
/// socket, or boot devices) say so with 501 and a clear message.
#[tokio::test]
async fn console_and_bootdev_limits_are_501() {
    let h = Harness::sqlite().await;
    let redfish = json!({"type": "redfish", "url": "http://127.0.0.1:1"});
    h.ok("PUT", "/v0/node/bmc1", Some(json!({ "obm": redfish }))).await;
    let (s, v) = h.call("PUT", "/v0/node/bmc1/console", &h.admin, None).await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("redfish driver does not capture the console"), "{v}");
    h.ok("PUT", "/v0/node/vm2", Some(json!({"obm": {"type": "qmp", "socket": "/nonexistent/qmp.sock"}}))).await;
    let (s, v) = h.call("PUT", "/v0/node/vm2/console", &h.admin, None).await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{v}");
    let (s, v) = h.call("PUT", "/v0/node/vm2/boot_device", &h.admin, Some(json!({"bootdev": "pxe"}))).await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("pxe_device"), "{v}");
    let bad = json!({"obm": {"type": "qmp", "socket": "/x", "disk_device": "-drive"}});
    let (s, v) = h.call("PUT", "/v0/node/vm3", &h.admin, Some(bad)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    h.finish().await;
}
