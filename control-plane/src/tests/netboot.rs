//! Built-in netboot's control-plane side, on SQLite and PostgreSQL: the
//! decision table over the database, the iPXE script and files behind
//! signed tokens, the check-in gate, enrollment, and full mode's leases.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use metalcast_netboot::{self as nb, Backend as _};
use serde_json::{Value, json};

use super::{Harness, Who};
use crate::app::netboot::{DbBackend, NetbootConfig, Purpose};

const BASE: &str = "http://10.9.0.1:7000";

/// Runs `$name(&Harness, &Files)` with netboot on, on SQLite and PostgreSQL.
macro_rules! netboot_backends {
    ($name:ident, $enroll:expr) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let files = super::Files::new();
                let h = $crate::tests::Harness::sqlite().await.with_netboot(files.config($enroll)).await;
                super::$name(&h, &files).await;
                h.finish().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if let Some(h) = $crate::tests::Harness::postgres().await {
                    let files = super::Files::new();
                    let h = h.with_netboot(files.config($enroll)).await;
                    super::$name(&h, &files).await;
                    h.finish().await;
                }
            }
        }
    };
}

/// A runtime kernel and initrd, and a boot directory with `ipxe.efi`.
struct Files {
    dir: tempfile::TempDir,
    kernel: Vec<u8>,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let kernel: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(dir.path().join("vmlinuz"), &kernel).unwrap();
        std::fs::write(dir.path().join("initrd"), b"initrd bytes").unwrap();
        std::fs::write(dir.path().join("ipxe.efi"), b"MZ efi").unwrap();
        Files { dir, kernel }
    }

    fn config(&self, enroll: bool) -> NetbootConfig {
        NetbootConfig {
            base_url: BASE.into(),
            kernel: Some(self.dir.path().join("vmlinuz")),
            initrd: Some(self.dir.path().join("initrd")),
            cmdline: "ip=dhcp console=ttyS0".into(),
            enroll,
            boot_dir: self.dir.path().to_path_buf(),
            ..Default::default()
        }
    }
}

fn mac(s: &str) -> nb::Mac {
    s.parse().unwrap()
}

async fn node_with_nic(h: &Harness, node: &str, mac: &str, project: Option<&str>) {
    h.ok("PUT", &format!("/v0/node/{node}"), Some(json!({ "obm": crate::drivers::mock::obm(node) }))).await;
    h.ok("PUT", &format!("/v0/node/{node}/nic/eth0"), Some(json!({ "macaddr": mac }))).await;
    if let Some(p) = project {
        h.ok("PUT", &format!("/v0/project/{p}"), None).await;
        h.ok("POST", &format!("/v0/project/{p}/connect_node"), Some(json!({ "node": node }))).await;
    }
}

/// The script URL the backend hands an iPXE client, or `None` (address only).
async fn decide(h: &Harness, m: &str) -> Option<String> {
    match DbBackend(h.st.clone()).decide(mac(m), nb::Client::Ipxe { uefi: false }).await.unwrap() {
        nb::Decision::Netboot { script_url } => Some(script_url),
        nb::Decision::AddressOnly => None,
    }
}

/// GET of a `/boot` URL (absolute, under [`BASE`]) without credentials.
async fn fetch(h: &Harness, url: &str) -> (StatusCode, Vec<u8>) {
    let path = url.strip_prefix(BASE).unwrap_or(url);
    h.raw_bytes("GET", path, &Who::Anon, Vec::new()).await
}

/// The value of `key=` on the script's kernel line.
fn word(script: &str, key: &str) -> String {
    script.split_whitespace().find_map(|w| w.strip_prefix(key)).unwrap_or_else(|| panic!("{key} in {script}")).into()
}

async fn checkin(h: &Harness, mac: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut c = json!({"node": mac, "role": "runtime", "boot_id": "b1", "version": "0",
        "address": "10.9.0.100", "uptime_secs": 5.0, "network_secs": 0.1,
        "inventory": {"nics": [], "cpus": 16, "memory_bytes": 68_719_476_736u64,
                      "disks": [{"name": "vda", "size_bytes": 1_073_741_824u64}], "kernel": "6.1"}});
    if let Some(t) = token {
        c["token"] = json!(t);
    }
    let req = axum::http::Request::post("/v1/runtime/checkin")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(c.to_string()))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(h.app.clone(), req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn metric(h: &Harness, line_prefix: &str) -> u64 {
    let (s, b) = h.raw_bytes("GET", "/metrics", &Who::Anon, Vec::new()).await;
    assert_eq!(s, StatusCode::OK);
    String::from_utf8_lossy(&b)
        .lines()
        .find_map(|l| l.strip_prefix(line_prefix).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0)
}

async fn events(h: &Harness, node: &str) -> Vec<String> {
    let v = h.ok("GET", &format!("/v1/events?node={node}"), None).await;
    v.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "netboot")
        .map(|e| e["reason"].as_str().unwrap().into())
        .collect()
}

async fn script_and_files_behind_tokens(h: &Harness, files: &Files) {
    let m1 = "52:54:00:aa:00:01";
    node_with_nic(h, "n1", "52:54:00:AA:00:01", Some("p1")).await;
    let url = decide(h, m1).await.expect("a known node with boot=runtime netboots");
    assert!(url.starts_with(&format!("{BASE}/boot/{m1}/script.ipxe?t=s.")), "{url}");

    let (s, body) = fetch(h, &url).await;
    assert_eq!(s, StatusCode::OK);
    let script = String::from_utf8(body).unwrap();
    assert!(script.starts_with("#!ipxe\n"), "{script}");
    assert!(script.contains("node n1"), "{script}");
    let kernel_line = script.lines().find(|l| l.starts_with("kernel ")).unwrap();
    let kernel_url = kernel_line.split_whitespace().nth(3).unwrap();
    assert!(kernel_url.starts_with(&format!("{BASE}/boot/{m1}/vmlinuz?t=s.")), "{kernel_line}");
    assert!(kernel_line.contains(" ip=dhcp console=ttyS0 "), "{kernel_line}");
    assert_eq!(word(&script, "metalcast.cp="), BASE);
    let ctok = word(&script, "metalcast.token=");
    assert!(ctok.starts_with("c.525400aa0001."), "{ctok}");
    let initrd_url = script.lines().find(|l| l.starts_with("initrd ")).unwrap().split_whitespace().nth(3).unwrap();

    let (s, k) = fetch(h, kernel_url).await;
    assert_eq!(s, StatusCode::OK);
    assert!(k == files.kernel, "the kernel arrives whole ({} of {} bytes)", k.len(), files.kernel.len());
    let (s, i) = fetch(h, initrd_url).await;
    assert_eq!((s, i.as_slice()), (StatusCode::OK, b"initrd bytes".as_slice()));
    let (s, e) = fetch(h, "/boot/ipxe.efi").await;
    assert_eq!((s, e.as_slice()), (StatusCode::OK, b"MZ efi".as_slice()));

    // Refusals: a forged, another MAC's, a missing, an expired, and a check-in token.
    let tok = url.split("?t=").nth(1).unwrap();
    let forged = format!("{}{}", &tok[..tok.len() - 1], if tok.ends_with('0') { '1' } else { '0' });
    let m2 = "52:54:00:aa:00:02";
    let key = {
        // The key every replica shares, straight from the database.
        let hexkey: String = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = 'netboot-token-key'")
            .fetch_one(&h.st.db.pool)
            .await
            .unwrap();
        let v = hex::decode(hexkey).unwrap();
        <[u8; 32]>::try_from(v.as_slice()).unwrap()
    };
    let expired = crate::app::netboot::sign(&key, Purpose::Script, m1, crate::now() - 100, Duration::from_secs(10));
    let refused_before = metric(h, "metalcast_netboot_http_total{what=\"token_refused\"}").await;
    for (path, why) in [
        (format!("/boot/{m1}/script.ipxe?t={forged}"), "forged"),
        (format!("/boot/{m2}/script.ipxe?t={tok}"), "another MAC"),
        (format!("/boot/{m1}/vmlinuz"), "malformed"),
        (format!("/boot/{m1}/initrd?t={expired}"), "expired"),
        (format!("/boot/{m1}/script.ipxe?t={ctok}"), "another purpose"),
    ] {
        let (s, v) = h.call("GET", &path, &Who::Anon, None).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}: {v}");
        assert!(v["msg"].as_str().unwrap().contains(why), "{path}: {v}");
    }
    assert_eq!(metric(h, "metalcast_netboot_http_total{what=\"token_refused\"}").await, refused_before + 5);
    let (s, _) = h.call("GET", "/boot/not-a-mac/script.ipxe?t=x", &Who::Anon, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // The check-in gate: the script's token is taken, a forged or another MAC's is refused and not recorded.
    let (s, v) = checkin(h, m1, Some(&ctok)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let refused = h.st.runtime.refused_checkins();
    let (s, v) = checkin(h, m2, Some(&ctok)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"].as_str().unwrap().contains("another MAC"), "{v}");
    let (s, _) = checkin(h, m1, Some(&ctok.replace("c.", "e."))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(h.st.runtime.refused_checkins(), refused + 2);
    assert!(crate::app::runtime::node(&h.st, m2).await.unwrap().is_none(), "a refused check-in is not recorded");
    // A runtime started by hand (no token) still checks in.
    assert_eq!(checkin(h, m2, None).await.0, StatusCode::OK);

    let ev = events(h, "n1").await;
    for want in ["iPXE script fetched: the runtime", "kernel fetched", "initrd fetched", "runtime checked in from"] {
        assert!(ev.iter().any(|e| e.contains(want)), "{want} in {ev:?}");
    }

    // What the node boots: its project's members may set it; others may not.
    let member = h.user("alice", &["p1"]).await;
    let stranger = h.user("bob", &[]).await;
    let (s, _) = h.call("PUT", "/v1/nodes/n1/boot", &stranger, Some(json!({"boot": "local"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = h.call("PUT", "/v1/nodes/n1/boot", &member, Some(json!({"boot": "local"}))).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"boot": "local"})));
    let (s, v) = h.call("PUT", "/v1/nodes/n1/boot", &member, Some(json!({"boot": "disk"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let url = decide(h, m1).await.expect("boot=local still gets a script: it exits to the disk");
    let script = String::from_utf8(fetch(h, &url).await.1).unwrap();
    assert!(script.contains("\nexit\n") && !script.contains("kernel"), "{script}");
    h.ok("PUT", "/v1/nodes/n1/boot", Some(json!({"boot": "none"}))).await;
    assert_eq!(decide(h, m1).await, None, "boot=none: an address only");
    assert_eq!(h.ok("GET", "/v1/nodes/n1/boot", None).await, json!({"boot": "none"}));
    // An unknown MAC without enrollment: an address only.
    assert_eq!(decide(h, "52:54:00:aa:00:99").await, None);
}
netboot_backends!(script_and_files_behind_tokens, false);

async fn enrollment(h: &Harness, _files: &Files) {
    let (m9, m10) = ("52:54:00:bb:00:09", "52:54:00:bb:00:10");
    let url = decide(h, m9).await.expect("enrollment on: an unknown MAC boots the runtime");
    let script = String::from_utf8(fetch(h, &url).await.1).unwrap();
    assert!(script.contains("enrollment of 52:54:00:bb:00:09") && script.contains("metalcast.enroll=1"), "{script}");
    let etok = word(&script, "metalcast.token=");
    assert!(etok.starts_with("e."), "{etok}");
    assert_eq!(checkin(h, m9, Some(&etok)).await.0, StatusCode::OK);
    // Enrollment needs its token: a tokenless check-in of an unknown MAC records nothing.
    assert_eq!(checkin(h, m10, None).await.0, StatusCode::OK);
    let list = h.ok("GET", "/v1/enrollments", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["mac"], m9);
    assert_eq!(list[0]["state"], "pending");
    assert_eq!(list[0]["inventory"]["cpus"], 16);
    let user = h.user("carol", &[]).await;
    assert_eq!(h.call("GET", "/v1/enrollments", &user, None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        h.call("POST", &format!("/v1/enrollments/{m9}/accept"), &user, Some(json!({"node": "r1n9"}))).await.0,
        StatusCode::FORBIDDEN
    );

    let v = h.ok("POST", &format!("/v1/enrollments/{m9}/accept"), Some(json!({"node": "r1n9"}))).await;
    assert_eq!((v["state"].as_str(), v["node"].as_str()), (Some("accepted"), Some("r1n9")));
    let nics = h.ok("GET", "/v0/node/r1n9", None).await;
    assert_eq!(nics["nics"][0]["macaddr"], m9, "{nics}");
    let (s, _) = h.call("POST", &format!("/v1/enrollments/{m9}/accept"), &h.admin, Some(json!({"node": "x"}))).await;
    assert_eq!(s, StatusCode::CONFLICT, "accepted once");
    let url = decide(h, m9).await.unwrap();
    let script = String::from_utf8(fetch(h, &url).await.1).unwrap();
    assert!(script.contains("node r1n9") && !script.contains("enroll=1"), "{script}");
    // Its old enrollment token still checks it in (it is a node now).
    assert_eq!(checkin(h, m9, Some(&etok)).await.0, StatusCode::OK);

    // A rejected machine is never netbooted again and cannot check in with its token.
    let url = decide(h, m10).await.unwrap();
    let etok10 = word(&String::from_utf8(fetch(h, &url).await.1).unwrap(), "metalcast.token=");
    assert_eq!(checkin(h, m10, Some(&etok10)).await.0, StatusCode::OK);
    let v = h.ok("POST", &format!("/v1/enrollments/{m10}/reject"), None).await;
    assert_eq!(v["state"], "rejected");
    assert_eq!(decide(h, m10).await, None);
    let (s, v) = checkin(h, m10, Some(&etok10)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(v["error"].as_str().unwrap().contains("rejected"), "{v}");
}
netboot_backends!(enrollment, true);

async fn full_mode_leases(h: &Harness, _files: &Files) {
    let b = DbBackend(h.st.clone());
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let pool = nb::Pool {
        start: ip("10.9.0.100"),
        end: ip("10.9.0.102"),
        netmask: ip("255.255.255.0"),
        router: None,
        dns: vec![],
        lease_secs: 600,
        reservations: vec![(mac("52:54:00:cc:00:03"), ip("10.9.0.150"))],
    };
    let offer = |m: &'static str, req: Option<&str>| {
        let (b, pool, req) = (b.clone(), pool.clone(), req.map(ip));
        async move { b.lease_offer(mac(m), req, &pool).await.unwrap().map(|l| l.ip.to_string()) }
    };
    let commit = |m: &'static str, a: &str| {
        let (b, pool, a) = (b.clone(), pool.clone(), ip(a));
        async move { b.lease_commit(mac(m), a, &pool).await.unwrap().map(|l| l.ip.to_string()) }
    };
    assert_eq!(offer("52:54:00:cc:00:01", None).await.as_deref(), Some("10.9.0.100"));
    assert_eq!(offer("52:54:00:cc:00:01", None).await.as_deref(), Some("10.9.0.100"), "the same MAC, the same address");
    assert_eq!(offer("52:54:00:cc:00:02", Some("10.9.0.101")).await.as_deref(), Some("10.9.0.101"));
    assert_eq!(commit("52:54:00:cc:00:02", "10.9.0.101").await.as_deref(), Some("10.9.0.101"));
    assert_eq!(commit("52:54:00:cc:00:01", "10.9.0.101").await, None, "another MAC's address: NAK");
    assert_eq!(commit("52:54:00:cc:00:01", "10.9.0.100").await.as_deref(), Some("10.9.0.100"));
    assert_eq!(commit("52:54:00:cc:00:01", "10.9.0.200").await, None, "outside the pool: NAK");
    assert_eq!(offer("52:54:00:cc:00:04", Some("10.9.0.150")).await.as_deref(), Some("10.9.0.102"), "reserved");
    assert_eq!(offer("52:54:00:cc:00:05", None).await, None, "the pool is exhausted");
    assert_eq!(offer("52:54:00:cc:00:03", None).await.as_deref(), Some("10.9.0.150"), "its reservation");
    assert_eq!(commit("52:54:00:cc:00:06", "10.9.0.150").await, None, "another MAC's reservation");
    b.lease_release(mac("52:54:00:cc:00:04"), ip("10.9.0.102")).await.unwrap();
    assert_eq!(offer("52:54:00:cc:00:05", None).await.as_deref(), Some("10.9.0.102"), "released, given again");

    node_with_nic(h, "n2", "52:54:00:cc:00:02", None).await;
    let leases = h.ok("GET", "/v1/netboot/leases", None).await;
    let rows: Vec<(String, String, Value)> = leases
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["ip"].as_str().unwrap().into(), l["state"].as_str().unwrap().into(), l["node"].clone()))
        .collect();
    assert!(rows.contains(&("10.9.0.101".into(), "bound".into(), json!("n2"))), "{rows:?}");
    assert!(rows.contains(&("10.9.0.100".into(), "bound".into(), Value::Null)), "{rows:?}");
    assert!(rows.contains(&("10.9.0.150".into(), "offered".into(), Value::Null)), "{rows:?}");
    let user = h.user("dave", &[]).await;
    assert_eq!(h.call("GET", "/v1/netboot/leases", &user, None).await.0, StatusCode::FORBIDDEN);

    // Eight MACs race for a fresh three-address pool: three distinct addresses, no error.
    let pool2 = nb::Pool { start: ip("10.9.1.1"), end: ip("10.9.1.3"), reservations: vec![], ..pool.clone() };
    let pool2 = Arc::new(pool2);
    let racers = (0..8u8).map(|i| {
        let (b, pool2) = (b.clone(), Arc::clone(&pool2));
        tokio::spawn(async move { b.lease_offer(nb::Mac([0x52, 0x54, 0, 0xdd, 0, i]), None, &pool2).await })
    });
    let got: Vec<Option<String>> = futures_util::future::join_all(racers)
        .await
        .into_iter()
        .map(|r| r.unwrap().expect("a race is not an error").map(|l| l.ip.to_string()))
        .collect();
    let mut given: Vec<String> = got.into_iter().flatten().collect();
    given.sort();
    assert_eq!(given, ["10.9.1.1", "10.9.1.2", "10.9.1.3"]);
}
netboot_backends!(full_mode_leases, false);
