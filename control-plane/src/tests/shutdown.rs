//! Graceful shutdown over a real listener: after the signal, new rollouts
//! are refused (503, `Retry-After`) while the running one goes on to its own
//! end and the node runtimes' API stays up; then the nodes' long-polls are
//! answered at once ("come back") and `serve` returns.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::registry::bundle;
use super::{Harness, Who};
use crate::both_backends;

fn checkin(mac: &str) -> String {
    json!({"node": mac, "role": "runtime", "boot_id": "b1", "version": "0", "address": "10.0.0.9",
           "uptime_secs": 1.0, "network_secs": 0.1,
           "inventory": {"nics": [], "cpus": 1, "memory_bytes": 1u64 << 30, "disks": [], "kernel": "6.1"}})
    .to_string()
}

async fn sigterm_lets_the_running_deployment_finish(h: &Harness) {
    h.ok("PUT", "/v0/project/pa", None).await;
    let alice = h.user("alice", &["pa"]).await;
    h.ok("PUT", "/v0/node/n1", Some(json!({"obm": {"type": "none"}}))).await;
    h.ok("PUT", "/v0/node/n1/nic/eth0", Some(json!({"macaddr": "52:54:00:00:20:01"}))).await;
    h.ok("POST", "/v0/project/pa/connect_node", Some(json!({"node": "n1"}))).await;
    let (s, v) = h.raw("PUT", "/v1/images/img?project=pa", &alice, bundle(Some(&h.signer), 3)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::serve(listener, h.st.clone(), async {
        let _ = stopped.await;
    }));
    crate::install_tls_provider();
    let http = reqwest::Client::new();
    let as_alice = |rb: reqwest::RequestBuilder| match &alice {
        Who::Basic(u, p) => rb.basic_auth(u, Some(p)),
        Who::Bearer(t) => rb.bearer_auth(t),
        Who::Anon => rb,
    };

    // A rollout that runs (no runtime answers: it ends on its own timeout, failed with that reason).
    let deploy = json!({"image": "img", "project": "pa", "timeout_secs": 10}).to_string();
    let r = as_alice(http.post(format!("{base}/v1/deployments"))).body(deploy.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()["id"].as_i64().unwrap();
    // Another node's runtime, long-polling for an instruction.
    let mac = "52:54:00:00:20:99";
    let r =
        http.post(format!("{base}/v1/runtime/checkin")).body(checkin(mac)).header("content-type", "application/json");
    assert_eq!(r.send().await.unwrap().status(), StatusCode::OK);
    let poll = tokio::spawn(http.get(format!("{base}/v1/runtime/nodes/{mac}/instruction?wait=60")).send());

    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Draining: no new rollout ...
    let r = as_alice(http.post(format!("{base}/v1/deployments"))).body(deploy).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("shutting down"));
    // ... but the nodes can still check in (and report), and the running rollout goes on.
    let r =
        http.post(format!("{base}/v1/runtime/checkin")).body(checkin(mac)).header("content-type", "application/json");
    assert_eq!(r.send().await.unwrap().status(), StatusCode::OK, "the runtime API closed during the drain");
    assert!(!poll.is_finished(), "the long-poll was ended before the running deployment finished");
    assert!(!server.is_finished());

    // The deployment ends on its own; then the server stops, answering the long-poll at once (bounded waits).
    tokio::time::timeout(Duration::from_secs(60), server).await.expect("serve did not return").unwrap().unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(5), poll).await.expect("long-poll still open").unwrap();
    assert_eq!(answered.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE, "the long-poll was not told to come back");
    let (_, d) = h.call("GET", &format!("/v1/deployments/{id}"), &alice, None).await;
    assert_eq!(d["state"], "failed", "{d}");
    let reason = d["nodes"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("no runtime checked in"), "the rollout was cut short by the shutdown: {reason}");
}
both_backends!(sigterm_lets_the_running_deployment_finish);
