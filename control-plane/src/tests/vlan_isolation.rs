//! Real isolation acceptance test for the `linux-vlan-bridges` switch driver
//! on a `metalcast-fabric` fabric: nodes are the fabric's host namespaces,
//! their NICs sit on the switch namespace's ports, networks are connected
//! through the REST API (asynchronous actions, polled until done) and
//! isolation is asserted with real packets (ICMP echo between namespaces).

use std::net::Ipv4Addr;
use std::process::Command;

use axum::http::StatusCode;
use metalcast_fabric::{Fabric, Host};
use serde_json::{Value, json};

use super::{Harness, Who};

/// Run an `ip` command inside `ns`, asserting success.
fn ip(ns: &str, args: &[&str]) {
    let out = Command::new("ip").arg("-n").arg(ns).args(args).output().expect("run ip");
    assert!(out.status.success(), "ip -n {ns} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// One ICMP echo (three tries, 1 s wait) from `from` to `to`: true if any reply came back.
fn ping_once(from: &Host, to: Ipv4Addr) -> bool {
    from.command("ping")
        .args(["-n", "-q", "-c", "3", "-i", "0.2", "-W", "1"])
        .arg(to.to_string())
        .output()
        .expect("run ping")
        .status
        .success()
}

/// Packets pass: allow a few rounds for ARP and bridge learning.
fn assert_reaches(from: &Host, to: Ipv4Addr, what: &str) {
    assert!((0..5).any(|_| ping_once(from, to)), "{what}: {} cannot reach {to}", from.name());
}

/// No packet passes.
fn assert_isolated(from: &Host, to: Ipv4Addr, what: &str) {
    assert!(!ping_once(from, to), "{what}: {} reached {to} (isolation broken)", from.name());
}

/// Add an 802.1Q sub-interface `t<vid>` with `addr/24` on the host's NIC.
fn tagged_nic(h: &Host, vid: u16, addr: Ipv4Addr) {
    let ns = h.netns_name();
    let name = format!("t{vid}");
    ip(ns, &["link", "add", "link", h.ifname(), "name", &name, "type", "vlan", "id", &vid.to_string()]);
    ip(ns, &["addr", "add", &format!("{addr}/24"), "dev", &name]);
    ip(ns, &["link", "set", &name, "up"]);
}

/// Whether this kernel can create 802.1Q VLAN links (probed in `h`'s namespace).
fn kernel_has_8021q(h: &Host) -> bool {
    let ns = h.netns_name();
    let ok = Command::new("ip")
        .args(["-n", ns, "link", "add", "link", h.ifname(), "name", "vprobe", "type", "vlan", "id", "4000"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        ip(ns, &["link", "del", "vprobe"]);
    }
    ok
}

/// Links in the switch namespace: (name, kind, master).
fn switch_links(ns: &str) -> Vec<(String, String, String)> {
    let out = Command::new("ip").args(["-n", ns, "-d", "-j", "link", "show"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let s = |x: &Value| x.as_str().unwrap_or("").to_string();
            (s(&l["ifname"]), s(&l["linkinfo"]["info_kind"]), s(&l["master"]))
        })
        .collect()
}

async fn act(h: &Harness, who: &Who, node: &str, verb: &str, body: Value) -> String {
    let (s, v) = h.call("POST", &format!("/v0/node/{node}/nic/eth0/{verb}"), who, Some(body)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{verb} {node}: {v}");
    h.wait_action(v["status_id"].as_str().unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vlan_bridges_isolate_projects_on_a_real_fabric() {
    metalcast_fabric::skip_unless_root!();
    let fabric = Fabric::builder()
        .receivers(0)
        .host("a1")
        .host("a2")
        .host("b1")
        .snooping(false)
        .nic_segmentation(false)
        .build()
        .expect("build fabric");
    let sw = fabric.switch().netns().name().to_string();
    let (a1, a2, b1) = (fabric.host("a1"), fabric.host("a2"), fabric.host("b1"));

    // Baseline: on the fabric's default bridge everyone reaches everyone,
    // so the failures below are the driver's doing.
    assert_reaches(a1, b1.ipv4(), "default bridge");

    let h = Harness::sqlite().await;
    let (s, v) = h
        .call("PUT", "/v0/switch/bad", &h.admin, Some(json!({"type": "linux-vlan-bridges", "netns": "mc-no-such-ns"})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    h.ok("PUT", "/v0/switch/fab", Some(json!({"type": "linux-vlan-bridges", "netns": sw}))).await;
    h.ok("PUT", "/v0/project/pa", None).await;
    h.ok("PUT", "/v0/project/pb", None).await;
    let alice = h.user("alice", &["pa"]).await;
    let bob = h.user("bob", &["pb"]).await;
    for (host, project) in [(a1, "pa"), (a2, "pa"), (b1, "pb")] {
        let node = host.name();
        h.ok("PUT", &format!("/v0/node/{node}"), Some(json!({"obm": crate::drivers::mock::obm("vlaniso")}))).await;
        h.ok("PUT", &format!("/v0/node/{node}/nic/eth0"), Some(json!({"macaddr": host.mac_string()}))).await;
        h.ok("PUT", &format!("/v0/switch/fab/port/{}", host.switch_port()), None).await;
        h.ok(
            "POST",
            &format!("/v0/switch/fab/port/{}/connect_nic", host.switch_port()),
            Some(json!({"node": node, "nic": "eth0"})),
        )
        .await;
        h.ok("POST", &format!("/v0/project/{project}/connect_node"), Some(json!({"node": node}))).await;
    }
    let (s, _) =
        h.call("PUT", "/v0/network/neta", &alice, Some(json!({"owner": "pa", "access": "pa", "net_id": ""}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) =
        h.call("PUT", "/v0/network/nett", &alice, Some(json!({"owner": "pa", "access": "pa", "net_id": ""}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) =
        h.call("PUT", "/v0/network/netb", &bob, Some(json!({"owner": "pb", "access": "pb", "net_id": ""}))).await;
    assert_eq!(s, StatusCode::OK);
    let nett = h.ok("GET", "/v0/network/nett", None).await;
    let tagged_ch = nett["channels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .find(|c| *c != "vlan/native")
        .unwrap()
        .to_string();
    let vid: u16 = tagged_ch.strip_prefix("vlan/").unwrap().parse().unwrap();

    // Native: a1, a2 on project A's network, b1 on project B's.
    for (who, node, net) in [(&alice, "a1", "neta"), (&alice, "a2", "neta"), (&bob, "b1", "netb")] {
        assert_eq!(act(&h, who, node, "connect_network", json!({"network": net})).await, "DONE");
    }
    assert_reaches(a1, a2.ipv4(), "same network");
    assert_isolated(a1, b1.ipv4(), "different projects' networks");
    assert_isolated(b1, a2.ipv4(), "different projects' networks");

    // Tagged: project A's second network on vlan/<vid>; the nodes tag it themselves.
    let (s, _) = h.call("POST", "/v0/node/b1/nic/eth0/connect_network", &bob, Some(json!({"network": "nett"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "project B must not join project A's network");
    let tagged = kernel_has_8021q(a1);
    if tagged {
        for node in ["a1", "a2"] {
            let body = json!({"network": "nett", "channel": tagged_ch});
            assert_eq!(act(&h, &alice, node, "connect_network", body).await, "DONE");
        }
        let t = |i: u8| Ipv4Addr::new(10, 88, 0, i);
        tagged_nic(a1, vid, t(1));
        tagged_nic(a2, vid, t(2));
        tagged_nic(b1, vid, t(3)); // b1 tags the same VLAN id on its own port: must get nowhere.
        assert_reaches(a1, t(2), "same tagged network");
        assert_reaches(a1, a2.ipv4(), "native next to tagged");
        assert_isolated(b1, t(1), "tagged network from another project's port");
        assert_isolated(a1, t(3), "tagged network to another project's port");

        // Detach removes exactly one attachment.
        assert_eq!(act(&h, &alice, "a2", "detach_network", json!({"network": "neta"})).await, "DONE");
        assert_isolated(a1, a2.ipv4(), "after native detach");
        assert_reaches(a1, t(2), "tagged network survives a native detach");
        assert_eq!(act(&h, &alice, "a2", "detach_network", json!({"network": "nett"})).await, "DONE");
        assert_isolated(a1, t(2), "after tagged detach");
    } else {
        // No setup step can add 802.1Q to a running kernel: the tagged part
        // is a printed skip even under METALCAST_REQUIRE_PRIVILEGED. What
        // must hold anyway: the tagged connect fails cleanly.
        eprintln!(
            "SKIP: vlan_bridges_isolate_projects_on_a_real_fabric: tagged part: this kernel has no \
             CONFIG_VLAN_8021Q; checking that a tagged connect ends in ERROR and leaves nothing behind"
        );
        let body = json!({"network": "nett", "channel": tagged_ch});
        assert_eq!(act(&h, &alice, "a1", "connect_network", body).await, "ERROR");
        let links = switch_links(&sw);
        assert!(!links.iter().any(|l| l.0 == format!("mcvlan{vid}")), "bridge of a failed connect left: {links:?}");
        assert_reaches(a1, a2.ipv4(), "native network after a failed tagged connect");
        assert_isolated(a1, b1.ipv4(), "after a failed tagged connect");
        assert_eq!(act(&h, &alice, "a2", "detach_network", json!({"network": "neta"})).await, "DONE");
        assert_isolated(a1, a2.ipv4(), "after native detach");
    }

    // Revert a1's port: nothing of A's networks is left in the switch.
    let v = h.ok("POST", &format!("/v0/switch/fab/port/{}/revert", a1.switch_port()), None).await;
    assert_eq!(h.wait_action(v["status_id"].as_str().unwrap()).await, "DONE");
    let links = switch_links(&sw);
    let vlan_links: Vec<_> = links.iter().filter(|l| l.1 == "vlan").collect();
    assert!(vlan_links.is_empty(), "sub-interfaces left behind: {vlan_links:?}");
    let bridges: Vec<_> = links.iter().filter(|l| l.0.starts_with("mcvlan")).map(|l| l.0.clone()).collect();
    let netb_vid = h.ok("GET", "/v0/network/netb", None).await["channels"][1].as_str().unwrap().to_string();
    assert_eq!(bridges, vec![format!("mcvlan{}", netb_vid.strip_prefix("vlan/").unwrap())], "only B's bridge remains");
    for host in [a1, a2] {
        let port = links.iter().find(|l| l.0 == host.switch_port()).unwrap();
        assert_eq!(port.2, "", "{} must be on no bridge after detach/revert", port.0);
    }
    assert_isolated(a1, a2.ipv4(), "after revert");
    assert_isolated(a1, b1.ipv4(), "after revert");
    h.finish().await;
}
