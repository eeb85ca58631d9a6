//! The REST client of a parent control plane (recursive HaaS): the nested
//! instance's `upstream` drivers and its inventory sync (`crate::app::upstream`)
//! act through it as a member of one project at the parent. It is the
//! operator-API crate's typed [`Client`] (its URLs, its answer types) with
//! the recursion's rules on top: a node the parent refuses is gone, a
//! networking action is waited for, a missing image is uploaded. Every
//! error is an [`UpstreamError`] whose text is safe for API callers (no URL,
//! no token, no addresses); the underlying error is only logged. One client
//! per server, built from `serve --upstream*` and handed to whoever needs
//! it; the token never enters the database.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use metalcast_operator_api::v0::{ActionStatus, NetworkCreate, NodeView, PowerState};
use metalcast_operator_api::v1::{DeployRequest, Deployment, NodeEvent};
use metalcast_operator_api::{Auth, Client, Error as ClientError, carrier};

use super::{ObmConfig, PowerOp, SwitchConfig};

/// Longest wait between sync attempts while the parent is unreachable.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Timeout of one HTTP request to the parent.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Timeout of making a connection to the parent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Timeout of an image upload to the parent (instead of [`REQUEST_TIMEOUT`]).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// How long a delegated networking action may stay PENDING at the parent.
const ACTION_TIMEOUT: Duration = Duration::from_secs(300);

/// Longest part of the parent's error message passed on to callers.
const MAX_MSG_CHARS: usize = 300;

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

/// What a transport failure (no complete HTTP answer) is called for callers.
fn transport_failure(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "request timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "connection lost"
    } else {
        "request failed"
    }
}

/// The caller-safe [`UpstreamError`] of the failed call `call` to the
/// parent. Nothing of the parent's URL, the token or the transport goes into
/// the text; the underlying error is logged.
fn upstream_error(call: &'static str, e: ClientError) -> UpstreamError {
    match e {
        ClientError::Api { status, body } => {
            tracing::debug!(call, status, msg = %body.msg, "the parent refused an upstream request");
            // An answer that is not the server's `{"type", "msg"}` comes from
            // something in front of it (a proxy's page may name hosts): only
            // the status's reason is passed on.
            let msg = if body.kind.is_empty() {
                reqwest::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("error")
                    .to_string()
            } else {
                body.msg.chars().take(MAX_MSG_CHARS).collect()
            };
            UpstreamError::Refused { status, msg }
        }
        ClientError::OtherImage { name, .. } => {
            UpstreamError::Refused { status: 409, msg: format!("the parent has another image named {name:?}") }
        }
        // A name that cannot be a path segment; the parent refuses invalid
        // names with 400 too.
        ClientError::DotSegment(name) => {
            UpstreamError::Refused { status: 400, msg: format!("{name:?} is not a valid name") }
        }
        ClientError::Transport { ref source, .. } => {
            tracing::warn!(call, error = %e, "upstream request failed");
            UpstreamError::Unreachable(transport_failure(source))
        }
        ClientError::Stream(_) => {
            tracing::warn!(call, error = %e, "upstream request failed");
            UpstreamError::Unreachable("connection lost")
        }
        ClientError::File { .. } => {
            tracing::warn!(call, error = %e, "upstream request failed");
            UpstreamError::Unreachable("cannot read the image bundle")
        }
        ClientError::Decode { .. } => {
            tracing::warn!(call, error = %e, "unexpected answer from the parent");
            UpstreamError::BadResponse
        }
        // Only when the client is built, which `Upstream::new` checks.
        ClientError::BadUrl(_) | ClientError::Build(_) => {
            tracing::warn!(call, error = %e, "upstream request failed");
            UpstreamError::Unreachable("request failed")
        }
    }
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

/// REST client of the parent control plane, acting for one project: the
/// operator-API [`Client`] with our token, and the parent's answers
/// translated into [`UpstreamError`]s.
#[derive(Debug)]
pub struct Upstream {
    cfg: UpstreamConfig,
    /// The parent's operator API, as a member of `cfg.project`.
    api: Client,
    /// Wakes the sync task early (a driver call found a node gone).
    kick: tokio::sync::Notify,
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
        let builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).connect_timeout(CONNECT_TIMEOUT);
        let api = Client::with_builder(&cfg.url, Auth::Bearer(cfg.token.clone()), builder)
            .map_err(|e| match e {
                ClientError::Build(source) => format!("building the HTTP client: {source}"),
                other => other.to_string(),
            })?
            .with_upload_timeout(UPLOAD_TIMEOUT);
        Ok(Arc::new(Upstream { cfg, api, kick: tokio::sync::Notify::new() }))
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
    /// VLAN label `vlan`: `<project>~v<vlan>` ([`carrier::network`]; the
    /// parent reserves it for our project).
    pub fn network_name(&self, vlan: u16) -> String {
        carrier::network(&self.cfg.project, vlan)
    }

    /// Wake the sync task now.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Awaits the client call `call` (named `name` in the log), its failure
    /// as an [`UpstreamError`].
    async fn call<T>(
        &self,
        name: &'static str,
        call: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, UpstreamError> {
        call.await.map_err(|e| upstream_error(name, e))
    }

    /// Like [`Upstream::call`] for a call about one node: 403/404 mean the
    /// parent took the node back; the sync task is woken to drop it here.
    async fn node_call<T>(
        &self,
        node: &str,
        name: &'static str,
        call: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, UpstreamError> {
        match self.call(name, call).await {
            Err(UpstreamError::Refused { status: 403 | 404, .. }) => {
                self.kick();
                Err(UpstreamError::NodeGone(node.into()))
            }
            other => other,
        }
    }

    /// Names of the nodes our project holds at the parent.
    pub async fn project_nodes(&self) -> Result<Vec<String>, UpstreamError> {
        self.call("project nodes", self.api.project_nodes(&self.cfg.project)).await
    }

    /// The parent's `show_node` of `node`.
    pub async fn node(&self, node: &str) -> Result<NodeView, UpstreamError> {
        self.node_call(node, "show node", self.api.node(node)).await
    }

    /// Power action at the parent.
    pub async fn power(&self, node: &str, op: PowerOp) -> Result<(), UpstreamError> {
        match op {
            PowerOp::On => self.node_call(node, "power on", self.api.power_on(node)).await,
            PowerOp::Off => self.node_call(node, "power off", self.api.power_off(node)).await,
            PowerOp::Cycle => self.node_call(node, "power cycle", self.api.power_cycle(node, false)).await,
        }
    }

    /// Power status at the parent.
    pub async fn power_status(&self, node: &str) -> Result<PowerState, UpstreamError> {
        self.node_call(node, "power status", self.api.power_status(node)).await
    }

    /// Boot device at the parent.
    pub async fn set_bootdev(&self, node: &str, dev: &str) -> Result<(), UpstreamError> {
        self.node_call(node, "boot device", self.api.set_bootdev(node, dev)).await
    }

    /// Start the parent's console capture of `node`.
    pub async fn console_start(&self, node: &str) -> Result<(), UpstreamError> {
        self.node_call(node, "console start", self.api.console_start(node)).await
    }

    /// The parent's console log of `node` (text). Only 403 means the node
    /// is gone (404: no log is being captured).
    pub async fn console_show(&self, node: &str) -> Result<String, UpstreamError> {
        match self.call("console show", self.api.console_show(node)).await {
            Err(UpstreamError::Refused { status: 403, .. }) => {
                self.kick();
                Err(UpstreamError::NodeGone(node.into()))
            }
            Err(UpstreamError::Refused { status, .. }) => {
                Err(UpstreamError::Refused { status, msg: "console log unavailable".into() })
            }
            other => other,
        }
    }

    /// Stop the parent's console capture of `node`.
    pub async fn console_stop(&self, node: &str) -> Result<(), UpstreamError> {
        self.node_call(node, "console stop", self.api.console_stop(node)).await
    }

    /// Create the parent network `name`, owned by and accessible to our project.
    pub async fn network_create(&self, name: &str) -> Result<(), UpstreamError> {
        let body =
            NetworkCreate { owner: self.cfg.project.clone(), access: self.cfg.project.clone(), net_id: String::new() };
        self.call("network create", self.api.network_create(name, &body)).await
    }

    /// Delete the parent network `name` (already gone counts as deleted).
    pub async fn network_delete(&self, name: &str) -> Result<(), UpstreamError> {
        match self.call("network delete", self.api.network_delete(name)).await {
            Err(UpstreamError::Refused { status: 404, .. }) => Ok(()),
            other => other,
        }
    }

    /// Poll the parent's networking action `id` until it leaves PENDING.
    async fn wait_action(&self, node: &str, id: &str) -> Result<(), UpstreamError> {
        let deadline = tokio::time::Instant::now() + ACTION_TIMEOUT;
        // Short first pauses: each nesting level polls its parent, so long
        // ones would add up along the chain.
        let mut pause = Duration::from_millis(2);
        loop {
            let action = self.node_call(node, "networking action", self.api.networking_action(id)).await?;
            match action.status {
                ActionStatus::Done => return Ok(()),
                ActionStatus::Error => return Err(UpstreamError::ActionFailed("ended in ERROR at the parent")),
                ActionStatus::Pending => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(UpstreamError::ActionFailed("did not finish at the parent in time"));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 3 / 2).min(Duration::from_millis(250));
        }
    }

    /// Connect `node`'s `nic` to the parent network `network` (native
    /// channel) and wait until the parent's networking action is DONE.
    pub async fn connect(&self, node: &str, nic: &str, network: &str) -> Result<(), UpstreamError> {
        let id = self.node_call(node, "connect network", self.api.connect_network(node, nic, network, None)).await?;
        self.wait_action(node, &id).await
    }

    /// Detach `node`'s `nic` from the parent network `network` and wait until
    /// the parent's networking action is DONE. The parent answering that the
    /// network is not attached (its admin detached it already) counts as
    /// done: that is the state asked for, confirmed.
    pub async fn detach(&self, node: &str, nic: &str, network: &str) -> Result<(), UpstreamError> {
        let detached = async {
            let id = self.node_call(node, "detach network", self.api.detach_network(node, nic, network)).await?;
            self.wait_action(node, &id).await
        };
        match detached.await {
            Err(UpstreamError::Refused { status: 409, msg }) if msg.contains("not attached") => {
                tracing::info!(%node, %nic, %network, "already detached at the parent");
                Ok(())
            }
            other => other,
        }
    }

    /// The lease our project holds `node` under at the parent, if any:
    /// (lease id, end), for a live lease (granting, active or notice). A node
    /// the project holds outright has none.
    pub async fn parent_lease(&self, node: &str) -> Result<Option<(i64, i64)>, UpstreamError> {
        let path = format!("/v1/market/leases?project={}", self.cfg.project);
        let leases = self.call("market leases", self.api.get_value(&path)).await?;
        Ok(leases.as_array().into_iter().flatten().find_map(|l| {
            let live = matches!(l["state"].as_str(), Some("granting" | "active" | "notice"));
            (live && l["node"] == node && l["lessee"] == self.cfg.project.as_str())
                .then(|| Some((l["id"].as_i64()?, l["end"].as_i64()?)))
                .flatten()
        }))
    }

    /// The node's hardware inventory from its runtime's check-in at the
    /// parent (the runtime talks to the root), if it checked in there.
    pub async fn inventory(&self, node: &str) -> Result<Option<metalcast_runtime_api::Inventory>, UpstreamError> {
        let r = self.node_call(node, "node runtime", self.api.node_runtime(node)).await?;
        Ok(r.inventory.and_then(|v| serde_json::from_value(v).ok()))
    }

    /// The parent's node events visible to our project (newest last).
    pub async fn events(&self) -> Result<Vec<NodeEvent>, UpstreamError> {
        self.call("events", self.api.events(None)).await
    }

    /// The name an image of ours gets at the parent: `<project>~<first 16
    /// hex of its root hash>` ([`carrier::image`]; private to our project
    /// there, and a name the parent reserves for it; the same bundle is
    /// uploaded once whatever it is called here).
    pub fn image_name(&self, root_hash: &str) -> String {
        carrier::image(&self.cfg.project, root_hash)
    }

    /// Makes sure the parent has the bundle at `path` (root hash `root_hash`)
    /// as image `name`, private to our project: uploads it if missing. The
    /// parent checks the signature against its own trusted keys.
    pub async fn ensure_image(&self, name: &str, path: &std::path::Path, root_hash: &str) -> Result<(), UpstreamError> {
        let ensured = self.api.ensure_image(name, path, root_hash, Some(&self.cfg.project)).await;
        match ensured.map_err(|e| upstream_error("ensure image", e)) {
            Ok(_) => Ok(()),
            Err(UpstreamError::Unreachable("request failed")) => Err(UpstreamError::Unreachable("image upload failed")),
            Err(e) => Err(e),
        }
    }

    /// Asks the parent to deploy (`POST /v1/deployments` as our project);
    /// returns the parent's deployment.
    pub async fn deploy(&self, req: &DeployRequest) -> Result<Deployment, UpstreamError> {
        self.call("deploy", self.api.deploy(req)).await
    }

    /// The parent's deployment `id`.
    pub async fn deployment(&self, id: i64) -> Result<Deployment, UpstreamError> {
        self.call("deployment", self.api.deployment(id)).await
    }
}

#[cfg(test)]
mod tests {
    use metalcast_operator_api::ErrorBody;

    use super::*;

    fn api_error(status: u16, body: &[u8]) -> ClientError {
        ClientError::Api { status, body: ErrorBody::parse(status, body) }
    }

    #[test]
    fn refusals_keep_the_parents_message_bounded() {
        let long = "x".repeat(400);
        let body = format!(r#"{{"type":"BlockedError","msg":"{long}"}}"#);
        match upstream_error("test", api_error(409, body.as_bytes())) {
            UpstreamError::Refused { status: 409, msg } => assert_eq!(msg.chars().count(), MAX_MSG_CHARS),
            other => panic!("{other:?}"),
        }
        let e = upstream_error("test", api_error(404, br#"{"type":"NotFoundError","msg":"node \"n1\" not found"}"#));
        assert_eq!(e.to_string(), "upstream refused the request (404): node \"n1\" not found");
    }

    #[test]
    fn other_error_pages_become_the_status_reason() {
        // A proxy's page in front of the parent may name hosts.
        let page = b"<html>502 Bad Gateway at 10.1.2.3:7000</html>";
        let e = upstream_error("test", api_error(502, page));
        assert_eq!(e.to_string(), "upstream refused the request (502): Bad Gateway");
    }

    #[test]
    fn a_name_clash_is_a_conflict() {
        let e = upstream_error("test", ClientError::OtherImage { name: "p-0123".into(), root_hash: "ab".into() });
        assert!(matches!(e, UpstreamError::Refused { status: 409, .. }), "{e:?}");
        assert_eq!(e.to_string(), "upstream refused the request (409): the parent has another image named \"p-0123\"");
    }

    #[tokio::test]
    async fn transport_failures_name_neither_url_nor_token() {
        // Nothing listens on port 9.
        let up = Upstream::new(UpstreamConfig {
            url: "http://127.0.0.1:9/".into(),
            project: "p1".into(),
            token: "mct_id_secret".into(),
            sync_interval: Duration::from_secs(60),
        })
        .expect("client");
        let e = up.project_nodes().await.expect_err("nothing listens");
        assert!(matches!(e, UpstreamError::Unreachable("cannot connect")), "{e:?}");
        let text = e.to_string();
        assert!(!text.contains("127.0.0.1") && !text.contains("secret"), "{text}");
    }

    #[test]
    fn an_unreadable_bundle_is_named_without_its_path() {
        let e = ClientError::File { path: "/var/lib/x/bundle".into(), source: std::io::Error::other("gone") };
        let e = upstream_error("test", e);
        assert_eq!(e.to_string(), "upstream unreachable: cannot read the image bundle");
    }

    #[test]
    fn the_config_is_checked() {
        let cfg = |url: &str, token: &str| UpstreamConfig {
            url: url.into(),
            project: "p1".into(),
            token: token.into(),
            sync_interval: Duration::from_secs(60),
        };
        assert!(Upstream::new(cfg("ftp://x", "t")).is_err());
        assert!(Upstream::new(cfg("http://x", "  ")).is_err());
        let up = Upstream::new(cfg("http://x:7000//", " t ")).expect("valid");
        assert_eq!((up.url(), up.config().token.as_str()), ("http://x:7000", "t"));
    }
}
