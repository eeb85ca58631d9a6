//! Deployments through the API on both database backends, without a fabric:
//! who may deploy what where, what a caller may see, conflicts, failure of
//! nodes without a runtime, the event stream, retry, restart recovery, and
//! the metadata service's per-node isolation. (The real multicast deploy to
//! namespace and QEMU nodes is `tests/deploy_e2e.rs`.)

use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

use super::registry::bundle;
use super::{Harness, Who};
use crate::both_backends;

async fn token(h: &Harness, id: i64, node: &str) -> String {
    sqlx::query("SELECT metadata_token FROM deployment_nodes WHERE deployment = $1 AND node = $2")
        .bind(id)
        .bind(node)
        .fetch_one(&h.st.db.pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

/// Reads the event stream to its end; returns the `progress` snapshots.
async fn events(h: &Harness, who: &Who, id: i64) -> Vec<Value> {
    let (s, body) = h.raw_bytes("GET", &format!("/v1/deployments/{id}/events"), who, Vec::new()).await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("event: end"), "{text}");
    text.split("\n\n")
        .filter(|e| e.contains("event: progress"))
        .map(|e| {
            let data: String = e.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            serde_json::from_str(&data).unwrap()
        })
        .collect()
}

async fn deployments(h: &Harness) {
    for p in ["pa", "pb"] {
        h.ok("PUT", &format!("/v0/project/{p}"), None).await;
    }
    let alice = h.user("alice", &["pa"]).await;
    let bob = h.user("bob", &["pb"]).await;
    for (i, n) in ["n1", "n2", "n3"].iter().enumerate() {
        h.ok("PUT", &format!("/v0/node/{n}"), Some(json!({"obm": {"type": "none"}}))).await;
        h.ok("PUT", &format!("/v0/node/{n}/nic/eth0"), Some(json!({"macaddr": format!("52:54:00:00:10:0{i}")}))).await;
    }
    for n in ["n1", "n2"] {
        h.ok("POST", "/v0/project/pa/connect_node", Some(json!({"node": n}))).await;
    }
    let (s, v) = h.raw("PUT", "/v1/images/img?project=pa", &alice, bundle(Some(&h.signer), 7)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = h.raw("PUT", "/v1/images/pub", &h.admin.clone(), bundle(Some(&h.signer), 8)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // Refused requests change nothing.
    let before = h.snapshot().await;
    for (who, body, want) in [
        (&bob, json!({"image": "pub", "nodes": ["n1"]}), StatusCode::NOT_FOUND), // not bob's node
        (&bob, json!({"image": "pub", "project": "pa"}), StatusCode::FORBIDDEN), // not bob's project
        (&bob, json!({"image": "img", "project": "pb"}), StatusCode::NOT_FOUND), // image not visible
        (&alice, json!({"image": "img", "nodes": ["n1", "n3"]}), StatusCode::NOT_FOUND), // n3 is free
        (&alice, json!({"image": "img", "nodes": ["n1"], "surprise": 1}), StatusCode::BAD_REQUEST),
        (&alice, json!({"image": "img"}), StatusCode::BAD_REQUEST),
        (
            &alice,
            json!({"image": "img", "project": "pa", "target": {"kind": "disk", "device": "/etc/passwd"}}),
            StatusCode::BAD_REQUEST,
        ),
        (&Who::Anon, json!({"image": "pub", "nodes": ["n1"]}), StatusCode::UNAUTHORIZED),
    ] {
        let (s, v) = h.call("POST", "/v1/deployments", who, Some(body.clone())).await;
        assert_eq!(s, want, "{body}: {v}");
    }
    assert_eq!(h.snapshot().await, before);

    // Alice deploys to her project; nodes without a runtime fail with the reason, without waiting for each other.
    let req = json!({"image": "img", "project": "pa", "user_data": "#cloud-config\nhostname: x\n", "timeout_secs": 10});
    let (s, d) = h.call("POST", "/v1/deployments", &alice, Some(req)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{d}");
    let id = d["id"].as_i64().unwrap();
    assert_eq!(d["state"], "running");
    assert_eq!(d["nodes"].as_array().unwrap().len(), 2);
    // While it runs: a second deployment of the same node conflicts; bob sees nothing.
    let (s, v) = h.call("POST", "/v1/deployments", &alice, Some(json!({"image": "img", "nodes": ["n2"]}))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(h.call("GET", &format!("/v1/deployments/{id}"), &bob, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(h.call("GET", &format!("/v1/deployments/{id}/events"), &bob, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(h.call("GET", "/v1/deployments", &bob, None).await.1, json!([]));

    let snaps = events(h, &alice, id).await;
    let last = snaps.last().unwrap();
    assert_eq!(last["state"], "failed", "{last}");
    for n in last["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "failed");
        assert!(n["reason"].as_str().unwrap().contains("no runtime checked in"), "{n}");
        assert!(n["elapsed_ms"].as_i64().unwrap() >= 0);
    }
    let (s, v) = h.call("GET", &format!("/v1/deployments/{id}"), &alice, None).await;
    assert_eq!((s, v["state"].clone()), (StatusCode::OK, json!("failed")));
    assert_eq!(h.call("GET", "/v1/deployments", &alice, None).await.1.as_array().unwrap().len(), 1);

    // Metadata: each token serves its own node only; unknown tokens are 404.
    let (t1, t2) = (token(h, id, "n1").await, token(h, id, "n2").await);
    assert_ne!(t1, t2);
    for (t, node) in [(&t1, "n1"), (&t2, "n2")] {
        let (s, b) = h.raw_bytes("GET", &format!("/v1/metadata/{t}/meta-data"), &Who::Anon, Vec::new()).await;
        let text = String::from_utf8(b).unwrap();
        assert_eq!(s, StatusCode::OK);
        assert!(text.contains(&format!("local-hostname: \"{node}\"")), "{text}");
        assert!(!text.contains(if node == "n1" { "\"n2\"" } else { "\"n1\"" }), "{text}");
    }
    let (s, b) = h.raw_bytes("GET", &format!("/v1/metadata/{t1}/user-data"), &Who::Anon, Vec::new()).await;
    assert_eq!((s, String::from_utf8(b).unwrap()), (StatusCode::OK, "#cloud-config\nhostname: x\n".to_string()));
    let bogus = "0".repeat(48);
    for t in [bogus.as_str(), "short", "../../etc"] {
        let (s, _) = h.raw_bytes("GET", &format!("/v1/metadata/{t}/meta-data"), &Who::Anon, Vec::new()).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{t}");
    }
    assert_eq!(
        h.raw_bytes("GET", &format!("/v1/metadata/{t1}/secrets"), &Who::Anon, Vec::new()).await.0,
        StatusCode::NOT_FOUND
    );

    // Retry runs the failed nodes again (and they fail again: still no runtime).
    let (s, v) = h.call("POST", &format!("/v1/deployments/{id}/retry"), &bob, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = h.call("POST", &format!("/v1/deployments/{id}/retry"), &alice, None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let last = events(h, &alice, id).await.pop().unwrap();
    assert_eq!(last["state"], "failed");
    assert!(last["nodes"].as_array().unwrap().iter().all(|n| n["attempts"] == 2), "{last}");
    // A newer deployment's token replaces the old one; a node that left the project loses its data.
    h.ok("POST", "/v0/project/pa/detach_node", Some(json!({"node": "n2"}))).await;
    let (s, _) = h.raw_bytes("GET", &format!("/v1/metadata/{t2}/meta-data"), &Who::Anon, Vec::new()).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "n2 left the project");
    let (s, _) = h.raw_bytes("GET", &format!("/v1/metadata/{t1}/meta-data"), &Who::Anon, Vec::new()).await;
    assert_eq!(s, StatusCode::OK);

    // A restart in the middle: whatever was in flight is failed with the reason.
    sqlx::query("UPDATE deployments SET state = 'running' WHERE id = $1")
        .bind(id)
        .execute(&h.st.db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE deployment_nodes SET state = 'receiving' WHERE deployment = $1 AND node = 'n1'")
        .bind(id)
        .execute(&h.st.db.pool)
        .await
        .unwrap();
    assert_eq!(crate::app::deployments::recover(&h.st).await.unwrap(), 1);
    let (_, v) = h.call("GET", &format!("/v1/deployments/{id}"), &alice, None).await;
    assert_eq!(v["state"], "failed");
    let n1 = v["nodes"].as_array().unwrap().iter().find(|n| n["node"] == "n1").unwrap().clone();
    assert_eq!(n1["state"], "failed");
    assert!(n1["reason"].as_str().unwrap().contains("restarted"), "{n1}");

    // Reclaim: refused for other projects; a node without a runtime or BMC is not freed.
    let (s, _) = h.call("POST", "/v1/nodes/n1/reclaim", &bob, Some(json!({}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = h.call("POST", "/v1/nodes/n1/reclaim", &alice, Some(json!({"timeout_secs": 5}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("no BMC"), "{v}");
    let (_, v) = h.call("GET", "/v0/node/n1", &alice, None).await;
    assert_eq!(v["project"], "pa", "a failed reclaim leaves the node where it was");

    // Reclaim through the BMC: no runtime answers, so boot device pxe + power cycle, then the
    // runtime's check-in (through the real runtime API) frees the node.
    let bmc = format!("n4-{}", crate::auth::random_hex(4));
    let mac = "52:54:00:00:10:04";
    h.ok("PUT", "/v0/node/n4", Some(json!({"obm": crate::drivers::mock::obm(&bmc)}))).await;
    h.ok("PUT", "/v0/node/n4/nic/eth0", Some(json!({"macaddr": mac}))).await;
    h.ok("POST", "/v0/project/pa/connect_node", Some(json!({"node": "n4"}))).await;
    // n4's NIC is on a network (mock switch): the reclaim must detach it.
    h.ok("PUT", "/v0/switch/sw4", Some(crate::drivers::mock::switch(&bmc, false, false))).await;
    h.ok("PUT", "/v0/switch/sw4/port/p4", None).await;
    h.ok("POST", "/v0/switch/sw4/port/p4/connect_nic", Some(json!({"node": "n4", "nic": "eth0"}))).await;
    h.ok("PUT", "/v0/network/net4", Some(json!({"owner": "pa", "access": "pa", "net_id": ""}))).await;
    let (s, v) = h.call("POST", "/v0/node/n4/nic/eth0/connect_network", &alice, Some(json!({"network": "net4"}))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(h.wait_action(v["status_id"].as_str().unwrap()).await, "DONE");
    let booted = {
        let (h_app, bmc) = (h.app.clone(), bmc.clone());
        tokio::spawn(async move {
            // The "machine" boots the runtime once the BMC power-cycled it.
            while !crate::drivers::mock::log(&bmc).iter().any(|l| l.contains("Cycle")) {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let checkin = json!({"node": mac, "role": "runtime", "boot_id": "b2", "version": "0", "address": "10.0.0.4",
                "uptime_secs": 5.0, "network_secs": 0.1,
                "inventory": {"nics": [], "cpus": 1, "memory_bytes": 1, "disks": [], "kernel": "6.1"}});
            let req = axum::http::Request::post("/v1/runtime/checkin")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(checkin.to_string()))
                .unwrap();
            tower::ServiceExt::oneshot(h_app, req).await.unwrap().status()
        })
    };
    let (s, v) = h.call("POST", "/v1/nodes/n4/reclaim", &alice, Some(json!({"timeout_secs": 30}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(booted.await.unwrap(), StatusCode::OK);
    assert_eq!(v["method"], "bmc", "{v}");
    let phases: Vec<&str> = v["phases"].as_array().unwrap().iter().map(|p| p["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["runtime", "networks", "free"]);
    assert!(v["phases"][1]["detail"].as_str().unwrap().contains("net4"), "{v}");
    let log = crate::drivers::mock::log(&bmc);
    let bmc_ops: Vec<&String> = log.iter().filter(|l| l.starts_with("bootdev") || l.starts_with("power")).collect();
    assert_eq!(bmc_ops, ["bootdev pxe", "power Cycle"], "{log:?}");
    let (_, net) = h.call("GET", "/v0/network/net4", &alice, None).await;
    assert_eq!(net["connected-nodes"], json!({}), "{net}");
    let free = h.ok("GET", "/v0/nodes/free", None).await;
    assert!(free.as_array().unwrap().iter().any(|n| n == "n4"), "{free}");
    // Reclaiming a free node is a conflict.
    assert_eq!(h.call("POST", "/v1/nodes/n4/reclaim", &h.admin.clone(), Some(json!({}))).await.0, StatusCode::CONFLICT);

    // The event stream exists when the 202 goes out: subscribed at once, it runs to the end.
    let (s, d2) = h
        .call("POST", "/v1/deployments", &alice, Some(json!({"image": "img", "nodes": ["n1"], "timeout_secs": 10})))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{d2}");
    let id2 = d2["id"].as_i64().unwrap();
    let last = events(h, &alice, id2).await.pop().unwrap();
    assert_eq!(last["state"], "failed", "the stream ended before the deployment: {last}");
    // n1 was deployed again since: retrying the older deployment would overwrite that.
    let (s, v) = h.call("POST", &format!("/v1/deployments/{id}/retry"), &alice, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["msg"].as_str().unwrap().contains(&format!("newer deployment {id2}")), "{v}");
    let (_, v) = h.call("GET", &format!("/v1/deployments/{id}"), &alice, None).await;
    assert_eq!(v["state"], "failed", "a refused retry changes nothing: {v}");
}
both_backends!(deployments);

/// Sends `body` to the runtime API as the node would (no credentials).
async fn runtime_call(app: &axum::Router, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(app.clone(), req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// A wipe names exactly the disks of the node's registered inventory, and
/// the runtime's refusal is recorded (reclaim 422, a node event, the node's
/// last report); a disk target outside the inventory is refused before any
/// instruction is sent.
async fn wipe_and_disk_targets_follow_the_registered_inventory(h: &Harness) {
    h.ok("PUT", "/v0/project/pa", None).await;
    let alice = h.user("alice", &["pa"]).await;
    let mac = "52:54:00:00:20:05";
    h.ok("PUT", "/v0/node/n5", Some(json!({"obm": {"type": "none"}}))).await;
    h.ok("PUT", "/v0/node/n5/nic/eth0", Some(json!({"macaddr": mac}))).await;
    h.ok("POST", "/v0/project/pa/connect_node", Some(json!({"node": "n5"}))).await;
    let checkin = json!({"node": mac, "role": "runtime", "boot_id": "b5", "version": "0", "address": "10.0.0.5",
        "uptime_secs": 5.0, "network_secs": 0.1,
        "inventory": {"nics": [], "cpus": 1, "memory_bytes": 1, "kernel": "6.1",
            "disks": [{"name": "vdb", "size_bytes": 1073741824_u64, "rotational": false}]}});
    assert_eq!(runtime_call(&h.app, "POST", "/v1/runtime/checkin", Some(checkin)).await.0, StatusCode::OK);

    // The node: takes the wipe, refuses it as its disk-write guard would.
    let node = {
        let app = h.app.clone();
        tokio::spawn(async move {
            let (s, i) = runtime_call(&app, "GET", &format!("/v1/runtime/nodes/{mac}/instruction?wait=10"), None).await;
            assert_eq!(s, StatusCode::OK, "{i}");
            let report = json!({"instruction": i["id"], "boot_id": "b5", "phase": "wipe", "status": "failed",
                "secs": 0.01, "exit_code": 8,
                "detail": "wipe disk write to /dev/vdb refused: vdb holds a mounted filesystem or swap area (ext4 on /)"});
            let (s, v) = runtime_call(&app, "POST", &format!("/v1/runtime/nodes/{mac}/reports"), Some(report)).await;
            assert!(s.is_success(), "{v}");
            i
        })
    };
    let (s, v) =
        h.call("POST", "/v1/nodes/n5/reclaim", &alice, Some(json!({"wipe": "zero", "timeout_secs": 20}))).await;
    let instruction = node.await.unwrap();
    assert_eq!(instruction["action"], "wipe", "{instruction}");
    assert_eq!(instruction["devices"], json!(["/dev/vdb"]), "the inventory's disks, by name: {instruction}");
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("holds a mounted filesystem"), "{v}");
    let (_, n) = h.call("GET", "/v0/node/n5", &alice, None).await;
    assert_eq!(n["project"], "pa", "a refused wipe leaves the node in its project");
    let (s, node_events) = h.call("GET", "/v1/events?node=n5", &alice, None).await;
    assert_eq!(s, StatusCode::OK);
    let e = node_events.as_array().unwrap().iter().find(|e| e["kind"] == "wipe-refused").cloned();
    let e = e.unwrap_or_else(|| panic!("no wipe-refused event: {node_events}"));
    assert!(e["reason"].as_str().unwrap().contains("/dev/vdb refused"), "{e}");
    assert_eq!(e["project"], "pa");
    let (_, rt) = h.call("GET", "/v1/nodes/n5/runtime", &alice, None).await;
    assert_eq!(rt["last_report"]["phase"], "wipe", "{rt}");
    assert_eq!(rt["last_report"]["exit_code"], 8, "{rt}");

    // A disk target that is not in the inventory: the node fails with the reason, no instruction is queued.
    let (s, v) = h.raw("PUT", "/v1/images/img5?project=pa", &alice, bundle(Some(&h.signer), 5)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let req = json!({"image": "img5", "nodes": ["n5"], "target": {"kind": "disk", "device": "/dev/vda"},
        "timeout_secs": 10});
    let (s, d) = h.call("POST", "/v1/deployments", &alice, Some(req)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{d}");
    // Polled (bounded) rather than read off the event stream, whose last snapshot can lag the end.
    let id = d["id"].as_i64().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let last = loop {
        let (_, v) = h.call("GET", &format!("/v1/deployments/{id}"), &alice, None).await;
        if v["state"] != "running" || tokio::time::Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(last["state"], "failed", "{last}");
    let reason = last["nodes"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("/dev/vda is not in this node's inventory (its disks: /dev/vdb)"), "{reason}");
    assert!(h.st.runtime.node(mac).unwrap().queued.is_empty(), "nothing was sent to the node");
}
both_backends!(wipe_and_disk_targets_follow_the_registered_inventory);

/// A server without a provisioning network still tells a caller what is
/// wrong with the request (400) before saying it cannot deploy (503).
async fn bad_bodies_are_refused_before_a_missing_provisioning_network(h: &Harness) {
    use tower::ServiceExt;
    h.ok("PUT", "/v0/project/pa", None).await;
    let alice = h.user("alice", &["pa"]).await;
    let (s, v) = h.raw("PUT", "/v1/images/img?project=pa", &alice, bundle(Some(&h.signer), 7)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // The same database and registry, served by a state without --provision-addr.
    let st = crate::app::AppState::new(h.st.db.clone(), crate::app::VlanPool { first: 100, last: 109 })
        .with_registry(crate::registry::Registry::new(h.registry_dir.path(), vec![h.signer.public()]));
    let app = crate::app(st);
    let Who::Basic(u, p) = &alice else { unreachable!() };
    let auth =
        format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{u}:{p}")));
    let post = |body: Value| {
        let req = axum::http::Request::builder()
            .method("POST")
            .uri("/v1/deployments")
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        app.clone().oneshot(req)
    };
    let bad = json!({"image": "img", "nodes": ["n1"], "target": {"kind": "disk", "device": "/etc/passwd"}});
    assert_eq!(post(bad).await.unwrap().status(), StatusCode::BAD_REQUEST);
    let bad = json!({"image": "img"});
    assert_eq!(post(bad).await.unwrap().status(), StatusCode::BAD_REQUEST);
    let good = json!({"image": "img", "nodes": ["n1"]});
    assert_eq!(post(good).await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
}
both_backends!(bad_bodies_are_refused_before_a_missing_provisioning_network);
