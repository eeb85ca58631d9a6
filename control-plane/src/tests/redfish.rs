//! The `redfish` BMC driver against sushy-tools' emulator (`sushy-emulator
//! --fake`: in-memory systems, no libvirt) on loopback.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Harness;

/// Emulator child process, killed (by its own handle) on drop.
struct Emulator(Child);

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Poll `cond` until it holds or `secs` pass. The fake driver applies power
/// changes 1-11 s after the request, so state must be polled.
async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redfish_against_sushy_emulator() {
    let probe = Command::new("sushy-emulator").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !probe.is_ok_and(|s| s.success()) {
        super::skip(
            "redfish_against_sushy_emulator needs sushy-emulator (pip install sushy-tools); run control-plane/ci-setup.sh",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sushy.conf");
    std::fs::write(&cfg, format!("SUSHY_EMULATOR_STATE_DIR = '{}'\n", dir.path().join("state").display())).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _emu = Emulator(
        Command::new("sushy-emulator")
            .args(["--fake", "-i", "127.0.0.1", "-p", &port.to_string(), "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sushy-emulator"),
    );
    let base = format!("http://127.0.0.1:{port}");
    crate::install_tls_provider(); // reqwest is built with rustls and no default provider
    let http = reqwest::Client::new();
    eventually(30, "sushy-emulator to answer", || {
        let r = http.get(format!("{base}/redfish/v1/Systems")).send();
        async move { r.await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;

    let h = Harness::sqlite().await;
    h.ok("PUT", "/v0/project/pa", None).await;
    h.ok("PUT", "/v0/node/rf1", Some(json!({"obm": {"type": "redfish", "url": base}}))).await;
    h.ok("POST", "/v0/project/pa/connect_node", Some(json!({"node": "rf1"}))).await;
    let power = || async { h.ok("GET", "/v0/node/rf1/power_status", None).await["power_status"].clone() };
    assert_eq!(power().await, "off");
    h.ok("POST", "/v0/node/rf1/power_on", None).await;
    eventually(20, "power on", || async { power().await == "on" }).await;
    h.ok("POST", "/v0/node/rf1/power_off", None).await;
    eventually(20, "power off", || async { power().await == "off" }).await;
    h.ok("PUT", "/v0/node/rf1/boot_device", Some(json!({"bootdev": "pxe"}))).await;
    let systems: Value = http.get(format!("{base}/redfish/v1/Systems")).send().await.unwrap().json().await.unwrap();
    let sys_path = systems["Members"][0]["@odata.id"].as_str().unwrap();
    let sys: Value = http.get(format!("{base}{sys_path}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(sys["Boot"]["BootSourceOverrideTarget"], "Pxe", "{sys}");

    // A system id that does not exist: driver error, generic message.
    h.ok("PUT", "/v0/node/rf2", Some(json!({"obm": {"type": "redfish", "url": base, "system": "nope"}}))).await;
    let (s, v) = h.call("POST", "/v0/node/rf2/power_on", &h.admin, None).await;
    assert_eq!(s.as_u16(), 502, "{v}");
    assert_eq!(v["msg"], "driver error: BMC protocol error");
    h.finish().await;
}
