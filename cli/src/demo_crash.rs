//! `metalcast demo --kill-server-at P`: the crash drill. Each round deploys
//! the sample image to every namespace node at the demo's rate cap, kills
//! the control plane with SIGKILL once P% of the blocks are through, and
//! restarts it at once on the same database. The restarted server resumes
//! the deployment's multicast session (`docs/scale-out.md`): every node must
//! end `verified` without a retry, having taken in less than 1.3 times the
//! image in all (it did not start over).
//!
//! With several replicas (`--replicas N` on PostgreSQL), each round goes to
//! the next replica, which owns the deployment; that replica is killed and
//! **not** restarted until another replica has taken the deployment over and
//! the nodes make progress again; then it is started again (a replica
//! joining must not disturb the running deployment). The nodes know every
//! replica's URL and move on to the next when one fails.

use std::ffi::OsString;
use std::fs::File;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
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

/// The running servers (replicas), by index; each killed and reaped on drop.
pub type Servers = Arc<Mutex<Vec<Option<Killed>>>>;

/// Relays PostgreSQL connections from a Unix socket (`dir/.s.PGSQL.PORT`,
/// PostgreSQL's own name for it) to `target` over TCP, from this process's
/// network namespace: the replicas run in the control plane's namespace,
/// which cannot reach the host's loopback, but a Unix socket is a file. Runs
/// until the process exits. `port` is the one in the replicas' URL, whose
/// `?host=dir` names the socket's directory.
pub fn relay_postgres(dir: &Path, port: u16, target: SocketAddr) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).context("creating the relay's socket directory")?;
    let path = dir.join(format!(".s.PGSQL.{port}"));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || {
                if let Err(e) = pipe(conn, target) {
                    eprintln!("   database relay: {e}");
                }
            });
        }
    });
    Ok(())
}

fn pipe(unix: UnixStream, target: SocketAddr) -> std::io::Result<()> {
    let tcp = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    tcp.set_nodelay(true)?;
    let (mut u_in, mut t_out) = (unix.try_clone()?, tcp.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut u_in, &mut t_out);
        let _ = t_out.shutdown(std::net::Shutdown::Write);
    });
    let (mut t_in, mut u_out) = (tcp, unix);
    let _ = std::io::copy(&mut t_in, &mut u_out);
    let _ = u_out.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// The TCP address and port of a PostgreSQL URL's server (`postgres://u:p@host:port/db`).
pub fn postgres_addr(url: &str) -> anyhow::Result<(SocketAddr, u16)> {
    let rest = url.split_once("://").map(|(_, r)| r).context("a postgres:// URL")?;
    let hostport = rest.split(['/', '?']).next().unwrap_or_default();
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().context("the port of the database URL")?),
        None => (hostport, 5432),
    };
    let host = if host.is_empty() { "localhost" } else { host };
    let addr = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    Ok((addr, port))
}

impl ServerSpec {
    /// Starts the server with `cmd` (a command for [`ServerSpec::program`],
    /// e.g. one that enters the control plane's namespace first).
    pub fn start_with(&self, mut cmd: Command) -> anyhow::Result<Killed> {
        let log = File::options().create(true).append(true).open(&self.log).context("opening the server log")?;
        // The servers log warnings and errors; METALCAST_DEMO_LOG (a METALCAST_LOG filter) says otherwise.
        let level = std::env::var("METALCAST_DEMO_LOG").unwrap_or_else(|_| "warn".into());
        cmd.args(&self.args).env("METALCAST_LOG", level).stdout(Stdio::null()).stderr(log);
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
    /// Pause the owner (SIGSTOP) instead of killing it, past the dead
    /// timeout, then let it go on (SIGCONT): it must find the deployment
    /// no longer its own at its first write and stop (several replicas only).
    pub pause: bool,
}

/// Sends `signal` (`STOP`, `CONT`) to replica `i`'s process; returns its pid.
fn signal(servers: &Servers, i: usize, signal: &str) -> anyhow::Result<u32> {
    let pid = servers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(i)
        .and_then(|s| s.as_ref().map(|k| k.0.id()))
        .with_context(|| format!("replica {i} is not running"))?;
    let st = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().context("running kill")?;
    ensure!(st.success(), "kill -{signal} {pid} failed");
    Ok(pid)
}

/// Waits (at most `within`) until `log` holds `needle` after its first `from` bytes.
async fn wait_log_after(log: &Path, from: u64, needle: &str, within: Duration) -> anyhow::Result<()> {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read(log).unwrap_or_default();
        let new = text.get(usize::try_from(from).unwrap_or(usize::MAX)..).unwrap_or_default();
        if String::from_utf8_lossy(new).contains(needle) {
            return Ok(());
        }
        ensure!(t0.elapsed() < within, "{} does not say {needle:?} within {within:?}", log.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

/// One replica of the drill: how it is started, and a client of its API.
#[derive(Debug)]
pub struct Replica {
    /// How it is started.
    pub spec: ServerSpec,
    /// Its base URL.
    pub base: String,
    /// A client of it.
    pub client: Client,
}

fn kill(servers: &Servers, i: usize) {
    let mut s = servers.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(slot) = s.get_mut(i) {
        drop(slot.take());
    }
}

fn start(servers: &Servers, i: usize, spec: &ServerSpec) -> anyhow::Result<()> {
    let k = spec.start_with(Command::new(&spec.program))?;
    let mut s = servers.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(slot) = s.get_mut(i) {
        *slot = Some(k);
    }
    Ok(())
}

/// Runs the drill's rounds against `replicas`, running as `servers` (this
/// thread must be in the control plane's namespace: restarted servers are
/// its children).
pub async fn run(
    replicas: &[Replica],
    servers: &Servers,
    project: &str,
    image: &str,
    drill: Drill,
) -> anyhow::Result<()> {
    ensure!(!replicas.is_empty(), "no replica");
    let n = replicas.len();
    ensure!(!drill.pause || n > 1, "pausing the owner needs another replica to take over (--replicas 2 or more)");
    let c = &replicas[0].client;
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
        // The replica the deployment is sent to owns it and is killed; another one (or, alone, its
        // restart) takes it over.
        let owner = (round as usize - 1) % n;
        let c = &replicas[owner].client;
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
        // kill -9: no drain, no goodbye to the nodes. Or SIGSTOP: the replica is frozen mid-flight.
        let killed = Instant::now();
        let log_before = std::fs::metadata(&replicas[owner].spec.log).map_or(0, |m| m.len());
        if drill.pause {
            let pid = signal(servers, owner, "STOP")?;
            eprintln!("   round {round}: deployment {id} at {at:.0}%: its replica {owner} paused (SIGSTOP, pid {pid})");
        } else {
            kill(servers, owner);
        }
        let (watcher, base) = if n == 1 {
            eprintln!("   round {round}: deployment {id} at {at:.0}%: control plane killed (SIGKILL), restarting it");
            start(servers, owner, &replicas[owner].spec)?;
            wait_health(c, Duration::from_secs(30)).await?;
            (c, replicas[owner].base.as_str())
        } else {
            if !drill.pause {
                eprintln!(
                    "   round {round}: deployment {id} at {at:.0}%: its replica {owner} killed (SIGKILL), not restarted yet"
                );
            }
            let other = &replicas[(owner + 1) % n];
            (&other.client, other.base.as_str())
        };
        // Taken over: the resumed sender hears the nodes where they were.
        let takeover = loop {
            let d = watcher.deployment(id).await.with_context(|| format!("reading deployment {id}"))?;
            if d.is_finished() || percent_done(&d) >= at {
                break killed.elapsed().as_secs_f64();
            }
            ensure!(killed.elapsed() < Duration::from_secs(120), "round {round}: no progress 120 s after the kill");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if n > 1 && drill.pause {
            // Woken past its dead timeout: its first write of the deployment changes nothing, and it stops.
            signal(servers, owner, "CONT")?;
            let fenced = "deployment no longer owned by this replica: stopping it";
            wait_log_after(&replicas[owner].spec.log, log_before, fenced, Duration::from_secs(10)).await?;
            wait_health(c, Duration::from_secs(30)).await?;
            eprintln!(
                "   round {round}: taken over by another replica after {takeover:.2}s; replica {owner} woken \
                 (SIGCONT): its first write changed nothing and it stopped its run"
            );
        } else if n > 1 {
            // A replica joining while another runs the deployment must not disturb it.
            start(servers, owner, &replicas[owner].spec)?;
            wait_health(c, Duration::from_secs(30)).await?;
            eprintln!(
                "   round {round}: taken over by another replica after {takeover:.2}s; replica {owner} started again"
            );
        }
        let d = wait_finished(watcher, id, Duration::from_secs(600)).await?;
        let total = t0.elapsed().as_secs_f64();
        outln!(
            "crash timing {round}/{}: kill to resumed progress {takeover:.2}s; completion {total:.2}s against \
             {reference:.2}s without a kill ({:.2}x)",
            drill.rounds,
            total / reference
        );
        let stale = stale_reports(watcher, base).await?;
        let stored = c.image(image).await.context("reading the image")?.stored_bytes.max(1) as f64;
        let verified = d.nodes.iter().filter(|n| n.state == NodeState::Verified).count();
        for n in d.nodes.iter().filter(|n| n.state != NodeState::Verified) {
            eprintln!("   {}: {} ({})", n.node, n.state.as_str(), n.reason);
        }
        let taken_in = d.nodes.iter().map(|n| n.received as f64 * SYMBOL_BYTES / stored).fold(0.0, f64::max);
        let by = match (n, drill.pause) {
            (1, _) => "the restarted server",
            (_, false) => "another replica",
            (_, true) => "another replica, the paused owner fenced",
        };
        outln!(
            "crash round {round}/{}: deployment {id} {} at {at:.0}%, resumed by {by}: {} ({verified}/{} \
             verified); the most a node took in: {taken_in:.2}x the image; reports refused: {stale}",
            drill.rounds,
            if drill.pause { "paused" } else { "killed" },
            d.state.as_str(),
            d.nodes.len()
        );
        ensure!(verified == d.nodes.len(), "round {round}: not every node verified after the resume");
        ensure!(taken_in < MAX_TAKEN_IN, "round {round}: a node took in {taken_in:.2}x the image: it started over");
    }
    Ok(())
}
