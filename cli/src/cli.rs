//! The `metalcast` command line: `serve`, `admin bootstrap`, `completions`,
//! and `<noun> <verb>` commands that call the REST API.
//!
//! Exit codes: 0 success; 1 other error (bad local input, I/O, server
//! startup); 2 usage error (from clap); 3 cannot reach the server;
//! 4 authentication/authorization refused (401/403); 5 not found (404);
//! 6 conflict (409); 7 any other API error; 8 a deployment ended with failed nodes.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

/// Command line of the `metalcast` binary.
#[derive(Debug, Parser)]
#[command(
    name = "metalcast",
    version,
    about = "metalcast control plane: bare metal as a service (HIL-compatible API)",
    after_help = "Exit codes: 0 ok, 1 error, 2 usage, 3 server unreachable, \
                  4 unauthorized/forbidden, 5 not found, 6 conflict, 7 other API error, \
                  8 deployment finished with failed nodes."
)]
pub struct Cli {
    /// Server URL for client commands.
    #[arg(long, env = "METALCAST_URL", default_value = "http://127.0.0.1:7000", global = true)]
    pub url: String,
    /// API token (`mct_...`), sent as a Bearer token.
    #[arg(long, env = "METALCAST_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// User for HTTP Basic authentication (when no token is given).
    #[arg(long, env = "METALCAST_USER", global = true)]
    pub user: Option<String>,
    /// Password for HTTP Basic authentication.
    #[arg(long, env = "METALCAST_PASSWORD", global = true, hide_env_values = true)]
    pub password: Option<String>,
    /// PEM CA certificate to trust (instead of the system roots) for https URLs.
    #[arg(long, env = "METALCAST_CA_CERT", global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// Output format of client commands.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable table.
    Table,
    /// The JSON returned by the server.
    Json,
}

/// Options of `metalcast serve` and `metalcast admin bootstrap`.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// Database URL: `sqlite://FILE?mode=rwc` or `postgres://user:pw@host/db`.
    #[arg(long, env = "METALCAST_DATABASE_URL", default_value = metalcast_control_plane::db::DEFAULT_URL, hide_env_values = true)]
    pub database_url: String,
}

/// Deployment options of `metalcast serve`.
#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// This server's IPv4 address on the provisioning network: the multicast
    /// sender binds it and node reports come back to it. Without it,
    /// deployments are refused.
    #[arg(long, env = "METALCAST_PROVISION_ADDR")]
    pub provision_addr: Option<std::net::Ipv4Addr>,
    /// URL nodes use to reach this server (metadata seed URLs on the kernel
    /// command line); default `http://PROVISION_ADDR:LISTEN_PORT`.
    #[arg(long, env = "METALCAST_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// MTU of the provisioning network (sets the multicast symbol size; 9000 for jumbo frames).
    #[arg(long, default_value_t = 1500)]
    pub provision_mtu: usize,
    /// Default cap on the multicast send rate, Mbit/s of UDP payload (0: none);
    /// below it the rate adapts to the loss the nodes report.
    #[arg(long, default_value_t = 0)]
    pub rate_mbit: u64,
    /// Image (the bootstrap bundle from `metalcast-image initramfs`) that
    /// reclaimed nodes are kexec'd back into.
    #[arg(long)]
    pub runtime_image: Option<String>,
}

/// Options of `metalcast serve` that make it a nested control plane
/// (recursive HaaS, docs/recursion.md).
#[derive(Debug, Args)]
pub struct UpstreamArgs {
    /// Parent metalcast URL: serve the nodes that --upstream-project holds
    /// there (imported and kept in sync); power, boot device, console and
    /// networks are delegated to the parent.
    #[arg(long, env = "METALCAST_UPSTREAM", requires = "upstream_project")]
    pub upstream: Option<String>,
    /// Project at the parent whose nodes this instance serves.
    #[arg(long, env = "METALCAST_UPSTREAM_PROJECT", requires = "upstream")]
    pub upstream_project: Option<String>,
    /// API token (`mct_...`) of a member of --upstream-project at the parent.
    /// Prefer the environment or --upstream-token-file (argv is visible to other users).
    #[arg(long, env = "METALCAST_UPSTREAM_TOKEN", hide_env_values = true, conflicts_with = "upstream_token_file")]
    pub upstream_token: Option<String>,
    /// File holding the upstream API token.
    #[arg(long, env = "METALCAST_UPSTREAM_TOKEN_FILE")]
    pub upstream_token_file: Option<std::path::PathBuf>,
    /// Seconds between inventory syncs with the parent (doubling up to 60 while it is unreachable).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub upstream_sync_secs: u64,
}

impl UpstreamArgs {
    /// The parent connection settings, or `None` when not nested.
    pub fn config(&self) -> anyhow::Result<Option<metalcast_control_plane::app::upstream::UpstreamConfig>> {
        use anyhow::Context;
        let (Some(url), Some(project)) = (&self.upstream, &self.upstream_project) else {
            return Ok(None);
        };
        let token = match (&self.upstream_token, &self.upstream_token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(f)) => {
                std::fs::read_to_string(f).with_context(|| format!("reading upstream token file {}", f.display()))?
            }
            (None, None) => anyhow::bail!("--upstream needs --upstream-token or --upstream-token-file"),
        };
        Ok(Some(metalcast_control_plane::app::upstream::UpstreamConfig {
            url: url.clone(),
            project: project.clone(),
            token: token.trim().to_string(),
            sync_interval: std::time::Duration::from_secs(self.upstream_sync_secs),
        }))
    }
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "METALCAST_LISTEN", default_value = "127.0.0.1:7000")]
        listen: SocketAddr,
        #[command(flatten)]
        db: DbArgs,
        /// VLAN id pool for networks, `FIRST-LAST`.
        #[arg(long, default_value = "100-3999", value_parser = parse_vlan_range)]
        vlan_range: metalcast_control_plane::VlanPool,
        /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
        #[arg(long, env = "METALCAST_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<std::path::PathBuf>,
        /// PEM private key for --tls-cert.
        #[arg(long, env = "METALCAST_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<std::path::PathBuf>,
        /// Directory for server data (the image registry's bundles).
        #[arg(long, env = "METALCAST_DATA_DIR", default_value = "metalcast-data")]
        data_dir: std::path::PathBuf,
        /// Public key file (from `metalcast-image keygen`) whose signed bundles the
        /// image registry accepts; repeat for several signers. Without any, uploads are refused.
        #[arg(long = "trusted-key", value_name = "FILE")]
        trusted_keys: Vec<std::path::PathBuf>,
        /// Largest image bundle accepted in one upload, in MiB.
        #[arg(long, default_value_t = metalcast_control_plane::registry::DEFAULT_MAX_UPLOAD >> 20)]
        max_image_mib: u64,
        #[command(flatten)]
        provision: ProvisionArgs,
        #[command(flatten)]
        upstream: UpstreamArgs,
    },
    /// Server administration done directly on the database.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Print a shell completion script.
    Completions {
        /// Shell.
        shell: clap_complete::Shell,
    },
    /// Projects (tenants).
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Nodes (bare-metal machines).
    #[command(subcommand)]
    Node(NodeCmd),
    /// Networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Switches and their ports.
    #[command(subcommand)]
    Switch(SwitchCmd),
    /// Users.
    #[command(subcommand)]
    User(UserCmd),
    /// Show the status of a networking action.
    Action {
        /// Status id returned by connect/detach/revert.
        status_id: String,
    },
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Show who the credentials belong to.
    Whoami,
    /// Node events of your projects, e.g. why a nested instance's parent took a node back.
    Events {
        /// Only events of this node.
        #[arg(long)]
        node: Option<String>,
    },
    /// Image registry: upload signed bundles, list, share, delete.
    #[command(subcommand)]
    Image(crate::cli_registry::ImageCmd),
    /// SSH public keys for deployed operating systems.
    #[command(subcommand)]
    Keypair(crate::cli_registry::KeypairCmd),
    /// Project quotas (nodes, images, image storage).
    #[command(subcommand)]
    Quota(crate::cli_registry::QuotaCmd),
    /// Deploy an image to nodes by multicast, with live progress; or list, show, watch, retry deployments.
    Deploy(crate::cli_deploy::DeployArgs),
    /// Stream a bundle by RaptorQ multicast until every expected receiver is done.
    Send(crate::send::SendArgs),
    /// The README's main job: a real multicast deploy to namespace nodes on this machine (root).
    Demo(crate::demo::DemoArgs),
}

/// `metalcast admin ...`
#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Create the first admin user and print its password and an API token.
    Bootstrap {
        #[command(flatten)]
        db: DbArgs,
        /// Admin user name.
        #[arg(long, default_value = "admin")]
        admin_user: String,
        /// Password (generated if omitted).
        #[arg(long, env = "METALCAST_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: Option<String>,
    },
}

/// `metalcast project ...`
#[derive(Debug, Subcommand)]
pub enum ProjectCmd {
    /// List projects (admin).
    List,
    /// Create a project (admin).
    Create {
        /// Project name.
        project: String,
    },
    /// Delete a project (admin; must own nothing).
    Delete {
        /// Project name.
        project: String,
    },
    /// A project's nodes.
    #[command(subcommand)]
    Node(ProjectNodeCmd),
    /// Networks the project can access.
    Networks {
        /// Project name.
        project: String,
    },
}

/// `metalcast project node ...`
#[derive(Debug, Subcommand)]
pub enum ProjectNodeCmd {
    /// Reserve a free node for the project.
    Add {
        /// Project name.
        project: String,
        /// Node name.
        node: String,
    },
    /// Return a node to the free pool.
    Remove {
        /// Project name.
        project: String,
        /// Node name.
        node: String,
    },
    /// List the project's nodes.
    List {
        /// Project name.
        project: String,
    },
}

/// Which nodes to list.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Which {
    /// Every node.
    All,
    /// Nodes not in any project.
    Free,
}

/// Power actions.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PowerVerb {
    /// Power on.
    On,
    /// Power off.
    Off,
    /// Power cycle.
    Cycle,
    /// Show power state.
    Status,
}

/// Console verbs.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ConsoleVerb {
    /// Start capturing the console log.
    Start,
    /// Print the captured log.
    Show,
    /// Stop capturing and delete the log.
    Stop,
}

/// `metalcast node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Return a node to the free pool running the runtime (kexec, else BMC),
    /// optionally wiped, networks detached; prints the time of each phase.
    Reclaim {
        /// Node name.
        node: String,
        /// Erase the disks first.
        #[arg(long, value_enum, default_value_t = metalcast_control_plane::app::reclaim::WipeSpec::None)]
        wipe: metalcast_control_plane::app::reclaim::WipeSpec,
        /// Seconds to wait for the runtime to come back.
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// List nodes.
    List {
        /// `all` or `free`.
        #[arg(value_enum, default_value = "all")]
        which: Which,
    },
    /// Show a node.
    Show {
        /// Node name.
        node: String,
    },
    /// Register a node (admin).
    Register {
        /// Node name.
        node: String,
        /// BMC description as JSON, e.g.
        /// '{"type":"ipmi","host":"10.0.0.5","user":"ADMIN","password":"x"}'.
        #[arg(long)]
        obm: String,
    },
    /// Delete a node (admin).
    Delete {
        /// Node name.
        node: String,
    },
    /// Power control.
    Power {
        /// on, off, cycle or status.
        #[arg(value_enum)]
        verb: PowerVerb,
        /// Node name.
        node: String,
    },
    /// Console log: `start` capturing, `show` the log, `stop` (deletes it).
    Console {
        /// start, show or stop.
        #[arg(value_enum)]
        verb: ConsoleVerb,
        /// Node name.
        node: String,
    },
    /// Set the next boot device (disk, pxe, none).
    Bootdev {
        /// Node name.
        node: String,
        /// Boot device.
        device: String,
    },
    /// NICs.
    #[command(subcommand)]
    Nic(NicCmd),
    /// Metadata labels.
    #[command(subcommand)]
    Metadata(MetadataCmd),
    /// Connect a NIC to a network (asynchronous; prints a status id).
    Connect {
        /// Node name.
        node: String,
        /// NIC name.
        nic: String,
        /// Network name.
        network: String,
        /// Channel (`vlan/native` default, or `vlan/<id>`).
        #[arg(long)]
        channel: Option<String>,
    },
    /// Detach a NIC from a network (asynchronous; prints a status id).
    Detach {
        /// Node name.
        node: String,
        /// NIC name.
        nic: String,
        /// Network name.
        network: String,
    },
}

/// `metalcast node nic ...`
#[derive(Debug, Subcommand)]
pub enum NicCmd {
    /// Register a NIC (admin).
    Add {
        /// Node name.
        node: String,
        /// NIC name.
        nic: String,
        /// MAC address.
        macaddr: String,
    },
    /// Delete a NIC (admin).
    Delete {
        /// Node name.
        node: String,
        /// NIC name.
        nic: String,
    },
}

/// `metalcast node metadata ...`
#[derive(Debug, Subcommand)]
pub enum MetadataCmd {
    /// Set a label (value is JSON; plain text is stored as a string).
    Set {
        /// Node name.
        node: String,
        /// Label.
        label: String,
        /// Value.
        value: String,
    },
    /// Delete a label.
    Delete {
        /// Node name.
        node: String,
        /// Label.
        label: String,
    },
}

/// `metalcast network ...`
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// List all networks (admin).
    List,
    /// Show a network.
    Show {
        /// Network name.
        network: String,
    },
    /// Create a network.
    Create {
        /// Network name.
        network: String,
        /// Owning project, or `admin`.
        #[arg(long)]
        owner: String,
        /// Project with access ('' = public, admin-owned only).
        #[arg(long, default_value = "")]
        access: String,
        /// Fixed VLAN id ('' = allocate from the pool).
        #[arg(long, default_value = "")]
        net_id: String,
    },
    /// Delete a network.
    Delete {
        /// Network name.
        network: String,
    },
    /// List nodes attached to a network.
    Attachments {
        /// Network name.
        network: String,
        /// Only this project's nodes.
        #[arg(long)]
        project: Option<String>,
    },
    /// Grant a project access to a network.
    Grant {
        /// Network name.
        network: String,
        /// Project name.
        project: String,
    },
    /// Revoke a project's access to a network.
    Revoke {
        /// Network name.
        network: String,
        /// Project name.
        project: String,
    },
}

/// `metalcast switch ...`
#[derive(Debug, Subcommand)]
pub enum SwitchCmd {
    /// List switches (admin).
    List,
    /// Show a switch.
    Show {
        /// Switch name.
        switch: String,
    },
    /// Register a Linux-bridge switch (admin).
    Register {
        /// Switch name.
        switch: String,
        /// Bridge interface.
        #[arg(long)]
        bridge: String,
        /// Network namespace of the bridge.
        #[arg(long)]
        netns: Option<String>,
    },
    /// Delete a switch (admin).
    Delete {
        /// Switch name.
        switch: String,
    },
    /// Ports.
    #[command(subcommand)]
    Port(PortCmd),
}

/// `metalcast switch port ...`
#[derive(Debug, Subcommand)]
pub enum PortCmd {
    /// Register a port.
    Add {
        /// Switch name.
        switch: String,
        /// Port (interface) name.
        port: String,
    },
    /// Delete a port.
    Delete {
        /// Switch name.
        switch: String,
        /// Port name.
        port: String,
    },
    /// Show what is connected to a port.
    Show {
        /// Switch name.
        switch: String,
        /// Port name.
        port: String,
    },
    /// Connect a node's NIC to a port.
    Connect {
        /// Switch name.
        switch: String,
        /// Port name.
        port: String,
        /// Node name.
        node: String,
        /// NIC name.
        nic: String,
    },
    /// Detach the NIC from a port.
    Detach {
        /// Switch name.
        switch: String,
        /// Port name.
        port: String,
    },
    /// Remove every network from a port (asynchronous).
    Revert {
        /// Switch name.
        switch: String,
        /// Port name.
        port: String,
    },
}

/// `metalcast user ...`
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user (admin); password from --new-password or METALCAST_NEW_PASSWORD.
    Create {
        /// User name.
        user: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// The new user's password.
        #[arg(long, env = "METALCAST_NEW_PASSWORD", hide_env_values = true)]
        new_password: String,
    },
    /// Delete a user (admin).
    Delete {
        /// User name.
        user: String,
    },
    /// Add a user to a project (admin).
    AddProject {
        /// User name.
        user: String,
        /// Project name.
        project: String,
    },
    /// Remove a user from a project (admin).
    RemoveProject {
        /// User name.
        user: String,
        /// Project name.
        project: String,
    },
}

/// `metalcast token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token for yourself.
    Create {
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tokens.
    List,
    /// Delete a token.
    Delete {
        /// Token id.
        id: String,
    },
}

fn parse_vlan_range(s: &str) -> Result<metalcast_control_plane::VlanPool, String> {
    let (a, b) = s.split_once('-').ok_or("expected FIRST-LAST")?;
    let first: u16 = a.trim().parse().map_err(|_| "bad first VLAN id")?;
    let last: u16 = b.trim().parse().map_err(|_| "bad last VLAN id")?;
    if first == 0 || last > 4094 || first > last {
        return Err("VLAN range must be within 1-4094 and FIRST <= LAST".into());
    }
    Ok(metalcast_control_plane::VlanPool { first, last })
}

/// Failure of a client command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Could not reach the server.
    #[error("cannot reach {url}: {source}")]
    Connect {
        /// Server URL.
        url: String,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{status}: {msg}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Server message.
        msg: String,
    },
    /// Bad local input.
    #[error("{0}")]
    Input(String),
    /// A deployment ended with failed nodes.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// Process exit code (see module docs).
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Connect { .. } => 3,
            CliError::Api { status: 401 | 403, .. } => 4,
            CliError::Api { status: 404, .. } => 5,
            CliError::Api { status: 409, .. } => 6,
            CliError::Api { .. } => 7,
            CliError::Input(_) => 1,
            CliError::Failed(_) => 8,
        }
    }
}

/// HTTP client for the API.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    basic: Option<(String, Option<String>)>,
}

impl Client {
    /// Build from the global CLI options.
    pub fn from_cli(cli: &Cli) -> Result<Self, CliError> {
        metalcast_control_plane::install_tls_provider();
        let mut b = reqwest::Client::builder();
        if let Some(path) = &cli.ca_cert {
            let pem = std::fs::read(path).map_err(|e| CliError::Input(format!("reading {}: {e}", path.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| CliError::Input(format!("{} is not a PEM certificate: {e}", path.display())))?;
            b = b.tls_certs_only([cert]);
        }
        let http = b.build().map_err(|e| CliError::Input(format!("cannot build HTTP client: {e}")))?;
        Ok(Client {
            http,
            url: cli.url.trim_end_matches('/').to_string(),
            token: cli.token.clone(),
            basic: cli.user.clone().map(|u| (u, cli.password.clone())),
        })
    }

    /// Send a request; return the JSON body (`null` when empty).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, CliError> {
        self.send(method, path, body.map(ReqBody::Json).unwrap_or(ReqBody::Empty)).await.map(|(v, _)| v)
    }

    /// Send a request with any body; returns the JSON answer (or `Null`) and the raw bytes.
    pub async fn send(&self, method: &str, path: &str, body: ReqBody) -> Result<(Value, Vec<u8>), CliError> {
        let url = format!("{}{path}", self.url);
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| CliError::Input(format!("bad method {method}")))?;
        let mut rb = self.http.request(method, &url);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        } else if let Some((u, p)) = &self.basic {
            rb = rb.basic_auth(u, p.as_ref());
        }
        match body {
            ReqBody::Empty => {}
            ReqBody::Json(b) => rb = rb.json(&b),
            ReqBody::File(f, len) => {
                rb = rb
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .header(reqwest::header::CONTENT_LENGTH, len)
                    .body(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(f)))
            }
        }
        let resp = rb.send().await.map_err(|source| CliError::Connect { url: self.url.clone(), source })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|source| CliError::Connect { url: self.url.clone(), source })?;
        let text = String::from_utf8_lossy(&bytes);
        let v: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(text.into_owned()))
        };
        if status >= 400 {
            let msg = v.get("msg").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| v.to_string());
            return Err(CliError::Api { status, msg });
        }
        Ok((v, bytes.to_vec()))
    }
}

/// A request body for [`Client::send`].
#[derive(Debug)]
pub enum ReqBody {
    /// No body.
    Empty,
    /// A JSON document.
    Json(Value),
    /// A file streamed as `application/octet-stream`, with its length.
    File(tokio::fs::File, u64),
}

impl Client {
    /// A client for `url` with an API token (for programs that are not the CLI, e.g. the demo).
    pub fn new(url: &str, token: Option<String>) -> Result<Self, CliError> {
        metalcast_control_plane::install_tls_provider();
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| CliError::Input(format!("cannot build HTTP client: {e}")))?;
        Ok(Client { http, url: url.trim_end_matches('/').to_string(), token, basic: None })
    }

    /// `GET` an absolute URL without credentials (e.g. a metadata seed); the body as text.
    pub async fn get_text(&self, url: &str) -> Result<String, CliError> {
        let resp = self.http.get(url).send().await.map_err(|source| CliError::Connect { url: url.into(), source })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|source| CliError::Connect { url: url.into(), source })?;
        if status >= 400 {
            return Err(CliError::Api { status, msg: text });
        }
        Ok(text)
    }

    /// `GET path` for a streamed answer (server-sent events); errors as in [`Client::send`].
    pub async fn get_stream(&self, path: &str) -> Result<reqwest::Response, CliError> {
        let mut rb = self.http.get(format!("{}{path}", self.url)).header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        } else if let Some((u, p)) = &self.basic {
            rb = rb.basic_auth(u, p.as_ref());
        }
        let resp = rb.send().await.map_err(|source| CliError::Connect { url: self.url.clone(), source })?;
        let status = resp.status().as_u16();
        if status >= 400 {
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            let msg = v.get("msg").and_then(Value::as_str).map_or_else(|| v.to_string(), str::to_string);
            return Err(CliError::Api { status, msg });
        }
        Ok(resp)
    }
}

/// Run a client (REST) command; returns the JSON to print.
pub async fn run_client(cli: &Cli) -> Result<Value, CliError> {
    let c = Client::from_cli(cli)?;
    let e = |s: &str| urlencode(s);
    use Command as C;
    match &cli.command {
        C::Serve { .. } | C::Admin(_) | C::Completions { .. } | C::Send(_) | C::Demo(_) => {
            Err(CliError::Input("not a client command".into()))
        }
        C::Whoami => c.call("GET", "/v1/whoami", None).await,
        C::Deploy(a) => crate::cli_deploy::run(&c, a, cli.output == Output::Json).await,
        C::Events { node } => {
            let q = node.as_deref().map(|n| format!("?node={}", e(n))).unwrap_or_default();
            c.call("GET", &format!("/v1/events{q}"), None).await
        }
        C::Action { status_id } => c.call("GET", &format!("/v0/networking_action/{}", e(status_id)), None).await,
        C::Project(p) => match p {
            ProjectCmd::List => c.call("GET", "/v0/projects", None).await,
            ProjectCmd::Create { project } => c.call("PUT", &format!("/v0/project/{}", e(project)), None).await,
            ProjectCmd::Delete { project } => c.call("DELETE", &format!("/v0/project/{}", e(project)), None).await,
            ProjectCmd::Networks { project } => {
                c.call("GET", &format!("/v0/project/{}/networks", e(project)), None).await
            }
            ProjectCmd::Node(n) => match n {
                ProjectNodeCmd::Add { project, node } => {
                    c.call("POST", &format!("/v0/project/{}/connect_node", e(project)), Some(json!({ "node": node })))
                        .await
                }
                ProjectNodeCmd::Remove { project, node } => {
                    c.call("POST", &format!("/v0/project/{}/detach_node", e(project)), Some(json!({ "node": node })))
                        .await
                }
                ProjectNodeCmd::List { project } => {
                    c.call("GET", &format!("/v0/project/{}/nodes", e(project)), None).await
                }
            },
        },
        C::Node(n) => match n {
            NodeCmd::List { which } => {
                let w = match which {
                    Which::All => "all",
                    Which::Free => "free",
                };
                c.call("GET", &format!("/v0/nodes/{w}"), None).await
            }
            NodeCmd::Show { node } => c.call("GET", &format!("/v0/node/{}", e(node)), None).await,
            NodeCmd::Reclaim { node, wipe, timeout } => crate::cli_deploy::reclaim(&c, node, *wipe, *timeout).await,
            NodeCmd::Register { node, obm } => {
                let obm: Value =
                    serde_json::from_str(obm).map_err(|err| CliError::Input(format!("--obm is not JSON: {err}")))?;
                c.call("PUT", &format!("/v0/node/{}", e(node)), Some(json!({ "obm": obm }))).await
            }
            NodeCmd::Delete { node } => c.call("DELETE", &format!("/v0/node/{}", e(node)), None).await,
            NodeCmd::Power { verb, node } => {
                let (m, p) = match verb {
                    PowerVerb::On => ("POST", "power_on"),
                    PowerVerb::Off => ("POST", "power_off"),
                    PowerVerb::Cycle => ("POST", "power_cycle"),
                    PowerVerb::Status => ("GET", "power_status"),
                };
                c.call(m, &format!("/v0/node/{}/{p}", e(node)), None).await
            }
            NodeCmd::Console { verb, node } => {
                let m = match verb {
                    ConsoleVerb::Start => "PUT",
                    ConsoleVerb::Show => "GET",
                    ConsoleVerb::Stop => "DELETE",
                };
                c.call(m, &format!("/v0/node/{}/console", e(node)), None).await
            }
            NodeCmd::Bootdev { node, device } => {
                c.call("PUT", &format!("/v0/node/{}/boot_device", e(node)), Some(json!({ "bootdev": device }))).await
            }
            NodeCmd::Nic(NicCmd::Add { node, nic, macaddr }) => {
                c.call("PUT", &format!("/v0/node/{}/nic/{}", e(node), e(nic)), Some(json!({ "macaddr": macaddr })))
                    .await
            }
            NodeCmd::Nic(NicCmd::Delete { node, nic }) => {
                c.call("DELETE", &format!("/v0/node/{}/nic/{}", e(node), e(nic)), None).await
            }
            NodeCmd::Metadata(MetadataCmd::Set { node, label, value }) => {
                let v = serde_json::from_str(value).unwrap_or(Value::String(value.clone()));
                c.call("PUT", &format!("/v0/node/{}/metadata/{}", e(node), e(label)), Some(json!({ "value": v }))).await
            }
            NodeCmd::Metadata(MetadataCmd::Delete { node, label }) => {
                c.call("DELETE", &format!("/v0/node/{}/metadata/{}", e(node), e(label)), None).await
            }
            NodeCmd::Connect { node, nic, network, channel } => {
                let mut body = json!({ "network": network });
                if let Some(ch) = channel {
                    body["channel"] = json!(ch);
                }
                c.call("POST", &format!("/v0/node/{}/nic/{}/connect_network", e(node), e(nic)), Some(body)).await
            }
            NodeCmd::Detach { node, nic, network } => {
                c.call(
                    "POST",
                    &format!("/v0/node/{}/nic/{}/detach_network", e(node), e(nic)),
                    Some(json!({ "network": network })),
                )
                .await
            }
        },
        C::Network(n) => match n {
            NetworkCmd::List => c.call("GET", "/v0/networks", None).await,
            NetworkCmd::Show { network } => c.call("GET", &format!("/v0/network/{}", e(network)), None).await,
            NetworkCmd::Create { network, owner, access, net_id } => {
                c.call(
                    "PUT",
                    &format!("/v0/network/{}", e(network)),
                    Some(json!({ "owner": owner, "access": access, "net_id": net_id })),
                )
                .await
            }
            NetworkCmd::Delete { network } => c.call("DELETE", &format!("/v0/network/{}", e(network)), None).await,
            NetworkCmd::Attachments { network, project } => {
                let q = project.as_ref().map(|p| format!("?project={}", e(p))).unwrap_or_default();
                c.call("GET", &format!("/v0/network/{}/attachments{q}", e(network)), None).await
            }
            NetworkCmd::Grant { network, project } => {
                c.call("PUT", &format!("/v0/network/{}/access/{}", e(network), e(project)), None).await
            }
            NetworkCmd::Revoke { network, project } => {
                c.call("DELETE", &format!("/v0/network/{}/access/{}", e(network), e(project)), None).await
            }
        },
        C::Switch(s) => match s {
            SwitchCmd::List => c.call("GET", "/v0/switches", None).await,
            SwitchCmd::Show { switch } => c.call("GET", &format!("/v0/switch/{}", e(switch)), None).await,
            SwitchCmd::Register { switch, bridge, netns } => {
                let mut body = json!({ "type": "linux-bridge", "bridge": bridge });
                if let Some(ns) = netns {
                    body["netns"] = json!(ns);
                }
                c.call("PUT", &format!("/v0/switch/{}", e(switch)), Some(body)).await
            }
            SwitchCmd::Delete { switch } => c.call("DELETE", &format!("/v0/switch/{}", e(switch)), None).await,
            SwitchCmd::Port(p) => {
                let base = |sw: &str, port: &str| format!("/v0/switch/{}/port/{}", e(sw), e(port));
                match p {
                    PortCmd::Add { switch, port } => c.call("PUT", &base(switch, port), None).await,
                    PortCmd::Delete { switch, port } => c.call("DELETE", &base(switch, port), None).await,
                    PortCmd::Show { switch, port } => c.call("GET", &base(switch, port), None).await,
                    PortCmd::Connect { switch, port, node, nic } => {
                        c.call(
                            "POST",
                            &format!("{}/connect_nic", base(switch, port)),
                            Some(json!({ "node": node, "nic": nic })),
                        )
                        .await
                    }
                    PortCmd::Detach { switch, port } => {
                        c.call("POST", &format!("{}/detach_nic", base(switch, port)), None).await
                    }
                    PortCmd::Revert { switch, port } => {
                        c.call("POST", &format!("{}/revert", base(switch, port)), None).await
                    }
                }
            }
        },
        C::User(u) => match u {
            UserCmd::Create { user, admin, new_password } => {
                c.call(
                    "PUT",
                    &format!("/v0/auth/basic/user/{}", e(user)),
                    Some(json!({ "password": new_password, "is_admin": admin })),
                )
                .await
            }
            UserCmd::Delete { user } => c.call("DELETE", &format!("/v0/auth/basic/user/{}", e(user)), None).await,
            UserCmd::AddProject { user, project } => {
                c.call(
                    "POST",
                    &format!("/v0/auth/basic/user/{}/add_project", e(user)),
                    Some(json!({ "project": project })),
                )
                .await
            }
            UserCmd::RemoveProject { user, project } => {
                c.call(
                    "POST",
                    &format!("/v0/auth/basic/user/{}/remove_project", e(user)),
                    Some(json!({ "project": project })),
                )
                .await
            }
        },
        C::Image(i) => crate::cli_registry::run_image(&c, i).await,
        C::Keypair(k) => crate::cli_registry::run_keypair(&c, k).await,
        C::Quota(q) => crate::cli_registry::run_quota(&c, q).await,
        C::Token(t) => match t {
            TokenCmd::Create { description } => {
                c.call("POST", "/v1/tokens", Some(json!({ "description": description }))).await
            }
            TokenCmd::List => c.call("GET", "/v1/tokens", None).await,
            TokenCmd::Delete { id } => c.call("DELETE", &format!("/v1/tokens/{}", e(id)), None).await,
        },
    }
}

/// Percent-encode a path segment (everything but unreserved characters).
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Render a JSON response for humans.
pub fn render_table(v: &Value) -> String {
    fn cell(v: &Value) -> String {
        match v {
            Value::Null => "-".into(),
            Value::String(s) => s.clone(),
            Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
            Value::Object(_) => v.to_string(),
            other => other.to_string(),
        }
    }
    fn table(rows: Vec<Vec<String>>) -> String {
        let n = rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> =
            (0..n).map(|i| rows.iter().map(|r| r.get(i).map_or(0, |c| c.chars().count())).max().unwrap_or(0)).collect();
        let mut out = String::new();
        for r in rows {
            let line: Vec<String> = r.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
    match v {
        Value::Null => String::new(),
        Value::Array(items) if items.iter().all(|i| !i.is_object()) => items.iter().map(|i| cell(i) + "\n").collect(),
        Value::Array(items) => {
            let mut cols: Vec<String> = Vec::new();
            for i in items {
                for k in i.as_object().into_iter().flat_map(|o| o.keys()) {
                    if !cols.contains(k) {
                        cols.push(k.clone());
                    }
                }
            }
            let mut rows = vec![cols.iter().map(|c| c.to_uppercase()).collect()];
            for i in items {
                rows.push(cols.iter().map(|c| cell(&i[c])).collect());
            }
            table(rows)
        }
        Value::Object(o) if !o.is_empty() && o.values().all(Value::is_object) => {
            // A map of name -> object, e.g. list_networks.
            let mut cols: Vec<String> = Vec::new();
            for i in o.values() {
                for k in i.as_object().into_iter().flat_map(|o| o.keys()) {
                    if !cols.contains(k) {
                        cols.push(k.clone());
                    }
                }
            }
            let mut rows =
                vec![std::iter::once("NAME".to_string()).chain(cols.iter().map(|c| c.to_uppercase())).collect()];
            for (k, i) in o {
                rows.push(std::iter::once(k.clone()).chain(cols.iter().map(|c| cell(&i[c]))).collect());
            }
            table(rows)
        }
        Value::Object(o) => table(o.iter().map(|(k, v)| vec![k.clone(), cell(v)]).collect()),
        other => cell(other) + "\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_hil_style_verbs() {
        let c = Cli::try_parse_from(["metalcast", "node", "list", "free", "-o", "json"]).unwrap();
        assert!(matches!(c.command, Command::Node(NodeCmd::List { which: Which::Free })));
        assert_eq!(c.output, Output::Json);
        let c = Cli::try_parse_from(["metalcast", "project", "node", "add", "p1", "n1"]).unwrap();
        assert!(matches!(c.command, Command::Project(ProjectCmd::Node(ProjectNodeCmd::Add { .. }))));
        assert!(Cli::try_parse_from(["metalcast", "serve", "--vlan-range", "5-1"]).is_err());
    }

    #[test]
    fn tables() {
        assert_eq!(render_table(&json!(["a", "b"])), "a\nb\n");
        let t = render_table(&json!({"net1": {"network_id": "100", "projects": null}}));
        assert!(t.starts_with("NAME"), "{t}");
        assert!(t.contains("net1  100"), "{t}");
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
    }
}
