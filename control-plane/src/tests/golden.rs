//! A scripted HIL session over `/v0` whose every response (status and the
//! exact body bytes) must match `golden/hil_v0.txt`: projects, users, nodes,
//! NICs, metadata, power, networks, access, switches, ports, networking
//! actions, and the errors of each (400, 401, 403, 404, 405, 409). It pins
//! the HIL-compatible API while the code behind it is rearranged.
//!
//! The OpenAPI document of `/v1` is pinned the same way (`golden/openapi.json`).
//!
//! After a deliberate change of the API: `METALCAST_BLESS=1 cargo test -p
//! metalcast-control-plane golden` rewrites the file; review its diff.

use serde_json::{Value, json};

use super::{Harness, Who};
use crate::both_backends;

const GOLDEN: &str = include_str!("golden/hil_v0.txt");
const GOLDEN_PATH: &str = "src/tests/golden/hil_v0.txt";
const OPENAPI: &str = include_str!("golden/openapi.json");
const OPENAPI_PATH: &str = "src/tests/golden/openapi.json";

/// One step: who, method, path, body. `$N` in a path stands for the Nth
/// networking action id seen so far (they are random); `WAIT $N` waits until it ended.
type Step = (&'static str, &'static str, &'static str, Option<Value>);

fn script() -> Vec<Step> {
    let mock_sw = crate::drivers::mock::switch("golden-sw", false, false);
    vec![
        // Users and projects.
        ("admin", "PUT", "/v0/project/pa", None),
        ("admin", "PUT", "/v0/project/pb", None),
        ("admin", "PUT", "/v0/project/pa", None),
        ("admin", "PUT", "/v0/project/bad%20name", None),
        ("admin", "GET", "/v0/projects", None),
        ("admin", "PUT", "/v0/auth/basic/user/alice", Some(json!({"password": "alice-pw"}))),
        ("admin", "PUT", "/v0/auth/basic/user/bob", Some(json!({"password": "bob-pw", "is_admin": false}))),
        ("admin", "PUT", "/v0/auth/basic/user/alice", Some(json!({"password": "x"}))),
        ("admin", "POST", "/v0/auth/basic/user/alice/add_project", Some(json!({"project": "pa"}))),
        ("admin", "POST", "/v0/auth/basic/user/bob/add_project", Some(json!({"project": "pb"}))),
        ("admin", "POST", "/v0/auth/basic/user/bob/add_project", Some(json!({"project": "pb"}))),
        ("admin", "POST", "/v0/auth/basic/user/bob/add_project", Some(json!({"project": "ghost"}))),
        ("anon", "GET", "/v0/projects", None),
        ("alice", "GET", "/v0/projects", None),
        ("alice", "PUT", "/v0/project/pc", None),
        // Nodes, NICs, metadata.
        ("admin", "PUT", "/v0/node/n1", Some(json!({"obm": crate::drivers::mock::obm("golden-n1")}))),
        (
            "admin",
            "PUT",
            "/v0/node/n2",
            Some(json!({"obm": crate::drivers::mock::obm("golden-n2"), "metadata": {"rack": "r1"}})),
        ),
        ("admin", "PUT", "/v0/node/n3", Some(json!({"obm": {"type": "none"}}))),
        ("admin", "PUT", "/v0/node/n1", Some(json!({"obm": {"type": "none"}}))),
        (
            "admin",
            "PUT",
            "/v0/node/n4",
            Some(json!({"obm": {"type": "ipmi", "host": "-x", "user": "u", "password": "p"}})),
        ),
        ("admin", "PUT", "/v0/node/n4", Some(json!({"surprise": 1}))),
        ("admin", "PUT", "/v0/node/n1/nic/eth0", Some(json!({"macaddr": "52:54:00:00:00:01"}))),
        ("admin", "PUT", "/v0/node/n1/nic/eth1", Some(json!({"macaddr": "52:54:00:00:00:02"}))),
        ("admin", "PUT", "/v0/node/n2/nic/eth0", Some(json!({"macaddr": "52:54:00:00:00:03"}))),
        ("admin", "PUT", "/v0/node/n1/nic/eth0", Some(json!({"macaddr": "52:54:00:00:00:09"}))),
        ("admin", "PUT", "/v0/node/n1/nic/bad", Some(json!({"macaddr": "nope"}))),
        ("admin", "PUT", "/v0/node/ghost/nic/eth0", Some(json!({"macaddr": "52:54:00:00:00:04"}))),
        ("admin", "PUT", "/v0/node/n1/metadata/owner", Some(json!({"value": {"team": 7}}))),
        ("admin", "PUT", "/v0/node/n1/metadata/owner", Some(json!({"value": 1}))),
        ("admin", "GET", "/v0/nodes/all", None),
        ("admin", "GET", "/v0/nodes/free", None),
        ("admin", "GET", "/v0/nodes/some", None),
        ("admin", "GET", "/v0/node/n1", None),
        ("admin", "GET", "/v0/node/n2", None),
        ("admin", "GET", "/v0/node/ghost", None),
        ("alice", "GET", "/v0/node/n1", None),
        ("admin", "POST", "/v0/project/pa/connect_node", Some(json!({"node": "n1"}))),
        ("admin", "POST", "/v0/project/pa/connect_node", Some(json!({"node": "n1"}))),
        ("alice", "POST", "/v0/project/pa/connect_node", Some(json!({"node": "n2"}))),
        ("admin", "POST", "/v0/project/pb/connect_node", Some(json!({"node": "n2"}))),
        ("admin", "POST", "/v0/project/ghost/connect_node", Some(json!({"node": "n3"}))),
        ("admin", "POST", "/v0/project/pa/connect_node", Some(json!({"node": 1}))),
        ("admin", "POST", "/v0/project/pa/connect_node", None),
        ("alice", "GET", "/v0/node/n1", None),
        ("bob", "GET", "/v0/node/n1", None),
        ("alice", "GET", "/v0/project/pa/nodes", None),
        ("bob", "GET", "/v0/project/pa/nodes", None),
        ("admin", "GET", "/v0/nodes/free", None),
        // Power and boot device through the BMC driver.
        ("alice", "POST", "/v0/node/n1/power_cycle", None),
        ("alice", "POST", "/v0/node/n1/power_off", None),
        ("alice", "GET", "/v0/node/n1/power_status", None),
        ("alice", "POST", "/v0/node/n1/power_on", None),
        ("alice", "GET", "/v0/node/n1/power_status", None),
        ("alice", "PUT", "/v0/node/n1/boot_device", Some(json!({"bootdev": "pxe"}))),
        ("alice", "PUT", "/v0/node/n1/boot_device", Some(json!({"bootdev": "floppy"}))),
        ("bob", "POST", "/v0/node/n1/power_cycle", None),
        ("admin", "POST", "/v0/node/n3/power_cycle", None),
        // Switches and ports.
        ("admin", "PUT", "/v0/switch/sw1", Some(mock_sw.clone())),
        ("admin", "PUT", "/v0/switch/sw1", Some(mock_sw)),
        ("admin", "PUT", "/v0/switch/sw2", Some(json!({"type": "nonesuch"}))),
        ("admin", "PUT", "/v0/switch/sw1/port/p1", None),
        ("admin", "PUT", "/v0/switch/sw1/port/p2", None),
        ("admin", "PUT", "/v0/switch/sw1/port/p1", None),
        ("admin", "POST", "/v0/switch/sw1/port/p1/connect_nic", Some(json!({"node": "n1", "nic": "eth0"}))),
        ("admin", "POST", "/v0/switch/sw1/port/p2/connect_nic", Some(json!({"node": "n2", "nic": "eth0"}))),
        ("admin", "POST", "/v0/switch/sw1/port/p2/connect_nic", Some(json!({"node": "n1", "nic": "eth1"}))),
        ("admin", "GET", "/v0/switches", None),
        ("admin", "GET", "/v0/switch/sw1", None),
        ("admin", "GET", "/v0/switch/sw1/port/p1", None),
        ("alice", "GET", "/v0/switch/sw1", None),
        // Networks, access, attachments and networking actions.
        ("alice", "PUT", "/v0/network/na", Some(json!({"owner": "pa", "access": "pa", "net_id": ""}))),
        ("alice", "PUT", "/v0/network/nb", Some(json!({"owner": "pa", "access": "pa", "net_id": "200"}))),
        ("alice", "PUT", "/v0/network/na", Some(json!({"owner": "pa", "access": "pa", "net_id": ""}))),
        ("admin", "PUT", "/v0/network/pub", Some(json!({"owner": "admin", "access": "", "net_id": "3000"}))),
        ("admin", "PUT", "/v0/network/pub2", Some(json!({"owner": "admin", "access": "", "net_id": "3000"}))),
        ("admin", "PUT", "/v0/network/prov", Some(json!({"owner": "admin", "access": "pa", "net_id": ""}))),
        ("alice", "GET", "/v0/network/na", None),
        ("bob", "GET", "/v0/network/na", None),
        ("admin", "GET", "/v0/networks", None),
        ("alice", "GET", "/v0/networks", None),
        ("alice", "GET", "/v0/project/pa/networks", None),
        ("alice", "PUT", "/v0/network/na/access/pb", None),
        ("admin", "PUT", "/v0/network/na/access/pb", None),
        ("admin", "PUT", "/v0/network/na/access/pb", None),
        ("bob", "GET", "/v0/network/na", None),
        ("admin", "GET", "/v0/project/pb/networks", None),
        ("admin", "DELETE", "/v0/network/na/access/pb", None),
        ("admin", "DELETE", "/v0/network/na/access/pb", None),
        ("alice", "POST", "/v0/node/n1/nic/eth0/connect_network", Some(json!({"network": "na"}))),
        ("admin", "WAIT", "$0", None),
        ("alice", "GET", "/v0/networking_action/$0", None),
        (
            "alice",
            "POST",
            "/v0/node/n1/nic/eth0/connect_network",
            Some(json!({"network": "prov", "channel": "vlan/native"})),
        ),
        (
            "alice",
            "POST",
            "/v0/node/n1/nic/eth0/connect_network",
            Some(json!({"network": "pub", "channel": "vlan/3000"})),
        ),
        ("admin", "WAIT", "$1", None),
        ("alice", "POST", "/v0/node/n1/nic/eth0/connect_network", Some(json!({"network": "nb", "channel": "bogus"}))),
        ("bob", "POST", "/v0/node/n1/nic/eth0/connect_network", Some(json!({"network": "na"}))),
        ("alice", "POST", "/v0/node/n1/nic/eth1/connect_network", Some(json!({"network": "na"}))),
        ("alice", "GET", "/v0/network/na", None),
        ("alice", "GET", "/v0/network/na/attachments", None),
        ("alice", "GET", "/v0/network/na/attachments?project=pa", None),
        ("alice", "GET", "/v0/node/n1", None),
        ("admin", "GET", "/v0/switch/sw1/port/p1", None),
        ("alice", "DELETE", "/v0/network/na", None),
        ("admin", "POST", "/v0/project/pa/detach_node", Some(json!({"node": "n1"}))),
        ("alice", "POST", "/v0/node/n1/nic/eth0/detach_network", Some(json!({"network": "na"}))),
        ("admin", "WAIT", "$2", None),
        ("alice", "POST", "/v0/node/n1/nic/eth0/detach_network", Some(json!({"network": "pub"}))),
        ("admin", "WAIT", "$3", None),
        ("alice", "POST", "/v0/node/n1/nic/eth0/detach_network", Some(json!({"network": "pub"}))),
        ("alice", "GET", "/v0/networking_action/$3", None),
        ("alice", "GET", "/v0/networking_action/0000", None),
        ("admin", "POST", "/v0/switch/sw1/port/p1/revert", None),
        ("admin", "GET", "/v0/network/na", None),
        // Deletions and what is in use.
        ("admin", "DELETE", "/v0/project/pa", None),
        ("admin", "DELETE", "/v0/node/n1", None),
        ("admin", "DELETE", "/v0/switch/sw1/port/p1", None),
        ("admin", "POST", "/v0/switch/sw1/port/p1/detach_nic", None),
        ("admin", "POST", "/v0/switch/sw1/port/p1/detach_nic", None),
        ("admin", "DELETE", "/v0/switch/sw1/port/p1", None),
        ("admin", "DELETE", "/v0/switch/sw1", None),
        ("alice", "DELETE", "/v0/network/na", None),
        ("alice", "DELETE", "/v0/network/nb", None),
        ("admin", "DELETE", "/v0/network/na", None),
        ("admin", "POST", "/v0/project/pa/detach_node", Some(json!({"node": "n1"}))),
        ("admin", "DELETE", "/v0/node/n1/nic/eth1", None),
        ("admin", "DELETE", "/v0/node/n1/nic/eth1", None),
        ("admin", "DELETE", "/v0/node/n1/metadata/owner", None),
        ("admin", "DELETE", "/v0/node/n1/metadata/owner", None),
        ("admin", "POST", "/v0/auth/basic/user/alice/remove_project", Some(json!({"project": "pa"}))),
        ("admin", "POST", "/v0/auth/basic/user/alice/remove_project", Some(json!({"project": "pa"}))),
        ("admin", "DELETE", "/v0/auth/basic/user/alice", None),
        ("admin", "DELETE", "/v0/auth/basic/user/alice", None),
        ("admin", "DELETE", "/v0/project/pa", None),
        ("admin", "GET", "/v0/projects", None),
        // Odd requests.
        ("admin", "DELETE", "/v0/projects", None),
        ("admin", "GET", "/v0/no/such/thing", None),
        ("admin", "GET", "/v0/project/%FF/nodes", None),
        ("admin", "GET", "/v0/network/pub/attachments?bogus=1", None),
        // Added with the HIL-conformance work (issue 28): HIL's user list and
        // admin flag, its extension list, and public networks for non-admins.
        ("admin", "GET", "/v0/auth/basic/users", None),
        ("bob", "GET", "/v0/auth/basic/users", None),
        ("admin", "PATCH", "/v0/auth/basic/user/bob", Some(json!({"is_admin": true}))),
        ("bob", "GET", "/v0/auth/basic/users", None),
        ("bob", "PATCH", "/v0/auth/basic/user/bob", Some(json!({"is_admin": false}))),
        ("admin", "PATCH", "/v0/auth/basic/user/bob", Some(json!({"is_admin": false}))),
        ("admin", "PATCH", "/v0/auth/basic/user/ghost", Some(json!({"is_admin": true}))),
        ("admin", "PATCH", "/v0/auth/basic/user/bob", Some(json!({"is_admin": "yes"}))),
        ("bob", "GET", "/v0/active_extensions", None),
        ("admin", "GET", "/v0/active_extensions", None),
        ("anon", "GET", "/v0/networks", None),
        ("bob", "GET", "/v0/networks", None),
        ("admin", "GET", "/v0/networks", None),
    ]
}

async fn session(h: &Harness) -> String {
    let alice = Who::Basic("alice".into(), "alice-pw".into());
    let bob = Who::Basic("bob".into(), "bob-pw".into());
    let tag = crate::auth::random_hex(4);
    let mut actions: Vec<String> = Vec::new();
    let mut out = String::new();
    for (who, method, path, body) in script() {
        let sub = |s: &str, actions: &[String]| {
            let mut s = s.to_string();
            for (i, id) in actions.iter().enumerate().rev() {
                s = s.replace(&format!("${i}"), id);
            }
            s
        };
        if method == "WAIT" {
            let id = sub(path, &actions);
            let status = h.wait_action(&id).await;
            out.push_str(&format!(">>> WAIT {path}: {status}\n\n"));
            continue;
        }
        let who_v = match who {
            "admin" => h.admin.clone(),
            "alice" => alice.clone(),
            "bob" => bob.clone(),
            _ => Who::Anon,
        };
        let body_text = body.map(|b| b.to_string()).unwrap_or_default();
        // The mock BMC and switch keep state by key: each run (the two
        // backends run at once) gets keys of its own; the transcript shows the script's.
        let sent = body_text.replace("\"golden-", &format!("\"golden-{tag}-"));
        let (status, bytes) = h.raw_bytes(method, &sub(path, &actions), &who_v, sent.into_bytes()).await;
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes)
            && let Some(id) = v.get("status_id").and_then(Value::as_str)
        {
            actions.push(id.to_string());
        }
        // Random ids stand as their placeholders.
        for (i, id) in actions.iter().enumerate() {
            text = text.replace(id, &format!("${i}"));
        }
        out.push_str(&format!(">>> {method} {path} as {who}\n"));
        if !body_text.is_empty() {
            out.push_str(&format!("{body_text}\n"));
        }
        out.push_str(&format!("<<< {}\n{text}\n\n", status.as_u16()));
    }
    out
}

async fn hil_session_is_byte_identical(h: &Harness) {
    let got = session(h).await;
    if std::env::var("METALCAST_BLESS").is_ok_and(|v| v == "1") {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN_PATH);
        std::fs::write(&path, &got).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    if got != GOLDEN {
        let (g, w): (Vec<&str>, Vec<&str>) = (got.split("\n\n").collect(), GOLDEN.split("\n\n").collect());
        let first = g.iter().zip(&w).position(|(a, b)| a != b).unwrap_or(g.len().min(w.len()));
        panic!(
            "the /v0 session differs from {GOLDEN_PATH} at step {first}:\n--- golden\n{}\n--- now\n{}\n(METALCAST_BLESS=1 rewrites the file after a deliberate change)",
            w.get(first).unwrap_or(&"<end>"),
            g.get(first).unwrap_or(&"<end>")
        );
    }
}
both_backends!(hil_session_is_byte_identical);

async fn openapi_document_is_byte_identical(h: &Harness) {
    let (status, body) = h.raw_bytes("GET", "/v1/openapi.json", &Who::Anon, Vec::new()).await;
    assert_eq!(status.as_u16(), 200);
    let got = String::from_utf8(body).unwrap();
    if std::env::var("METALCAST_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(OPENAPI_PATH), &got).unwrap();
        return;
    }
    assert!(got == OPENAPI, "/v1/openapi.json differs from {OPENAPI_PATH} (METALCAST_BLESS=1 rewrites it)");
}
both_backends!(openapi_document_is_byte_identical);
