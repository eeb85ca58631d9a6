//! `metalcast-bench recursion`: latency a nesting level adds to a typical
//! control-plane call (recursive HaaS, docs/recursion.md).
//!
//! One process runs a chain of real `serve` instances on 127.0.0.1, each
//! with its own SQLite database: the root drives a real QMP BMC (QEMU
//! `-machine none`, which runs nothing) and a real `linux-vlan-bridges`
//! switch in a fabric namespace; level `d` is a nested metalcast whose
//! upstream is level `d-1`. The same node is granted down the chain, and at
//! each depth the bench times, alternating depths within each repetition:
//!
//! * `power_cycle` (request to 200);
//! * `connect_network` (request to the networking action reading `DONE`,
//!   polled every millisecond), followed by an untimed detach.
//!
//! Needs root (network namespaces) and `qemu-system-x86_64`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use metalcast_control_plane::app::upstream::{Upstream, UpstreamConfig};
use metalcast_control_plane::{AppState, VlanPool};
use metalcast_operator_api::v0::{ActionStatus, NetworkCreate, NodeFilter, NodeRegister, SwitchRegister, UserCreate};
use metalcast_operator_api::{Auth, Client};
use serde_json::json;

use crate::stats::Summary;

/// Benchmark parameters.
#[derive(Debug, Clone)]
pub struct Config {
    /// Deepest nesting level measured (0 = the root only).
    pub max_depth: usize,
    /// Repetitions per call and depth.
    pub reps: usize,
}

/// Medians per depth, seconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// Nesting depth (0: the root itself).
    pub depth: usize,
    /// `power_cycle`.
    pub power_cycle: Summary,
    /// `connect_network` until DONE.
    pub connect: Summary,
}

/// One running control plane.
struct Level {
    url: String,
    /// Its operator API, as the admin.
    api: Client,
    _stop: tokio::sync::oneshot::Sender<()>,
    _sync: Option<tokio::task::JoinHandle<()>>,
    _dir: crate::interrupt::ScratchDir,
}

impl Level {
    async fn start(upstream: Option<UpstreamConfig>) -> anyhow::Result<Level> {
        let dir = crate::interrupt::scratch_dir(&std::env::temp_dir())?;
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("level.db").display());
        let db = metalcast_control_plane::db::connect(&url).await?;
        let mut st = AppState::new(db, VlanPool { first: 100, last: 3999 });
        if let Some(cfg) = upstream {
            st = st.with_upstream(Upstream::new(cfg).map_err(anyhow::Error::msg)?);
        }
        let admin = metalcast_control_plane::app::tokens::bootstrap_admin(&st, "admin", Some("adminpw".into()))
            .await?
            .token
            .token;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server_state = st.clone();
        tokio::spawn(async move {
            let _ = metalcast_control_plane::serve(listener, server_state, async {
                let _ = rx.await;
            })
            .await;
        });
        let sync = metalcast_control_plane::app::upstream::spawn_sync(&st);
        let url = format!("http://{addr}");
        Ok(Level { api: Client::new(&url, Auth::Bearer(admin))?, url, _stop: tx, _sync: sync, _dir: dir })
    }

    /// A member of `project` and a token for them (for a child level).
    async fn tenant_token(&self, user: &str, project: &str) -> anyhow::Result<String> {
        self.api.user_create(user, &UserCreate { password: "pw".into(), is_admin: false }).await?;
        self.api.user_add_project(user, project).await?;
        let as_user = Client::new(&self.url, Auth::Basic { user: user.into(), password: Some("pw".into()) })?;
        Ok(as_user.token_create("bench").await?.token)
    }

    async fn wait_node(&self, node: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.api.nodes(NodeFilter::All).await?.iter().any(|n| n == node) {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "{node} never appeared at {}", self.url);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Connect (else detach) n1's eth0 and wait for DONE; returns the elapsed time.
    async fn nic_action(&self, connect: bool, network: &str) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let (verb, id) = if connect {
            ("connect_network", self.api.connect_network("n1", "eth0", network, None).await)
        } else {
            ("detach_network", self.api.detach_network("n1", "eth0", network).await)
        };
        let id = id.with_context(|| format!("{verb} at {}", self.url))?;
        loop {
            match self.api.networking_action(&id).await?.status {
                ActionStatus::Done => return Ok(t.elapsed()),
                ActionStatus::Pending => tokio::time::sleep(Duration::from_millis(1)).await,
                ActionStatus::Error => bail!("{verb} at {} ended in ERROR", self.url),
            }
        }
    }
}

/// Run the benchmark (root, QEMU).
pub fn run(cfg: &Config) -> anyhow::Result<Vec<Row>> {
    ensure!(cfg.reps > 0, "--reps must be at least 1");
    ensure!(nix::unistd::geteuid().is_root(), "the recursion benchmark needs root (network namespaces)");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run_async(cfg))
}

async fn run_async(cfg: &Config) -> anyhow::Result<Vec<Row>> {
    let dir = crate::interrupt::scratch_dir(&std::env::temp_dir())?;
    let sock = dir.path().join("n1.qmp");
    let _qemu = metalcast_fabric::qemu::QmpOnly::start(&sock).map_err(anyhow::Error::msg)?;
    let fabric = metalcast_fabric::Fabric::builder()
        .receivers(0)
        .host("h1")
        .snooping(false)
        .nic_segmentation(false)
        .build()
        .context("building the fabric")?;
    let sw = fabric.switch().netns().name().to_string();
    let h1 = fabric.host("h1");

    // Root: the node with a real BMC and switch port, held by project p0.
    let mut levels = vec![Level::start(None).await?];
    let root = &levels[0];
    let api = &root.api;
    api.switch_register("fab", &SwitchRegister::VlanBridges { netns: sw }).await?;
    api.port_register("fab", h1.switch_port()).await?;
    api.node_register(
        "n1",
        &NodeRegister { obm: json!({"type": "qmp", "socket": sock}), metadata: Default::default() },
    )
    .await?;
    api.nic_register("n1", "eth0", &h1.mac_string()).await?;
    api.port_connect_nic("fab", h1.switch_port(), "n1", "eth0").await?;
    // At every level, project p<d> holds n1 and owns the network bench<d>.
    for d in 0..=cfg.max_depth {
        if d > 0 {
            let parent = &levels[d - 1];
            let token = parent.tenant_token(&format!("u{d}"), &format!("p{}", d - 1)).await?;
            let up = UpstreamConfig {
                url: parent.url.clone(),
                project: format!("p{}", d - 1),
                token,
                sync_interval: Duration::from_secs(1),
            };
            let level = Level::start(Some(up)).await?;
            level.wait_node("n1").await?;
            levels.push(level);
        }
        let api = &levels[d].api;
        api.project_create(&format!("p{d}")).await?;
        api.project_connect_node(&format!("p{d}"), "n1").await?;
        let net = NetworkCreate { owner: format!("p{d}"), access: format!("p{d}"), net_id: String::new() };
        api.network_create(&format!("bench{d}"), &net).await?;
    }

    let mut power: Vec<Vec<f64>> = vec![Vec::new(); cfg.max_depth + 1];
    let mut connect: Vec<Vec<f64>> = vec![Vec::new(); cfg.max_depth + 1];
    // One untimed warm-up round (connection pools, first bridge creation).
    for rep in 0..=cfg.reps {
        for (d, level) in levels.iter().enumerate() {
            let t = Instant::now();
            level.api.power_cycle("n1", false).await?;
            let p = t.elapsed();
            let c = level.nic_action(true, &format!("bench{d}")).await?;
            level.nic_action(false, &format!("bench{d}")).await?;
            if rep > 0 {
                power[d].push(p.as_secs_f64());
                connect[d].push(c.as_secs_f64());
            }
        }
    }
    Ok((0..=cfg.max_depth)
        .map(|d| Row { depth: d, power_cycle: Summary::of(&power[d]), connect: Summary::of(&connect[d]) })
        .collect())
}

/// The rows as a markdown table: medians per depth and the latency each
/// level adds over the one above it.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| depth | power_cycle median ms | added vs depth-1 | connect_network (to DONE) median ms | added vs depth-1 | reps |\n\
         |---|---|---|---|---|---|\n",
    );
    let mut prev: Option<&Row> = None;
    for r in rows {
        let added = |now: f64, before: Option<f64>| match before {
            Some(b) => format!("{:+.2}", (now - b) * 1e3),
            None => "-".into(),
        };
        s.push_str(&format!(
            "| {} | {:.2} | {} | {:.2} | {} | {} |\n",
            r.depth,
            r.power_cycle.median * 1e3,
            added(r.power_cycle.median, prev.map(|p| p.power_cycle.median)),
            r.connect.median * 1e3,
            added(r.connect.median, prev.map(|p| p.connect.median)),
            r.power_cycle.samples.len(),
        ));
        prev = Some(r);
    }
    s
}
