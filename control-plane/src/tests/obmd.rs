//! The `obmd` BMC driver and HIL master's node registration
//! (`PUT /v0/node/<n> {"obmd": {...}}`, `PUT /v0/node/<n>/obm`), against
//! an obmd stand-in on loopback. obmd (CCI-MOC/obmd, Go) is on no package
//! registry, so the stand-in implements its documented API (its README:
//! admin calls with HTTP Basic `admin:<admin token>`, node calls with
//! `?token=`, 401 for a bad token, 400 for a bad boot device) and records
//! every call, so the test sees exactly what metalcast sent.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{Harness, Who};

pub(super) const ADMIN: &str = "0123456789abcdef0123456789abcdef";

#[derive(Default)]
pub(super) struct Obmd {
    token: Option<String>,
    issued: u32,
    power: bool,
    bootdev: String,
    pub(super) calls: Vec<String>,
}

pub(super) type St = Arc<Mutex<Obmd>>;

fn admin_ok(h: &HeaderMap) -> bool {
    use base64::Engine;
    let want = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN}")));
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(want.as_str())
}

fn token_ok(s: &Obmd, q: &std::collections::HashMap<String, String>) -> bool {
    s.token.is_some() && q.get("token") == s.token.as_ref()
}

/// The stand-in on a loopback port, for node `n1`; its base URL.
pub(super) async fn spawn(state: St) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = stand_in(state);
    (base, tokio::spawn(async move { axum::serve(listener, app).await }))
}

fn stand_in(state: St) -> Router {
    type Q = Query<std::collections::HashMap<String, String>>;
    let node = |p: &str| format!("/node/n1/{p}");
    Router::new()
        .route(
            &node("token"),
            post(|State(s): State<St>, h: HeaderMap| async move {
                let mut s = s.lock().unwrap();
                s.calls.push("POST token".into());
                if !admin_ok(&h) {
                    return Err(StatusCode::UNAUTHORIZED);
                }
                s.issued += 1;
                let t = format!("{:032x}", 0xfeed_0000u64 + u64::from(s.issued));
                s.token = Some(t.clone());
                Ok(Json(json!({ "token": t })))
            })
            .delete(|State(s): State<St>, h: HeaderMap| async move {
                let mut s = s.lock().unwrap();
                s.calls.push("DELETE token".into());
                if !admin_ok(&h) {
                    return StatusCode::UNAUTHORIZED;
                }
                s.token = None;
                StatusCode::OK
            }),
        )
        .route(
            &node("power_on"),
            post(|State(s): State<St>, Query(q): Q| async move {
                let mut s = s.lock().unwrap();
                s.calls.push("POST power_on".into());
                if !token_ok(&s, &q) {
                    return StatusCode::UNAUTHORIZED;
                }
                s.power = true;
                StatusCode::OK
            }),
        )
        .route(
            &node("power_off"),
            post(|State(s): State<St>, Query(q): Q| async move {
                let mut s = s.lock().unwrap();
                s.calls.push("POST power_off".into());
                if !token_ok(&s, &q) {
                    return StatusCode::UNAUTHORIZED;
                }
                s.power = false;
                StatusCode::OK
            }),
        )
        .route(
            &node("power_cycle"),
            post(|State(s): State<St>, Query(q): Q, Json(b): Json<Value>| async move {
                let mut s = s.lock().unwrap();
                s.calls.push(format!("POST power_cycle {b}"));
                if !token_ok(&s, &q) {
                    return StatusCode::UNAUTHORIZED;
                }
                s.power = true;
                StatusCode::OK
            }),
        )
        .route(
            &node("power_status"),
            get(|State(s): State<St>, Query(q): Q| async move {
                let s = s.lock().unwrap();
                if !token_ok(&s, &q) {
                    return Err(StatusCode::UNAUTHORIZED);
                }
                Ok(Json(json!({ "power_status": if s.power { "on" } else { "off" } })))
            }),
        )
        .route(
            &node("boot_device"),
            put(|State(s): State<St>, Query(q): Q, Json(b): Json<Value>| async move {
                let mut s = s.lock().unwrap();
                s.calls.push(format!("PUT boot_device {b}"));
                if !token_ok(&s, &q) {
                    return StatusCode::UNAUTHORIZED;
                }
                match b["bootdev"].as_str() {
                    Some(d @ ("pxe" | "disk" | "none")) => {
                        s.bootdev = d.to_string();
                        StatusCode::OK
                    }
                    _ => StatusCode::BAD_REQUEST,
                }
            }),
        )
        .with_state(state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hil_master_registers_and_drives_an_obmd_node() {
    let state: St = Arc::default();
    let (base, server) = spawn(Arc::clone(&state)).await;

    let h = Harness::sqlite().await;
    h.ok("PUT", "/v0/project/pa", None).await;
    h.ok("PUT", "/v0/project/pb", None).await;
    let alice = h.user("alice", &["pa"]).await;
    let bob = h.user("bob", &["pb"]).await;
    let obmd = json!({"uri": format!("{base}/node/n1"), "admin_token": ADMIN});

    // HIL master's registration body; refusals for the wrong shapes.
    for (body, why) in [
        (json!({"obmd": obmd, "obm": {"type": "none"}}), "both"),
        (json!({}), "neither"),
        (json!({"obmd": {"uri": "ftp://x/node/n1", "admin_token": ADMIN}}), "scheme"),
        (json!({"obmd": {"uri": format!("{base}/node/n1"), "admin_token": ""}}), "empty admin token"),
        (
            json!({"obm": {"type": "obmd", "uri": format!("{base}/node/n1"), "admin_token": ADMIN, "token": "x"}}),
            "token given",
        ),
    ] {
        let (s, v) = h.call("PUT", "/v0/node/n1", &h.admin, Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{why}: {v}");
    }
    h.ok("PUT", "/v0/node/n1", Some(json!({"obmd": obmd, "metadata": {"rack": "r7"}}))).await;
    h.ok("POST", "/v0/project/pa/connect_node", Some(json!({"node": "n1"}))).await;

    // Not enabled yet: HIL's "OBM is not enabled" (409), and obmd is not called.
    let (s, v) = h.call("POST", "/v0/node/n1/power_on", &alice, None).await;
    assert_eq!((s, v["type"].as_str()), (StatusCode::CONFLICT, Some("BlockedError")), "{v}");
    assert!(state.lock().unwrap().calls.is_empty());

    // Another project's member may not enable it.
    let (s, _) = h.call("PUT", "/v0/node/n1/obm", &bob, Some(json!({"enabled": true}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = h.call("PUT", "/v0/node/n1/obm", &alice, Some(json!({"enabled": "yes"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Enabled by a project member: a node token from obmd (admin auth), then power through obmd.
    let call = |who: &Who, m: &'static str, p: &'static str, b: Option<Value>| {
        let (h, who) = (&h, who.clone());
        async move {
            let (s, v) = h.call(m, p, &who, b).await;
            assert_eq!(s, StatusCode::OK, "{m} {p}: {v}");
            v
        }
    };
    call(&alice, "PUT", "/v0/node/n1/obm", Some(json!({"enabled": true}))).await;
    assert_eq!(state.lock().unwrap().token.as_deref(), Some(format!("{:032x}", 0xfeed_0001u64).as_str()));
    assert_eq!(call(&alice, "GET", "/v0/node/n1/power_status", None).await["power_status"], "off");
    call(&alice, "POST", "/v0/node/n1/power_on", None).await;
    assert_eq!(call(&alice, "GET", "/v0/node/n1/power_status", None).await["power_status"], "on");
    call(&alice, "POST", "/v0/node/n1/power_off", None).await;
    assert!(!state.lock().unwrap().power);
    call(&alice, "POST", "/v0/node/n1/power_cycle", None).await;
    call(&alice, "PUT", "/v0/node/n1/boot_device", Some(json!({"bootdev": "pxe"}))).await;
    {
        let s = state.lock().unwrap();
        assert!(s.power, "a cycle of an off node turns it on");
        assert_eq!(s.bootdev, "pxe");
        assert_eq!(
            s.calls,
            [
                "POST token",
                "POST power_on",
                "POST power_off",
                r#"POST power_cycle {"force":true}"#,
                r#"PUT boot_device {"bootdev":"pxe"}"#
            ]
        );
    }
    let (s, _) = h.call("POST", "/v0/node/n1/power_on", &bob, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "bob is not in pa");

    // Neither token is ever shown.
    let shown = h.ok("GET", "/v0/node/n1", None).await.to_string();
    assert!(!shown.contains(ADMIN) && !shown.contains("feed"), "{shown}");

    // Disabled: the token is invalidated at obmd and forgotten here.
    call(&alice, "PUT", "/v0/node/n1/obm", Some(json!({"enabled": false}))).await;
    assert_eq!(state.lock().unwrap().token, None);
    assert_eq!(state.lock().unwrap().calls.last().map(String::as_str), Some("DELETE token"));
    let (s, _) = h.call("POST", "/v0/node/n1/power_on", &alice, None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Enabled again: a new token; a token invalidated at obmd behind our back is a driver error (502).
    call(&alice, "PUT", "/v0/node/n1/obm", Some(json!({"enabled": true}))).await;
    state.lock().unwrap().token = Some("f".repeat(32));
    let (s, v) = h.call("POST", "/v0/node/n1/power_on", &alice, None).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    assert!(!v.to_string().contains(ADMIN), "{v}");

    // A wrong admin token: enabling fails (502) and nothing is stored.
    h.ok("PUT", "/v0/node/n2", Some(json!({"obmd": {"uri": format!("{base}/node/n1"), "admin_token": "wrong"}}))).await;
    let (s, _) = h.call("PUT", "/v0/node/n2/obm", &h.admin, Some(json!({"enabled": true}))).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    let (s, _) = h.call("POST", "/v0/node/n2/power_on", &h.admin, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "still not enabled");

    // Other BMC types are always enabled: the call is accepted and changes nothing.
    h.ok("PUT", "/v0/node/n3", Some(json!({"obm": {"type": "none"}}))).await;
    h.ok("PUT", "/v0/node/n3/obm", Some(json!({"enabled": true}))).await;
    h.ok("PUT", "/v0/node/n3/obm", Some(json!({"enabled": false}))).await;
    let (s, _) = h.call("PUT", "/v0/node/ghost/obm", &h.admin, Some(json!({"enabled": true}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    server.abort();
}
