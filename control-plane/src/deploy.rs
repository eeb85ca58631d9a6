//! Deployments: put one image on many nodes of a project at once.
//!
//! `POST /v1/deployments` checks who may deploy what where, writes the
//! deployment and one row per node, and starts [`drive`] in the background:
//! it finds each node's runtime (by the MACs of its NICs, from the runtime
//! API check-ins), opens a multicast session (group, port, fresh session key,
//! FEC parameters from the bundle), hands every node a `deploy` instruction,
//! runs the sender, and follows every node through its phases from the
//! sender's per-receiver progress and the runtime's phase reports:
//! `waiting -> receiving -> verifying -> handover -> booting -> booted`
//! (`verified` for `handover: none`), or `failed` with the reason. A node that
//! fails or stays silent never holds up the others.
//!
//! Progress is published on a `watch` channel per live deployment; the
//! event-stream endpoint sends snapshots from it. The database holds every
//! phase change, so a restarted server knows where each node was: [`recover`]
//! marks what was in flight as failed with the reason, and `retry` starts the
//! failed nodes again with a new session.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use metalcast_image::Bundle;
use metalcast_runtime_api::{Action, Deploy, Handover, Phase, Status, Target};
use metalcast_transport::{Sender, SenderConfig, SessionSpec};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::sync::watch;
use utoipa::{OpenApi, ToSchema};

use crate::app::AppState;
use crate::app::error::check_name;
use crate::authz::Caller;
use crate::http::ApiError;
use crate::http::Body;

/// Node states that end a node's part in a deployment.
pub const TERMINAL: [&str; 3] = ["booted", "verified", "failed"];

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
}

impl Default for Provision {
    fn default() -> Self {
        Provision { addr: None, public_url: None, rate_mbit: 0, mtu: 1500, runtime_image: None }
    }
}

/// Live deployments' progress channels, and a notifier for metadata fetches.
#[derive(Debug, Default)]
pub struct Deploys {
    live: Mutex<HashMap<i64, watch::Sender<Deployment>>>,
    /// Woken whenever a deployed node fetched its metadata (a sign it booted).
    pub metadata_fetched: tokio::sync::Notify,
    fetched: Mutex<std::collections::HashSet<(i64, String)>>,
}

impl Deploys {
    fn get(&self, id: i64) -> Option<watch::Sender<Deployment>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }
    fn insert(&self, id: i64, tx: watch::Sender<Deployment>) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
    }
    fn remove(&self, id: i64) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        self.fetched.lock().unwrap_or_else(|p| p.into_inner()).retain(|(d, _)| *d != id);
    }
    /// Records that `node` of deployment `id` fetched its metadata (the new system is up).
    pub fn note_fetch(&self, id: i64, node: &str) {
        if self.get(id).is_some() {
            self.fetched.lock().unwrap_or_else(|p| p.into_inner()).insert((id, node.to_owned()));
            self.metadata_fetched.notify_waiters();
        }
    }
    fn fetched(&self, id: i64, node: &str) -> bool {
        self.fetched.lock().unwrap_or_else(|p| p.into_inner()).contains(&(id, node.to_owned()))
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
struct Params {
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
    pub state: String,
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
    pub state: String,
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
        self.state != "running"
    }
}

/// OpenAPI description of the deployment endpoints.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(create, list, show, events, retry, node_runtime),
    components(schemas(DeployRequest, Deployment, NodeProgress, TargetSpec, HandoverSpec, NodeRuntime))
)]
pub struct DeploymentsDoc;

/// Routes under `/v1/deployments`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/deployments", post(create).get(list))
        .route("/v1/deployments/{id}", get(show))
        .route("/v1/deployments/{id}/events", get(events))
        .route("/v1/deployments/{id}/retry", post(retry))
        .route("/v1/nodes/{node}/runtime", get(node_runtime))
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

/// Show what the node's runtime last reported (project members and admins).
#[utoipa::path(get, path = "/v1/nodes/{node}/runtime", responses((status = 200, body = NodeRuntime), (status = 404)))]
async fn node_runtime(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
) -> Result<Json<NodeRuntime>, ApiError> {
    check_name("node", &node)?;
    let row = sqlx::query("SELECT project FROM nodes WHERE name = $1")
        .bind(&node)
        .fetch_optional(&st.db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("node", &node))?;
    let project: Option<String> = row.try_get(0)?;
    c.require_project(project.as_deref())?;
    let found = find_runtime(&st, &node, Duration::ZERO).await?;
    let rec = found.as_ref().and_then(|(mac, _, _)| st.runtime.node(mac));
    let seen = rec.as_ref().and_then(|r| r.checkins.last().cloned());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    Ok(Json(NodeRuntime {
        node,
        checked_in: seen.is_some(),
        mac: seen.as_ref().map(|c| c.checkin.node.clone()),
        role: seen
            .as_ref()
            .map(|c| if c.checkin.role == metalcast_runtime_api::Role::Runtime { "runtime" } else { "tenant" }.into()),
        address: seen.as_ref().map(|c| c.checkin.address.clone()),
        boot_id: seen.as_ref().map(|c| c.checkin.boot_id.clone()),
        secs_since_checkin: seen.as_ref().map(|c| (now - c.at_unix).max(0.0)),
        inventory: seen.as_ref().and_then(|c| serde_json::to_value(&c.checkin.inventory).ok()),
        last_report: rec.as_ref().and_then(|r| r.reports.last()).and_then(|r| serde_json::to_value(r).ok()),
    }))
}

const NODE_COLUMNS: &str =
    "node, state, reason, blocks_done, blocks_total, received, rejected, elapsed_ms, attempts, started_at";

/// Loads a deployment with its nodes from the database.
pub async fn load(st: &AppState, id: i64) -> Result<Option<Deployment>, ApiError> {
    let Some(r) = sqlx::query(
        "SELECT id, project, image, state, session_group, summary, created_by, created_at, finished_at \
         FROM deployments WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&st.db.pool)
    .await?
    else {
        return Ok(None);
    };
    let summary: Option<String> = r.try_get(5)?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {NODE_COLUMNS} FROM deployment_nodes WHERE deployment = $1 ORDER BY node"
    )))
    .bind(id)
    .fetch_all(&st.db.pool)
    .await?;
    let nodes = rows.iter().map(node_from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Deployment {
        id: r.try_get(0)?,
        project: r.try_get(1)?,
        image: r.try_get(2)?,
        state: r.try_get(3)?,
        session: r.try_get(4)?,
        summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
        created_by: r.try_get(6)?,
        created_at: r.try_get(7)?,
        finished_at: r.try_get(8)?,
        nodes,
    }))
}

fn node_from_row(r: &sqlx::any::AnyRow) -> Result<NodeProgress, ApiError> {
    Ok(NodeProgress {
        node: r.try_get(0)?,
        state: r.try_get(1)?,
        reason: r.try_get(2)?,
        blocks_done: r.try_get(3)?,
        blocks_total: r.try_get(4)?,
        received: r.try_get(5)?,
        rejected: r.try_get(6)?,
        elapsed_ms: r.try_get(7)?,
        attempts: r.try_get(8)?,
        started_at_ms: r.try_get(9)?,
    })
}

/// A deployment the caller may see (a member of its project, or an admin); otherwise 404.
async fn visible(st: &AppState, c: &Caller, id: i64) -> Result<Deployment, ApiError> {
    if c.user.is_none() {
        return Err(ApiError::Unauthenticated);
    }
    match load(st, id).await? {
        Some(d) if c.has_project(&d.project) => Ok(d),
        _ => Err(ApiError::NotFound(format!("deployment {id} not found"))),
    }
}

/// The live snapshot if the deployment is running in this process, else the database's.
async fn current(st: &AppState, c: &Caller, id: i64) -> Result<Deployment, ApiError> {
    let d = visible(st, c, id).await?;
    Ok(st.deploys.get(id).map_or(d, |tx| tx.borrow().clone()))
}

/// Deploy an image to nodes of a project.
#[utoipa::path(post, path = "/v1/deployments", request_body = DeployRequest,
    responses((status = 202, body = Deployment), (status = 404), (status = 409), (status = 503)))]
async fn create(
    State(st): State<AppState>,
    c: Caller,
    Body(req): Body<DeployRequest>,
) -> Result<(StatusCode, Json<Deployment>), ApiError> {
    let user = c.user.clone().ok_or(ApiError::Unauthenticated)?;
    let addr = st.provision.addr;
    if addr.is_none() && st.upstream.is_none() {
        return Err(ApiError::Exhausted(
            "this server has no provisioning network (start it with --provision-addr)".into(),
        ));
    }
    let img = crate::images::visible(&st, &c, &req.image).await?;
    if let Some(p) = &req.project {
        check_name("project", p)?;
    }
    for n in &req.nodes {
        check_name("node", n)?;
    }
    if let TargetSpec::Disk { device } = &req.target
        && (!device.starts_with("/dev/") || device.contains("..") || device.len() > 64)
    {
        return Err(ApiError::BadRequest(format!("target device {device:?} is not a /dev path")));
    }
    if req.cmdline_append.len() > 2048 || req.cmdline_append.contains(['\n', '\0']) {
        return Err(ApiError::BadRequest("cmdline_append must be one line of at most 2048 bytes".into()));
    }
    if req.user_data.as_ref().is_some_and(|u| u.len() > 64 * 1024 - 4096) {
        return Err(ApiError::TooLarge);
    }
    // Which project, which nodes.
    let (project, nodes) = match (&req.project, req.nodes.is_empty()) {
        (None, true) => return Err(ApiError::BadRequest("give nodes, or a project to deploy all its nodes".into())),
        (Some(p), true) => {
            c.require_project(Some(p))?;
            let rows = sqlx::query("SELECT name FROM nodes WHERE project = $1 ORDER BY name")
                .bind(p)
                .fetch_all(&st.db.pool)
                .await?;
            let nodes = rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<Vec<_>, _>>()?;
            if nodes.is_empty() {
                return Err(ApiError::Conflict(format!("project {p:?} has no nodes")));
            }
            (p.clone(), nodes)
        }
        (want, false) => {
            let mut nodes = req.nodes.clone();
            nodes.sort();
            nodes.dedup();
            let mut project: Option<String> = want.clone();
            for n in &nodes {
                let owner: Option<String> = sqlx::query("SELECT project FROM nodes WHERE name = $1")
                    .bind(n)
                    .fetch_optional(&st.db.pool)
                    .await?
                    .map(|r| r.try_get(0))
                    .transpose()?
                    .flatten();
                // A node outside the caller's projects is reported as not found: its existence is not revealed.
                let owner = owner
                    .filter(|o| c.has_project(o))
                    .ok_or_else(|| ApiError::NotFound(format!("node {n:?} is not in any of your projects")))?;
                match &project {
                    None => project = Some(owner),
                    Some(p) if *p == owner => {}
                    Some(p) => {
                        return Err(ApiError::Conflict(format!("node {n:?} belongs to {owner:?}, not to {p:?}")));
                    }
                }
            }
            (project.expect("at least one node"), nodes)
        }
    };
    c.require_project(Some(&project))?;
    let keys = ssh_keys(&st, &c, &req.keypairs).await?;
    let params = Params {
        target: req.target.clone(),
        handover: req.handover,
        cmdline_append: req.cmdline_append.clone(),
        rate_mbit: req.rate_mbit.unwrap_or(st.provision.rate_mbit),
        timeout_secs: req.timeout_secs.unwrap_or(600).clamp(10, 24 * 3600),
    };
    let id = insert(&st, &user, &project, &img, &params, &nodes, req.user_data.as_deref(), &keys).await?;
    tracing::info!(id, %project, image = %img.name, nodes = nodes.len(), "deployment created");
    let d = load(&st, id).await?.ok_or_else(|| ApiError::Internal("deployment vanished".into()))?;
    start(&st, d.clone(), nodes, addr, params);
    Ok((StatusCode::ACCEPTED, Json(d)))
}

async fn ssh_keys(st: &AppState, c: &Caller, names: &[String]) -> Result<Vec<String>, ApiError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let usable = crate::app::keypairs::usable(st, c).await?;
    names
        .iter()
        .map(|n| {
            usable
                .iter()
                .find(|k| &k.name == n)
                .map(|k| k.public_key.clone())
                .ok_or_else(|| ApiError::NotFound(format!("keypair {n:?} not found")))
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
    img: &crate::images::ImageInfo,
    params: &Params,
    nodes: &[String],
    user_data: Option<&str>,
    keys: &[String],
) -> Result<i64, ApiError> {
    let mut tx = st.db.pool.begin().await?;
    // Serializes deployments of this project (the nodes belong to it), on both backends.
    crate::app::quotas::lock_project(&mut tx, st.db.backend, project).await?;
    for n in nodes {
        if let Some(other) = crate::db::deployments::in_flight(&mut *tx, n).await? {
            return Err(ApiError::Conflict(format!("node {n:?} is being deployed by deployment {other}")));
        }
    }
    let id: i64 =
        sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 FROM deployments").fetch_one(&mut *tx).await?.try_get(0)?;
    let now = crate::now();
    sqlx::query(
        "INSERT INTO deployments (id, project, image, root_hash, state, params, created_by, created_at) \
         VALUES ($1, $2, $3, $4, 'running', $5, $6, $7)",
    )
    .bind(id)
    .bind(project)
    .bind(&img.name)
    .bind(&img.root_hash)
    .bind(serde_json::to_string(params).map_err(|e| ApiError::Internal(e.into()))?)
    .bind(user)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for n in nodes {
        sqlx::query(
            "INSERT INTO deployment_nodes (deployment, node, state, started_at, metadata_token) \
             VALUES ($1, $2, 'waiting', $3, $4)",
        )
        .bind(id)
        .bind(n)
        .bind(now_ms())
        .bind(crate::auth::random_hex(24))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("INSERT INTO deployment_userdata (deployment, user_data, ssh_keys) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(user_data.unwrap_or(""))
        .bind(keys.join("\n"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(id)
}

/// List the deployments of the caller's projects (all for an admin), newest first.
#[utoipa::path(get, path = "/v1/deployments", responses((status = 200, body = [Deployment])))]
async fn list(State(st): State<AppState>, c: Caller) -> Result<Json<Vec<Deployment>>, ApiError> {
    if c.user.is_none() {
        return Err(ApiError::Unauthenticated);
    }
    let rows = sqlx::query("SELECT id, project FROM deployments ORDER BY id DESC").fetch_all(&st.db.pool).await?;
    let mut out = Vec::new();
    for r in &rows {
        let (id, project): (i64, String) = (r.try_get(0)?, r.try_get(1)?);
        if c.has_project(&project) {
            out.push(current(&st, &c, id).await?);
        }
    }
    Ok(Json(out))
}

/// Show a deployment and every node's phase.
#[utoipa::path(get, path = "/v1/deployments/{id}", responses((status = 200, body = Deployment), (status = 404)))]
async fn show(State(st): State<AppState>, c: Caller, Path(id): Path<i64>) -> Result<Json<Deployment>, ApiError> {
    Ok(Json(current(&st, &c, id).await?))
}

/// Live progress as a server-sent event stream: one `progress` event with the
/// whole deployment on every change (coalesced), ending with an `end` event.
#[utoipa::path(get, path = "/v1/deployments/{id}/events", responses((status = 200, description = "text/event-stream of Deployment snapshots")))]
async fn events(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    let first = current(&st, &c, id).await?;
    let rx = st.deploys.get(id).map(|tx| tx.subscribe());
    enum S {
        First(Box<Deployment>, Option<watch::Receiver<Deployment>>),
        Live(watch::Receiver<Deployment>),
        End,
        Done,
    }
    let ev = |d: &Deployment| Event::default().event("progress").json_data(d).unwrap_or_default();
    let stream = futures_util::stream::unfold(S::First(Box::new(first), rx), move |s| async move {
        match s {
            S::First(d, rx) => {
                let next = match rx {
                    Some(rx) if !d.is_finished() => S::Live(rx),
                    _ => S::End,
                };
                Some((Ok(ev(&d)), next))
            }
            S::Live(mut rx) => {
                if rx.changed().await.is_err() {
                    // The deployment task ended: its last snapshot was sent already or is in the database.
                    return Some((Ok(Event::default().event("end").data("{}")), S::Done));
                }
                let d = rx.borrow_and_update().clone();
                let next = if d.is_finished() { S::End } else { S::Live(rx) };
                Some((Ok(ev(&d)), next))
            }
            S::End => Some((Ok(Event::default().event("end").data("{}")), S::Done)),
            S::Done => None,
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Deploy the failed nodes of a finished deployment again, with a new session.
#[utoipa::path(post, path = "/v1/deployments/{id}/retry", responses((status = 202, body = Deployment), (status = 409)))]
async fn retry(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<Deployment>), ApiError> {
    let d = visible(&st, &c, id).await?;
    let addr = st.provision.addr;
    if addr.is_none() && st.upstream.is_none() {
        return Err(ApiError::Exhausted("this server has no provisioning network (--provision-addr)".into()));
    }
    let params: Params = {
        let r = sqlx::query("SELECT params FROM deployments WHERE id = $1").bind(id).fetch_one(&st.db.pool).await?;
        serde_json::from_str(&r.try_get::<String, _>(0)?).map_err(|e| ApiError::Internal(e.into()))?
    };
    let mut tx = st.db.pool.begin().await?;
    crate::app::quotas::lock_project(&mut tx, st.db.backend, &d.project).await?;
    let res =
        sqlx::query("UPDATE deployments SET state = 'running', finished_at = NULL WHERE id = $1 AND state = 'failed'")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::Conflict(format!(
            "deployment {id} is {}: only a failed deployment can be retried",
            d.state
        )));
    }
    let failed: Vec<String> = d.nodes.iter().filter(|n| n.state == "failed").map(|n| n.node.clone()).collect();
    let mut nodes = Vec::new();
    for n in failed {
        // Still the project's node, and not in flight elsewhere (its row here is `failed`).
        let owned = sqlx::query("SELECT 1 FROM nodes WHERE name = $1 AND project = $2")
            .bind(&n)
            .bind(&d.project)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if owned && crate::db::deployments::in_flight(&mut *tx, &n).await?.is_none() {
            sqlx::query(
                "UPDATE deployment_nodes SET state = 'waiting', reason = '', blocks_done = 0, received = 0, \
                 rejected = 0, elapsed_ms = NULL, started_at = $3, attempts = attempts + 1 \
                 WHERE deployment = $1 AND node = $2",
            )
            .bind(id)
            .bind(&n)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            nodes.push(n);
        }
    }
    if nodes.is_empty() {
        return Err(ApiError::Conflict("no failed node of this deployment can be retried".into()));
    }
    tx.commit().await?;
    tracing::info!(id, nodes = nodes.len(), "deployment retried");
    let d = load(&st, id).await?.ok_or_else(|| ApiError::Internal("deployment vanished".into()))?;
    start(&st, d.clone(), nodes, addr, params);
    Ok((StatusCode::ACCEPTED, Json(d)))
}

/// At server start: whatever was in flight when the previous process stopped
/// has lost its sender and its progress. Mark those nodes failed with the
/// reason, and their deployments failed, so `retry` can pick them up.
pub async fn recover(st: &AppState) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE deployment_nodes SET state = 'failed', \
         reason = 'the control plane restarted during the deployment (the node may still finish on its own: retry or reclaim it)' \
         WHERE state NOT IN ('booted', 'verified', 'failed') \
         AND deployment IN (SELECT id FROM deployments WHERE state = 'running')",
    )
    .execute(&st.db.pool)
    .await?;
    sqlx::query("UPDATE deployments SET state = 'failed', finished_at = $1 WHERE state = 'running'")
        .bind(crate::now())
        .execute(&st.db.pool)
        .await?;
    Ok(r.rows_affected())
}

// ---------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------

/// Publishes `d` and runs [`execute`] in the background.
fn start(st: &AppState, d: Deployment, nodes: Vec<String>, addr: Option<Ipv4Addr>, params: Params) {
    let st = st.clone();
    tokio::spawn(async move { execute(&st, d, nodes, addr, params).await });
}

/// Runs a deployment to its end: every node terminal, the result stored.
async fn execute(st: &AppState, d: Deployment, nodes: Vec<String>, addr: Option<Ipv4Addr>, params: Params) {
    let id = d.id;
    let (tx, _) = watch::channel(d);
    st.deploys.insert(id, tx.clone());
    let result = match (&st.upstream, addr) {
        // A nested instance's nodes are the parent's: the parent's fabric deploys them.
        (Some(up), _) => drive_upstream(st, up, id, &nodes, &params, &tx).await,
        (None, Some(addr)) => drive(st, id, &nodes, addr, &params, &tx).await,
        (None, None) => Err(ApiError::Exhausted("no provisioning network".into())),
    };
    if let Err(e) = result {
        tracing::error!(id, error = %e, "deployment failed");
        for n in &nodes {
            let _ = set_node(st, &tx, id, n, |p| {
                if !TERMINAL.contains(&p.state.as_str()) {
                    p.state = "failed".into();
                    p.reason = format!("deployment error: {e}");
                }
            })
            .await;
        }
    }
    if let Err(e) = finish(st, id, &tx).await {
        tracing::error!(id, error = %e, "cannot record the end of a deployment");
    }
    st.deploys.remove(id);
}

/// Deploys `image` to `nodes` of `project` with a kexec hand-over and waits
/// for the end (used by reclaim to bring the runtime back). The deployment is
/// recorded like any other.
pub(crate) async fn run_and_wait(
    st: &AppState,
    user: &str,
    project: &str,
    image: &str,
    nodes: &[String],
    timeout_secs: u64,
) -> Result<Deployment, ApiError> {
    let addr = st.provision.addr;
    let img = crate::images::load_any(st, image).await?.ok_or_else(|| ApiError::not_found("image", image))?;
    let params = Params {
        target: TargetSpec::Memory,
        handover: HandoverSpec::Kexec,
        cmdline_append: String::new(),
        rate_mbit: st.provision.rate_mbit,
        timeout_secs,
    };
    let id = insert(st, user, project, &img, &params, nodes, None, &[]).await?;
    let d = load(st, id).await?.ok_or_else(|| ApiError::Internal("deployment vanished".into()))?;
    execute(st, d, nodes.to_vec(), addr, params).await;
    load(st, id).await?.ok_or_else(|| ApiError::Internal("deployment vanished".into()))
}

/// Applies `f` to `node`'s progress, publishes it, and stores it. Entering a
/// terminal state stamps the node's elapsed time.
async fn set_node(
    st: &AppState,
    tx: &watch::Sender<Deployment>,
    id: i64,
    node: &str,
    f: impl FnOnce(&mut NodeProgress),
) -> Result<(), ApiError> {
    let mut out = None;
    tx.send_modify(|d| {
        if let Some(p) = d.nodes.iter_mut().find(|p| p.node == node) {
            f(p);
            if TERMINAL.contains(&p.state.as_str()) && p.elapsed_ms.is_none() {
                p.elapsed_ms = Some((now_ms() - p.started_at_ms).max(0));
            }
            out = Some(p.clone());
        }
    });
    let Some(p) = out else { return Ok(()) };
    sqlx::query(
        "UPDATE deployment_nodes SET state = $3, reason = $4, blocks_done = $5, blocks_total = $6, received = $7, \
         rejected = $8, elapsed_ms = $9 WHERE deployment = $1 AND node = $2",
    )
    .bind(id)
    .bind(node)
    .bind(&p.state)
    .bind(&p.reason)
    .bind(p.blocks_done)
    .bind(p.blocks_total)
    .bind(p.received)
    .bind(p.rejected)
    .bind(p.elapsed_ms)
    .execute(&st.db.pool)
    .await?;
    Ok(())
}

/// Current time as unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn finish(st: &AppState, id: i64, tx: &watch::Sender<Deployment>) -> Result<(), ApiError> {
    let failed = tx.borrow().nodes.iter().any(|n| n.state == "failed");
    let state = if failed { "failed" } else { "done" };
    let summary = tx.borrow().summary.clone();
    sqlx::query("UPDATE deployments SET state = $2, finished_at = $3, summary = $4 WHERE id = $1")
        .bind(id)
        .bind(state)
        .bind(crate::now())
        .bind(summary.map(|s| s.to_string()))
        .execute(&st.db.pool)
        .await?;
    let fresh = load(st, id).await?;
    tx.send_modify(|d| {
        if let Some(f) = fresh {
            *d = f;
        }
    });
    tracing::info!(id, state, "deployment finished");
    Ok(())
}

/// Why a disk target `device` may not be written on the node whose runtime
/// checked in as `mac`: it is not one of the disks of its registered
/// inventory (the node's disk-write guard checks again).
fn not_in_inventory(st: &AppState, mac: &str, device: &str) -> Option<String> {
    let disks: Vec<String> = st
        .runtime
        .node(mac)
        .and_then(|r| r.last_checkin().map(|c| c.inventory.disks.iter().map(|d| format!("/dev/{}", d.name)).collect()))
        .unwrap_or_default();
    (!disks.iter().any(|d| d == device)).then(|| {
        format!(
            "disk write refused: {device} is not in this node's inventory (its disks: {})",
            if disks.is_empty() { "none".to_string() } else { disks.join(", ") }
        )
    })
}

/// A node taking part in this session.
struct Member {
    node: String,
    mac: String,
    ip: String,
    boot_id: String,
    instruction: u64,
}

/// Multicast group and port of a session: distinct per deployment and attempt.
fn session_addr(id: i64, attempt: i64) -> (Ipv4Addr, u16) {
    let n = (id.unsigned_abs().wrapping_mul(16).wrapping_add(attempt.unsigned_abs())) % 60_000;
    let group = Ipv4Addr::new(239, 78, (n >> 8) as u8, (n & 0xff) as u8);
    (group, 20_000 + 2 * (n % 20_000) as u16)
}

async fn drive(
    st: &AppState,
    id: i64,
    nodes: &[String],
    addr: Ipv4Addr,
    params: &Params,
    tx: &watch::Sender<Deployment>,
) -> Result<(), ApiError> {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(params.timeout_secs);
    let r =
        sqlx::query("SELECT image, root_hash FROM deployments WHERE id = $1").bind(id).fetch_one(&st.db.pool).await?;
    let (image, root_hash): (String, String) = (r.try_get(0)?, r.try_get(1)?);
    let path = st.registry.bundle_path(&image);
    let bundle = tokio::task::spawn_blocking(move || Bundle::open(&path))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Conflict(format!("image {image:?} cannot be opened: {e}")))?;
    if bundle.manifest.root_hash != root_hash {
        return Err(ApiError::Conflict(format!("image {image:?} changed since the deployment was created")));
    }
    let blocks_total = bundle.manifest.stored_chunks().count() as i64;
    let attempt = tx.borrow().nodes.iter().map(|n| n.attempts).max().unwrap_or(1);

    // 1. Every node's runtime: the MAC of one of its NICs must have checked in.
    let join = Duration::from_secs(30).min(deadline.saturating_duration_since(Instant::now()));
    let mut members = Vec::new();
    let finding = nodes.iter().map(|n| find_runtime(st, n, join));
    for (n, found) in nodes.iter().zip(futures_util::future::join_all(finding).await) {
        match found? {
            Some((mac, ip, boot_id)) => {
                if let TargetSpec::Disk { device } = &params.target
                    && let Some(why) = not_in_inventory(st, &mac, device)
                {
                    set_node(st, tx, id, n, |p| {
                        p.state = "failed".into();
                        p.reason = why;
                    })
                    .await?;
                    continue;
                }
                members.push(Member { node: n.clone(), mac, ip, boot_id, instruction: 0 })
            }
            None => {
                set_node(st, tx, id, n, |p| {
                    p.state = "failed".into();
                    p.reason = format!("no runtime checked in from this node's NICs within {}s: is it booted into the metalcast runtime?", join.as_secs());
                })
                .await?;
            }
        }
    }
    if members.is_empty() {
        return Ok(());
    }

    // 2. The session, and the instruction for every node.
    let (group, port) = session_addr(id, attempt);
    let spec = SessionSpec::new(
        &bundle.manifest.root_hash,
        SocketAddrV4::new(group, port),
        SocketAddrV4::new(addr, port + 1),
        st.provision.mtu,
    )
    .map_err(|e| ApiError::Internal(e.into()))?;
    sqlx::query("UPDATE deployments SET session_group = $2 WHERE id = $1")
        .bind(id)
        .bind(format!("{group}:{port}"))
        .execute(&st.db.pool)
        .await?;
    tx.send_modify(|d| d.session = Some(format!("{group}:{port}")));
    let manifest_b64 = Deploy::encode_manifest(&bundle.signed_manifest().to_bytes());
    let tokens: HashMap<String, String> =
        sqlx::query("SELECT node, metadata_token FROM deployment_nodes WHERE deployment = $1")
            .bind(id)
            .fetch_all(&st.db.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
    for m in &mut members {
        let token = tokens.get(&m.node).ok_or_else(|| ApiError::Internal("a node without a metadata token".into()))?;
        let mut cmdline = params.cmdline_append.clone();
        if let Some(base) = metadata_base(st) {
            // cloud-init NoCloud: `ds=nocloud;s=URL` (the `;` is part of the one kernel argument).
            cmdline = format!("{cmdline} ds=nocloud;s={base}/v1/metadata/{token}/").trim().to_string();
        }
        let action = Action::Deploy(Deploy {
            session: spec.clone(),
            manifest_b64: manifest_b64.clone(),
            target: match &params.target {
                TargetSpec::Memory => Target::Memory,
                TargetSpec::Disk { device } => Target::Disk { device: device.clone() },
            },
            handover: match params.handover {
                HandoverSpec::Kexec => Handover::Kexec,
                HandoverSpec::Vm => Handover::Vm,
                HandoverSpec::None => Handover::None,
            },
            cmdline_append: cmdline,
            idle_timeout_secs: 30,
        });
        m.instruction = st.runtime.push(&m.mac, action).map_err(|e| ApiError::Internal(e.into()))?;
        set_node(st, tx, id, &m.node, |p| {
            p.blocks_total = blocks_total;
            p.reason = String::new();
        })
        .await?;
    }

    // 3. The sender, on a blocking thread; its progress goes straight to the watch channel.
    let by_ip: HashMap<String, String> = members.iter().map(|m| (m.ip.clone(), m.node.clone())).collect();
    let cfg = SenderConfig {
        local: addr,
        rate: (params.rate_mbit > 0).then_some(params.rate_mbit * 1_000_000 / 8),
        expected_receivers: members.len(),
        join_timeout: Duration::from_secs(30),
        receiver_timeout: Duration::from_secs(15),
        deadline: Some(deadline.saturating_duration_since(Instant::now())),
        ..Default::default()
    };
    let (stx, spec2) = (tx.clone(), spec.clone());
    let sender = tokio::task::spawn_blocking(move || {
        let s = Sender::new(&spec2, &bundle, cfg)?;
        let mut last = Instant::now() - Duration::from_secs(1);
        s.run(&mut |p| {
            if last.elapsed() < Duration::from_millis(200) {
                return;
            }
            last = Instant::now();
            stx.send_if_modified(|d| {
                let mut changed = false;
                for r in &p.receivers {
                    let ip = r.addr.rsplit_once(':').map_or(r.addr.as_str(), |(ip, _)| ip);
                    let Some(node) = by_ip.get(ip) else { continue };
                    if let Some(n) = d.nodes.iter_mut().find(|n| &n.node == node) {
                        if n.state == "waiting" {
                            n.state = "receiving".into();
                        }
                        if n.blocks_done != i64::from(r.blocks_done) {
                            n.blocks_done = i64::from(r.blocks_done);
                            changed = true;
                        }
                    }
                }
                changed
            });
        })
    });

    // 4. Follow every node's reports until it is terminal.
    let sender_done = Arc::new(tokio::sync::Notify::new());
    let sender_finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let followers = members.iter().map(|m| {
        let (sd, sf) = (Arc::clone(&sender_done), Arc::clone(&sender_finished));
        follow(st, tx, id, m, params.handover, deadline, sd, sf)
    });
    let sender_task = async {
        let r = sender.await;
        sender_finished.store(true, std::sync::atomic::Ordering::SeqCst);
        sender_done.notify_waiters();
        r
    };
    let (summary, results) = tokio::join!(sender_task, futures_util::future::join_all(followers));
    for r in results {
        r?;
    }
    match summary {
        Ok(Ok(s)) => {
            let v = serde_json::to_value(&s).map_err(|e| ApiError::Internal(e.into()))?;
            tx.send_modify(|d| d.summary = Some(v.clone()));
            sqlx::query("UPDATE deployments SET summary = $2 WHERE id = $1")
                .bind(id)
                .bind(v.to_string())
                .execute(&st.db.pool)
                .await?;
        }
        Ok(Err(e)) => tracing::warn!(id, error = %e, "sender failed"),
        Err(e) => tracing::warn!(id, error = %e, "sender panicked"),
    }
    Ok(())
}

/// A nested instance's deployment: the image goes to the parent (private to
/// our project there), the parent deploys, and its per-node progress is
/// mirrored here until it ends. Nothing is recorded here that the parent did
/// not report.
async fn drive_upstream(
    st: &AppState,
    up: &crate::upstream::Upstream,
    id: i64,
    nodes: &[String],
    params: &Params,
    tx: &watch::Sender<Deployment>,
) -> Result<(), ApiError> {
    let r = sqlx::query(
        "SELECT d.image, d.root_hash, u.user_data FROM deployments d \
         LEFT JOIN deployment_userdata u ON u.deployment = d.id WHERE d.id = $1",
    )
    .bind(id)
    .fetch_one(&st.db.pool)
    .await?;
    let (image, root_hash, user_data): (String, String, Option<String>) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
    let parent_image = up.image_name(&root_hash);
    up.ensure_image(&parent_image, &st.registry.bundle_path(&image), &root_hash).await?;
    let mut body = serde_json::json!({
        "image": parent_image,
        "nodes": nodes,
        "target": params.target,
        "handover": params.handover,
        "cmdline_append": params.cmdline_append,
        "timeout_secs": params.timeout_secs,
    });
    if let Some(u) = user_data.filter(|u| !u.is_empty()) {
        body["user_data"] = u.into();
    }
    if params.rate_mbit > 0 {
        body["rate_mbit"] = params.rate_mbit.into();
    }
    let parent = up.deploy(body).await?;
    let pid = parent["id"].as_i64().ok_or_else(|| ApiError::Internal("the parent's deployment has no id".into()))?;
    let session = format!("parent deployment {pid}");
    sqlx::query("UPDATE deployments SET session_group = $2 WHERE id = $1")
        .bind(id)
        .bind(&session)
        .execute(&st.db.pool)
        .await?;
    tx.send_modify(|d| d.session = Some(session.clone()));
    tracing::info!(id, parent = pid, "deployment delegated to the parent");
    // Follow the parent until it ends; an unreachable parent is retried until the deadline.
    let deadline = Instant::now() + Duration::from_secs(params.timeout_secs + 120);
    let mut wait = Duration::from_millis(200);
    loop {
        match up.deployment(pid).await {
            Ok(v) => {
                let d: Deployment = serde_json::from_value(v).map_err(|e| ApiError::Internal(e.into()))?;
                for n in &d.nodes {
                    let same = tx.borrow().nodes.iter().any(|p| {
                        p.node == n.node
                            && (p.state.as_str(), p.reason.as_str(), p.blocks_done, p.blocks_total)
                                == (n.state.as_str(), n.reason.as_str(), n.blocks_done, n.blocks_total)
                    });
                    if !same {
                        set_node(st, tx, id, &n.node, |p| {
                            p.state = n.state.clone();
                            p.reason = n.reason.clone();
                            p.blocks_done = n.blocks_done;
                            p.blocks_total = n.blocks_total;
                            p.received = n.received;
                            p.rejected = n.rejected;
                        })
                        .await?;
                    }
                }
                if d.is_finished() {
                    tx.send_modify(|x| x.summary = d.summary.clone());
                    return Ok(());
                }
                wait = Duration::from_millis(500);
            }
            Err(e @ crate::upstream::UpstreamError::Unreachable(_)) => {
                tracing::warn!(id, parent = pid, error = %e, "cannot follow the parent's deployment; retrying");
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            return Err(ApiError::Unprocessable(format!("the parent's deployment {pid} did not end in time")));
        }
        tokio::time::sleep(wait).await;
    }
}

/// Base URL of this server as nodes see it, for the metadata seed.
fn metadata_base(st: &AppState) -> Option<String> {
    st.provision.public_url.clone().map(|u| u.trim_end_matches('/').to_string())
}

/// Waits up to `wait` for a runtime check-in from one of `node`'s NIC MACs;
/// returns (mac, address, boot id) of the newest.
pub(crate) async fn find_runtime(
    st: &AppState,
    node: &str,
    wait: Duration,
) -> Result<Option<(String, String, String)>, ApiError> {
    let rows =
        sqlx::query("SELECT macaddr FROM nics WHERE node = $1 ORDER BY name").bind(node).fetch_all(&st.db.pool).await?;
    let macs = rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<Vec<_>, _>>()?;
    let t_end = Instant::now() + wait;
    loop {
        for mac in &macs {
            if let Some(c) = st.runtime.node(mac).and_then(|r| r.last_checkin().cloned()) {
                return Ok(Some((c.node, c.address, c.boot_id)));
            }
        }
        let left = t_end.saturating_duration_since(Instant::now());
        if left.is_zero() || macs.is_empty() {
            return Ok(None);
        }
        // Any check-in wakes us; re-check every MAC.
        let Some(mac) = macs.first() else { return Ok(None) };
        let seen = st.runtime.node(mac).map_or(0, |r| r.checkins.len());
        let _ = st.runtime.wait_for(mac, left.min(Duration::from_secs(1)), |r| r.checkins.len() > seen).await;
    }
}

fn rejected_total(data: &serde_json::Value) -> i64 {
    data.get("rejected")
        .and_then(|r| r.as_object())
        .map_or(0, |o| o.values().filter_map(serde_json::Value::as_i64).sum())
}

/// Follows one node's reports (and, after a kexec, its next check-in or metadata fetch) until terminal.
#[allow(clippy::too_many_arguments)]
async fn follow(
    st: &AppState,
    tx: &watch::Sender<Deployment>,
    id: i64,
    m: &Member,
    handover: HandoverSpec,
    deadline: Instant,
    sender_done: Arc<tokio::sync::Notify>,
    sender_finished: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), ApiError> {
    let mut seen_reports = 0usize;
    let mut after_sender: Option<Instant> = None;
    loop {
        let state = tx.borrow().nodes.iter().find(|n| n.node == m.node).map(|n| n.state.clone()).unwrap_or_default();
        if TERMINAL.contains(&state.as_str()) {
            return Ok(());
        }
        let rec = st.runtime.node(&m.mac).unwrap_or_default();
        // New phase reports for our instruction.
        let mine: Vec<_> = rec.reports.iter().filter(|r| r.instruction == m.instruction).cloned().collect();
        for r in mine.iter().skip(seen_reports) {
            let (phase, status) = (r.phase, r.status);
            let detail = r.detail.clone();
            let data = r.data.clone();
            set_node(st, tx, id, &m.node, |p| match status {
                Status::Failed => {
                    p.state = "failed".into();
                    p.reason =
                        format!("{} failed (exit {}): {detail}", format!("{phase:?}").to_lowercase(), r.exit_code);
                }
                Status::Ok => match phase {
                    Phase::Accept => p.state = "receiving".into(),
                    Phase::Receive => {
                        p.state = "verifying".into();
                        p.blocks_done = p.blocks_total;
                        p.received = data.get("received").and_then(serde_json::Value::as_i64).unwrap_or(0);
                        p.rejected = rejected_total(&data);
                        p.reason = detail.clone();
                    }
                    Phase::Flush | Phase::Wipe | Phase::VmExit | Phase::Seed => {}
                    Phase::Verify => {
                        p.state = if handover == HandoverSpec::None { "verified".into() } else { "handover".into() };
                    }
                    Phase::Handover => {
                        // The node says what it did: an agent told to stay (`--handover none`, e.g. a
                        // namespace node that cannot kexec) ends verified.
                        let did = data.get("handover").and_then(serde_json::Value::as_str).unwrap_or("");
                        p.state = match (did, handover) {
                            ("none", _) | (_, HandoverSpec::None) => "verified".into(),
                            (_, HandoverSpec::Vm) => "booted".into(),
                            _ => "booting".into(),
                        };
                        p.reason = detail.clone();
                    }
                },
            })
            .await?;
        }
        seen_reports = mine.len();
        let state = tx.borrow().nodes.iter().find(|n| n.node == m.node).map(|n| n.state.clone()).unwrap_or_default();
        // After a kexec: a check-in with a new boot id, or a metadata fetch, says the new system is up.
        if state == "booting" {
            let booted_by_checkin = rec.last_checkin().is_some_and(|c| c.boot_id != m.boot_id);
            let booted_by_metadata = st.deploys.fetched(id, &m.node);
            if booted_by_checkin || booted_by_metadata {
                let how = if booted_by_checkin { "checked in from the new system" } else { "metadata fetched" };
                set_node(st, tx, id, &m.node, |p| {
                    p.state = "booted".into();
                    p.reason = how.into();
                })
                .await?;
                continue;
            }
        }
        // Deadlines.
        let now = Instant::now();
        if sender_finished.load(std::sync::atomic::Ordering::SeqCst) && after_sender.is_none() {
            after_sender = Some(now);
        }
        let stuck_receiving = after_sender.is_some_and(|t| now.duration_since(t) > Duration::from_secs(60))
            && matches!(state.as_str(), "waiting" | "receiving");
        if stuck_receiving || now >= deadline {
            let why = if stuck_receiving {
                if rec.delivered.contains(&m.instruction) {
                    "no report from the node's runtime after the session ended (it timed out or died)".to_string()
                } else {
                    "the node's runtime never picked up the instruction".to_string()
                }
            } else {
                format!("timed out in state {state}")
            };
            set_node(st, tx, id, &m.node, |p| {
                p.state = "failed".into();
                p.reason = why;
            })
            .await?;
            return Ok(());
        }
        // Wait for anything that can move this node on.
        let reports = rec.reports.len();
        let checkins = rec.checkins.len();
        let wait = deadline.saturating_duration_since(now).min(Duration::from_secs(5));
        let runtime_change =
            st.runtime.wait_for(&m.mac, wait, |r| r.reports.len() > reports || r.checkins.len() > checkins);
        tokio::select! {
            _ = runtime_change => {}
            _ = sender_done.notified() => {}
            _ = st.deploys.metadata_fetched.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_differ_per_deployment_and_attempt() {
        let mut seen = std::collections::HashSet::new();
        for id in 1..200 {
            for attempt in 1..4 {
                let (g, p) = session_addr(id, attempt);
                assert!(g.is_multicast() && g.octets()[0] == 239, "{g}");
                assert!(p >= 20_000 && p % 2 == 0);
                assert!(seen.insert((g, p)), "collision at {id}/{attempt}");
            }
        }
    }

    #[test]
    fn request_rejects_unknown_fields() {
        let ok: Result<DeployRequest, _> = serde_json::from_str(r#"{"image":"i","nodes":["a"]}"#);
        assert!(ok.is_ok());
        let bad: Result<DeployRequest, _> = serde_json::from_str(r#"{"image":"i","nodes":["a"],"sudo":true}"#);
        assert!(bad.is_err());
        let t: DeployRequest = serde_json::from_str(
            r#"{"image":"i","project":"p","target":{"kind":"disk","device":"/dev/vda"},"handover":"none"}"#,
        )
        .unwrap();
        assert_eq!(t.target, TargetSpec::Disk { device: "/dev/vda".into() });
        assert_eq!(t.handover, HandoverSpec::None);
    }
}
