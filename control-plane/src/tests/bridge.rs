//! Privileged test of the Linux-bridge switch driver: a VLAN-filtering
//! bridge inside a network namespace created (and removed) by the test.

use std::process::Command;

use serde_json::{Value, json};

use super::Harness;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Network namespace removed (by exact name) on drop.
struct Netns(String);

impl Netns {
    fn create(name: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", name]).status();
        sh(&["ip", "netns", "add", name]);
        Netns(name.to_string())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// VLANs on `dev` inside `ns`: vid -> flags.
fn vlans(ns: &str, dev: &str) -> Vec<(u64, Vec<String>)> {
    let out = sh(&["ip", "netns", "exec", ns, "bridge", "-j", "vlan", "show", "dev", dev]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let mut res = Vec::new();
    for entry in v.as_array().into_iter().flatten() {
        for vl in entry["vlans"].as_array().into_iter().flatten() {
            let flags = vl["flags"]
                .as_array()
                .map(|f| f.iter().map(|x| x.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            res.push((vl["vlan"].as_u64().unwrap(), flags));
        }
    }
    res.sort();
    res
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linux_bridge_switch_in_netns() {
    if !is_root() {
        super::skip("linux_bridge_switch_in_netns needs root (creates a network namespace)");
        return;
    }
    if Command::new("bridge").arg("-V").output().is_err() {
        super::skip("linux_bridge_switch_in_netns needs iproute2's `bridge` command");
        return;
    }
    let ns_name = format!("mccp-{}", std::process::id());
    let ns = Netns::create(&ns_name);
    let n = ns.0.as_str();
    let br = Command::new("ip")
        .args(["-n", n, "link", "add", "br0", "type", "bridge", "vlan_filtering", "1"])
        .output()
        .unwrap();
    if !br.status.success() {
        // A kernel built without CONFIG_BRIDGE_VLAN_FILTERING cannot host this
        // switch driver at all; no setup step can fix that, so this stays a
        // printed skip even under METALCAST_REQUIRE_PRIVILEGED.
        eprintln!(
            "SKIP: linux_bridge_switch_in_netns: this kernel cannot create a VLAN-filtering bridge: {}",
            String::from_utf8_lossy(&br.stderr).trim()
        );
        return;
    }
    sh(&["ip", "-n", n, "link", "add", "vp0", "type", "veth", "peer", "name", "vn0"]);
    sh(&["ip", "-n", n, "link", "set", "vp0", "master", "br0"]);
    for dev in ["br0", "vp0", "vn0"] {
        sh(&["ip", "-n", n, "link", "set", dev, "up"]);
    }
    // The port starts with the bridge default (VLAN 1); connecting a native
    // network below must replace it.

    let h = Harness::sqlite().await;
    h.ok("PUT", "/v0/switch/br", Some(json!({"type": "linux-bridge", "bridge": "br0", "netns": n}))).await;
    // What a switch names must be there and be a bridge.
    for (bridge, why) in [("nobr0", "does not exist"), ("vp0", "is not a Linux bridge")] {
        let body = json!({"type": "linux-bridge", "bridge": bridge, "netns": n});
        let (s, v) = h.call("PUT", "/v0/switch/bad", &h.admin, Some(body)).await;
        assert_eq!(s, axum::http::StatusCode::BAD_REQUEST, "{v}");
        assert!(v["msg"].as_str().unwrap().contains(why), "{bridge}: {v}");
    }
    h.ok("PUT", "/v0/switch/br/port/vp0", None).await;
    h.ok("PUT", "/v0/switch/br/port/nope0", None).await;
    h.ok("PUT", "/v0/project/pa", None).await;
    for node in ["n1", "n2"] {
        h.ok("PUT", &format!("/v0/node/{node}"), Some(json!({"obm": crate::drivers::mock::obm("br")}))).await;
        h.ok("PUT", &format!("/v0/node/{node}/nic/eth0"), Some(json!({"macaddr": "52:54:00:00:00:01"}))).await;
        h.ok("POST", "/v0/project/pa/connect_node", Some(json!({"node": node}))).await;
    }
    h.ok("POST", "/v0/switch/br/port/vp0/connect_nic", Some(json!({"node": "n1", "nic": "eth0"}))).await;
    h.ok("POST", "/v0/switch/br/port/nope0/connect_nic", Some(json!({"node": "n2", "nic": "eth0"}))).await;
    h.ok("PUT", "/v0/network/a", Some(json!({"owner": "admin", "access": "", "net_id": "2001"}))).await;
    h.ok("PUT", "/v0/network/b", Some(json!({"owner": "admin", "access": "", "net_id": "2002"}))).await;

    let connect = |nic_node: &'static str, net: &'static str, ch: Option<&'static str>| {
        let mut body = json!({"network": net});
        if let Some(c) = ch {
            body["channel"] = json!(c);
        }
        let h = &h;
        async move {
            let v = h.ok("POST", &format!("/v0/node/{nic_node}/nic/eth0/connect_network"), Some(body)).await;
            h.wait_action(v["status_id"].as_str().unwrap()).await
        }
    };
    assert_eq!(connect("n1", "a", None).await, "DONE");
    assert_eq!(vlans(n, "vp0"), vec![(2001, vec!["PVID".into(), "Egress Untagged".into()])]);
    assert_eq!(connect("n1", "b", Some("vlan/2002")).await, "DONE");
    assert_eq!(vlans(n, "vp0"), vec![(2001, vec!["PVID".into(), "Egress Untagged".into()]), (2002, vec![])]);
    // A port that does not exist on the bridge: the driver fails -> ERROR.
    assert_eq!(connect("n2", "a", None).await, "ERROR");

    let v = h.ok("POST", "/v0/node/n1/nic/eth0/detach_network", Some(json!({"network": "a"}))).await;
    assert_eq!(h.wait_action(v["status_id"].as_str().unwrap()).await, "DONE");
    assert_eq!(vlans(n, "vp0"), vec![(2002, vec![])]);
    let v = h.ok("POST", "/v0/switch/br/port/vp0/revert", None).await;
    assert_eq!(h.wait_action(v["status_id"].as_str().unwrap()).await, "DONE");
    assert_eq!(vlans(n, "vp0"), vec![]);
    assert_eq!(h.ok("GET", "/v0/node/n1", None).await["nics"][0]["networks"], json!({}));
    h.finish().await;
    drop(ns);
    assert!(!sh(&["ip", "netns", "list"]).contains(&ns_name), "netns not cleaned up");
}
