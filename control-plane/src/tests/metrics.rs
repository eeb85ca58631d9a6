//! What an operator alerts on: a scrape passes `promtool check metrics`; the
//! alert rules (`docs/prometheus/alerts.yml`) pass `promtool check rules` and
//! their unit tests; every series the rules and the Grafana dashboard
//! (`docs/grafana/metalcast.json`) name is one the server exports.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Harness, Who, skip};

fn docs(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs").join(path)
}

/// Whether `promtool` (Debian's `prometheus` package) is here; skips (or fails in CI) when not.
fn promtool() -> bool {
    let ok = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        skip("promtool not installed (apt-get install prometheus)");
    }
    ok
}

/// Runs `promtool args`, `stdin` on its standard input; its output when it succeeded.
fn run_promtool(args: &[&str], stdin: &str) -> Result<String, String> {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(docs("prometheus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child.stdin.take().expect("piped").write_all(stdin.as_bytes()).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { Ok(text) } else { Err(text) }
}

/// The metric families the server exports (every one registered, observed or not).
fn exported() -> BTreeSet<String> {
    let m = crate::metrics::Metrics::new();
    // Touch every labelled family once so that each one renders a HELP line.
    m.request("GET", "/", 200);
    m.action_finished("DONE");
    m.market("request");
    m.netboot("script_fetched");
    m.fenced("action");
    m.deployment_finished("done", 1.0);
    m.node_finished("verified", 1.0);
    m.node_failed("timeout");
    m.session_ended(None);
    m.bmc_call("ipmi", "power_on", std::time::Duration::ZERO, false);
    m.set_deployments(&[("running", 0)]);
    m.set_checkin_ages(&[(String::new(), "52:54:00:00:00:01".into(), 0)]);
    m.copy_netboot(&[("tftp_sent", 0)]);
    m.render().lines().filter_map(|l| l.strip_prefix("# HELP ")?.split(' ').next().map(str::to_string)).collect()
}

/// The `metalcast_*` names in `text` that are not exported series (a
/// histogram's `_bucket`, `_count` and `_sum` belong to its family).
fn unknown_series(text: &str, exported: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("metalcast_") {
        let name: String =
            text[i..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
        let family = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        if !exported.contains(&name) && !exported.contains(family) {
            out.insert(name);
        }
    }
    out
}

#[test]
fn rules_and_dashboard_name_only_exported_series() {
    let exported = exported();
    assert!(exported.contains("metalcast_bmc_request_duration_seconds"), "{exported:?}");
    let rules = std::fs::read_to_string(docs("prometheus/alerts.yml")).unwrap();
    assert_eq!(unknown_series(&rules, &exported), BTreeSet::new(), "alerts.yml names series nobody exports");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(docs("grafana/metalcast.json")).unwrap())
        .expect("the dashboard is JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{}", panels.len());
    for p in panels {
        let exprs: Vec<&str> =
            p["targets"].as_array().into_iter().flatten().filter_map(|t| t["expr"].as_str()).collect();
        assert!(!exprs.is_empty(), "panel {} has no query", p["title"]);
        for e in exprs {
            assert_eq!(unknown_series(e, &exported), BTreeSet::new(), "panel {}: {e}", p["title"]);
        }
    }
    // The check itself finds a misspelt series.
    assert_eq!(
        unknown_series("rate(metalcast_bmc_error_total[5m]) + metalcast_bmc_errors_total", &exported),
        BTreeSet::from(["metalcast_bmc_error_total".to_string()])
    );
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    if !promtool() {
        return;
    }
    let out = run_promtool(&["check", "rules", "alerts.yml"], "").unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run_promtool(&["test", "rules", "alerts.test.yml"], "").unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("SUCCESS"), "{out}");
}

/// A scrape of a server that did some work (a BMC call, a runtime check-in,
/// a deployment that failed) has the series, and `promtool check metrics`
/// finds nothing to lint in it.
async fn a_scrape_is_clean_and_complete(h: &Harness) {
    let mac = "52:54:00:00:30:01";
    h.ok("PUT", "/v0/node/m1", Some(json!({"obm": crate::drivers::mock::obm("metrics-m1")}))).await;
    h.ok("PUT", "/v0/node/m1/nic/eth0", Some(json!({"macaddr": mac}))).await;
    h.ok("PUT", "/v0/project/pm", None).await;
    h.ok("POST", "/v0/project/pm/connect_node", Some(json!({"node": "m1"}))).await;
    h.ok("POST", "/v0/node/m1/power_cycle", None).await;
    let checkin = json!({"node": mac, "role": "runtime", "boot_id": "b1", "version": "0", "address": "10.0.0.9",
        "uptime_secs": 5.0, "network_secs": 0.1,
        "inventory": {"nics": [], "cpus": 1, "memory_bytes": 1, "kernel": "6.1", "disks": []}});
    let (s, v) = super::deploy::runtime_call(&h.app, "POST", "/v1/runtime/checkin", Some(checkin)).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let (s, body) = h.raw_bytes("GET", "/metrics", &Who::Anon, Vec::new()).await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    let value = |series: &str| {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse::<f64>().ok()).unwrap_or(-1.0)
    };
    assert_eq!(value("metalcast_deployments{state=\"running\"}"), 0.0, "{text}");
    assert_eq!(value("metalcast_bmc_request_duration_seconds_count{driver=\"redfish\",op=\"power_cycle\"}"), 1.0);
    assert_eq!(value("metalcast_runtime_checkins_total"), 1.0, "{text}");
    let age = value(&format!("metalcast_runtime_checkin_age_seconds{{mac=\"{mac}\",node=\"m1\"}}"));
    assert!((0.0..5.0).contains(&age), "the check-in's age by the database clock: {age}\n{text}");
    if promtool() {
        let lint = run_promtool(&["check", "metrics"], &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(!lint.contains("problem"), "{lint}");
    }
}
crate::both_backends!(a_scrape_is_clean_and_complete);
