//! Isolation matrix: admin vs project A (alice) vs project B (bob) vs
//! anonymous over every endpoint. Denied mutations must leave the database
//! unchanged.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Harness, Who};
use crate::both_backends;

/// `None`: not exercised for that caller (it would succeed and mutate; the
/// functional tests cover the allowed paths).
type Expect = [Option<u16>; 4];

const fn all(s: u16) -> Expect {
    [Some(s), Some(s), Some(s), Some(s)]
}

async fn isolation(h: &Harness) {
    let key = format!("iso-{}", crate::auth::random_hex(4));
    h.ok("PUT", "/v0/project/pa", None).await;
    h.ok("PUT", "/v0/project/pb", None).await;
    let alice = h.user("alice", &["pa"]).await;
    let bob = h.user("bob", &["pb"]).await;
    let obm = json!({"obm": crate::drivers::mock::obm(&key)});
    for n in ["na", "nb", "nf"] {
        h.ok("PUT", &format!("/v0/node/{n}"), Some(obm.clone())).await;
    }
    h.ok("PUT", "/v0/node/na/nic/eth0", Some(json!({"macaddr": "52:54:00:00:00:01"}))).await;
    h.ok("PUT", "/v0/node/nb/nic/eth0", Some(json!({"macaddr": "52:54:00:00:00:02"}))).await;
    h.ok("PUT", "/v0/node/na/metadata/k", Some(json!({"value": 1}))).await;
    h.ok("PUT", "/v0/switch/sw", Some(crate::drivers::mock::switch(&key, false, false))).await;
    for p in ["p1", "p2", "p3"] {
        h.ok("PUT", &format!("/v0/switch/sw/port/{p}"), None).await;
    }
    h.ok("POST", "/v0/switch/sw/port/p1/connect_nic", Some(json!({"node": "na", "nic": "eth0"}))).await;
    h.ok("POST", "/v0/switch/sw/port/p2/connect_nic", Some(json!({"node": "nb", "nic": "eth0"}))).await;
    h.ok("POST", "/v0/project/pa/connect_node", Some(json!({"node": "na"}))).await;
    h.ok("POST", "/v0/project/pb/connect_node", Some(json!({"node": "nb"}))).await;
    h.ok("PUT", "/v0/network/neta", Some(json!({"owner": "pa", "access": "pa", "net_id": ""}))).await;
    h.ok("PUT", "/v0/network/pub", Some(json!({"owner": "admin", "access": "", "net_id": "3000"}))).await;
    h.ok("PUT", "/v0/network/privb", Some(json!({"owner": "admin", "access": "pb", "net_id": "3001"}))).await;
    let v = h.ok("POST", "/v0/node/na/nic/eth0/connect_network", Some(json!({"network": "neta"}))).await;
    let action = v["status_id"].as_str().unwrap().to_string();
    assert_eq!(h.wait_action(&action).await, "DONE");
    let admin_token_id: String = sqlx::Row::try_get(
        &sqlx::query("SELECT id FROM api_tokens WHERE user_name = 'root'").fetch_one(&h.st.db.pool).await.unwrap(),
        0,
    )
    .unwrap();

    let x = None;
    let s = Some;
    let act = format!("/v0/networking_action/{action}");
    let tok = format!("/v1/tokens/{admin_token_id}");
    // (method, path, body, [admin, alice, bob, anonymous])
    let cases: Vec<(&str, &str, Option<Value>, Expect)> = vec![
        // --- reads
        ("GET", "/v0/projects", None, [s(200), s(403), s(403), s(401)]),
        ("GET", "/v0/project/pa/nodes", None, [s(200), s(200), s(403), s(401)]),
        ("GET", "/v0/project/pa/networks", None, [s(200), s(200), s(403), s(401)]),
        ("GET", "/v0/project/pb/nodes", None, [s(200), s(403), s(200), s(401)]),
        ("GET", "/v0/project/ghost/nodes", None, [s(404), s(403), s(403), s(401)]),
        ("GET", "/v0/nodes/all", None, all(200)),
        ("GET", "/v0/nodes/free", None, all(200)),
        ("GET", "/v0/node/na", None, [s(200), s(200), s(403), s(401)]),
        ("GET", "/v0/node/nb", None, [s(200), s(403), s(200), s(401)]),
        ("GET", "/v0/node/nf", None, all(200)),
        ("GET", "/v0/node/na/power_status", None, [s(200), s(200), s(403), s(401)]),
        ("GET", "/v0/node/nf/power_status", None, [s(200), s(403), s(403), s(401)]),
        // As HIL: the public networks to every user (their content: golden.rs).
        ("GET", "/v0/networks", None, [s(200), s(200), s(200), s(401)]),
        ("GET", "/v0/network/neta", None, [s(200), s(200), s(403), s(401)]),
        ("GET", "/v0/network/pub", None, all(200)),
        ("GET", "/v0/network/privb", None, [s(200), s(403), s(200), s(401)]),
        ("GET", "/v0/network/neta/attachments", None, [s(200), s(200), s(403), s(401)]),
        ("GET", "/v0/network/pub/attachments?project=pb", None, [s(200), s(403), s(200), s(401)]),
        ("GET", "/v0/switches", None, [s(200), s(403), s(403), s(401)]),
        ("GET", "/v0/switch/sw", None, [s(200), s(403), s(403), s(401)]),
        ("GET", "/v0/switch/sw/port/p1", None, [s(200), s(403), s(403), s(401)]),
        ("GET", &act, None, [s(200), s(200), s(403), s(401)]),
        ("GET", "/v1/whoami", None, [s(200), s(200), s(200), s(401)]),
        ("GET", "/v1/tokens", None, [s(200), s(200), s(200), s(401)]),
        ("GET", "/v1/health", None, all(200)),
        ("GET", "/v1/openapi.json", None, all(200)),
        ("GET", "/metrics", None, all(200)),
        // --- denied mutations (must not change anything)
        ("PUT", "/v0/project/px", None, [x, s(403), s(403), s(401)]),
        ("DELETE", "/v0/project/pa", None, [x, s(403), s(403), s(401)]),
        ("POST", "/v0/project/pa/connect_node", Some(json!({"node": "nf"})), [x, x, s(403), s(401)]),
        ("POST", "/v0/project/pa/detach_node", Some(json!({"node": "na"})), [x, x, s(403), s(401)]),
        ("POST", "/v0/project/pb/connect_node", Some(json!({"node": "na"})), [s(409), s(403), s(409), s(401)]),
        ("PUT", "/v0/node/nx", Some(obm.clone()), [x, s(403), s(403), s(401)]),
        ("DELETE", "/v0/node/nf", None, [x, s(403), s(403), s(401)]),
        ("PUT", "/v0/node/nf/nic/e1", Some(json!({"macaddr": "52:54:00:00:00:09"})), [x, s(403), s(403), s(401)]),
        ("DELETE", "/v0/node/na/nic/eth0", None, [s(409), s(403), s(403), s(401)]),
        ("PUT", "/v0/node/na/metadata/k", Some(json!({"value": 2})), [x, s(403), s(403), s(401)]),
        ("DELETE", "/v0/node/na/metadata/k", None, [x, s(403), s(403), s(401)]),
        ("POST", "/v0/node/na/power_on", None, [x, x, s(403), s(401)]),
        ("POST", "/v0/node/na/power_off", None, [x, x, s(403), s(401)]),
        ("POST", "/v0/node/na/power_cycle", None, [x, x, s(403), s(401)]),
        ("PUT", "/v0/node/na/boot_device", Some(json!({"bootdev": "pxe"})), [x, x, s(403), s(401)]),
        ("POST", "/v0/node/nf/power_on", None, [x, s(403), s(403), s(401)]),
        ("POST", "/v0/node/na/nic/eth0/connect_network", Some(json!({"network": "pub"})), [x, x, s(403), s(401)]),
        (
            "POST",
            "/v0/node/nb/nic/eth0/connect_network",
            Some(json!({"network": "neta"})),
            [s(403), s(403), s(403), s(401)],
        ),
        ("POST", "/v0/node/na/nic/eth0/detach_network", Some(json!({"network": "neta"})), [x, x, s(403), s(401)]),
        (
            "POST",
            "/v0/node/nf/nic/eth0/connect_network",
            Some(json!({"network": "pub"})),
            [s(409), s(403), s(403), s(401)],
        ),
        ("PUT", "/v0/network/nx", Some(json!({"owner": "pa", "access": "pa", "net_id": ""})), [x, x, s(403), s(401)]),
        (
            "PUT",
            "/v0/network/nx",
            Some(json!({"owner": "admin", "access": "", "net_id": ""})),
            [x, s(403), s(403), s(401)],
        ),
        ("DELETE", "/v0/network/neta", None, [s(409), s(409), s(403), s(401)]),
        ("DELETE", "/v0/network/pub", None, [x, s(403), s(403), s(401)]),
        ("DELETE", "/v0/network/privb", None, [x, s(403), s(403), s(401)]),
        ("PUT", "/v0/network/neta/access/pb", None, [x, x, s(403), s(401)]),
        ("PUT", "/v0/network/privb/access/pa", None, [x, s(403), s(403), s(401)]),
        ("DELETE", "/v0/network/privb/access/pb", None, [x, s(403), x, s(401)]),
        ("PUT", "/v0/switch/s2", Some(crate::drivers::mock::switch("k", false, false)), [x, s(403), s(403), s(401)]),
        ("DELETE", "/v0/switch/sw", None, [s(409), s(403), s(403), s(401)]),
        ("PUT", "/v0/switch/sw/port/p9", None, [x, s(403), s(403), s(401)]),
        ("DELETE", "/v0/switch/sw/port/p3", None, [x, s(403), s(403), s(401)]),
        (
            "POST",
            "/v0/switch/sw/port/p3/connect_nic",
            Some(json!({"node": "nf", "nic": "eth0"})),
            [s(404), s(403), s(403), s(401)],
        ),
        ("POST", "/v0/switch/sw/port/p1/detach_nic", None, [s(409), s(403), s(403), s(401)]),
        ("POST", "/v0/switch/sw/port/p1/revert", None, [x, s(403), s(403), s(401)]),
        ("PUT", "/v0/auth/basic/user/eve", Some(json!({"password": "x"})), [x, s(403), s(403), s(401)]),
        ("DELETE", "/v0/auth/basic/user/bob", None, [x, s(403), s(403), s(401)]),
        ("POST", "/v0/auth/basic/user/alice/add_project", Some(json!({"project": "pb"})), [x, s(403), s(403), s(401)]),
        ("POST", "/v0/auth/basic/user/bob/remove_project", Some(json!({"project": "pb"})), [x, s(403), s(403), s(401)]),
        ("POST", "/v1/tokens", None, [x, x, x, s(401)]),
        ("DELETE", &tok, None, [x, s(404), s(404), s(401)]),
    ];
    let callers = [h.admin.clone(), alice, bob, Who::Anon];
    let names = ["admin", "alice(pa)", "bob(pb)", "anonymous"];
    let before = h.snapshot().await;
    let mut failures = Vec::new();
    for (m, p, body, expect) in &cases {
        for (i, who) in callers.iter().enumerate() {
            let Some(want) = expect[i] else { continue };
            let (got, v) = h.call(m, p, who, body.clone()).await;
            if got != StatusCode::from_u16(want).unwrap() {
                failures.push(format!("{m} {p} as {}: want {want}, got {got} {v}", names[i]));
            }
            if got == StatusCode::FORBIDDEN || got == StatusCode::UNAUTHORIZED {
                // Denials carry only an error class and a message.
                let keys: Vec<_> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
                assert_eq!(keys, ["msg", "type"], "{m} {p}: {v}");
            }
        }
    }
    assert!(failures.is_empty(), "isolation matrix mismatches:\n{}", failures.join("\n"));
    // GET /v0/node/na as alice must not reveal switch wiring; admin sees it.
    let (_, v) = h.call("GET", "/v0/node/na", &callers[1], None).await;
    assert!(v["nics"][0].get("port").is_none(), "{v}");
    let (_, v) = h.call("GET", "/v0/node/na", &callers[0], None).await;
    assert_eq!(v["nics"][0]["port"], "p1");
    // Power mock calls do not touch the DB; everything else was denied.
    assert_eq!(h.snapshot().await, before, "a denied request changed the database");
}
both_backends!(isolation);
