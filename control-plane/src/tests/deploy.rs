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

    // A restart in the middle (the process that ran it is gone): whatever was in flight is failed with the reason.
    sqlx::query("UPDATE deployments SET state = 'running', owner = 'r-before-the-restart' WHERE id = $1")
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

    // The metrics: finished deployments and nodes by state, failures by reason, the database's gauge.
    let (_, body) = h.raw_bytes("GET", "/metrics", &Who::Anon, Vec::new()).await;
    let m = String::from_utf8(body).unwrap();
    let value = |series: &str| m.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok());
    let (_, all) = h.call("GET", "/v1/deployments", &h.admin.clone(), None).await;
    let failed = all.as_array().unwrap().iter().filter(|d| d["state"] == "failed").count();
    assert!(failed >= 2, "{all}");
    assert_eq!(value("metalcast_deployments{state=\"failed\"}"), Some(failed as f64), "{m}");
    assert!(value("metalcast_deployments_finished_total{state=\"failed\"}").unwrap_or(0.0) >= 2.0, "{m}");
    assert!(value("metalcast_node_deploy_duration_seconds_count{state=\"failed\"}").unwrap_or(0.0) >= 2.0, "{m}");
    let reasons: f64 = m
        .lines()
        .filter(|l| l.starts_with("metalcast_node_failures_total{reason="))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(
        Some(reasons),
        value("metalcast_node_deploy_duration_seconds_count{state=\"failed\"}"),
        "every failed node has a reason: {m}"
    );

    // The node list: where each node stands, what a member may see, the filters.
    let rows = h.ok("GET", "/v1/nodes", None).await;
    let row = |n: &str| rows.as_array().unwrap().iter().find(|r| r["name"] == n).cloned().unwrap_or_default();
    assert_eq!(
        (row("n1")["state"].clone(), row("n1")["last_deployment"].clone()),
        (json!("failed"), json!(id2)),
        "{rows}"
    );
    assert_eq!(row("n1")["project"], "pa");
    assert_eq!(row("n3")["state"], "free", "{rows}");
    assert_eq!(row("n3")["last_deployment"], Value::Null, "{rows}");
    let (_, mine) = h.call("GET", "/v1/nodes", &bob, None).await;
    let names: Vec<&str> = mine.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"n3") && !names.contains(&"n1"), "{mine}");
    assert!(
        mine.as_array().unwrap().iter().all(|r| r["project"].is_null()),
        "pb holds nothing, sees free nodes: {mine}"
    );
    assert!(
        rows.as_array().unwrap().iter().any(|r| r["checkin_age_secs"].is_i64()),
        "a runtime's check-in age: {rows}"
    );
    let (_, free) = h.call("GET", "/v1/nodes?state=free", &alice, None).await;
    assert!(free.as_array().unwrap().iter().all(|r| r["state"] == "free" && r["project"].is_null()), "{free}");
    let (_, of_pa) = h.call("GET", "/v1/nodes?project=pa", &alice, None).await;
    assert!(of_pa.as_array().unwrap().iter().all(|r| r["project"] == "pa"), "{of_pa}");
    assert_eq!(h.call("GET", "/v1/nodes?state=sleeping", &alice, None).await.0, StatusCode::BAD_REQUEST);
    // A reclaim in progress (marked by this replica) shows, and a second one is refused.
    assert!(crate::db::reclaim::begin(&h.st.db.writer, h.st.db.backend, "n1", "pa", &h.st.replica.id).await.unwrap());
    assert_eq!(h.ok("GET", "/v1/nodes?state=reclaiming", None).await[0]["name"], "n1");
    let (s, v) = h.call("POST", "/v1/nodes/n1/reclaim", &alice, Some(json!({}))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("being reclaimed already"), "{v}");
    crate::db::reclaim::end(&h.st.db.writer, "n1", &h.st.replica.id).await.unwrap();
    assert_eq!(h.ok("GET", "/v1/nodes?state=reclaiming", None).await, json!([]));
}
both_backends!(deployments);

/// Sends `body` to the runtime API as the node would (no credentials).
pub(super) async fn runtime_call(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
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
    let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runtime_instructions WHERE mac = $1")
        .bind(metalcast_runtime_api::normalize_mac(mac).unwrap())
        .fetch_one(&h.st.db.pool)
        .await
        .unwrap();
    assert_eq!(queued, 1, "only the wipe was sent to the node, no deploy instruction");
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

/// Every server start takes a new block of runtime instruction ids from the
/// database (one statement, so two starts never share one), and the
/// runtime API gives out ids from that block only: a report of a killed
/// process's instruction can never name one of the next process's.
async fn every_start_takes_a_new_block_of_instruction_ids(h: &Harness) {
    use metalcast_runtime_api::Action;
    use metalcast_runtime_api::server::ID_BLOCK;
    let first = crate::app::runtime::take_id_block(&h.st).await.unwrap();
    let (a, b) = tokio::join!(crate::app::runtime::take_id_block(&h.st), crate::app::runtime::take_id_block(&h.st));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut taken = vec![first, a, b];
    taken.sort_unstable();
    assert_eq!(taken, vec![first, first + 1, first + 2], "blocks repeat or skip");
    // The state gives out ids from the block it took last.
    let next = crate::app::runtime::take_id_block(&h.st).await.unwrap();
    assert_eq!(next, first + 3);
    let id = crate::app::runtime::push(&h.st, "52:54:00:00:30:01", Action::PowerOff).await.unwrap();
    assert_eq!(id, next * ID_BLOCK + 1);
}
both_backends!(every_start_takes_a_new_block_of_instruction_ids);

/// Waits (bounded) until deployment `id` is no longer running; returns it.
async fn finished(h: &Harness, who: &Who, id: i64) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (s, d) = h.call("GET", &format!("/v1/deployments/{id}"), who, None).await;
        assert_eq!(s, StatusCode::OK, "{d}");
        if d["state"] != "running" {
            return d;
        }
        assert!(std::time::Instant::now() < deadline, "deployment {id} still running: {d}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The `provisioning-network` events of `node`, as its project sees them.
async fn provisioning_events(h: &Harness, who: &Who, node: &str) -> Vec<String> {
    let (s, v) = h.call("GET", &format!("/v1/events?node={node}"), who, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "provisioning-network")
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect()
}

/// With `serve --provision-network`, a deployment and a reclaim first put
/// a node whose tenant detached the provisioning network back on it (a
/// real networking action through the node's switch port) and say so in
/// the node's events; a node already on it is left alone; tenant networks
/// are never detached for it (the node fails with the reason instead); and
/// a reclaimed node stays on it.
async fn deploy_and_reclaim_put_the_node_back_on_the_provisioning_network(h: &Harness) {
    let key = format!("pn-{}", crate::auth::random_hex(4));
    let mac = "52:54:00:00:40:01";
    h.ok("PUT", "/v0/project/pa", None).await;
    let alice = h.user("alice", &["pa"]).await;
    h.ok("PUT", "/v0/node/n1", Some(json!({"obm": crate::drivers::mock::obm(&key)}))).await;
    h.ok("PUT", "/v0/node/n1/nic/eth0", Some(json!({"macaddr": mac}))).await;
    h.ok("PUT", "/v0/switch/sw", Some(crate::drivers::mock::switch(&key, false, false))).await;
    h.ok("PUT", "/v0/switch/sw/port/p1", None).await;
    h.ok("POST", "/v0/switch/sw/port/p1/connect_nic", Some(json!({"node": "n1", "nic": "eth0"}))).await;
    h.ok("PUT", "/v0/network/prov", Some(json!({"owner": "admin", "access": "", "net_id": "3000"}))).await;
    h.ok("PUT", "/v0/network/na", Some(json!({"owner": "pa", "access": "pa", "net_id": ""}))).await;
    h.ok("POST", "/v0/project/pa/connect_node", Some(json!({"node": "n1"}))).await;
    let (s, v) = h.raw("PUT", "/v1/images/img?project=pa", &alice, bundle(Some(&h.signer), 3)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let nic_networks = || async { h.ok("GET", "/v0/node/n1", None).await["nics"][0]["networks"].clone() };
    let (s, v) = h.call("POST", "/v0/node/n1/nic/eth0/connect_network", &alice, Some(json!({"network": "prov"}))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(h.wait_action(v["status_id"].as_str().unwrap()).await, "DONE");
    // The tenant takes its node off the provisioning network.
    let (s, v) = h.call("POST", "/v0/node/n1/nic/eth0/detach_network", &alice, Some(json!({"network": "prov"}))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(h.wait_action(v["status_id"].as_str().unwrap()).await, "DONE");
    assert_eq!(nic_networks().await, json!({}));

    // A deployment puts it back before it looks for the runtime (none answers here: it fails on that).
    let deploy = json!({"image": "img", "project": "pa", "timeout_secs": 5});
    let (s, d) = h.call("POST", "/v1/deployments", &alice, Some(deploy.clone())).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{d}");
    let id = d["id"].as_i64().unwrap();
    let d = finished(h, &alice, id).await;
    assert!(d["nodes"][0]["reason"].as_str().unwrap().contains("no runtime checked in"), "{d}");
    assert_eq!(nic_networks().await, json!({"vlan/native": "prov"}));
    let events = provisioning_events(h, &alice, "n1").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].contains(&format!("eth0 put on the provisioning network prov for deployment {id}")),
        "{events:?}"
    );
    let switch_log = crate::drivers::mock::log(&key);
    assert!(switch_log.iter().filter(|l| l.contains("3000")).count() >= 3, "connect, detach, connect: {switch_log:?}");

    // Already on it: nothing is done, nothing recorded.
    let (_, d) = h.call("POST", "/v1/deployments", &alice, Some(deploy.clone())).await;
    finished(h, &alice, d["id"].as_i64().unwrap()).await;
    assert_eq!(provisioning_events(h, &alice, "n1").await.len(), 1);

    // The tenant's own network on the native VLAN instead: not detached for it; the node fails, saying why.
    let (_, v) = h.call("POST", "/v0/node/n1/nic/eth0/detach_network", &alice, Some(json!({"network": "prov"}))).await;
    assert_eq!(h.wait_action(v["status_id"].as_str().unwrap()).await, "DONE");
    let (_, v) = h.call("POST", "/v0/node/n1/nic/eth0/connect_network", &alice, Some(json!({"network": "na"}))).await;
    assert_eq!(h.wait_action(v["status_id"].as_str().unwrap()).await, "DONE");
    let (_, d) = h.call("POST", "/v1/deployments", &alice, Some(deploy)).await;
    let d = finished(h, &alice, d["id"].as_i64().unwrap()).await;
    let reason = d["nodes"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("none of its NICs can be put on it"), "{d}");
    assert_eq!(nic_networks().await, json!({"vlan/native": "na"}), "a tenant network was detached");
    // The same refusal for a reclaim, which leaves the node in its project.
    let (s, v) = h.call("POST", "/v1/nodes/n1/reclaim", &alice, Some(json!({"timeout_secs": 10}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("none of its NICs can be put on it"), "{v}");
    assert_eq!(h.ok("GET", "/v0/node/n1", None).await["project"], "pa");

    // Without the tenant network, a reclaim (through the BMC: no runtime is up) puts the node back on the
    // provisioning network before the power cycle, and the free node stays on it.
    let (_, v) = h.call("POST", "/v0/node/n1/nic/eth0/detach_network", &alice, Some(json!({"network": "na"}))).await;
    assert_eq!(h.wait_action(v["status_id"].as_str().unwrap()).await, "DONE");
    let booted = {
        let (app, key) = (h.app.clone(), key.clone());
        tokio::spawn(async move {
            while !crate::drivers::mock::log(&key).iter().any(|l| l.contains("Cycle")) {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let checkin = json!({"node": mac, "role": "runtime", "boot_id": "b9", "version": "0", "address": "10.0.0.9",
                "uptime_secs": 5.0, "network_secs": 0.1,
                "inventory": {"nics": [], "cpus": 1, "memory_bytes": 1, "disks": [], "kernel": "6.1"}});
            runtime_call(&app, "POST", "/v1/runtime/checkin", Some(checkin)).await.0
        })
    };
    let (s, v) = h.call("POST", "/v1/nodes/n1/reclaim", &alice, Some(json!({"timeout_secs": 30}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(booted.await.unwrap(), StatusCode::OK);
    assert!(v["phases"][0]["detail"].as_str().unwrap().contains("put on the provisioning network prov"), "{v}");
    assert!(v["phases"][1]["detail"].as_str().unwrap().contains("kept provisioning network prov on eth0"), "{v}");
    assert_eq!(nic_networks().await, json!({"vlan/native": "prov"}));
    let log = crate::drivers::mock::log(&key);
    let (on_prov, cycled) =
        (log.iter().rposition(|l| l.contains("3000")).unwrap(), log.iter().position(|l| l.contains("Cycle")).unwrap());
    assert!(on_prov < cycled, "the power cycle came before the node was on the provisioning network: {log:?}");
    let events = h.ok("GET", "/v1/events?node=n1", None).await;
    let last = events.as_array().unwrap().iter().rev().find(|e| e["kind"] == "provisioning-network").unwrap();
    assert!(last["reason"].as_str().unwrap().contains("for the reclaim"), "{events}");
    // HIL's detach_node is not blocked by the provisioning network either; by a tenant network it is.
    h.ok("POST", "/v0/project/pa/connect_node", Some(json!({"node": "n1"}))).await;
    let (_, v) = h
        .call(
            "POST",
            "/v0/node/n1/nic/eth0/connect_network",
            &alice,
            Some(json!({"network": "na", "channel": "vlan/100"})),
        )
        .await;
    assert_eq!(h.wait_action(v["status_id"].as_str().unwrap()).await, "DONE", "{v}");
    let (s, _) = h.call("POST", "/v0/project/pa/detach_node", &alice, Some(json!({"node": "n1"}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (_, v) = h.call("POST", "/v0/node/n1/nic/eth0/detach_network", &alice, Some(json!({"network": "na"}))).await;
    assert_eq!(h.wait_action(v["status_id"].as_str().unwrap()).await, "DONE");
    let (s, v) = h.call("POST", "/v0/project/pa/detach_node", &alice, Some(json!({"node": "n1"}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

mod deploy_and_reclaim_put_the_node_back_on_the_provisioning_network {
    use super::*;
    fn configured(h: Harness) -> Harness {
        h.with_provision(|p| crate::app::deployments::Provision { network: Some("prov".into()), ..p })
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        let h = configured(Harness::sqlite().await);
        super::deploy_and_reclaim_put_the_node_back_on_the_provisioning_network(&h).await;
        h.finish().await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        if let Some(h) = Harness::postgres().await {
            let h = configured(h);
            super::deploy_and_reclaim_put_the_node_back_on_the_provisioning_network(&h).await;
            h.finish().await;
        }
    }
}
