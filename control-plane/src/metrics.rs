//! Prometheus text-format metrics, served at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    auth_failures: AtomicU64,
    actions: Mutex<BTreeMap<&'static str, u64>>,
    market: Mutex<BTreeMap<&'static str, u64>>,
    netboot: Mutex<BTreeMap<&'static str, u64>>,
    fenced: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Count a failed authentication.
    pub fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a finished networking action by final status.
    pub fn action_finished(&self, status: &'static str) {
        *self.actions.lock().unwrap_or_else(|e| e.into_inner()).entry(status).or_default() += 1;
    }

    /// Count a market event: a committed request, a replayed one, a lease
    /// state change, a settlement, a failed grant or revoke attempt.
    pub fn market(&self, what: &'static str) {
        *self.market.lock().unwrap_or_else(|e| e.into_inner()).entry(what).or_default() += 1;
    }

    /// Count a side effect not made because this replica no longer held its work (or its lease).
    pub fn fenced(&self, work: &'static str) {
        *self.fenced.lock().unwrap_or_else(|e| e.into_inner()).entry(work).or_default() += 1;
    }

    /// Count a netboot step of the HTTP side: a script or file served, a token refused.
    pub fn netboot(&self, what: &'static str) {
        *self.netboot.lock().unwrap_or_else(|e| e.into_inner()).entry(what).or_default() += 1;
    }

    /// Render the netboot counters: the HTTP side's and the DHCP/TFTP servers' (`servers`).
    pub fn render_netboot(&self, servers: &[(&'static str, u64)]) -> String {
        let mut s = String::new();
        s.push_str(
            "# HELP metalcast_netboot_http_total Netboot over HTTP: scripts and files served, tokens refused.\n",
        );
        s.push_str("# TYPE metalcast_netboot_http_total counter\n");
        for (what, n) in self.netboot.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(s, "metalcast_netboot_http_total{{what=\"{what}\"}} {n}");
        }
        s.push_str("# HELP metalcast_netboot_total DHCP and TFTP servers: packets, replies, refusals.\n");
        s.push_str("# TYPE metalcast_netboot_total counter\n");
        for (what, n) in servers {
            let _ = writeln!(s, "metalcast_netboot_total{{what=\"{what}\"}} {n}");
        }
        s
    }

    /// Count an answered HTTP request by method, matched route and status.
    pub fn request(&self, method: &str, route: &str, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
    }

    /// Render in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP metalcast_http_requests_total HTTP requests by route and status.\n");
        s.push_str("# TYPE metalcast_http_requests_total counter\n");
        for ((m, r, st), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(s, "metalcast_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{st}\"}} {n}");
        }
        s.push_str("# HELP metalcast_auth_failures_total Rejected credentials.\n");
        s.push_str("# TYPE metalcast_auth_failures_total counter\n");
        let _ = writeln!(s, "metalcast_auth_failures_total {}", self.auth_failures.load(Ordering::Relaxed));
        s.push_str("# HELP metalcast_network_actions_total Finished networking actions by status.\n");
        s.push_str("# TYPE metalcast_network_actions_total counter\n");
        for (st, n) in self.actions.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(s, "metalcast_network_actions_total{{status=\"{st}\"}} {n}");
        }
        s.push_str(
            "# HELP metalcast_market_events_total Market requests, replays, settlements and lease transitions.\n",
        );
        s.push_str("# TYPE metalcast_market_events_total counter\n");
        for (what, n) in self.market.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(s, "metalcast_market_events_total{{event=\"{what}\"}} {n}");
        }
        s.push_str(
            "# HELP metalcast_fenced_total Side effects (BMC, switch, runtime instruction) not made: the work was no longer this replica's.\n",
        );
        s.push_str("# TYPE metalcast_fenced_total counter\n");
        for (work, n) in self.fenced.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(s, "metalcast_fenced_total{{work=\"{work}\"}} {n}");
        }
        s
    }
}
