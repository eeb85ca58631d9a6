//! `metalcast demo --kill-server-at P`: the crash drill. Each round deploys
//! the sample image to every namespace node at the demo's rate cap, kills
//! the control plane with SIGKILL once P% of the blocks are through, and
//! restarts it at once on the same database. The restarted server resumes
//! the deployment's multicast session (`docs/scale-out.md`): every node must
//! end `verified` without a retry, having taken in less than 1.3 times the
//! image in all (it did not start over).

use std::ffi::OsString;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use metalcast_operator_api::Client;
use metalcast_operator_api::v1::{DeployRequest, Deployment, HandoverSpec, NodeState};

/// Symbol bytes per packet at the provisioning MTU of 1500 (the demo's).
const SYMBOL_BYTES: f64 = 1440.0;
/// A node that took in more than this many times the image started over.
const MAX_TAKEN_IN: f64 = 1.3;

/// How `metalcast serve` is started (and started again after the kill).
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The `metalcast` binary.
    pub program: PathBuf,
    /// Its arguments (`serve ...`).
    pub args: Vec<OsString>,
    /// Its log, appended to by every start.
    pub log: PathBuf,
}

/// A child process killed (and reaped) on drop.
#[derive(Debug)]
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The running server; killed and reaped on drop.
pub type Server = Arc<Mutex<Option<Killed>>>;

impl ServerSpec {
    /// Starts the server with `cmd` (a command for [`ServerSpec::program`],
    /// e.g. one that enters the control plane's namespace first).
    pub fn start_with(&self, mut cmd: Command) -> anyhow::Result<Killed> {
        let log = File::options().create(true).append(true).open(&self.log).context("opening the server log")?;
        cmd.args(&self.args).env("METALCAST_LOG", "warn").stdout(Stdio::null()).stderr(log);
        Ok(Killed(cmd.spawn().context("starting metalcast serve")?))
    }
}

/// What the drill asks for.
#[derive(Debug, Clone, Copy)]
pub struct Drill {
    /// Kill when this share of the blocks is through, percent.
    pub at_percent: u8,
    /// Rounds.
    pub rounds: u32,
    /// Deployment rate cap, Mbit/s (0: the server's).
    pub rate_mbit: u64,
}

fn percent_done(d: &Deployment) -> f64 {
    let (done, total) = d.nodes.iter().fold((0i64, 0i64), |(a, b), n| (a + n.blocks_done, b + n.blocks_total));
    if total == 0 { 0.0 } else { 100.0 * done as f64 / total as f64 }
}

/// Waits (at most `within`) until the control plane answers its health check.
pub async fn wait_health(c: &Client, within: Duration) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while c.health().await.is_err() {
        ensure!(t0.elapsed() < within, "the control plane did not come up within {within:?} (see server.log)");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn wait_finished(c: &Client, id: i64, within: Duration) -> anyhow::Result<Deployment> {
    let t0 = Instant::now();
    loop {
        let d = c.deployment(id).await.with_context(|| format!("reading deployment {id}"))?;
        if d.is_finished() {
            return Ok(d);
        }
        ensure!(t0.elapsed() < within, "deployment {id} still running after {within:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The stale-report counter of the server behind `c` (`/metrics`).
async fn stale_reports(c: &Client, base: &str) -> anyhow::Result<u64> {
    let text = c.get_url_text(&format!("{base}/metrics")).await.context("reading /metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix("metalcast_runtime_stale_reports_total "))
        .context("no metalcast_runtime_stale_reports_total on /metrics")?
        .trim()
        .parse()
        .context("stale report counter")
}

/// Runs the drill's rounds against the server `server` started from `spec`
/// (this thread must be in the control plane's namespace: the restarted
/// server is its child).
pub async fn run(
    c: &Client,
    base: &str,
    project: &str,
    image: &str,
    spec: &ServerSpec,
    server: &Server,
    drill: Drill,
) -> anyhow::Result<()> {
    let mut req = DeployRequest::new(image);
    req.project = Some(project.to_string());
    req.handover = HandoverSpec::Kexec;
    req.rate_mbit = (drill.rate_mbit > 0).then_some(drill.rate_mbit);
    req.timeout_secs = Some(600);
    // The same deployment without a kill, for the time a kill costs.
    let t0 = Instant::now();
    let id = c.deploy(&req).await.context("starting the reference deployment")?.id;
    let d = wait_finished(c, id, Duration::from_secs(600)).await?;
    ensure!(d.state.as_str() == "done", "the reference deployment {id} ended {}", d.state.as_str());
    let reference = t0.elapsed().as_secs_f64();
    eprintln!("   reference deployment {id} (no kill): {reference:.2}s");
    for round in 1..=drill.rounds {
        let d = c.deploy(&req).await.context("starting the deployment")?;
        let id = d.id;
        let t0 = Instant::now();
        let at = loop {
            let d = c.deployment(id).await.with_context(|| format!("reading deployment {id}"))?;
            let p = percent_done(&d);
            ensure!(!d.is_finished(), "round {round}: deployment {id} ended before {}% ({p:.0}%)", drill.at_percent);
            if p >= f64::from(drill.at_percent) {
                break p;
            }
            ensure!(t0.elapsed() < Duration::from_secs(300), "round {round}: {p:.0}% after 300 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // kill -9: no drain, no goodbye to the nodes.
        let killed = Instant::now();
        drop(server.lock().unwrap_or_else(|p| p.into_inner()).take());
        eprintln!("   round {round}: deployment {id} at {at:.0}%: control plane killed (SIGKILL), restarting it");
        *server.lock().unwrap_or_else(|p| p.into_inner()) = Some(spec.start_with(Command::new(&spec.program))?);
        wait_health(c, Duration::from_secs(30)).await?;
        // Taken over: the resumed sender hears the nodes where they were.
        let takeover = loop {
            let d = c.deployment(id).await.with_context(|| format!("reading deployment {id}"))?;
            if d.is_finished() || percent_done(&d) >= at {
                break killed.elapsed().as_secs_f64();
            }
            ensure!(killed.elapsed() < Duration::from_secs(120), "round {round}: no progress 120 s after the kill");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let d = wait_finished(c, id, Duration::from_secs(600)).await?;
        let total = t0.elapsed().as_secs_f64();
        println!(
            "crash timing {round}/{}: kill to resumed progress {takeover:.2}s; completion {total:.2}s against \
             {reference:.2}s without a kill ({:.2}x)",
            drill.rounds,
            total / reference
        );
        let stale = stale_reports(c, base).await?;
        let stored = c.image(image).await.context("reading the image")?.stored_bytes.max(1) as f64;
        let verified = d.nodes.iter().filter(|n| n.state == NodeState::Verified).count();
        for n in d.nodes.iter().filter(|n| n.state != NodeState::Verified) {
            eprintln!("   {}: {} ({})", n.node, n.state.as_str(), n.reason);
        }
        let taken_in = d.nodes.iter().map(|n| n.received as f64 * SYMBOL_BYTES / stored).fold(0.0, f64::max);
        println!(
            "crash round {round}/{}: deployment {id} killed at {at:.0}%, resumed: {} ({verified}/{} verified); \
             the most a node took in: {taken_in:.2}x the image; reports refused: {stale}",
            drill.rounds,
            d.state.as_str(),
            d.nodes.len()
        );
        ensure!(verified == d.nodes.len(), "round {round}: not every node verified after the resume");
        ensure!(taken_in < MAX_TAKEN_IN, "round {round}: a node took in {taken_in:.2}x the image: it started over");
    }
    Ok(())
}
