//! The REST client of a parent control plane (recursive HaaS): the nested
//! instance's `upstream` drivers and its inventory sync (`crate::app::upstream`)
//! act through it as a member of one project at the parent. Every error is
//! an [`UpstreamError`] whose text is safe for API callers (no URL, no
//! token, no addresses). One client per server, built from `serve
//! --upstream*` and handed to whoever needs it; the token never enters the
//! database.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use serde::{Deserialize, Serialize};

use super::{ObmConfig, PowerOp, SwitchConfig};

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
    /// The parent's base URL.
    pub fn url(&self) -> &str {
        &self.cfg.url
    }

    /// The project at the parent this client acts for.
    pub fn project(&self) -> &str {
        &self.cfg.project
    }

    /// The interval between inventory syncs.
    pub fn sync_interval(&self) -> Duration {
        self.cfg.sync_interval
    }

    /// Resolves when a driver call found a node gone ([`Upstream::kick`]).
    pub fn kicked(&self) -> tokio::sync::futures::Notified<'_> {
        self.kick.notified()
    }

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
