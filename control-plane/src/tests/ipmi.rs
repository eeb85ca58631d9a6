//! The `ipmi` BMC driver (ipmitool) against OpenIPMI's `ipmi_sim`, on
//! loopback, through the REST API.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::Harness;

/// `ipmi_sim` child process, killed (by its own handle) on drop.
struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What the simulated serial port prints.
const SOL_MESSAGE: &str = "metalcast-sol-line";

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn write_config(dir: &Path, port: u16, serial_port: u16) {
    let chassis = dir.join("chassis.sh");
    // ipmi_sim runs this as `chassis.sh get <param>...` or
    // `chassis.sh set <param> <value>...`; state lives in files.
    std::fs::write(
        &chassis,
        format!(
            r#"#!/bin/sh
d={dir}
echo "$@" >> $d/calls.log
op=$1; shift
case $op in
  get) for p in "$@"; do
         case $p in
           power) echo "power:$(cat $d/power 2>/dev/null || echo 0)";;
           boot) echo "boot:$(cat $d/boot 2>/dev/null || echo none)";;
         esac
       done;;
  set) while [ $# -gt 1 ]; do echo "$2" > $d/$1; shift 2; done;;
esac
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&chassis).status().unwrap();
    std::fs::write(
        dir.join("lan.conf"),
        format!(
            r#"name "mctest"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{chassis}"
  sol "tcp:127.0.0.1:{serial_port}" 115200
user 2 true "admin" "s3cret" admin 10 none md2 md5 straight
"#,
            chassis = chassis.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("sim.emu"),
        "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmitool_against_ipmi_sim() {
    if !have("ipmi_sim") || !have("ipmitool") {
        super::skip("ipmitool_against_ipmi_sim needs ipmi_sim (openipmi) and ipmitool; run control-plane/ci-setup.sh");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    // The node's serial port: ipmi_sim connects here for serial-over-LAN;
    // every connection gets a numbered line every 100 ms.
    let serial = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let serial_port = serial.local_addr().unwrap().port();
    let serial_task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = serial.accept().await else { return };
            tokio::spawn(async move {
                for i in 0u64.. {
                    let line = format!("{SOL_MESSAGE} {i}\r\n");
                    if tokio::io::AsyncWriteExt::write_all(&mut conn, line.as_bytes()).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
    });
    write_config(dir.path(), port, serial_port);
    let _sim = Sim(Command::new("ipmi_sim")
        .arg("-c")
        .arg(dir.path().join("lan.conf"))
        .arg("-f")
        .arg(dir.path().join("sim.emu"))
        .arg("-n")
        .arg("-s")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ipmi_sim"));
    let obm = crate::drivers::ObmConfig::Ipmi {
        host: "127.0.0.1".into(),
        port: Some(port),
        user: "admin".into(),
        password: "s3cret".into(),
        interface: None,
        cipher_suite: Some(3),
    };
    // Readiness: poll the simulator with a bounded deadline.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match obm.driver(None).power_status().await {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => panic!("ipmi_sim never answered: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }

    let h = Harness::sqlite().await;
    h.ok("PUT", "/v0/project/pa", None).await;
    h.ok("PUT", "/v0/node/bm1", Some(json!({"obm": serde_json::to_value(&obm).unwrap()}))).await;
    h.ok("POST", "/v0/project/pa/connect_node", Some(json!({"node": "bm1"}))).await;
    assert_eq!(h.ok("GET", "/v0/node/bm1/power_status", None).await["power_status"], "off");
    h.ok("POST", "/v0/node/bm1/power_on", None).await;
    assert_eq!(h.ok("GET", "/v0/node/bm1/power_status", None).await["power_status"], "on");
    h.ok("POST", "/v0/node/bm1/power_off", None).await;
    assert_eq!(h.ok("GET", "/v0/node/bm1/power_status", None).await["power_status"], "off");
    // Cycle of an off node powers it on (HIL semantics).
    h.ok("POST", "/v0/node/bm1/power_cycle", None).await;
    assert_eq!(h.ok("GET", "/v0/node/bm1/power_status", None).await["power_status"], "on");
    h.ok("PUT", "/v0/node/bm1/boot_device", Some(json!({"bootdev": "pxe"}))).await;
    let calls = std::fs::read_to_string(dir.path().join("calls.log")).unwrap();
    assert!(calls.contains("set boot pxe"), "{calls}");
    // Console log over IPMI serial-over-LAN (ipmitool sol activate).
    let (s, _) = h.call("GET", "/v0/node/bm1/console", &h.admin, None).await;
    assert_eq!(s.as_u16(), 404);
    for round in 0..2 {
        // The second round restarts after a stop (the driver deactivates a
        // session left behind first).
        h.ok("PUT", "/v0/node/bm1/console", None).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = h.ok("GET", "/v0/node/bm1/console", None).await;
            let log = log.as_str().unwrap_or_default().to_string();
            if log.matches(SOL_MESSAGE).count() >= 3 {
                assert!(!log.contains("SOL Session operational"), "ipmitool's banner is not console output: {log:?}");
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: no SOL output in the console log: {log:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        h.ok("DELETE", "/v0/node/bm1/console", None).await;
        let (s, _) = h.call("GET", "/v0/node/bm1/console", &h.admin, None).await;
        assert_eq!(s.as_u16(), 404);
    }

    // The BMC password is never shown.
    let node = h.ok("GET", "/v0/node/bm1", None).await;
    assert!(!node.to_string().contains("s3cret"), "{node}");

    // Wrong password: a driver error (502) with a generic message.
    h.ok(
        "PUT",
        "/v0/node/bm2",
        Some(json!({"obm": {"type": "ipmi", "host": "127.0.0.1", "port": port, "user": "admin",
                            "password": "wrong", "cipher_suite": 3}})),
    )
    .await;
    let (s, v) = h.call("POST", "/v0/node/bm2/power_on", &h.admin, None).await;
    assert_eq!(s.as_u16(), 502, "{v}");
    assert_eq!(v["msg"], "driver error: ipmitool reported failure");
    h.finish().await;
    serial_task.abort();
}
