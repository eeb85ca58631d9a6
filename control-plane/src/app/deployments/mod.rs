//! Deployments: put one image on many nodes of a project at once.
//!
//! [`create`] checks who may deploy what where, writes the deployment and one
//! row per node, and starts the [`engine`] in the background: it finds each
//! node's runtime (by the MACs of its NICs, from the runtime API check-ins),
//! opens a multicast session (group, port, fresh session key, FEC parameters
//! from the bundle), hands every node a `deploy` instruction, runs the
//! sender, and follows every node through its phases from the sender's
//! per-receiver progress and the runtime's phase reports:
//! `waiting -> receiving -> verifying -> handover -> booting -> booted`
//! (`verified` for `handover: none`), or `failed` with the reason. A node that
//! fails or stays silent never holds up the others.
//!
//! Progress is published on a `watch` channel per live deployment
//! ([`live::Deploys`]); [`watch`] hands out a snapshot and a receiver for the
//! event stream. The database holds every phase change, so a restarted
//! server knows where each node was: [`recover`] marks what was in flight as
//! failed with the reason, and [`retry`] starts the failed nodes again with a
//! new session.

pub mod changes;
pub mod engine;
pub mod live;

use std::net::Ipv4Addr;
use std::time::Duration;

use metalcast_operator_api::v1;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use utoipa::ToSchema;

pub use crate::db::deployments::{DeploymentState, NodeState};
pub use live::Deploys;

use super::AppState;
use super::error::{Error, Result, check_name};
use crate::authz::Caller;
use crate::db;

/// Node states that end a node's part in a deployment.
pub const TERMINAL: [NodeState; 3] = [NodeState::Booted, NodeState::Verified, NodeState::Failed];

/// How the server reaches nodes for deployments (`metalcast serve --provision-*`).
#[derive(Debug, Clone)]
pub struct Provision {
    /// Address on the provisioning network the multicast sender binds (reports come back to it).
    pub addr: Option<Ipv4Addr>,
    /// Base URL nodes use to reach this server (metadata seed URLs); default `http://ADDR:PORT`.
    pub public_url: Option<String>,
    /// Default send-rate cap, Mbit/s of UDP payload (0: none; the rate adapts below it).
    pub rate_mbit: u64,
    /// Provisioning network MTU (symbol size).
    pub mtu: usize,
    /// Image that reclaimed nodes are kexec'd back into (the bootstrap bundle).
    pub runtime_image: Option<String>,
    /// The network the runtime reaches this server on ([`crate::app::provisioning`]).
    pub network: Option<String>,
}

impl Default for Provision {
    fn default() -> Self {
        Provision { addr: None, public_url: None, rate_mbit: 0, mtu: 1500, runtime_image: None, network: None }
    }
}

/// Where to write the image on each node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "kebab-case", tag = "kind", deny_unknown_fields)]
pub enum TargetSpec {
    /// Kernel and initrds into memory; no disk touched.
    #[default]
    Memory,
    /// The image's disk part onto this block device.
    Disk {
        /// Block device on the node, e.g. `/dev/vda`.
        device: String,
    },
}

/// What the node does once the image is written and verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum HandoverSpec {
    /// kexec into the image's kernel (no firmware reboot).
    #[default]
    Kexec,
    /// Run the image's VM disk under QEMU on the node.
    Vm,
    /// Stay in the runtime (pre-staging; the node ends `verified`).
    None,
}

impl From<TargetSpec> for v1::TargetSpec {
    fn from(t: TargetSpec) -> Self {
        match t {
            TargetSpec::Memory => v1::TargetSpec::Memory,
            TargetSpec::Disk { device } => v1::TargetSpec::Disk { device },
        }
    }
}

impl From<HandoverSpec> for v1::HandoverSpec {
    fn from(h: HandoverSpec) -> Self {
        match h {
            HandoverSpec::Kexec => v1::HandoverSpec::Kexec,
            HandoverSpec::Vm => v1::HandoverSpec::Vm,
            HandoverSpec::None => v1::HandoverSpec::None,
        }
    }
}

/// A node state as a parent control plane reports it (a nested instance's
/// deployments mirror the parent's).
impl From<v1::NodeState> for NodeState {
    fn from(s: v1::NodeState) -> Self {
        match s {
            v1::NodeState::Waiting => NodeState::Waiting,
            v1::NodeState::Receiving => NodeState::Receiving,
            v1::NodeState::Verifying => NodeState::Verifying,
            v1::NodeState::Handover => NodeState::Handover,
            v1::NodeState::Booting => NodeState::Booting,
            v1::NodeState::Booted => NodeState::Booted,
            v1::NodeState::Verified => NodeState::Verified,
            v1::NodeState::Failed => NodeState::Failed,
        }
    }
}

/// `POST /v1/deployments`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Image to deploy (one the caller may see).
    pub image: String,
    /// Nodes to deploy to; all must belong to one project the caller is in.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Deploy to every node of this project (when `nodes` is empty), or the project `nodes` must belong to.
    #[serde(default)]
    pub project: Option<String>,
    /// Where to write the image (default memory).
    #[serde(default)]
    pub target: TargetSpec,
    /// What to do after verification (default kexec).
    #[serde(default)]
    pub handover: HandoverSpec,
    /// Appended to the image's kernel command line.
    #[serde(default)]
    pub cmdline_append: String,
    /// cloud-init user-data served to the deployed nodes by the metadata service.
    #[serde(default)]
    pub user_data: Option<String>,
    /// Names of keypairs (the caller's, or shared with the project) put into the nodes' metadata.
    #[serde(default)]
    pub keypairs: Vec<String>,
    /// Send-rate cap in Mbit/s (default: the server's).
    #[serde(default)]
    pub rate_mbit: Option<u64>,
    /// Seconds a node may take from the start to its last phase before it is failed (default 600).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// What a deployment remembers for `retry` (stored as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    target: TargetSpec,
    handover: HandoverSpec,
    cmdline_append: String,
    rate_mbit: u64,
    timeout_secs: u64,
}

/// One node of a deployment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct NodeProgress {
    /// Node name.
    pub node: String,
    /// waiting | receiving | verifying | handover | booting | booted | verified | failed.
    pub state: NodeState,
    /// Why it failed, or the last detail its runtime reported.
    pub reason: String,
    /// Blocks written so far (as the sender last heard).
    pub blocks_done: i64,
    /// Blocks in the image.
    pub blocks_total: i64,
    /// Authentic packets the node received.
    pub received: i64,
    /// Packets the node rejected (forged, other session, malformed).
    pub rejected: i64,
    /// Milliseconds from the start of its attempt to its terminal state.
    pub elapsed_ms: Option<i64>,
    /// Attempts (1 + retries).
    pub attempts: i64,
    /// Unix milliseconds when the current attempt started.
    pub started_at_ms: i64,
}

/// A deployment with its nodes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Deployment {
    /// Id.
    pub id: i64,
    /// Project whose nodes are deployed.
    pub project: String,
    /// Image name.
    pub image: String,
    /// running | done | failed (failed: at least one node failed).
    pub state: DeploymentState,
    /// Multicast group:port of the latest session.
    pub session: Option<String>,
    /// The latest session's sender summary (wire bytes, repair symbols, rejected reports, ...).
    #[schema(value_type = Object)]
    pub summary: Option<serde_json::Value>,
    /// Who created it.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, once no node is in flight.
    pub finished_at: Option<i64>,
    /// Per node.
    pub nodes: Vec<NodeProgress>,
}

impl Deployment {
    /// Whether every node is in a terminal state.
    pub fn is_finished(&self) -> bool {
        self.state != DeploymentState::Running
    }
}

impl TryFrom<db::deployments::NodeRow> for NodeProgress {
    type Error = Error;
    fn try_from(r: db::deployments::NodeRow) -> Result<Self> {
        Ok(NodeProgress {
            state: r.state.parse()?,
            node: r.node,
            reason: r.reason,
            blocks_done: r.blocks_done,
            blocks_total: r.blocks_total,
            received: r.received,
            rejected: r.rejected,
            elapsed_ms: r.elapsed_ms,
            attempts: r.attempts,
            started_at_ms: r.started_at,
        })
    }
}

impl NodeProgress {
    fn to_row(&self) -> db::deployments::NodeRow {
        db::deployments::NodeRow {
            node: self.node.clone(),
            state: self.state.as_str().to_string(),
            reason: self.reason.clone(),
            blocks_done: self.blocks_done,
            blocks_total: self.blocks_total,
            received: self.received,
            rejected: self.rejected,
            elapsed_ms: self.elapsed_ms,
            attempts: self.attempts,
            started_at: self.started_at_ms,
        }
    }
}

/// What the control plane last heard from a node's runtime.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeRuntime {
    /// Node name.
    pub node: String,
    /// Whether an agent checked in from one of its NICs since this server started.
    pub checked_in: bool,
    /// MAC it checked in with.
    pub mac: Option<String>,
    /// `runtime` or `tenant`.
    pub role: Option<String>,
    /// Address on the provisioning network.
    pub address: Option<String>,
    /// Boot id (changes at every boot and kexec).
    pub boot_id: Option<String>,
    /// Seconds since the last check-in.
    pub secs_since_checkin: Option<f64>,
    /// Hardware inventory from the check-in.
    #[schema(value_type = Object)]
    pub inventory: Option<serde_json::Value>,
    /// The newest phase report of any instruction (phase, status, exit_code,
    /// detail): e.g. why the runtime refused a wipe or a disk target.
    #[schema(value_type = Object)]
    pub last_report: Option<serde_json::Value>,
}

/// Current time as unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Loads a deployment with its nodes from the database.
pub async fn load(st: &AppState, id: i64) -> Result<Option<Deployment>> {
    let Some(r) = db::deployments::get(&st.db.pool, id).await? else { return Ok(None) };
    let nodes = db::deployments::nodes(&st.db.pool, id).await?;
    Ok(Some(Deployment {
        id: r.id,
        project: r.project,
        image: r.image,
        state: r.state.parse()?,
        session: r.session_group,
        summary: r.summary.and_then(|s| serde_json::from_str(&s).ok()),
        created_by: r.created_by,
        created_at: r.created_at,
        finished_at: r.finished_at,
        nodes: nodes.into_iter().map(NodeProgress::try_from).collect::<Result<_>>()?,
    }))
}

async fn load_existing(st: &AppState, id: i64) -> Result<Deployment> {
    load(st, id).await?.ok_or_else(|| Error::internal("deployment vanished"))
}

/// A deployment the caller may see (a member of its project, or an admin); otherwise 404.
async fn visible(st: &AppState, c: &Caller, id: i64) -> Result<Deployment> {
    if c.user.is_none() {
        return Err(Error::Unauthenticated);
    }
    match load(st, id).await? {
        Some(d) if c.require_project(Some(&d.project)).is_ok() => Ok(d),
        _ => Err(Error::NotFound(format!("deployment {id} not found"))),
    }
}

/// The live snapshot if the deployment is running in this process, else the database's.
pub async fn show(st: &AppState, c: &Caller, id: i64) -> Result<Deployment> {
    let d = visible(st, c, id).await?;
    Ok(st.deploys.get(id).map_or(d, |tx| tx.borrow().clone()))
}

/// The deployment's newest snapshot and, while it runs in this process, a
/// receiver of every later one. The receiver is taken before the snapshot,
/// so no change between the two is lost: the last snapshot a stream sends
/// is the final one.
pub async fn watch(st: &AppState, c: &Caller, id: i64) -> Result<(Deployment, Option<watch::Receiver<Deployment>>)> {
    let mut rx = st.deploys.get(id).map(|tx| tx.subscribe());
    let stored = visible(st, c, id).await?;
    let first = match &mut rx {
        Some(rx) => rx.borrow_and_update().clone(),
        // Not live here when we looked: the engine stores the end before it
        // unregisters, so the database has the last word.
        None => stored,
    };
    if rx.is_none() && !first.is_finished() {
        // Run by another replica: follow what it stores (states at once, blocks about once a second).
        rx = Some(follow_stored(st, c.clone(), first.clone()));
    }
    Ok((first, rx))
}

/// How often a deployment run by another replica is read again for a watcher here.
const STORED_EVERY: Duration = Duration::from_millis(500);
/// The longest a watcher here follows a deployment run elsewhere.
const STORED_FOR: Duration = Duration::from_secs(6 * 3600);

/// A watch of deployment `first`, run by another replica, fed from the
/// database every [`STORED_EVERY`] until it ends or nobody watches (bounded
/// by [`STORED_FOR`]; a watcher whose stream ends reconnects).
fn follow_stored(st: &AppState, c: Caller, first: Deployment) -> watch::Receiver<Deployment> {
    let (tx, rx) = watch::channel(first.clone());
    let st2 = st.clone();
    let token = st.tasks.token();
    let until = tokio::time::Instant::now() + STORED_FOR;
    st.tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tx.closed() => return,
                _ = tokio::time::sleep(STORED_EVERY) => {}
            }
            let d = match visible(&st2, &c, first.id).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(id = first.id, error = %e, "cannot read the deployment for a watcher");
                    continue;
                }
            };
            let end = d.is_finished();
            tx.send_if_modified(|old| {
                let changed = *old != d;
                *old = d;
                changed
            });
            if end || tokio::time::Instant::now() >= until {
                return;
            }
        }
    });
    rx
}

/// The deployments of the caller's projects (all for an admin), newest first.
pub async fn list(st: &AppState, c: &Caller) -> Result<Vec<Deployment>> {
    if c.user.is_none() {
        return Err(Error::Unauthenticated);
    }
    let mut out = Vec::new();
    for (id, project) in db::deployments::list(&st.db.pool).await? {
        if c.require_project(Some(&project)).is_ok() {
            out.push(show(st, c, id).await?);
        }
    }
    Ok(out)
}

fn provisioning(st: &AppState) -> Result<Option<Ipv4Addr>> {
    let addr = st.provision.addr;
    if addr.is_none() && st.upstream.is_none() {
        return Err(Error::Exhausted(
            "this server has no provisioning network (start it with --provision-addr)".into(),
        ));
    }
    Ok(addr)
}

/// Deploys an image to nodes of a project; returns the new deployment (running).
pub async fn create(st: &AppState, c: &Caller, req: DeployRequest) -> Result<Deployment> {
    refuse_if_draining(st)?;
    let user = c.user.clone().ok_or(Error::Unauthenticated)?;
    let img = super::images::visible(st, c, &req.image).await?;
    if let Some(p) = &req.project {
        check_name("project", p)?;
    }
    for n in &req.nodes {
        check_name("node", n)?;
    }
    if let TargetSpec::Disk { device } = &req.target
        && (!device.starts_with("/dev/") || device.contains("..") || device.len() > 64)
    {
        return Err(Error::BadRequest(format!("target device {device:?} is not a /dev path")));
    }
    if req.cmdline_append.len() > 2048 || req.cmdline_append.contains(['\n', '\0']) {
        return Err(Error::BadRequest("cmdline_append must be one line of at most 2048 bytes".into()));
    }
    if req.user_data.as_ref().is_some_and(|u| u.len() > 64 * 1024 - 4096) {
        return Err(Error::TooLarge);
    }
    if req.project.is_none() && req.nodes.is_empty() {
        return Err(Error::BadRequest("give nodes, or a project to deploy all its nodes".into()));
    }
    // A bad request is told so even by a server that cannot deploy.
    let addr = provisioning(st)?;
    // Which project, which nodes.
    let (project, nodes) = match (&req.project, req.nodes.is_empty()) {
        (None, true) => return Err(Error::BadRequest("give nodes, or a project to deploy all its nodes".into())),
        (Some(p), true) => {
            c.require_project(Some(p))?;
            let nodes = db::nodes::in_project(&st.db.pool, p).await?;
            if nodes.is_empty() {
                return Err(Error::Conflict(format!("project {p:?} has no nodes")));
            }
            (p.clone(), nodes)
        }
        (want, false) => {
            let mut nodes = req.nodes.clone();
            nodes.sort();
            nodes.dedup();
            let mut project: Option<String> = want.clone();
            for n in &nodes {
                let owner = db::nodes::project_of(&st.db.pool, n).await?.flatten();
                // A node outside the caller's projects is reported as not found: its existence is not revealed.
                let owner = owner
                    .filter(|o| c.require_project(Some(o)).is_ok())
                    .ok_or_else(|| Error::NotFound(format!("node {n:?} is not in any of your projects")))?;
                match &project {
                    None => project = Some(owner),
                    Some(p) if *p == owner => {}
                    Some(p) => {
                        return Err(Error::Conflict(format!("node {n:?} belongs to {owner:?}, not to {p:?}")));
                    }
                }
            }
            (project.expect("at least one node"), nodes)
        }
    };
    c.require_project(Some(&project))?;
    let keys = ssh_keys(st, c, &req.keypairs).await?;
    let params = Params {
        target: req.target.clone(),
        handover: req.handover,
        cmdline_append: req.cmdline_append.clone(),
        rate_mbit: req.rate_mbit.unwrap_or(st.provision.rate_mbit),
        timeout_secs: req.timeout_secs.unwrap_or(600).clamp(10, 24 * 3600),
    };
    let id = insert(st, &user, &project, &img, &params, &nodes, req.user_data.as_deref(), &keys).await?;
    tracing::info!(id, %project, image = %img.name, nodes = nodes.len(), "deployment created");
    let d = load_existing(st, id).await?;
    engine::start(st, d.clone(), nodes, addr, params);
    Ok(d)
}

async fn ssh_keys(st: &AppState, c: &Caller, names: &[String]) -> Result<Vec<String>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let usable = super::keypairs::usable(st, c).await?;
    names
        .iter()
        .map(|n| {
            usable
                .iter()
                .find(|k| &k.name == n)
                .map(|k| k.public_key.clone())
                .ok_or_else(|| Error::NotFound(format!("keypair {n:?} not found")))
        })
        .collect()
}

/// Writes the deployment and its nodes in one transaction; a node already in
/// a running deployment is a conflict (nothing is written then).
#[allow(clippy::too_many_arguments)]
async fn insert(
    st: &AppState,
    user: &str,
    project: &str,
    img: &super::images::ImageInfo,
    params: &Params,
    nodes: &[String],
    user_data: Option<&str>,
    keys: &[String],
) -> Result<i64> {
    let mut tx = st.db.writer.begin().await?;
    // Serializes deployments of this project (the nodes belong to it), on both backends.
    super::quotas::lock_project(&mut tx, st.db.backend, project).await?;
    for n in nodes {
        if let Some(other) = db::deployments::in_flight(&mut *tx, n).await? {
            return Err(Error::Conflict(format!("node {n:?} is being deployed by deployment {other}")));
        }
    }
    let params = serde_json::to_string(params).map_err(Error::internal)?;
    let keys = keys.join("\n");
    let new = db::deployments::NewDeployment {
        project,
        image: &img.name,
        root_hash: &img.root_hash,
        params: &params,
        created_by: user,
        user_data: user_data.unwrap_or(""),
        ssh_keys: &keys,
        owner: &st.replica.id,
    };
    let rows: Vec<(String, String)> = nodes.iter().map(|n| (n.clone(), crate::auth::random_hex(24))).collect();
    let id = db::deployments::insert(&mut tx, st.db.backend, &new, &rows, crate::now(), now_ms()).await?;
    tx.commit().await?;
    Ok(id)
}

/// Deploys the failed nodes of a finished deployment again, with a new session.
pub async fn retry(st: &AppState, c: &Caller, id: i64) -> Result<Deployment> {
    let d = visible(st, c, id).await?;
    refuse_if_draining(st)?;
    let addr = st.provision.addr;
    if addr.is_none() && st.upstream.is_none() {
        return Err(Error::Exhausted("this server has no provisioning network (--provision-addr)".into()));
    }
    let row = db::deployments::get(&st.db.pool, id).await?.ok_or_else(|| Error::internal("deployment vanished"))?;
    let params: Params = serde_json::from_str(&row.params).map_err(Error::internal)?;
    let mut tx = st.db.writer.begin().await?;
    super::quotas::lock_project(&mut tx, st.db.backend, &d.project).await?;
    if !db::deployments::restart(&mut tx, st.db.backend, id, &st.replica.id).await? {
        return Err(Error::Conflict(format!(
            "deployment {id} is {}: only a failed deployment can be retried",
            d.state
        )));
    }
    let failed: Vec<String> = d.nodes.iter().filter(|n| n.state == NodeState::Failed).map(|n| n.node.clone()).collect();
    // A node deployed again since is no longer this deployment's to finish:
    // retrying would overwrite the newer image.
    for n in &failed {
        if let Some(newer) = db::deployments::newer_for_node(&mut tx, n, id).await? {
            return Err(Error::Conflict(format!(
                "node {n:?} was deployed again by the newer deployment {newer}: deploy anew instead of retrying {id}"
            )));
        }
    }
    let mut nodes = Vec::new();
    for n in failed {
        // Still the project's node, and not in flight elsewhere (its row here is `failed`).
        if db::nodes::owned_by(&mut tx, &n, &d.project).await?
            && db::deployments::in_flight(&mut *tx, &n).await?.is_none()
        {
            db::deployments::retry_node(&mut tx, id, &n, now_ms()).await?;
            nodes.push(n);
        }
    }
    if nodes.is_empty() {
        return Err(Error::Conflict("no failed node of this deployment can be retried".into()));
    }
    tx.commit().await?;
    tracing::info!(id, nodes = nodes.len(), "deployment retried");
    let d = load_existing(st, id).await?;
    engine::start(st, d.clone(), nodes, addr, params);
    Ok(d)
}

/// New rollouts are refused once the server is shutting down (the running
/// ones may finish: `crate::tasks`).
pub(crate) fn refuse_if_draining(st: &AppState) -> Result<()> {
    if st.tasks.is_draining() {
        return Err(Error::ShuttingDown("the control plane is shutting down: try again shortly".into()));
    }
    Ok(())
}

/// At server start: whatever a previous process (or a dead replica) had in
/// flight has lost its sender. What can be resumed here is
/// ([`resume_orphaned`]); the other nodes in flight are marked failed with
/// the reason, and their deployments failed, so `retry` can pick them up.
pub async fn recover(st: &AppState) -> Result<u64> {
    resume_orphaned(st).await?;
    fail_orphaned(
        st,
        "the control plane restarted during the deployment (the node may still finish on its own: retry or reclaim it)",
    )
    .await
}

/// Claims the running deployments of dead replicas and resumes their
/// sessions ([`engine::resume`]); returns how many. Only a replica with a
/// provisioning address (a sender) claims: the nodes' runtimes reach every
/// replica through the database (`app::runtime`), so any sender can follow
/// them to the end. The rest is left to [`fail_orphaned`].
pub async fn resume_orphaned(st: &AppState) -> Result<usize> {
    if st.upstream.is_some() || st.provision.addr.is_none() || st.tasks.is_draining() {
        return Ok(0);
    }
    let max_epoch = i64::from(metalcast_transport::MAX_EPOCH);
    let claimed = db::deployments::claim_orphaned_sessions(&st.db.writer, &st.replica.id, max_epoch).await?;
    let n = claimed.len();
    for session in claimed {
        let id = session.deployment;
        let loaded = async {
            let row =
                db::deployments::get(&st.db.pool, id).await?.ok_or_else(|| Error::internal("deployment vanished"))?;
            let params: Params = serde_json::from_str(&row.params).map_err(Error::internal)?;
            Ok::<_, Error>((load_existing(st, id).await?, params))
        };
        match loaded.await {
            Ok((d, params)) => engine::resume(st, d, session, params),
            Err(e) => {
                // Claimed but not runnable: end it, or it would stay running and owned.
                tracing::error!(id, error = %e, "cannot resume the deployment: failing it");
                let _ = db::deployments::fail_owned(
                    &st.db.writer,
                    id,
                    &st.replica.id,
                    &format!("cannot resume the deployment after its replica died: {}", e.public_message()),
                    crate::now(),
                )
                .await;
            }
        }
    }
    Ok(n)
}

/// Fails the nodes in flight of running deployments whose replica is gone
/// (not registered any more: dead, or from before replicas existed) with
/// `reason`; deployments of live replicas are left to them.
pub async fn fail_orphaned(st: &AppState, reason: &str) -> Result<u64> {
    let max_epoch = i64::from(metalcast_transport::MAX_EPOCH);
    Ok(db::deployments::fail_orphaned(&st.db.writer, reason, crate::now(), max_epoch).await?)
}

/// Deploys `image` to `nodes` of `project` with a kexec hand-over and waits
/// for the end (used by reclaim to bring the runtime back). The deployment is
/// recorded like any other.
pub async fn run_and_wait(
    st: &AppState,
    user: &str,
    project: &str,
    image: &str,
    nodes: &[String],
    timeout_secs: u64,
) -> Result<Deployment> {
    let addr = st.provision.addr;
    let img = super::images::load_any(st, image).await?.ok_or_else(|| Error::not_found("image", image))?;
    let params = Params {
        target: TargetSpec::Memory,
        handover: HandoverSpec::Kexec,
        cmdline_append: String::new(),
        rate_mbit: st.provision.rate_mbit,
        timeout_secs,
    };
    let id = insert(st, user, project, &img, &params, nodes, None, &[]).await?;
    let d = load_existing(st, id).await?;
    let live = st.deploys.register(d);
    engine::execute(st, live, nodes.to_vec(), addr, params, None).await;
    load_existing(st, id).await
}

/// What the node's runtime last reported (project members and admins).
pub async fn node_runtime(st: &AppState, c: &Caller, node: String) -> Result<NodeRuntime> {
    check_name("node", &node)?;
    let project = db::nodes::project_of(&st.db.pool, &node).await?.ok_or_else(|| Error::not_found("node", &node))?;
    c.require_project(project.as_deref())?;
    let found = find_runtime(st, &node, Duration::ZERO).await?;
    let (seen, last_report) = match &found {
        Some((mac, _, _)) => {
            (crate::app::runtime::node(st, mac).await?, crate::app::runtime::last_report(st, mac).await?)
        }
        None => (None, None),
    };
    let now = db::now_pool(&st.db.pool, st.db.backend).await?;
    Ok(NodeRuntime {
        node,
        checked_in: seen.is_some(),
        mac: seen.as_ref().map(|c| c.last.node.clone()),
        role: seen
            .as_ref()
            .map(|c| if c.last.role == metalcast_runtime_api::Role::Runtime { "runtime" } else { "tenant" }.into()),
        address: seen.as_ref().map(|c| c.last.address.clone()),
        boot_id: seen.as_ref().map(|c| c.last.boot_id.clone()),
        secs_since_checkin: seen.as_ref().map(|c| (now - c.at).max(0) as f64),
        inventory: seen.as_ref().and_then(|c| serde_json::to_value(&c.last.inventory).ok()),
        last_report: last_report.and_then(|r| serde_json::to_value(r).ok()),
    })
}

/// Waits up to `wait` for a runtime check-in from one of `node`'s NIC MACs;
/// returns (mac, address, boot id) of the newest.
pub async fn find_runtime(st: &AppState, node: &str, wait: Duration) -> Result<Option<(String, String, String)>> {
    let macs = db::nics::macs(&st.db.pool, node).await?;
    let t_end = std::time::Instant::now() + wait;
    loop {
        // A check-in of the first MAC wakes us at once; every MAC is looked at again each second.
        let Some(first) = macs.first() else { return Ok(None) };
        let watch = crate::app::runtime::watch(st, first);
        let notified = watch.notified();
        for mac in &macs {
            if let Some(c) = crate::app::runtime::last_checkin(st, mac).await? {
                return Ok(Some((c.node, c.address, c.boot_id)));
            }
        }
        let left = t_end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        crate::app::runtime::wait(st, notified, left.min(Duration::from_secs(1))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_rejects_unknown_fields() {
        let ok: std::result::Result<DeployRequest, _> = serde_json::from_str(r#"{"image":"i","nodes":["a"]}"#);
        assert!(ok.is_ok());
        let bad: std::result::Result<DeployRequest, _> =
            serde_json::from_str(r#"{"image":"i","nodes":["a"],"sudo":true}"#);
        assert!(bad.is_err());
        let t: DeployRequest = serde_json::from_str(
            r#"{"image":"i","project":"p","target":{"kind":"disk","device":"/dev/vda"},"handover":"none"}"#,
        )
        .unwrap();
        assert_eq!(t.target, TargetSpec::Disk { device: "/dev/vda".into() });
        assert_eq!(t.handover, HandoverSpec::None);
    }

    #[test]
    fn states_round_trip_as_text() {
        for s in TERMINAL.iter().chain(&[NodeState::Waiting, NodeState::Booting]) {
            assert_eq!(s.as_str().parse::<NodeState>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("bogus".parse::<NodeState>().is_err());
        assert!(TERMINAL.iter().all(|s| s.is_terminal()) && !NodeState::Handover.is_terminal());
        assert_eq!(serde_json::to_value(DeploymentState::Running).unwrap(), "running");
    }
}
