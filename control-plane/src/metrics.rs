//! Prometheus metrics, served at `/metrics` in the text exposition format
//! (0.0.4). The registry and its types are the `prometheus` crate's (the
//! TiKV client: typed counters, gauges and histograms with label checks, and
//! the classic text format every Prometheus and `promtool` reads).
//!
//! Three kinds of series live here:
//! - counted by this process as things happen (requests, BMC calls,
//!   finished deployments and nodes, sessions, market events);
//! - read from the database at each scrape, the same on every replica
//!   (deployments by state, runtime check-ins and their age), set by
//!   `app::metrics::scrape`;
//! - counters other crates keep (the runtime API's refusals, the DHCP and
//!   TFTP servers'), copied in at each scrape ([`Metrics::copy_runtime`],
//!   [`Metrics::copy_netboot`]).
//!
//! `docs/metrics.md` lists every series with what to alert on;
//! `docs/prometheus/alerts.yml` and `docs/grafana/metalcast.json` use them.

use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Seconds buckets of a deployment and of one node's part in it (a small
/// image on a fast LAN takes seconds; a large one to a slow rack, an hour).
const DEPLOY_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0];
/// Seconds buckets of a BMC call (IPMI and Redfish answer in milliseconds to
/// seconds; a hung BMC runs into the driver's timeout).
const BMC_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A session's numbers as the multicast sender reports them at its end.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionNumbers {
    /// Seconds from the first packet to the last receiver done.
    pub secs: f64,
    /// Stored (compressed) bytes of the image.
    pub image_bytes: u64,
    /// UDP payload bytes sent.
    pub wire_bytes: u64,
    /// Source symbols sent.
    pub source_symbols: u64,
    /// Repair symbols sent.
    pub repair_symbols: u64,
    /// Control packets dropped (forged, stale, malformed).
    pub rejected_reports: u64,
}

/// Every series of `/metrics`.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    auth_failures: IntCounter,
    actions: IntCounterVec,
    market: IntCounterVec,
    netboot_http: IntCounterVec,
    fenced: IntCounterVec,
    deployments_finished: IntCounterVec,
    deployment_seconds: HistogramVec,
    node_seconds: HistogramVec,
    node_failures: IntCounterVec,
    sessions: IntCounterVec,
    session_seconds: Histogram,
    session_image_bytes: IntCounter,
    session_wire_bytes: IntCounter,
    session_source_symbols: IntCounter,
    session_repair_symbols: IntCounter,
    session_rejected_reports: IntCounter,
    bmc_seconds: HistogramVec,
    bmc_errors: IntCounterVec,
    /// Set at each scrape from the database.
    deployments: IntGaugeVec,
    checkin_age: IntGaugeVec,
    /// Copied in at each scrape: counters kept by other crates.
    stale_reports: IntCounter,
    refused_checkins: IntCounter,
    netboot_servers: IntCounterVec,
    /// One scrape at a time sets the scrape-time series.
    pub(crate) scraping: tokio::sync::Mutex<()>,
    checkins: IntCounter,
    copy_lock: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `c` in `r` (names are constants of this file: a clash is a bug).
fn reg<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
    r.register(Box::new(c.clone())).expect("metric names are unique");
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    reg(r, IntCounter::new(name, help).expect("valid metric"))
}

fn counters(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    reg(r, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
}

fn histograms(r: &Registry, name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    reg(r, HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels).expect("valid metric"))
}

impl Metrics {
    /// Every series registered, none observed yet.
    pub fn new() -> Self {
        let r = Registry::new();
        let build = reg(
            &r,
            IntGaugeVec::new(
                Opts::new("metalcast_build_info", "The running build: version and commit (always 1)."),
                &["version", "commit"],
            )
            .expect("valid metric"),
        );
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), option_env!("METALCAST_GIT_COMMIT").unwrap_or("unknown")])
            .set(1);
        Metrics {
            requests: counters(
                &r,
                "metalcast_http_requests_total",
                "HTTP requests by method, matched route and status.",
                &["method", "route", "status"],
            ),
            auth_failures: counter(&r, "metalcast_auth_failures_total", "Rejected credentials."),
            actions: counters(
                &r,
                "metalcast_network_actions_total",
                "Finished networking actions by status.",
                &["status"],
            ),
            market: counters(
                &r,
                "metalcast_market_events_total",
                "Market requests, replays, settlements and lease transitions.",
                &["event"],
            ),
            netboot_http: counters(
                &r,
                "metalcast_netboot_http_total",
                "Netboot over HTTP: scripts and files served, tokens refused.",
                &["what"],
            ),
            fenced: counters(
                &r,
                "metalcast_fenced_total",
                "Side effects (BMC, switch, runtime instruction) not made: the work was no longer this replica's.",
                &["work"],
            ),
            deployments_finished: counters(
                &r,
                "metalcast_deployments_finished_total",
                "Deployments this replica finished, by final state (done, failed).",
                &["state"],
            ),
            deployment_seconds: histograms(
                &r,
                "metalcast_deployment_duration_seconds",
                "Time from a deployment's creation to its end, by final state.",
                DEPLOY_BUCKETS,
                &["state"],
            ),
            node_seconds: histograms(
                &r,
                "metalcast_node_deploy_duration_seconds",
                "Time from a node's start in a deployment to its final state (verified, booted, failed ...).",
                DEPLOY_BUCKETS,
                &["state"],
            ),
            node_failures: counters(
                &r,
                "metalcast_node_failures_total",
                "Nodes failed in a deployment, by reason (a fixed set: see docs/metrics.md).",
                &["reason"],
            ),
            sessions: counters(
                &r,
                "metalcast_sessions_total",
                "Multicast sessions ended, by outcome (ok: every receiver done; error).",
                &["outcome"],
            ),
            session_seconds: reg(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "metalcast_session_duration_seconds",
                        "Multicast session time, first packet to the last receiver done.",
                    )
                    .buckets(DEPLOY_BUCKETS.to_vec()),
                )
                .expect("valid metric"),
            ),
            session_image_bytes: counter(
                &r,
                "metalcast_session_image_bytes_total",
                "Stored image bytes the sessions had to deliver.",
            ),
            session_wire_bytes: counter(
                &r,
                "metalcast_session_wire_bytes_total",
                "UDP payload bytes the sessions sent (headers, MACs and repair included).",
            ),
            session_source_symbols: counter(&r, "metalcast_session_source_symbols_total", "Source symbols sent."),
            session_repair_symbols: counter(&r, "metalcast_session_repair_symbols_total", "Repair symbols sent."),
            session_rejected_reports: counter(
                &r,
                "metalcast_session_rejected_reports_total",
                "Control packets the senders dropped (forged, stale or malformed).",
            ),
            bmc_seconds: histograms(
                &r,
                "metalcast_bmc_request_duration_seconds",
                "BMC calls by driver and operation, failed ones included.",
                BMC_BUCKETS,
                &["driver", "op"],
            ),
            bmc_errors: counters(
                &r,
                "metalcast_bmc_errors_total",
                "Failed BMC calls by driver and operation.",
                &["driver", "op"],
            ),
            deployments: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new("metalcast_deployments", "Deployments in the database by state (every replica's)."),
                    &["state"],
                )
                .expect("valid metric"),
            ),
            checkin_age: reg(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "metalcast_runtime_checkin_age_seconds",
                        "Seconds since a node runtime's last check-in, by the database clock (node: the registered node with that MAC, or empty).",
                    ),
                    &["node", "mac"],
                )
                .expect("valid metric"),
            ),
            checkins: counter(
                &r,
                "metalcast_runtime_checkins_total",
                "Runtime check-ins accepted, by every replica since the database was made.",
            ),
            stale_reports: counter(
                &r,
                "metalcast_runtime_stale_reports_total",
                "Node reports refused: they named no instruction this server gave that node.",
            ),
            refused_checkins: counter(
                &r,
                "metalcast_runtime_refused_checkins_total",
                "Node check-ins refused (a netboot token forged, expired or of another MAC; a rejected enrollment).",
            ),
            netboot_servers: counters(
                &r,
                "metalcast_netboot_total",
                "DHCP and TFTP servers: packets, replies, refusals.",
                &["what"],
            ),
            scraping: tokio::sync::Mutex::new(()),
            copy_lock: Mutex::new(()),
            registry: r,
        }
    }

    /// Count a failed authentication.
    pub fn auth_failure(&self) {
        self.auth_failures.inc();
    }

    /// Count a finished networking action by final status.
    pub fn action_finished(&self, status: &str) {
        self.actions.with_label_values(&[status]).inc();
    }

    /// Count a market event: a committed request, a replayed one, a lease
    /// state change, a settlement, a failed grant or revoke attempt.
    pub fn market(&self, what: &str) {
        self.market.with_label_values(&[what]).inc();
    }

    /// Count a side effect not made because this replica no longer held its work (or its lease).
    pub fn fenced(&self, work: &str) {
        self.fenced.with_label_values(&[work]).inc();
    }

    /// Count a netboot step of the HTTP side: a script or file served, a token refused.
    pub fn netboot(&self, what: &str) {
        self.netboot_http.with_label_values(&[what]).inc();
    }

    /// Count an answered HTTP request by method, matched route and status.
    pub fn request(&self, method: &str, route: &str, status: u16) {
        self.requests.with_label_values(&[method, route, &status.to_string()]).inc();
    }

    /// A deployment ended in `state` after `secs`.
    pub fn deployment_finished(&self, state: &str, secs: f64) {
        self.deployments_finished.with_label_values(&[state]).inc();
        self.deployment_seconds.with_label_values(&[state]).observe(secs.max(0.0));
    }

    /// A node reached final state `state` after `secs` in its deployment.
    pub fn node_finished(&self, state: &str, secs: f64) {
        self.node_seconds.with_label_values(&[state]).observe(secs.max(0.0));
    }

    /// A node failed in a deployment; `reason` is one of a fixed set (docs/metrics.md).
    pub fn node_failed(&self, reason: &str) {
        self.node_failures.with_label_values(&[reason]).inc();
    }

    /// A multicast session ended: its numbers if the sender finished, `None` if it failed.
    pub fn session_ended(&self, s: Option<&SessionNumbers>) {
        let Some(s) = s else {
            self.sessions.with_label_values(&["error"]).inc();
            return;
        };
        self.sessions.with_label_values(&["ok"]).inc();
        self.session_seconds.observe(s.secs.max(0.0));
        self.session_image_bytes.inc_by(s.image_bytes);
        self.session_wire_bytes.inc_by(s.wire_bytes);
        self.session_source_symbols.inc_by(s.source_symbols);
        self.session_repair_symbols.inc_by(s.repair_symbols);
        self.session_rejected_reports.inc_by(s.rejected_reports);
    }

    /// A BMC call of `driver` (`ipmi`, `redfish` ...) for `op` took `took`; `ok` whether it succeeded.
    pub fn bmc_call(&self, driver: &str, op: &str, took: Duration, ok: bool) {
        self.bmc_seconds.with_label_values(&[driver, op]).observe(took.as_secs_f64());
        if !ok {
            self.bmc_errors.with_label_values(&[driver, op]).inc();
        }
    }

    /// Sets the deployments-by-state gauge (every state listed, zeros included).
    pub fn set_deployments(&self, by_state: &[(&str, i64)]) {
        for (state, n) in by_state {
            self.deployments.with_label_values(&[state]).set(*n);
        }
    }

    /// Sets the check-in ages: `(node, mac, age in seconds)`; runtimes no longer listed go.
    pub fn set_checkin_ages(&self, ages: &[(String, String, i64)]) {
        self.checkin_age.reset();
        for (node, mac, age) in ages {
            self.checkin_age.with_label_values(&[node.as_str(), mac.as_str()]).set((*age).max(0));
        }
    }

    /// Raises the check-in counter to `total` (the database's count; a
    /// counter never goes down, so a smaller total changes nothing).
    pub fn set_checkins(&self, total: u64) {
        raise(&self.checkins, total, &self.copy_lock);
    }

    /// Copies the runtime API's counters (reports refused as stale, check-ins refused).
    pub fn copy_runtime(&self, stale_reports: u64, refused_checkins: u64) {
        raise(&self.stale_reports, stale_reports, &self.copy_lock);
        raise(&self.refused_checkins, refused_checkins, &self.copy_lock);
    }

    /// Copies the DHCP and TFTP servers' counters.
    pub fn copy_netboot(&self, counters: &[(&str, u64)]) {
        for (what, n) in counters {
            raise(&self.netboot_servers.with_label_values(&[*what]), *n, &self.copy_lock);
        }
    }

    /// Everything, in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }

    /// The content type of [`Metrics::render`].
    pub fn content_type() -> &'static str {
        prometheus::TEXT_FORMAT
    }
}

/// Raises `c` to `total` (under `lock`, so two scrapes cannot add twice).
fn raise(c: &IntCounter, total: u64, lock: &Mutex<()>) {
    let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_series_renders() {
        let m = Metrics::new();
        m.request("GET", "/v0/nodes", 200);
        m.deployment_finished("done", 12.0);
        m.node_finished("verified", 11.0);
        m.node_failed("runtime_verify");
        m.session_ended(Some(&SessionNumbers { secs: 9.5, wire_bytes: 1000, repair_symbols: 3, ..Default::default() }));
        m.session_ended(None);
        m.bmc_call("ipmi", "power_status", Duration::from_millis(30), false);
        m.set_deployments(&[("running", 2), ("done", 0)]);
        m.set_checkin_ages(&[("n1".into(), "52:54:00:00:00:01".into(), 7)]);
        let text = m.render();
        for want in [
            "metalcast_http_requests_total{method=\"GET\",route=\"/v0/nodes\",status=\"200\"} 1",
            "metalcast_deployments_finished_total{state=\"done\"} 1",
            "metalcast_deployment_duration_seconds_bucket{state=\"done\",le=\"30\"} 1",
            "metalcast_deployment_duration_seconds_bucket{state=\"done\",le=\"10\"} 0",
            "metalcast_node_failures_total{reason=\"runtime_verify\"} 1",
            "metalcast_sessions_total{outcome=\"error\"} 1",
            "metalcast_session_wire_bytes_total 1000",
            "metalcast_session_repair_symbols_total 3",
            "metalcast_bmc_errors_total{driver=\"ipmi\",op=\"power_status\"} 1",
            "metalcast_bmc_request_duration_seconds_count{driver=\"ipmi\",op=\"power_status\"} 1",
            "metalcast_deployments{state=\"running\"} 2",
            "metalcast_runtime_checkin_age_seconds{mac=\"52:54:00:00:00:01\",node=\"n1\"} 7",
            "metalcast_build_info{commit=",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        // A runtime that is gone from the next scrape is gone from the output.
        m.set_checkin_ages(&[]);
        assert!(!m.render().contains("metalcast_runtime_checkin_age_seconds{"));
    }

    #[test]
    fn copied_counters_only_rise() {
        let m = Metrics::new();
        m.copy_runtime(5, 1);
        m.copy_runtime(3, 2);
        m.copy_netboot(&[("tftp_sent", 4)]);
        m.set_checkins(4);
        m.set_checkins(9);
        let text = m.render();
        assert!(text.contains("metalcast_runtime_stale_reports_total 5"), "{text}");
        assert!(text.contains("metalcast_runtime_refused_checkins_total 2"), "{text}");
        assert!(text.contains("metalcast_netboot_total{what=\"tftp_sent\"} 4"), "{text}");
        assert!(text.contains("metalcast_runtime_checkins_total 9"), "{text}");
    }
}
