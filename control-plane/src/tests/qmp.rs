//! The `qmp` BMC driver against a real QEMU (`-machine none`, no KVM
//! needed) listening on a QMP unix socket.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::Harness;

/// QEMU child process, killed (by its own handle) on drop.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qmp_against_qemu() {
    let probe = Command::new("qemu-system-x86_64").arg("--version").stdout(Stdio::null()).status();
    if !probe.is_ok_and(|s| s.success()) {
        super::skip("qmp_against_qemu needs qemu-system-x86_64; run control-plane/ci-setup.sh");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let _qemu = Qemu(
        Command::new("qemu-system-x86_64")
            .args(["-machine", "none", "-nodefaults", "-display", "none", "-S", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn qemu"),
    );
    // Readiness: the socket accepts connections (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "QEMU did not open its QMP socket");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let h = Harness::sqlite().await;
    h.ok("PUT", "/v0/project/pa", None).await;
    h.ok("PUT", "/v0/node/vm1", Some(json!({"obm": {"type": "qmp", "socket": sock}}))).await;
    h.ok("POST", "/v0/project/pa/connect_node", Some(json!({"node": "vm1"}))).await;
    let power = || async { h.ok("GET", "/v0/node/vm1/power_status", None).await["power_status"].clone() };
    assert_eq!(power().await, "off", "started with -S");
    h.ok("POST", "/v0/node/vm1/power_on", None).await;
    assert_eq!(power().await, "on");
    h.ok("POST", "/v0/node/vm1/power_off", None).await;
    assert_eq!(power().await, "off");
    h.ok("POST", "/v0/node/vm1/power_cycle", None).await;
    assert_eq!(power().await, "on");
    let (s, v) = h.call("PUT", "/v0/node/vm1/boot_device", &h.admin, Some(json!({"bootdev": "pxe"}))).await;
    assert_eq!(s.as_u16(), 502, "{v}");
    assert_eq!(v["msg"], "driver error: the qmp driver cannot change the boot device");
    h.finish().await;
}
