//! schemathesis (a maintained property-based API tester) against the served
//! `/v1` and `/v0` OpenAPI documents of a real server on a TCP port: a
//! bounded number of generated requests per operation, as an admin, and no
//! response may be a 5xx or disagree with the document (status, content
//! type, headers, body schema).

use std::time::Duration;

use super::{Harness, Who, skip};

/// Examples per operation; small enough for CI (about a minute per
/// document), large enough to reach every documented body and parameter.
const EXAMPLES: u32 = 20;
/// The checks that must hold: no 5xx, and every response as documented.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance";

async fn schemathesis_finds_no_server_error_or_schema_violation(h: Harness) {
    let probe = std::process::Command::new("schemathesis").arg("--version").output();
    if !probe.is_ok_and(|o| o.status.success()) {
        skip("schemathesis is not installed (control-plane/ci-setup.sh installs it)");
        h.finish().await;
        return;
    }
    // Deployments answer 503 without a provisioning address: give it one.
    let h = h.with_provision(|p| crate::app::deployments::Provision { addr: Some(std::net::Ipv4Addr::LOCALHOST), ..p });
    let Who::Bearer(token) = h.admin.clone() else { panic!("the harness admin has a bearer token") };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::serve(listener, h.st.clone(), async {
        let _ = rx.await;
    }));
    let base = format!("http://{addr}");
    for doc in ["/v1/openapi.json", "/v0/openapi.json"] {
        let run = tokio::process::Command::new("schemathesis")
            .args(["run", &format!("{base}{doc}"), "--base-url", &base, "--checks", CHECKS])
            .args(["--hypothesis-max-examples", &EXAMPLES.to_string(), "--hypothesis-seed", "20261205"])
            .args(["--request-timeout", "20000", "--no-color", "--experimental=openapi-3.1"])
            // The bodies of argument-less calls are `{}` exactly (an object
            // with no properties allowed), which hypothesis reaches by
            // filtering; that is expected, not a problem of the document.
            .args(["--hypothesis-suppress-health-check=filter_too_much"])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(600), run)
            .await
            .unwrap_or_else(|_| panic!("schemathesis on {doc} did not finish in 10 minutes"))
            .expect("run schemathesis");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let tail: Vec<&str> = stdout.lines().rev().take(120).collect::<Vec<_>>().into_iter().rev().collect();
        assert!(
            out.status.success(),
            "schemathesis found failures against {doc}:\n{}\n{}",
            tail.join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("schemathesis {doc}: {}", tail.last().copied().unwrap_or(""));
    }
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), server).await.expect("server stops").unwrap().unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite() {
    schemathesis_finds_no_server_error_or_schema_violation(Harness::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres() {
    if let Some(h) = Harness::postgres().await {
        schemathesis_finds_no_server_error_or_schema_violation(h).await;
    }
}
