//! Recursive HaaS: a nested control plane whose inventory is the nodes one
//! project holds at a parent metalcast (`serve --upstream URL
//! --upstream-project P --upstream-token T`).
//!
//! * [`Upstream`] is the REST client of the parent's `/v0` API, acting as a
//!   member of project `P`. Every error it returns is an [`UpstreamError`]
//!   whose text is safe for API callers (no URL, no token, no addresses).
//! * The `upstream` BMC driver ([`crate::drivers::ObmConfig::Upstream`]) and
//!   the `upstream` switch driver ([`crate::drivers::SwitchConfig::Upstream`])
//!   delegate power, boot device, console and NIC connect/detach to the
//!   parent, through the same handlers and networking actions every other
//!   driver uses. The drivers find their client in a process-wide table keyed
//!   by (URL, project), filled by [`register`] (the token never enters the
//!   database).
//! * A nested network with VLAN label `v` maps onto the parent network
//!   `<P>-v<v>`, created (owner and access `P`) when the nested network is
//!   created and deleted with it ([`Upstream::network_name`]).
//! * [`spawn_sync`] imports the nodes of `P` (with their NICs and metadata)
//!   and removes nodes the parent took back, recording the reason as a node
//!   event (`GET /v1/events`). It runs every `sync_interval`, immediately
//!   when a driver call finds a node gone upstream, and backs off
//!   exponentially (up to [`MAX_BACKOFF`]) while the parent is unreachable.
//! * Deployments are delegated: the nested instance uploads the image to the
//!   parent (private to `P`, [`Upstream::ensure_image`]), creates the
//!   deployment there as `P` and mirrors the parent's per-node progress into
//!   its own deployment (`deploy.rs`); at the root the multicast really runs.
//!
//! See `docs/recursion.md`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;

use crate::app::AppState;
use crate::authz::Caller;
use crate::drivers::{ObmConfig, PowerOp, SwitchConfig};
use crate::http::ApiError;

/// Longest wait between sync attempts while the parent is unreachable.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Timeout of one HTTP request to the parent.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a delegated networking action may stay PENDING at the parent.
const ACTION_TIMEOUT: Duration = Duration::from_secs(300);

/// Failure of a call to the parent. The text is what nested API callers see:
/// it never contains the parent's URL, the token or transport details.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// No HTTP answer from the parent (connection refused, timeout, TLS).
    #[error("upstream unreachable: {0}")]
    Unreachable(&'static str),
    /// The parent answered with an error status; `msg` is the parent's own
    /// public error message.
    #[error("upstream refused the request ({status}): {msg}")]
    Refused {
        /// HTTP status returned by the parent.
        status: u16,
        /// The parent's `msg` field.
        msg: String,
    },
    /// The parent no longer grants this node to our project.
    #[error("upstream: node {0:?} is no longer granted to this control plane")]
    NodeGone(String),
    /// A delegated networking action ended in ERROR (or never finished) at the parent.
    #[error("upstream networking action {0}")]
    ActionFailed(&'static str),
    /// The parent's answer did not have the expected shape.
    #[error("upstream sent an unexpected response")]
    BadResponse,
    /// No client is registered for this driver configuration (the server
    /// was started without the matching `--upstream`).
    #[error("upstream not configured in this server")]
    NotConfigured,
}

/// Connection settings of a nested control plane.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// Base URL of the parent, e.g. `http://10.0.0.1:7000`.
    pub url: String,
    /// The project at the parent whose nodes this instance serves.
    pub project: String,
    /// API token (`mct_...`) of a member of `project` at the parent.
    pub token: String,
    /// Interval between inventory syncs.
    pub sync_interval: Duration,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("url", &self.url)
            .field("project", &self.project)
            .field("token", &"***")
            .field("sync_interval", &self.sync_interval)
            .finish()
    }
}

/// REST client of the parent control plane, acting for one project.
#[derive(Debug)]
pub struct Upstream {
    cfg: UpstreamConfig,
    http: reqwest::Client,
    /// Wakes the sync task early (a driver call found a node gone).
    kick: tokio::sync::Notify,
}

/// Registered clients by (parent URL, project).
type Clients = Mutex<HashMap<(String, String), Arc<Upstream>>>;

fn table() -> &'static Clients {
    static T: OnceLock<Clients> = OnceLock::new();
    T.get_or_init(Default::default)
}

/// Make `up` the client the `upstream` drivers use for its (URL, project).
pub fn register(up: Arc<Upstream>) {
    let key = (up.cfg.url.clone(), up.cfg.project.clone());
    table().lock().unwrap_or_else(|p| p.into_inner()).insert(key, up);
}

/// The registered client for (URL, project).
pub fn client(url: &str, project: &str) -> Result<Arc<Upstream>, UpstreamError> {
    table()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(url.to_string(), project.to_string()))
        .cloned()
        .ok_or(UpstreamError::NotConfigured)
}

/// Percent-encode one path segment (names are `[A-Za-z0-9_.-]` already;
/// this keeps anything else from changing the path).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Upstream {
    /// Build the client (no request is made).
    pub fn new(mut cfg: UpstreamConfig) -> Result<Arc<Upstream>, String> {
        crate::install_tls_provider();
        if !(cfg.url.starts_with("http://") || cfg.url.starts_with("https://")) {
            return Err("--upstream must be an http:// or https:// URL".into());
        }
        cfg.url = cfg.url.trim_end_matches('/').to_string();
        crate::names::check_name("project", &cfg.project)?;
        if cfg.token.trim().is_empty() {
            return Err("the upstream token is empty".into());
        }
        cfg.token = cfg.token.trim().to_string();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Arc::new(Upstream { cfg, http, kick: tokio::sync::Notify::new() }))
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &UpstreamConfig {
        &self.cfg
    }

    /// Driver configuration of an imported node's BMC.
    pub fn obm_for(&self, node: &str) -> ObmConfig {
        ObmConfig::Upstream { url: self.cfg.url.clone(), project: self.cfg.project.clone(), node: node.into() }
    }

    /// Driver configuration of an imported node's switch (one per node;
    /// its ports are the node's NIC names).
    pub fn switch_for(&self, node: &str) -> SwitchConfig {
        SwitchConfig::Upstream { url: self.cfg.url.clone(), project: self.cfg.project.clone(), node: node.into() }
    }

    /// Name of the parent network that carries the nested network with
    /// VLAN label `vlan`: `<project>-v<vlan>` (unique at the parent, since
    /// project names are).
    pub fn network_name(&self, vlan: u16) -> String {
        format!("{}-v{vlan}", self.cfg.project)
    }

    /// Wake the sync task now.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    async fn request(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, UpstreamError> {
        let url = format!("{}{path}", self.cfg.url);
        let mut rb = self.http.request(method, &url).bearer_auth(&self.cfg.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.map_err(|e| {
            tracing::warn!(path, error = %e, "upstream request failed");
            UpstreamError::Unreachable(if e.is_timeout() {
                "request timed out"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            })
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|_| UpstreamError::Unreachable("connection lost"))?;
        let v: Value =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        if status.is_success() {
            return Ok(v);
        }
        let msg = v["msg"].as_str().unwrap_or_else(|| status.canonical_reason().unwrap_or("error"));
        // Keep the parent's public message, bounded.
        let msg: String = msg.chars().take(300).collect();
        Err(UpstreamError::Refused { status: status.as_u16(), msg })
    }

    /// Like [`Upstream::request`] for a call about one node: 403/404 mean the
    /// parent took the node back; the sync task is woken to drop it here.
    async fn node_request(
        &self,
        node: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, UpstreamError> {
        match self.request(method, path, body).await {
            Err(UpstreamError::Refused { status: 403 | 404, .. }) => {
                self.kick();
                Err(UpstreamError::NodeGone(node.into()))
            }
            other => other,
        }
    }

    /// Names of the nodes our project holds at the parent.
    pub async fn project_nodes(&self) -> Result<Vec<String>, UpstreamError> {
        let v =
            self.request(reqwest::Method::GET, &format!("/v0/project/{}/nodes", seg(&self.cfg.project)), None).await?;
        serde_json::from_value(v).map_err(|_| UpstreamError::BadResponse)
    }

    /// The parent's `show_node` of `node`.
    pub async fn node(&self, node: &str) -> Result<Value, UpstreamError> {
        self.node_request(node, reqwest::Method::GET, &format!("/v0/node/{}", seg(node)), None).await
    }

    /// Power action at the parent.
    pub async fn power(&self, node: &str, op: PowerOp) -> Result<(), UpstreamError> {
        let verb = match op {
            PowerOp::On => "power_on",
            PowerOp::Off => "power_off",
            PowerOp::Cycle => "power_cycle",
        };
        let path = format!("/v0/node/{}/{verb}", seg(node));
        self.node_request(node, reqwest::Method::POST, &path, None).await.map(drop)
    }

    /// Power status at the parent (true = on).
    pub async fn power_status(&self, node: &str) -> Result<bool, UpstreamError> {
        let path = format!("/v0/node/{}/power_status", seg(node));
        let v = self.node_request(node, reqwest::Method::GET, &path, None).await?;
        match v["power_status"].as_str() {
            Some("on") => Ok(true),
            Some("off") => Ok(false),
            _ => Err(UpstreamError::BadResponse),
        }
    }

    /// Boot device at the parent.
    pub async fn set_bootdev(&self, node: &str, dev: &str) -> Result<(), UpstreamError> {
        let path = format!("/v0/node/{}/boot_device", seg(node));
        self.node_request(node, reqwest::Method::PUT, &path, Some(json!({ "bootdev": dev }))).await.map(drop)
    }

    /// Start the parent's console capture of `node`.
    pub async fn console_start(&self, node: &str) -> Result<(), UpstreamError> {
        let path = format!("/v0/node/{}/console", seg(node));
        self.node_request(node, reqwest::Method::PUT, &path, None).await.map(drop)
    }

    /// The parent's console log of `node` (text).
    pub async fn console_show(&self, node: &str) -> Result<String, UpstreamError> {
        let path = format!("/v0/node/{}/console", seg(node));
        let url = format!("{}{path}", self.cfg.url);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.cfg.token)
            .send()
            .await
            .map_err(|_| UpstreamError::Unreachable("request failed"))?;
        let status = resp.status();
        if status == reqwest::StatusCode::FORBIDDEN {
            self.kick();
            return Err(UpstreamError::NodeGone(node.into()));
        }
        if !status.is_success() {
            return Err(UpstreamError::Refused { status: status.as_u16(), msg: "console log unavailable".into() });
        }
        resp.text().await.map_err(|_| UpstreamError::Unreachable("connection lost"))
    }

    /// Stop the parent's console capture of `node`.
    pub async fn console_stop(&self, node: &str) -> Result<(), UpstreamError> {
        let path = format!("/v0/node/{}/console", seg(node));
        self.node_request(node, reqwest::Method::DELETE, &path, None).await.map(drop)
    }

    /// Create the parent network `name`, owned by and accessible to our project.
    pub async fn network_create(&self, name: &str) -> Result<(), UpstreamError> {
        let body = json!({ "owner": self.cfg.project, "access": self.cfg.project, "net_id": "" });
        self.request(reqwest::Method::PUT, &format!("/v0/network/{}", seg(name)), Some(body)).await.map(drop)
    }

    /// Delete the parent network `name` (already gone counts as deleted).
    pub async fn network_delete(&self, name: &str) -> Result<(), UpstreamError> {
        match self.request(reqwest::Method::DELETE, &format!("/v0/network/{}", seg(name)), None).await {
            Err(UpstreamError::Refused { status: 404, .. }) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Connect (`Some(network)`) or detach (`None`, from `detach_from`) a NIC
    /// at the parent and wait until the parent's networking action is DONE.
    async fn nic_action(&self, node: &str, nic: &str, verb: &str, network: &str) -> Result<(), UpstreamError> {
        let path = format!("/v0/node/{}/nic/{}/{verb}", seg(node), seg(nic));
        let v = self.node_request(node, reqwest::Method::POST, &path, Some(json!({ "network": network }))).await?;
        let id = v["status_id"].as_str().ok_or(UpstreamError::BadResponse)?.to_string();
        self.wait_action(node, &id).await
    }

    /// Poll the parent's networking action `id` until it leaves PENDING.
    async fn wait_action(&self, node: &str, id: &str) -> Result<(), UpstreamError> {
        let path = format!("/v0/networking_action/{}", seg(id));
        let deadline = tokio::time::Instant::now() + ACTION_TIMEOUT;
        // Short first pauses: each nesting level polls its parent, so long
        // ones would add up along the chain.
        let mut pause = Duration::from_millis(2);
        loop {
            let v = self.node_request(node, reqwest::Method::GET, &path, None).await?;
            match v["status"].as_str() {
                Some("DONE") => return Ok(()),
                Some("ERROR") => return Err(UpstreamError::ActionFailed("ended in ERROR at the parent")),
                Some("PENDING") => {}
                _ => return Err(UpstreamError::BadResponse),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(UpstreamError::ActionFailed("did not finish at the parent in time"));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 3 / 2).min(Duration::from_millis(250));
        }
    }

    /// Connect `node`'s `nic` to the parent network `network` (native channel).
    pub async fn connect(&self, node: &str, nic: &str, network: &str) -> Result<(), UpstreamError> {
        self.nic_action(node, nic, "connect_network", network).await
    }

    /// Detach `node`'s `nic` from the parent network `network`. The parent
    /// answering that the network is not attached (its admin detached it
    /// already) counts as done: that is the state asked for, confirmed.
    pub async fn detach(&self, node: &str, nic: &str, network: &str) -> Result<(), UpstreamError> {
        match self.nic_action(node, nic, "detach_network", network).await {
            Err(UpstreamError::Refused { status: 409, msg }) if msg.contains("not attached") => {
                tracing::info!(%node, %nic, %network, "already detached at the parent");
                Ok(())
            }
            other => other,
        }
    }

    /// The parent's node events visible to our project (newest last).
    pub async fn events(&self) -> Result<Vec<NodeEvent>, UpstreamError> {
        let v = self.request(reqwest::Method::GET, "/v1/events", None).await?;
        serde_json::from_value(v).map_err(|_| UpstreamError::BadResponse)
    }

    /// The name an image of ours gets at the parent: `<project>-<first 16 hex
    /// of its root hash>` (private to our project there; the same bundle is
    /// uploaded once whatever it is called here).
    pub fn image_name(&self, root_hash: &str) -> String {
        format!("{}-{}", self.cfg.project, &root_hash[..root_hash.len().min(16)])
    }

    /// Makes sure the parent has the bundle at `path` (root hash `root_hash`)
    /// as image `name`, private to our project: uploads it if missing. The
    /// parent checks the signature against its own trusted keys.
    pub async fn ensure_image(&self, name: &str, path: &std::path::Path, root_hash: &str) -> Result<(), UpstreamError> {
        match self.request(reqwest::Method::GET, &format!("/v1/images/{}", seg(name)), None).await {
            Ok(v) if v["root_hash"].as_str() == Some(root_hash) => return Ok(()),
            Ok(_) => {
                return Err(UpstreamError::Refused {
                    status: 409,
                    msg: format!("the parent has another image named {name:?}"),
                });
            }
            Err(UpstreamError::Refused { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        let f = tokio::fs::File::open(path)
            .await
            .map_err(|_| UpstreamError::Unreachable("cannot read the image bundle"))?;
        let len = f.metadata().await.map_err(|_| UpstreamError::Unreachable("cannot read the image bundle"))?.len();
        let url = format!("{}/v1/images/{}?project={}", self.cfg.url, seg(name), seg(&self.cfg.project));
        let resp = self
            .http
            .put(&url)
            .bearer_auth(&self.cfg.token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .timeout(Duration::from_secs(3600))
            .body(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f)))
            .send()
            .await
            .map_err(|_| UpstreamError::Unreachable("image upload failed"))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        let msg: String = v["msg"].as_str().unwrap_or("image upload refused").chars().take(300).collect();
        Err(UpstreamError::Refused { status: status.as_u16(), msg })
    }

    /// Asks the parent to deploy (`POST /v1/deployments` as our project);
    /// returns the parent's deployment.
    pub async fn deploy(&self, body: Value) -> Result<Value, UpstreamError> {
        self.request(reqwest::Method::POST, "/v1/deployments", Some(body)).await
    }

    /// The parent's deployment `id`.
    pub async fn deployment(&self, id: i64) -> Result<Value, UpstreamError> {
        self.request(reqwest::Method::GET, &format!("/v1/deployments/{id}"), None).await
    }
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        ApiError::Driver(crate::drivers::DriverError::Upstream(e))
    }
}

/// Hook of `network_create`: on a nested instance, create the parent
/// network that carries the new network with VLAN label `vlan`.
pub async fn network_created(st: &AppState, vlan: u16) -> Result<(), crate::app::Error> {
    if let Some(up) = &st.upstream {
        up.network_create(&up.network_name(vlan)).await.map_err(crate::drivers::DriverError::Upstream)?;
    }
    Ok(())
}

/// Hook of `network_delete`: on a nested instance, delete the parent network.
pub async fn network_deleted(st: &AppState, vlan: u16) -> Result<(), crate::app::Error> {
    if let Some(up) = &st.upstream {
        up.network_delete(&up.network_name(vlan)).await.map_err(crate::drivers::DriverError::Upstream)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Node events (GET /v1/events)
// ---------------------------------------------------------------------------

/// Something that happened to a node that its project should learn about,
/// e.g. the parent taking it back.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeEvent {
    /// Event id.
    pub id: String,
    /// Node name.
    pub node: String,
    /// Project that held the node when it happened (`null`: none).
    pub project: Option<String>,
    /// `reclaimed`: the node was taken away by the parent control plane.
    pub kind: String,
    /// Human-readable reason.
    pub reason: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// OpenAPI description of the event log (merged into `/v1/openapi.json`).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(paths(list_events), components(schemas(NodeEvent)))]
pub struct EventsDoc;

/// Routes of the node event log.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/events", get(list_events))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    node: Option<String>,
}

/// `GET /v1/events[?node=N]`: node events of the caller's projects (admins: all), oldest first.
#[utoipa::path(get, path = "/v1/events",
    params(("node" = Option<String>, Query, description = "only events of this node")),
    responses((status = 200, body = [NodeEvent]), (status = 401, body = crate::http::v1::openapi::ErrorBody)))]
async fn list_events(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Vec<NodeEvent>>, ApiError> {
    if c.user.is_none() {
        return Err(ApiError::Unauthenticated);
    }
    let rows = sqlx::query(
        "SELECT id, node, project, kind, reason, created_at FROM node_events \
         WHERE ($1 = '' OR node = $1) ORDER BY id",
    )
    .bind(q.node.unwrap_or_default())
    .fetch_all(&st.db.pool)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let project: Option<String> = r.try_get(2)?;
        let visible = match &project {
            Some(p) => c.has_project(p),
            None => c.admin,
        };
        if visible {
            out.push(NodeEvent {
                id: r.try_get(0)?,
                node: r.try_get(1)?,
                project,
                kind: r.try_get(3)?,
                reason: r.try_get(4)?,
                created_at: r.try_get(5)?,
            });
        }
    }
    Ok(Json(out))
}

// ---------------------------------------------------------------------------
// Inventory sync
// ---------------------------------------------------------------------------

/// What one sync pass changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Nodes imported.
    pub added: Vec<String>,
    /// Nodes removed because the parent took them back.
    pub removed: Vec<String>,
}

/// Start the background sync of `st`'s upstream inventory (none if the
/// server is not nested). Abort the handle to stop it.
pub fn spawn_sync(st: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    let up = st.upstream.clone()?;
    let st = st.clone();
    Some(tokio::spawn(async move {
        let interval = up.cfg.sync_interval;
        let mut delay = interval;
        loop {
            match sync_once(&st, &up).await {
                Ok(r) => {
                    if !r.added.is_empty() || !r.removed.is_empty() {
                        tracing::info!(added = ?r.added, removed = ?r.removed, "upstream inventory synced");
                    }
                    delay = interval;
                }
                Err(e) => {
                    delay = (delay * 2).clamp(interval, MAX_BACKOFF.max(interval));
                    let cause = match &e {
                        ApiError::Driver(d) => d.to_string(),
                        other => format!("{other:?}"),
                    };
                    tracing::warn!(error = %cause, retry_in = ?delay, "upstream inventory sync failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = up.kick.notified() => {}
            }
        }
    }))
}

/// Nodes in the local database that were imported from `up`.
async fn imported_nodes(st: &AppState, up: &Upstream) -> Result<BTreeSet<String>, ApiError> {
    let rows = sqlx::query("SELECT name, obm FROM nodes").fetch_all(&st.db.pool).await?;
    let mut out = BTreeSet::new();
    for r in rows {
        let name: String = r.try_get(0)?;
        let obm: String = r.try_get(1)?;
        if let Ok(ObmConfig::Upstream { url, project, .. }) = serde_json::from_str::<ObmConfig>(&obm)
            && url == up.cfg.url
            && project == up.cfg.project
        {
            out.insert(name);
        }
    }
    Ok(out)
}

/// One sync pass: import new nodes of the project, drop the ones it lost.
/// Fails (changing nothing) when the parent cannot be asked.
pub async fn sync_once(st: &AppState, up: &Upstream) -> Result<SyncReport, ApiError> {
    let remote: BTreeSet<String> = up.project_nodes().await.map_err(up_err)?.into_iter().collect();
    let local = imported_nodes(st, up).await?;
    let mut report = SyncReport::default();
    for node in remote.difference(&local) {
        let v = match up.node(node).await {
            Ok(v) => v,
            // Taken back between the two calls: the next pass sees that.
            Err(UpstreamError::NodeGone(_)) => continue,
            Err(e) => return Err(up_err(e)),
        };
        import_node(st, up, node, &v).await?;
        report.added.push(node.clone());
    }
    let gone: Vec<&String> = local.difference(&remote).collect();
    let events = if gone.is_empty() { Vec::new() } else { up.events().await.unwrap_or_default() };
    for node in gone {
        let why = events.iter().rev().find(|e| &e.node == node && e.project.as_deref() == Some(&up.cfg.project));
        let reason = match why {
            Some(e) => format!("the parent took the node back: {}", e.reason),
            None => format!("the parent took the node back: it is no longer in project {:?} there", up.cfg.project),
        };
        reclaim_node(st, node, &reason).await?;
        report.removed.push(node.clone());
    }
    Ok(report)
}

fn up_err(e: UpstreamError) -> ApiError {
    e.into()
}

/// Insert an imported node: the node (upstream BMC), its NICs, a switch of
/// its own whose ports are the NIC names, each NIC wired to its port, and
/// the parent's metadata.
async fn import_node(st: &AppState, up: &Upstream, node: &str, v: &Value) -> Result<(), ApiError> {
    let obm = serde_json::to_string(&up.obm_for(node)).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let sw = serde_json::to_string(&up.switch_for(node)).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let mut tx = st.db.pool.begin().await?;
    let res = sqlx::query("INSERT INTO nodes (name, project, obm) VALUES ($1, NULL, $2)")
        .bind(node)
        .bind(&obm)
        .execute(&mut *tx)
        .await;
    if let Err(e) = res {
        // A node of that name registered locally by the admin wins.
        tracing::warn!(%node, error = %e, "cannot import upstream node");
        return Ok(());
    }
    sqlx::query("INSERT INTO switches (name, config) VALUES ($1, $2)").bind(node).bind(&sw).execute(&mut *tx).await?;
    for nic in v["nics"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let (Some(label), Some(mac)) = (nic["label"].as_str(), nic["macaddr"].as_str()) else {
            continue;
        };
        sqlx::query("INSERT INTO ports (switch, name) VALUES ($1, $2)")
            .bind(node)
            .bind(label)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO nics (node, name, macaddr, port_switch, port_name) VALUES ($1, $2, $3, $1, $2)")
            .bind(node)
            .bind(label)
            .bind(mac)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(meta) = v["metadata"].as_object() {
        for (label, value) in meta {
            // The parent returns each value as its JSON text.
            let text = value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
            sqlx::query("INSERT INTO node_metadata (node, label, value) VALUES ($1, $2, $3)")
                .bind(node)
                .bind(label)
                .bind(text)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    tracing::info!(%node, "imported node from upstream");
    Ok(())
}

/// Event ids sort chronologically: nanoseconds since the epoch, then randomness.
fn event_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{nanos:020}{}", crate::auth::random_hex(4))
}

/// Records a node event (`GET /v1/events`) for `project`'s members (admins only when `None`).
pub async fn record_event(
    st: &AppState,
    node: &str,
    project: Option<&str>,
    kind: &str,
    reason: &str,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO node_events (id, node, project, kind, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(event_id())
    .bind(node)
    .bind(project)
    .bind(kind)
    .bind(reason)
    .bind(crate::now())
    .execute(&st.db.pool)
    .await?;
    Ok(())
}

/// Remove a node the parent took back: it leaves its project, its networks
/// are detached (the parent detached them already), pending actions end,
/// and a `reclaimed` event with `reason` is recorded for its project.
pub async fn reclaim_node(st: &AppState, node: &str, reason: &str) -> Result<(), ApiError> {
    let mut tx = st.db.pool.begin().await?;
    let project: Option<String> =
        match sqlx::query("SELECT project FROM nodes WHERE name = $1").bind(node).fetch_optional(&mut *tx).await? {
            Some(r) => r.try_get(0)?,
            None => return Ok(()),
        };
    sqlx::query("DELETE FROM attachments WHERE node = $1").bind(node).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM network_actions WHERE node = $1").bind(node).execute(&mut *tx).await?;
    sqlx::query("UPDATE nics SET port_switch = NULL, port_name = NULL WHERE node = $1")
        .bind(node)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM nics WHERE node = $1").bind(node).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM ports WHERE switch = $1").bind(node).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM switches WHERE name = $1").bind(node).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM node_metadata WHERE node = $1").bind(node).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM nodes WHERE name = $1").bind(node).execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO node_events (id, node, project, kind, reason, created_at) \
         VALUES ($1, $2, $3, 'reclaimed', $4, $5)",
    )
    .bind(event_id())
    .bind(node)
    .bind(&project)
    .bind(reason)
    .bind(crate::now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    st.consoles.stop(node);
    st.action_done.notify_waiters();
    tracing::warn!(%node, ?project, %reason, "node reclaimed by the parent");
    Ok(())
}
