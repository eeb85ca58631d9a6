//! HIL conformance: every call HIL's own Python client (`hil/client/*.py`,
//! CCI-MOC/hil master) and so its `hil` CLI makes, sent the way that client
//! sends it (its paths, its JSON bodies, no `Content-Type`, `channel: null`
//! when none is given), and the response checked against the shape the
//! client and CLI read (`docs/rest_api.md` and `hil/api.py`). HIL is on no
//! package registry, so its calls are written out here; the one call whose
//! body depends on the server's drivers (`switch register`) uses a metalcast
//! switch type. Nodes are registered as HIL master registers them, with
//! obmd (the stand-in of `tests/obmd.rs`).
//!
//! The golden test pins the bytes of a longer session; this one pins what
//! HIL's tools depend on, call by call.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Harness, Who};

/// A response shape: what HIL's client and CLI read.
#[derive(Debug, Clone)]
enum Shape {
    /// HIL's empty 200 (the client's `check_response` returns `None`).
    Empty,
    Str,
    Bool,
    /// `null` or the shape.
    Opt(Box<Shape>),
    List(Box<Shape>),
    /// An object with any keys, every value of the shape.
    Map(Box<Shape>),
    /// An object with exactly these keys.
    Obj(Vec<(&'static str, Shape)>),
}

use Shape::*;

fn list(s: Shape) -> Shape {
    List(Box::new(s))
}
fn map(s: Shape) -> Shape {
    Map(Box::new(s))
}
fn opt(s: Shape) -> Shape {
    Opt(Box::new(s))
}
fn obj(fields: &[(&'static str, Shape)]) -> Shape {
    Obj(fields.to_vec())
}

/// Where `v` departs from `shape`, if it does.
fn mismatch(v: &Value, shape: &Shape, at: &str) -> Option<String> {
    let bad = || Some(format!("{at}: expected {shape:?}, got {v}"));
    match shape {
        Empty => bad(), // checked on the bytes, before parsing
        Str => (!v.is_string()).then(bad).flatten(),
        Bool => (!v.is_boolean()).then(bad).flatten(),
        Opt(s) => {
            if v.is_null() {
                None
            } else {
                mismatch(v, s, at)
            }
        }
        List(s) => match v.as_array() {
            Some(a) => a.iter().enumerate().find_map(|(i, e)| mismatch(e, s, &format!("{at}[{i}]"))),
            None => bad(),
        },
        Map(s) => match v.as_object() {
            Some(o) => o.iter().find_map(|(k, e)| mismatch(e, s, &format!("{at}.{k}"))),
            None => bad(),
        },
        Obj(fields) => {
            let Some(o) = v.as_object() else { return bad() };
            let mut want: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
            let mut got: Vec<&str> = o.keys().map(String::as_str).collect();
            want.sort_unstable();
            got.sort_unstable();
            if want != got {
                return Some(format!("{at}: keys {got:?}, HIL's are {want:?}"));
            }
            fields.iter().find_map(|(k, s)| mismatch(&o[*k], s, &format!("{at}.{k}")))
        }
    }
}

/// One HIL client call: the client method it stands for, who calls, the
/// request, the status HIL answers, and the shape read from the body.
struct Call {
    method_of: &'static str,
    who: &'static str,
    verb: &'static str,
    path: String,
    body: Option<Value>,
    status: u16,
    shape: Shape,
}

fn call(method_of: &'static str, who: &'static str, verb: &'static str, path: &str, body: Option<Value>) -> Call {
    Call { method_of, who, verb, path: path.to_string(), body, status: 200, shape: Empty }
}

impl Call {
    fn gives(mut self, shape: Shape) -> Self {
        self.shape = shape;
        self
    }
    /// Answered with `status` (an error, or HIL's 202 for a queued action).
    fn fails(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
}

/// HIL's error body: `{"type": <class>, "msg": <text>}`.
fn error() -> Shape {
    obj(&[("type", Str), ("msg", Str)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hil_client_call_answers_in_hils_shape() {
    let obmd_state: super::obmd::St = Arc::default();
    let (obmd, server) = super::obmd::spawn(Arc::clone(&obmd_state)).await;
    let h = Harness::sqlite().await;
    let sw = crate::drivers::mock::switch(&format!("conf-{}", crate::auth::random_hex(4)), false, false);
    let node_view = |admin: bool| {
        let mut nic = vec![("label", Str), ("macaddr", Str), ("networks", map(Str))];
        if admin {
            nic.extend([("port", opt(Str)), ("switch", opt(Str))]);
        }
        obj(&[("name", Str), ("project", opt(Str)), ("nics", list(Obj(nic))), ("metadata", map(Str))])
    };
    let action = obj(&[
        ("status", Str),
        ("node", Str),
        ("nic", Str),
        ("type", Str),
        ("channel", Str),
        ("new_network", opt(Str)),
    ]);
    let calls = vec![
        // hil/client/user.py (the database auth extension)
        call(
            "user.create",
            "admin",
            "PUT",
            "/v0/auth/basic/user/alice",
            Some(json!({"password": "alice-pw", "is_admin": false})),
        ),
        call(
            "user.create",
            "admin",
            "PUT",
            "/v0/auth/basic/user/alice",
            Some(json!({"password": "x", "is_admin": false})),
        )
        .fails(409)
        .gives(error()),
        call("project.create", "admin", "PUT", "/v0/project/pa", None),
        call("project.create", "admin", "PUT", "/v0/project/pb", None),
        call("user.add", "admin", "POST", "/v0/auth/basic/user/alice/add_project", Some(json!({"project": "pa"}))),
        call("user.list", "admin", "GET", "/v0/auth/basic/users", None)
            .gives(map(obj(&[("is_admin", Bool), ("projects", list(Str))]))),
        call("user.set_admin", "admin", "PATCH", "/v0/auth/basic/user/alice", Some(json!({"is_admin": false}))),
        call("extensions.list_active", "admin", "GET", "/v0/active_extensions", None).gives(list(Str)),
        // hil/client/project.py
        call("project.list", "admin", "GET", "/v0/projects", None).gives(list(Str)),
        call("project.list", "anon", "GET", "/v0/projects", None).fails(401).gives(error()),
        // hil/client/node.py: registration through obmd, as HIL master does it
        call(
            "node.register",
            "admin",
            "PUT",
            "/v0/node/n1",
            Some(json!({"obmd": {"uri": format!("{obmd}/node/n1"), "admin_token": super::obmd::ADMIN}})),
        ),
        call(
            "node.register",
            "admin",
            "PUT",
            "/v0/node/n1",
            Some(json!({"obmd": {"uri": format!("{obmd}/node/n1"), "admin_token": super::obmd::ADMIN}})),
        )
        .fails(409)
        .gives(error()),
        call("node.add_nic", "admin", "PUT", "/v0/node/n1/nic/eth0", Some(json!({"macaddr": "52:54:00:aa:00:01"}))),
        call("node.metadata_set", "admin", "PUT", "/v0/node/n1/metadata/rack", Some(json!({"value": "r7"}))),
        call("node.list", "admin", "GET", "/v0/nodes/free", None).gives(list(Str)),
        call("node.list", "admin", "GET", "/v0/nodes/all", None).gives(list(Str)),
        call("node.show", "admin", "GET", "/v0/node/n1", None).gives(node_view(true)),
        // hil/client/switch.py (the register body is the server's switch type)
        call("switch.register", "admin", "PUT", "/v0/switch/sw1", Some(sw)),
        call("port.register", "admin", "PUT", "/v0/switch/sw1/port/p1", None),
        call(
            "port.connect_nic",
            "admin",
            "POST",
            "/v0/switch/sw1/port/p1/connect_nic",
            Some(json!({"node": "n1", "nic": "eth0"})),
        ),
        call("switch.list", "admin", "GET", "/v0/switches", None).gives(list(Str)),
        call("switch.show", "admin", "GET", "/v0/switch/sw1", None).gives(obj(&[
            ("name", Str),
            ("ports", list(obj(&[("label", Str)]))),
            ("capabilities", list(Str)),
        ])),
        call("port.show", "admin", "GET", "/v0/switch/sw1/port/p1", None).gives(obj(&[
            ("node", Str),
            ("nic", Str),
            ("networks", map(Str)),
        ])),
        // The node in a project, its OBM and power (through obmd).
        call("project.connect", "alice", "POST", "/v0/project/pa/connect_node", Some(json!({"node": "n1"}))),
        call("project.nodes_in", "alice", "GET", "/v0/project/pa/nodes", None).gives(list(Str)),
        call("node.show", "alice", "GET", "/v0/node/n1", None).gives(node_view(false)),
        call("node.power_on", "alice", "POST", "/v0/node/n1/power_on", None).fails(409).gives(error()),
        call("node.enable_obm", "alice", "PUT", "/v0/node/n1/obm", Some(json!({"enabled": true}))),
        call("node.power_on", "alice", "POST", "/v0/node/n1/power_on", None),
        call("node.power_status", "alice", "GET", "/v0/node/n1/power_status", None)
            .gives(obj(&[("power_status", Str)])),
        call("node.power_cycle", "alice", "POST", "/v0/node/n1/power_cycle", Some(json!({"force": false}))),
        call("node.power_off", "alice", "POST", "/v0/node/n1/power_off", None),
        call("node.set_bootdev", "alice", "PUT", "/v0/node/n1/boot_device", Some(json!({"bootdev": "pxe"}))),
        // hil/client/network.py
        call(
            "network.create",
            "alice",
            "PUT",
            "/v0/network/na",
            Some(json!({"owner": "pa", "access": "pa", "net_id": ""})),
        ),
        call(
            "network.create",
            "admin",
            "PUT",
            "/v0/network/pub",
            Some(json!({"owner": "admin", "access": "", "net_id": ""})),
        ),
        call("network.list", "alice", "GET", "/v0/networks", None)
            .gives(map(obj(&[("network_id", Str), ("projects", opt(list(Str)))]))),
        call("network.list", "admin", "GET", "/v0/networks", None)
            .gives(map(obj(&[("network_id", Str), ("projects", opt(list(Str)))]))),
        call("project.networks_in", "alice", "GET", "/v0/project/pa/networks", None).gives(list(Str)),
        call(
            "node.connect_network",
            "alice",
            "POST",
            "/v0/node/n1/nic/eth0/connect_network",
            Some(json!({"network": "na", "channel": null})),
        )
        .fails(202)
        .gives(obj(&[("status_id", Str)])),
        call("node.show_networking_action", "alice", "WAIT", "", None),
        call("node.show_networking_action", "alice", "GET", "/v0/networking_action/$", None).gives(action.clone()),
        call("network.show", "alice", "GET", "/v0/network/na", None).gives(obj(&[
            ("name", Str),
            ("owner", Str),
            ("access", opt(list(Str))),
            ("channels", list(Str)),
            ("connected-nodes", map(list(Str))),
        ])),
        call("network.show", "alice", "GET", "/v0/network/pub", None).gives(obj(&[
            ("name", Str),
            ("owner", Str),
            ("access", opt(list(Str))),
            ("channels", list(Str)),
            ("connected-nodes", map(list(Str))),
        ])),
        call("network.list_network_attachments", "alice", "GET", "/v0/network/na/attachments", None)
            .gives(map(obj(&[("nic", Str), ("channel", Str), ("project", Str)]))),
        call("network.list_network_attachments", "alice", "GET", "/v0/network/na/attachments?project=pa", None)
            .gives(map(obj(&[("nic", Str), ("channel", Str), ("project", Str)]))),
        call("network.grant_access", "alice", "PUT", "/v0/network/na/access/pb", None),
        call("network.revoke_access", "alice", "DELETE", "/v0/network/na/access/pb", None),
        call(
            "node.detach_network",
            "alice",
            "POST",
            "/v0/node/n1/nic/eth0/detach_network",
            Some(json!({"network": "na"})),
        )
        .fails(202)
        .gives(obj(&[("status_id", Str)])),
        call("node.show_networking_action", "alice", "WAIT", "", None),
        call("node.disable_obm", "alice", "PUT", "/v0/node/n1/obm", Some(json!({"enabled": false}))),
        call("project.detach", "alice", "POST", "/v0/project/pa/detach_node", Some(json!({"node": "n1"}))),
        // Teardown, HIL's order.
        call("network.delete", "alice", "DELETE", "/v0/network/na", None),
        call("network.delete", "admin", "DELETE", "/v0/network/pub", None),
        call("port.detach_nic", "admin", "POST", "/v0/switch/sw1/port/p1/detach_nic", None),
        call("port.delete", "admin", "DELETE", "/v0/switch/sw1/port/p1", None),
        call("switch.delete", "admin", "DELETE", "/v0/switch/sw1", None),
        call("node.metadata_delete", "admin", "DELETE", "/v0/node/n1/metadata/rack", None),
        call("node.remove_nic", "admin", "DELETE", "/v0/node/n1/nic/eth0", None),
        call("node.delete", "admin", "DELETE", "/v0/node/n1", None),
        call("node.show", "admin", "GET", "/v0/node/n1", None).fails(404).gives(error()),
        call(
            "user.remove",
            "admin",
            "POST",
            "/v0/auth/basic/user/alice/remove_project",
            Some(json!({"project": "pa"})),
        ),
        call("user.delete", "admin", "DELETE", "/v0/auth/basic/user/alice", None),
        call("project.delete", "admin", "DELETE", "/v0/project/pa", None),
        call("project.delete", "admin", "DELETE", "/v0/project/pb", None),
        call("project.list", "admin", "GET", "/v0/projects", None).gives(list(Str)),
    ];

    let alice = Who::Basic("alice".into(), "alice-pw".into());
    let mut action_id = String::new();
    let mut failures = Vec::new();
    for c in calls {
        if c.verb == "WAIT" {
            if action_id.is_empty() {
                failures.push(format!("{}: no networking action to wait for", c.method_of));
            } else {
                assert_eq!(h.wait_action(&action_id).await, "DONE", "{}", c.method_of);
            }
            continue;
        }
        let who = match c.who {
            "admin" => h.admin.clone(),
            "alice" => alice.clone(),
            _ => Who::Anon,
        };
        let path = c.path.replace('$', &action_id);
        // HIL's client sends `data=json.dumps(payload)`: a JSON body, no Content-Type.
        let body = c.body.as_ref().map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let (status, bytes) = h.raw_bytes(c.verb, &path, &who, body).await;
        let what = format!("{} ({} {path} as {})", c.method_of, c.verb, c.who);
        if status.as_u16() != c.status {
            failures.push(format!(
                "{what}: status {status}, HIL answers {}: {}",
                c.status,
                String::from_utf8_lossy(&bytes)
            ));
            continue;
        }
        if let Shape::Empty = c.shape {
            // The client parses nothing; a JSON body would still be read, so
            // HIL's 200s with no body must stay without one.
            if !bytes.is_empty() {
                failures.push(format!("{what}: HIL answers with no body, got {}", String::from_utf8_lossy(&bytes)));
            }
            continue;
        }
        let v: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
                continue;
            }
        };
        if let Some(id) = v.get("status_id").and_then(Value::as_str) {
            action_id = id.to_string();
        }
        if let Some(m) = mismatch(&v, &c.shape, "body") {
            failures.push(format!("{what}: {m}"));
        }
    }
    assert!(failures.is_empty(), "calls that depart from HIL:\n{}", failures.join("\n"));
    // The power calls reached obmd with the node token metalcast got for it.
    let calls = obmd_state.lock().unwrap().calls.clone();
    assert_eq!(
        calls,
        [
            "POST token",
            "POST power_on",
            r#"POST power_cycle {"force":true}"#,
            "POST power_off",
            r#"PUT boot_device {"bootdev":"pxe"}"#,
            "DELETE token"
        ]
    );
    server.abort();
}

#[test]
fn a_shape_mismatch_is_found() {
    let ports = obj(&[("name", Str), ("ports", list(obj(&[("label", Str)])))]);
    assert!(mismatch(&json!({"name": "s", "ports": [{"label": "p"}]}), &ports, "b").is_none());
    // metalcast's shape before issue 28: ports as strings.
    assert!(mismatch(&json!({"name": "s", "ports": ["p"]}), &ports, "b").unwrap().contains("b.ports[0]"));
    assert!(mismatch(&json!({"name": "s", "ports": [], "x": 1}), &ports, "b").unwrap().contains("keys"));
    assert!(mismatch(&json!({"a": null}), &map(opt(Str)), "b").is_none());
    assert!(mismatch(&json!({"a": 1}), &map(opt(Str)), "b").is_some());
}
