//! [`Client`]: the typed async client of the operator API.

use std::path::Path;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, ErrorBody};
use crate::path::{is_dot_segment, segment};
use crate::v0::Attachment;
use crate::v0::{
    BootDev, ConnectNetwork, DetachNetwork, MetadataValue, NetworkCreate, NetworkSummary, NetworkView,
    NetworkingAction, NicRegister, NodeArg, NodeFilter, NodeNic, NodeRegister, NodeView, ObmEnabled, PortView,
    PowerCycle, PowerState, PowerStatus, ProjectArg, StatusId, SwitchRegister, SwitchView, UserCreate, UserInfo,
    UserPatch,
};
use crate::v1::{
    DeployRequest, Deployment, Health, ImageInfo, Keypair, KeypairCreate, NodeEvent, NodeRuntime, NodeStatus,
    NodeSummary, Quota, QuotaUsage, ReclaimRequest, Reclaimed, SetVisibility, TokenCreate, TokenCreated, TokenInfo,
    UploadQuery, WhoAmI,
};

/// Credentials sent with every request.
#[derive(Clone, Default)]
pub enum Auth {
    /// Anonymous.
    #[default]
    None,
    /// `Authorization: Bearer <token>` (an API token `mct_...`).
    Bearer(String),
    /// HTTP Basic: a user and password (or `token` and an API token).
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: Option<String>,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Bearer(_) => f.write_str("Bearer(***)"),
            Auth::Basic { user, .. } => f.debug_struct("Basic").field("user", user).finish_non_exhaustive(),
        }
    }
}

/// An event of a deployment's progress stream (`GET /v1/deployments/{id}/events`).
#[derive(Debug, Clone, PartialEq)]
pub enum DeploymentEvent {
    /// A snapshot of the deployment (sent on every change).
    Progress(Box<Deployment>),
    /// The deployment ended; nothing follows.
    End,
}

/// What [`Client::ensure_image`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnsureImage {
    /// The server had the image with that root hash already.
    Present,
    /// The bundle was uploaded.
    Uploaded,
}

/// Installs ring as rustls's process-wide provider (reqwest is built
/// without one); another provider installed first is kept.
fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The client of one control plane's operator API, with one set of
/// credentials. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    upload_timeout: Option<Duration>,
}

/// No request body.
pub(crate) const NO_BODY: Option<&()> = None;

/// `s` as one path segment; `.` and `..` are refused.
pub(crate) fn seg(s: &str) -> Result<String, Error> {
    if is_dot_segment(s) {
        return Err(Error::DotSegment(s.to_string()));
    }
    Ok(segment(s))
}

impl Client {
    /// A client of the server at `base` (`http://HOST:PORT` or `https://...`)
    /// with default HTTP settings (system roots for https).
    pub fn new(base: &str, auth: Auth) -> Result<Client, Error> {
        Client::with_builder(base, auth, reqwest::Client::builder())
    }

    /// A client whose HTTP settings (trusted certificates, timeouts) come from
    /// `builder`. Installs ring as rustls's process default provider first.
    pub fn with_builder(base: &str, auth: Auth, builder: reqwest::ClientBuilder) -> Result<Client, Error> {
        install_tls_provider();
        let http = builder.build().map_err(Error::Build)?;
        Client::from_http(base, auth, http)
    }

    /// A client over an HTTP client built elsewhere.
    pub fn from_http(base: &str, auth: Auth, http: reqwest::Client) -> Result<Client, Error> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::BadUrl(base.to_string()));
        }
        Ok(Client { http, base: base.trim_end_matches('/').to_string(), auth, upload_timeout: None })
    }

    /// A timeout for image uploads alone, instead of the HTTP client's.
    pub fn with_upload_timeout(mut self, timeout: Duration) -> Client {
        self.upload_timeout = Some(timeout);
        self
    }

    /// The server's base URL (without a trailing `/`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    // -----------------------------------------------------------------------
    // Requests
    // -----------------------------------------------------------------------

    pub(crate) fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let rb = self.http.request(method, format!("{}{path}", self.base));
        match &self.auth {
            Auth::None => rb,
            Auth::Bearer(t) => rb.bearer_auth(t),
            Auth::Basic { user, password } => rb.basic_auth(user, password.as_ref()),
        }
    }

    pub(crate) fn transport(&self, source: reqwest::Error) -> Error {
        Error::Transport { url: self.base.clone(), source }
    }

    /// Sends `rb`; an error status becomes [`Error::Api`].
    pub(crate) async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response, Error> {
        let resp = rb.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        if status.is_client_error() || status.is_server_error() {
            let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
            return Err(Error::Api { status: status.as_u16(), body: ErrorBody::parse(status.as_u16(), &bytes) });
        }
        Ok(resp)
    }

    /// `method path` with an optional JSON body; the answer's bytes.
    async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Vec<u8>, Error> {
        let mut rb = self.request(method, path);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = self.send(rb).await?;
        resp.bytes().await.map(|b| b.to_vec()).map_err(|e| self.transport(e))
    }

    /// A call whose answer is JSON of type `T`.
    pub(crate) async fn json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, Error> {
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode { path: path.to_string(), source })
    }

    /// A call whose answer carries nothing (an empty body or `null`).
    async fn unit<B: Serialize + ?Sized>(&self, method: Method, path: &str, body: Option<&B>) -> Result<(), Error> {
        self.call(method, path, body).await.map(drop)
    }

    /// `GET path` as untyped JSON (`null` for an empty answer): for calls
    /// this crate has no type for.
    pub async fn get_value(&self, path: &str) -> Result<Value, Error> {
        let bytes = self.call(Method::GET, path, NO_BODY).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode { path: path.to_string(), source })
    }

    /// `GET` an absolute URL without credentials, as text (e.g. a node's
    /// NoCloud metadata seed, `/v1/metadata/<token>/meta-data`).
    pub async fn get_url_text(&self, url: &str) -> Result<String, Error> {
        let resp = self.send(self.http.get(url)).await?;
        resp.text().await.map_err(|e| self.transport(e))
    }

    // -----------------------------------------------------------------------
    // /v0 projects
    // -----------------------------------------------------------------------

    /// `GET /v0/projects` (admin).
    pub async fn projects(&self) -> Result<Vec<String>, Error> {
        self.json(Method::GET, "/v0/projects", NO_BODY).await
    }

    /// `PUT /v0/project/{p}` (admin).
    pub async fn project_create(&self, project: &str) -> Result<(), Error> {
        self.unit(Method::PUT, &format!("/v0/project/{}", seg(project)?), NO_BODY).await
    }

    /// `DELETE /v0/project/{p}` (admin).
    pub async fn project_delete(&self, project: &str) -> Result<(), Error> {
        self.unit(Method::DELETE, &format!("/v0/project/{}", seg(project)?), NO_BODY).await
    }

    /// `POST /v0/project/{p}/connect_node`: reserve a free node.
    pub async fn project_connect_node(&self, project: &str, node: &str) -> Result<(), Error> {
        let body = NodeArg { node: node.to_string() };
        self.unit(Method::POST, &format!("/v0/project/{}/connect_node", seg(project)?), Some(&body)).await
    }

    /// `POST /v0/project/{p}/detach_node`: return a node to the free pool.
    pub async fn project_detach_node(&self, project: &str, node: &str) -> Result<(), Error> {
        let body = NodeArg { node: node.to_string() };
        self.unit(Method::POST, &format!("/v0/project/{}/detach_node", seg(project)?), Some(&body)).await
    }

    /// `GET /v0/project/{p}/nodes`.
    pub async fn project_nodes(&self, project: &str) -> Result<Vec<String>, Error> {
        self.json(Method::GET, &format!("/v0/project/{}/nodes", seg(project)?), NO_BODY).await
    }

    /// `GET /v0/project/{p}/networks`: networks the project can access.
    pub async fn project_networks(&self, project: &str) -> Result<Vec<String>, Error> {
        self.json(Method::GET, &format!("/v0/project/{}/networks", seg(project)?), NO_BODY).await
    }

    // -----------------------------------------------------------------------
    // /v0 nodes
    // -----------------------------------------------------------------------

    /// `GET /v0/nodes/{all|free}`.
    pub async fn nodes(&self, which: NodeFilter) -> Result<Vec<String>, Error> {
        self.json(Method::GET, &format!("/v0/nodes/{}", which.as_str()), NO_BODY).await
    }

    /// `GET /v0/node/{node}`.
    pub async fn node(&self, node: &str) -> Result<NodeView, Error> {
        self.json(Method::GET, &format!("/v0/node/{}", seg(node)?), NO_BODY).await
    }

    /// `PUT /v0/node/{node}` (admin).
    pub async fn node_register(&self, node: &str, body: &NodeRegister) -> Result<(), Error> {
        self.unit(Method::PUT, &format!("/v0/node/{}", seg(node)?), Some(body)).await
    }

    /// `DELETE /v0/node/{node}` (admin).
    pub async fn node_delete(&self, node: &str) -> Result<(), Error> {
        self.unit(Method::DELETE, &format!("/v0/node/{}", seg(node)?), NO_BODY).await
    }

    /// `POST /v0/node/{node}/power_on`.
    pub async fn power_on(&self, node: &str) -> Result<(), Error> {
        self.unit(Method::POST, &format!("/v0/node/{}/power_on", seg(node)?), NO_BODY).await
    }

    /// `POST /v0/node/{node}/power_off`.
    pub async fn power_off(&self, node: &str) -> Result<(), Error> {
        self.unit(Method::POST, &format!("/v0/node/{}/power_off", seg(node)?), NO_BODY).await
    }

    /// `POST /v0/node/{node}/power_cycle` (a body only when `force`).
    pub async fn power_cycle(&self, node: &str, force: bool) -> Result<(), Error> {
        let body = force.then_some(PowerCycle { force });
        self.unit(Method::POST, &format!("/v0/node/{}/power_cycle", seg(node)?), body.as_ref()).await
    }

    /// `GET /v0/node/{node}/power_status`.
    pub async fn power_status(&self, node: &str) -> Result<PowerState, Error> {
        let s: PowerStatus = self.json(Method::GET, &format!("/v0/node/{}/power_status", seg(node)?), NO_BODY).await?;
        Ok(s.power_status)
    }

    /// `PUT /v0/node/{node}/boot_device`.
    pub async fn set_bootdev(&self, node: &str, bootdev: &str) -> Result<(), Error> {
        let body = BootDev { bootdev: bootdev.to_string() };
        self.unit(Method::PUT, &format!("/v0/node/{}/boot_device", seg(node)?), Some(&body)).await
    }

    /// `PUT /v0/node/{node}/console`: start capturing the console log.
    pub async fn console_start(&self, node: &str) -> Result<(), Error> {
        self.unit(Method::PUT, &format!("/v0/node/{}/console", seg(node)?), NO_BODY).await
    }

    /// `GET /v0/node/{node}/console`: the captured log (text).
    pub async fn console_show(&self, node: &str) -> Result<String, Error> {
        let bytes = self.call(Method::GET, &format!("/v0/node/{}/console", seg(node)?), NO_BODY).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `DELETE /v0/node/{node}/console`: stop capturing, delete the log.
    pub async fn console_stop(&self, node: &str) -> Result<(), Error> {
        self.unit(Method::DELETE, &format!("/v0/node/{}/console", seg(node)?), NO_BODY).await
    }

    /// `PUT /v0/node/{node}/nic/{nic}` (admin).
    pub async fn nic_register(&self, node: &str, nic: &str, macaddr: &str) -> Result<(), Error> {
        let body = NicRegister { macaddr: macaddr.to_string() };
        self.unit(Method::PUT, &format!("/v0/node/{}/nic/{}", seg(node)?, seg(nic)?), Some(&body)).await
    }

    /// `DELETE /v0/node/{node}/nic/{nic}` (admin).
    pub async fn nic_delete(&self, node: &str, nic: &str) -> Result<(), Error> {
        self.unit(Method::DELETE, &format!("/v0/node/{}/nic/{}", seg(node)?, seg(nic)?), NO_BODY).await
    }

    /// `PUT /v0/node/{node}/metadata/{label}` (admin).
    pub async fn metadata_set(&self, node: &str, label: &str, value: Value) -> Result<(), Error> {
        let body = MetadataValue { value };
        self.unit(Method::PUT, &format!("/v0/node/{}/metadata/{}", seg(node)?, seg(label)?), Some(&body)).await
    }

    /// `DELETE /v0/node/{node}/metadata/{label}` (admin).
    pub async fn metadata_delete(&self, node: &str, label: &str) -> Result<(), Error> {
        self.unit(Method::DELETE, &format!("/v0/node/{}/metadata/{}", seg(node)?, seg(label)?), NO_BODY).await
    }

    /// `POST /v0/node/{node}/nic/{nic}/connect_network`; the networking
    /// action's id ([`Client::networking_action`]).
    pub async fn connect_network(
        &self,
        node: &str,
        nic: &str,
        network: &str,
        channel: Option<&str>,
    ) -> Result<String, Error> {
        let body = ConnectNetwork { network: network.to_string(), channel: channel.map(str::to_string) };
        let path = format!("/v0/node/{}/nic/{}/connect_network", seg(node)?, seg(nic)?);
        self.json::<StatusId, _>(Method::POST, &path, Some(&body)).await.map(|s| s.status_id)
    }

    /// `POST /v0/node/{node}/nic/{nic}/detach_network`; the networking action's id.
    pub async fn detach_network(&self, node: &str, nic: &str, network: &str) -> Result<String, Error> {
        let body = DetachNetwork { network: network.to_string() };
        let path = format!("/v0/node/{}/nic/{}/detach_network", seg(node)?, seg(nic)?);
        self.json::<StatusId, _>(Method::POST, &path, Some(&body)).await.map(|s| s.status_id)
    }

    /// `GET /v0/networking_action/{id}`.
    pub async fn networking_action(&self, status_id: &str) -> Result<NetworkingAction, Error> {
        self.json(Method::GET, &format!("/v0/networking_action/{}", seg(status_id)?), NO_BODY).await
    }

    // -----------------------------------------------------------------------
    // /v0 networks
    // -----------------------------------------------------------------------

    /// `GET /v0/networks` (admin): by network name.
    pub async fn networks(&self) -> Result<std::collections::BTreeMap<String, NetworkSummary>, Error> {
        self.json(Method::GET, "/v0/networks", NO_BODY).await
    }

    /// `GET /v0/network/{network}`.
    pub async fn network(&self, network: &str) -> Result<NetworkView, Error> {
        self.json(Method::GET, &format!("/v0/network/{}", seg(network)?), NO_BODY).await
    }

    /// `PUT /v0/network/{network}`.
    pub async fn network_create(&self, network: &str, body: &NetworkCreate) -> Result<(), Error> {
        self.unit(Method::PUT, &format!("/v0/network/{}", seg(network)?), Some(body)).await
    }

    /// `DELETE /v0/network/{network}`.
    pub async fn network_delete(&self, network: &str) -> Result<(), Error> {
        self.unit(Method::DELETE, &format!("/v0/network/{}", seg(network)?), NO_BODY).await
    }

    /// `GET /v0/network/{network}/attachments[?project=p]`: by node name.
    pub async fn network_attachments(
        &self,
        network: &str,
        project: Option<&str>,
    ) -> Result<std::collections::BTreeMap<String, Attachment>, Error> {
        let q = match project {
            Some(p) => format!("?project={}", segment(p)),
            None => String::new(),
        };
        self.json(Method::GET, &format!("/v0/network/{}/attachments{q}", seg(network)?), NO_BODY).await
    }

    /// `PUT /v0/network/{network}/access/{project}`.
    pub async fn network_grant(&self, network: &str, project: &str) -> Result<(), Error> {
        self.unit(Method::PUT, &format!("/v0/network/{}/access/{}", seg(network)?, seg(project)?), NO_BODY).await
    }

    /// `DELETE /v0/network/{network}/access/{project}`.
    pub async fn network_revoke(&self, network: &str, project: &str) -> Result<(), Error> {
        self.unit(Method::DELETE, &format!("/v0/network/{}/access/{}", seg(network)?, seg(project)?), NO_BODY).await
    }

    // -----------------------------------------------------------------------
    // /v0 switches and ports (admin)
    // -----------------------------------------------------------------------

    /// `GET /v0/switches`.
    pub async fn switches(&self) -> Result<Vec<String>, Error> {
        self.json(Method::GET, "/v0/switches", NO_BODY).await
    }

    /// `GET /v0/switch/{switch}`.
    pub async fn switch(&self, switch: &str) -> Result<SwitchView, Error> {
        self.json(Method::GET, &format!("/v0/switch/{}", seg(switch)?), NO_BODY).await
    }

    /// `PUT /v0/switch/{switch}`.
    pub async fn switch_register(&self, switch: &str, body: &SwitchRegister) -> Result<(), Error> {
        self.unit(Method::PUT, &format!("/v0/switch/{}", seg(switch)?), Some(body)).await
    }

    /// `DELETE /v0/switch/{switch}`.
    pub async fn switch_delete(&self, switch: &str) -> Result<(), Error> {
        self.unit(Method::DELETE, &format!("/v0/switch/{}", seg(switch)?), NO_BODY).await
    }

    fn port_path(switch: &str, port: &str) -> Result<String, Error> {
        Ok(format!("/v0/switch/{}/port/{}", seg(switch)?, seg(port)?))
    }

    /// `PUT /v0/switch/{switch}/port/{port}`.
    pub async fn port_register(&self, switch: &str, port: &str) -> Result<(), Error> {
        self.unit(Method::PUT, &Client::port_path(switch, port)?, NO_BODY).await
    }

    /// `DELETE /v0/switch/{switch}/port/{port}`.
    pub async fn port_delete(&self, switch: &str, port: &str) -> Result<(), Error> {
        self.unit(Method::DELETE, &Client::port_path(switch, port)?, NO_BODY).await
    }

    /// `GET /v0/switch/{switch}/port/{port}`.
    pub async fn port(&self, switch: &str, port: &str) -> Result<PortView, Error> {
        self.json(Method::GET, &Client::port_path(switch, port)?, NO_BODY).await
    }

    /// `POST /v0/switch/{switch}/port/{port}/connect_nic`.
    pub async fn port_connect_nic(&self, switch: &str, port: &str, node: &str, nic: &str) -> Result<(), Error> {
        let body = NodeNic { node: node.to_string(), nic: nic.to_string() };
        let path = format!("{}/connect_nic", Client::port_path(switch, port)?);
        self.unit(Method::POST, &path, Some(&body)).await
    }

    /// `POST /v0/switch/{switch}/port/{port}/detach_nic`.
    pub async fn port_detach_nic(&self, switch: &str, port: &str) -> Result<(), Error> {
        self.unit(Method::POST, &format!("{}/detach_nic", Client::port_path(switch, port)?), NO_BODY).await
    }

    /// `POST /v0/switch/{switch}/port/{port}/revert`; the networking action's id.
    pub async fn port_revert(&self, switch: &str, port: &str) -> Result<String, Error> {
        let path = format!("{}/revert", Client::port_path(switch, port)?);
        self.json::<StatusId, _>(Method::POST, &path, NO_BODY).await.map(|s| s.status_id)
    }

    // -----------------------------------------------------------------------
    // /v0 users (admin)
    // -----------------------------------------------------------------------

    /// `PUT /v0/auth/basic/user/{user}`.
    pub async fn user_create(&self, user: &str, body: &UserCreate) -> Result<(), Error> {
        self.unit(Method::PUT, &format!("/v0/auth/basic/user/{}", seg(user)?), Some(body)).await
    }

    /// `GET /v0/auth/basic/users`: every user by name.
    pub async fn users(&self) -> Result<std::collections::BTreeMap<String, UserInfo>, Error> {
        self.json(Method::GET, "/v0/auth/basic/users", NO_BODY).await
    }

    /// `PATCH /v0/auth/basic/user/{user}`: make the user an admin or not.
    pub async fn user_set_admin(&self, user: &str, is_admin: bool) -> Result<(), Error> {
        self.unit(Method::PATCH, &format!("/v0/auth/basic/user/{}", seg(user)?), Some(&UserPatch { is_admin })).await
    }

    /// `GET /v0/active_extensions`.
    pub async fn active_extensions(&self) -> Result<Vec<String>, Error> {
        self.json(Method::GET, "/v0/active_extensions", NO_BODY).await
    }

    /// `PUT /v0/node/{node}/obm`: enable or disable the node's OBM.
    pub async fn node_obm(&self, node: &str, enabled: bool) -> Result<(), Error> {
        self.unit(Method::PUT, &format!("/v0/node/{}/obm", seg(node)?), Some(&ObmEnabled { enabled })).await
    }

    /// `DELETE /v0/auth/basic/user/{user}`.
    pub async fn user_delete(&self, user: &str) -> Result<(), Error> {
        self.unit(Method::DELETE, &format!("/v0/auth/basic/user/{}", seg(user)?), NO_BODY).await
    }

    /// `POST /v0/auth/basic/user/{user}/add_project`.
    pub async fn user_add_project(&self, user: &str, project: &str) -> Result<(), Error> {
        let body = ProjectArg { project: project.to_string() };
        self.unit(Method::POST, &format!("/v0/auth/basic/user/{}/add_project", seg(user)?), Some(&body)).await
    }

    /// `POST /v0/auth/basic/user/{user}/remove_project`.
    pub async fn user_remove_project(&self, user: &str, project: &str) -> Result<(), Error> {
        let body = ProjectArg { project: project.to_string() };
        self.unit(Method::POST, &format!("/v0/auth/basic/user/{}/remove_project", seg(user)?), Some(&body)).await
    }

    // -----------------------------------------------------------------------
    // /v1 health, whoami, tokens, events
    // -----------------------------------------------------------------------

    /// `GET /v1/health` (no credentials needed).
    pub async fn health(&self) -> Result<Health, Error> {
        self.json(Method::GET, "/v1/health", NO_BODY).await
    }

    /// `GET /v1/whoami`.
    pub async fn whoami(&self) -> Result<WhoAmI, Error> {
        self.json(Method::GET, "/v1/whoami", NO_BODY).await
    }

    /// `POST /v1/tokens`: a token for the caller (the secret is shown once).
    pub async fn token_create(&self, description: &str) -> Result<TokenCreated, Error> {
        let body = TokenCreate { description: description.to_string() };
        self.json(Method::POST, "/v1/tokens", Some(&body)).await
    }

    /// `GET /v1/tokens`: own tokens (admin: all).
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, Error> {
        self.json(Method::GET, "/v1/tokens", NO_BODY).await
    }

    /// `DELETE /v1/tokens/{id}`.
    pub async fn token_delete(&self, id: &str) -> Result<(), Error> {
        self.unit(Method::DELETE, &format!("/v1/tokens/{}", seg(id)?), NO_BODY).await
    }

    /// `GET /v1/events[?node=n]`: node events of the caller's projects, oldest first.
    pub async fn events(&self, node: Option<&str>) -> Result<Vec<NodeEvent>, Error> {
        let q = match node {
            Some(n) => format!("?node={}", segment(n)),
            None => String::new(),
        };
        self.json(Method::GET, &format!("/v1/events{q}"), NO_BODY).await
    }

    // -----------------------------------------------------------------------
    // /v1 quotas and keypairs
    // -----------------------------------------------------------------------

    /// `GET /v1/projects/{p}/quota`.
    pub async fn quota(&self, project: &str) -> Result<QuotaUsage, Error> {
        self.json(Method::GET, &format!("/v1/projects/{}/quota", seg(project)?), NO_BODY).await
    }

    /// `PUT /v1/projects/{p}/quota` (admin); the quota as stored.
    /// A limit below current use is refused (409) unless `force`.
    pub async fn quota_set(&self, project: &str, quota: &Quota, force: bool) -> Result<Quota, Error> {
        let q = if force { "?force=true" } else { "" };
        self.json(Method::PUT, &format!("/v1/projects/{}/quota{q}", seg(project)?), Some(quota)).await
    }

    /// `GET /v1/keypairs`: own keys and those shared with the caller's projects.
    pub async fn keypairs(&self) -> Result<Vec<Keypair>, Error> {
        self.json(Method::GET, "/v1/keypairs", NO_BODY).await
    }

    /// `GET /v1/keypairs/{name}`.
    pub async fn keypair(&self, name: &str) -> Result<Keypair, Error> {
        self.json(Method::GET, &format!("/v1/keypairs/{}", seg(name)?), NO_BODY).await
    }

    /// `POST /v1/keypairs`.
    pub async fn keypair_create(&self, body: &KeypairCreate) -> Result<Keypair, Error> {
        self.json(Method::POST, "/v1/keypairs", Some(body)).await
    }

    /// `DELETE /v1/keypairs/{name}`.
    pub async fn keypair_delete(&self, name: &str) -> Result<(), Error> {
        self.unit(Method::DELETE, &format!("/v1/keypairs/{}", seg(name)?), NO_BODY).await
    }

    // -----------------------------------------------------------------------
    // /v1 images
    // -----------------------------------------------------------------------

    /// `GET /v1/images`: the images the caller may see.
    pub async fn images(&self) -> Result<Vec<ImageInfo>, Error> {
        self.json(Method::GET, "/v1/images", NO_BODY).await
    }

    /// `GET /v1/images/{name}`.
    pub async fn image(&self, name: &str) -> Result<ImageInfo, Error> {
        self.json(Method::GET, &format!("/v1/images/{}", seg(name)?), NO_BODY).await
    }

    /// `GET /v1/images/{name}/manifest`: the standalone signed manifest.
    pub async fn image_manifest(&self, name: &str) -> Result<Vec<u8>, Error> {
        self.call(Method::GET, &format!("/v1/images/{}/manifest", seg(name)?), NO_BODY).await
    }

    /// `PUT /v1/images/{name}?project=&visibility=`: streams the bundle file
    /// at `bundle` (not read into memory). The server refuses a taken name
    /// or a caller without access before it reads the body and may then
    /// close the connection mid-upload; ask [`Client::image`] first to get
    /// those errors as answers.
    pub async fn image_upload(&self, name: &str, query: &UploadQuery, bundle: &Path) -> Result<ImageInfo, Error> {
        let file_err = |source| Error::File { path: bundle.display().to_string(), source };
        let file = tokio::fs::File::open(bundle).await.map_err(file_err)?;
        let len = file.metadata().await.map_err(file_err)?.len();
        let mut q = Vec::new();
        if let Some(p) = &query.project {
            q.push(format!("project={}", segment(p)));
        }
        if let Some(v) = query.visibility {
            q.push(format!("visibility={}", v.as_str()));
        }
        let q = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
        let path = format!("/v1/images/{}{q}", seg(name)?);
        let mut rb = self
            .request(Method::PUT, &path)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file)));
        if let Some(t) = self.upload_timeout {
            rb = rb.timeout(t);
        }
        let bytes = self.send(rb).await?.bytes().await.map_err(|e| self.transport(e))?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Decode { path, source })
    }

    /// Makes sure the server has the bundle at `bundle` (root hash
    /// `root_hash`) as image `name`, owned by `project`: uploads it unless an
    /// image of that name and root hash exists. Another image of that name
    /// is [`Error::OtherImage`].
    pub async fn ensure_image(
        &self,
        name: &str,
        bundle: &Path,
        root_hash: &str,
        project: Option<&str>,
    ) -> Result<EnsureImage, Error> {
        match self.image(name).await {
            Ok(img) if img.root_hash == root_hash => return Ok(EnsureImage::Present),
            Ok(img) => return Err(Error::OtherImage { name: name.to_string(), root_hash: img.root_hash }),
            Err(Error::Api { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        let query = UploadQuery { project: project.map(str::to_string), visibility: None };
        self.image_upload(name, &query, bundle).await.map(|_| EnsureImage::Uploaded)
    }

    /// `PUT /v1/images/{name}/visibility`.
    pub async fn image_set_visibility(&self, name: &str, visibility: crate::v1::Visibility) -> Result<(), Error> {
        let body = SetVisibility { visibility };
        self.unit(Method::PUT, &format!("/v1/images/{}/visibility", seg(name)?), Some(&body)).await
    }

    /// `PUT /v1/images/{name}/members/{project}`: share a `shared` image.
    pub async fn image_share(&self, name: &str, project: &str) -> Result<(), Error> {
        self.unit(Method::PUT, &format!("/v1/images/{}/members/{}", seg(name)?, seg(project)?), NO_BODY).await
    }

    /// `DELETE /v1/images/{name}/members/{project}`.
    pub async fn image_unshare(&self, name: &str, project: &str) -> Result<(), Error> {
        self.unit(Method::DELETE, &format!("/v1/images/{}/members/{}", seg(name)?, seg(project)?), NO_BODY).await
    }

    /// `DELETE /v1/images/{name}`.
    pub async fn image_delete(&self, name: &str) -> Result<(), Error> {
        self.unit(Method::DELETE, &format!("/v1/images/{}", seg(name)?), NO_BODY).await
    }

    // -----------------------------------------------------------------------
    // /v1 deployments, runtime reports, reclaim
    // -----------------------------------------------------------------------

    /// `POST /v1/deployments`: the new deployment (running).
    pub async fn deploy(&self, req: &DeployRequest) -> Result<Deployment, Error> {
        self.json(Method::POST, "/v1/deployments", Some(req)).await
    }

    /// `GET /v1/deployments`: of the caller's projects, newest first.
    pub async fn deployments(&self) -> Result<Vec<Deployment>, Error> {
        self.json(Method::GET, "/v1/deployments", NO_BODY).await
    }

    /// `GET /v1/deployments/{id}`.
    pub async fn deployment(&self, id: i64) -> Result<Deployment, Error> {
        self.json(Method::GET, &format!("/v1/deployments/{id}"), NO_BODY).await
    }

    /// `POST /v1/deployments/{id}/retry`: deploy the failed nodes again.
    pub async fn deployment_retry(&self, id: i64) -> Result<Deployment, Error> {
        self.json(Method::POST, &format!("/v1/deployments/{id}/retry"), NO_BODY).await
    }

    /// `GET /v1/deployments/{id}/events`: the progress stream. Yields a
    /// snapshot on every change and [`DeploymentEvent::End`] last; other
    /// event kinds are skipped. A snapshot that does not decode is
    /// [`Error::Decode`]; the stream goes on after it.
    pub async fn deployment_events(
        &self,
        id: i64,
    ) -> Result<BoxStream<'static, Result<DeploymentEvent, Error>>, Error> {
        let path = format!("/v1/deployments/{id}/events");
        let rb = self.request(Method::GET, &path).header(reqwest::header::ACCEPT, "text/event-stream");
        let resp = self.send(rb).await?;
        let events = resp.bytes_stream().eventsource().filter_map(move |ev| {
            let out = match ev {
                Err(e) => Some(Err(Error::Stream(e))),
                Ok(ev) if ev.event == "progress" => Some(
                    serde_json::from_str(&ev.data)
                        .map(|d| DeploymentEvent::Progress(Box::new(d)))
                        .map_err(|source| Error::Decode { path: path.clone(), source }),
                ),
                Ok(ev) if ev.event == "end" => Some(Ok(DeploymentEvent::End)),
                Ok(_) => None,
            };
            std::future::ready(out)
        });
        Ok(events.boxed())
    }

    /// `GET /v1/nodes[?project=&state=]`: the nodes the caller may see, with where each stands.
    pub async fn node_overview(
        &self,
        project: Option<&str>,
        state: Option<NodeStatus>,
    ) -> Result<Vec<NodeSummary>, Error> {
        let mut q = Vec::new();
        if let Some(p) = project {
            q.push(format!("project={}", seg(p)?));
        }
        if let Some(s) = state {
            q.push(format!("state={}", s.as_str()));
        }
        let q = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
        self.json(Method::GET, &format!("/v1/nodes{q}"), NO_BODY).await
    }

    /// `GET /v1/nodes/{node}/runtime`: what the node's runtime last reported.
    pub async fn node_runtime(&self, node: &str) -> Result<NodeRuntime, Error> {
        self.json(Method::GET, &format!("/v1/nodes/{}/runtime", seg(node)?), NO_BODY).await
    }

    /// `POST /v1/nodes/{node}/reclaim`: back to the free pool running the runtime.
    pub async fn reclaim(&self, node: &str, req: &ReclaimRequest) -> Result<Reclaimed, Error> {
        self.json(Method::POST, &format!("/v1/nodes/{}/reclaim", seg(node)?), Some(req)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_must_be_http() {
        assert!(matches!(Client::new("ftp://x", Auth::None), Err(Error::BadUrl(_))));
        let c = Client::new("http://127.0.0.1:7000///", Auth::None).expect("http URL");
        assert_eq!(c.base_url(), "http://127.0.0.1:7000");
    }

    #[test]
    fn credentials_are_not_printed() {
        let s = format!(
            "{:?} {:?}",
            Auth::Bearer("mct_x_secret".into()),
            Auth::Basic { user: "u".into(), password: Some("pw".into()) }
        );
        assert!(!s.contains("secret") && !s.contains("pw"), "{s}");
    }

    #[tokio::test]
    async fn dot_segments_are_refused_before_sending() {
        // Nothing listens on port 9: a request would be a transport error.
        let c = Client::new("http://127.0.0.1:9", Auth::None).expect("client");
        assert!(matches!(c.node("..").await, Err(Error::DotSegment(s)) if s == ".."));
        assert!(matches!(c.node("n1").await, Err(Error::Transport { .. })));
    }
}
