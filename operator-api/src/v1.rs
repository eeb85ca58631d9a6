//! `/v1`: metalcast's additions to the HIL API (`docs/rest-api.md`, the
//! OpenAPI document at `GET /v1/openapi.json`).
//!
//! Copies of the server's types with the same serde attributes and field
//! order: tokens and health (`http/v1/tokens.rs`, `app/tokens.rs`), node
//! events (`app/events.rs`), quotas and keypairs (`app/quotas.rs`,
//! `app/keypairs.rs`), images (`app/images.rs`), deployments and runtime
//! reports (`app/deployments/`, `db/deployments.rs`), reclaim
//! (`app/reclaim.rs`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

// ---------------------------------------------------------------------------
// Health, whoami, tokens, events
// ---------------------------------------------------------------------------

/// Health report (`GET /v1/health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `ok` when the database answers.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub database: String,
}

/// The authenticated caller (`GET /v1/whoami`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// User name.
    pub user: String,
    /// Administrator?
    pub admin: bool,
    /// Project memberships, sorted.
    pub projects: Vec<String>,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// A newly created token; the secret is shown only once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreated {
    /// Token id (used to delete it).
    pub id: String,
    /// The bearer token `mct_<id>_<secret>`.
    pub token: String,
}

/// A stored token (without its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Token id.
    pub id: String,
    /// Owner.
    pub user: String,
    /// Description given at creation.
    pub description: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

/// Something that happened to a node that its project should learn about,
/// e.g. the parent taking it back (`GET /v1/events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

// ---------------------------------------------------------------------------
// Quotas and keypairs
// ---------------------------------------------------------------------------

/// A project's limits; `null` means unlimited (`PUT /v1/projects/{p}/quota`
/// body and answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Most nodes the project may hold at once.
    #[serde(default)]
    pub max_nodes: Option<i64>,
    /// Most images the project may own.
    #[serde(default)]
    pub max_images: Option<i64>,
    /// Most bytes of bundle files the project's images may take.
    #[serde(default)]
    pub max_image_bytes: Option<i64>,
}

/// A project's limits and what it uses now (`GET /v1/projects/{p}/quota`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUsage {
    /// Project name.
    pub project: String,
    /// Limits.
    pub quota: Quota,
    /// Nodes held.
    pub nodes: i64,
    /// Images owned.
    pub images: i64,
    /// Bytes of the owned images' bundle files.
    pub image_bytes: i64,
}

/// Request to register a public key (`POST /v1/keypairs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeypairCreate {
    /// Name, unique per user.
    pub name: String,
    /// One OpenSSH public key line, e.g. `ssh-ed25519 AAAA... comment`.
    pub public_key: String,
    /// Share with this project (the caller must be a member).
    #[serde(default)]
    pub project: Option<String>,
}

/// A registered public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keypair {
    /// Owning user.
    pub user: String,
    /// Name.
    pub name: String,
    /// Project it is shared with.
    pub project: Option<String>,
    /// The public key line as stored (normalised by the parser).
    pub public_key: String,
    /// `SHA256:...` fingerprint.
    pub fingerprint: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

// ---------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------

/// Who may see an image (also the CLI's `--visibility` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Every authenticated user.
    Public,
    /// The owner project only.
    Private,
    /// The owner project and its member projects.
    Shared,
}

impl Visibility {
    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
            Visibility::Shared => "shared",
        }
    }
}

/// A registered image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Image name.
    pub name: String,
    /// Owner project; `null` for administrator images.
    pub owner: Option<String>,
    /// Who may see and deploy it.
    pub visibility: Visibility,
    /// Projects a `shared` image is shared with (shown to the owner and admins only).
    pub members: Vec<String>,
    /// Hex root hash of the bundle's chunk table.
    pub root_hash: String,
    /// Bytes of the bundle file.
    pub stored_bytes: i64,
    /// Bytes of the image once extracted.
    pub data_bytes: i64,
    /// Hex public key of the signer.
    pub signer: String,
    /// Uploading user.
    pub uploaded_by: String,
    /// Upload time, unix seconds.
    pub created_at: i64,
}

/// Query of an upload (`PUT /v1/images/{name}?project=&visibility=`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// Owner project (omit for an administrator image).
    pub project: Option<String>,
    /// Default: `private` for project images, `public` for administrator images.
    pub visibility: Option<Visibility>,
}

/// `PUT /v1/images/{name}/visibility`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetVisibility {
    /// New visibility.
    pub visibility: Visibility,
}

// ---------------------------------------------------------------------------
// Deployments
// ---------------------------------------------------------------------------

/// Where a deployment as a whole stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentState {
    /// Some node is still in flight.
    Running,
    /// Every node reached its goal.
    Done,
    /// At least one node failed.
    Failed,
}

/// Where one node of a deployment stands:
/// `waiting -> receiving -> verifying -> handover -> booting -> booted`
/// (`verified` for a deployment without hand-over), or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Not yet heard in the session.
    Waiting,
    /// Receiving blocks.
    Receiving,
    /// Checking the image against its root hash.
    Verifying,
    /// Handing over (kexec or reboot).
    Handover,
    /// Booting the new system.
    Booting,
    /// The new system checked in.
    Booted,
    /// The image is verified in place (no hand-over asked).
    Verified,
    /// Failed (see the node's reason).
    Failed,
}

macro_rules! state_names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}
state_names!(DeploymentState { Running => "running", Done => "done", Failed => "failed" });
state_names!(NodeState {
    Waiting => "waiting", Receiving => "receiving", Verifying => "verifying", Handover => "handover",
    Booting => "booting", Booted => "booted", Verified => "verified", Failed => "failed",
});

/// Node states that end a node's part in a deployment.
pub const TERMINAL: [NodeState; 3] = [NodeState::Booted, NodeState::Verified, NodeState::Failed];

/// Where to write the image on each node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
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

/// `POST /v1/deployments`. Options left `None` are not sent (the server's
/// defaults apply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Image to deploy (one the caller may see).
    pub image: String,
    /// Nodes to deploy to; all must belong to one project the caller is in.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Deploy to every node of this project (when `nodes` is empty), or the project `nodes` must belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// Names of keypairs (the caller's, or shared with the project) put into the nodes' metadata.
    #[serde(default)]
    pub keypairs: Vec<String>,
    /// Send-rate cap in Mbit/s (default: the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_mbit: Option<u64>,
    /// Seconds a node may take from the start to its last phase before it is failed (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

impl DeployRequest {
    /// A request for `image` with every option at the server's default.
    pub fn new(image: impl Into<String>) -> Self {
        DeployRequest {
            image: image.into(),
            nodes: Vec::new(),
            project: None,
            target: TargetSpec::default(),
            handover: HandoverSpec::default(),
            cmdline_append: String::new(),
            user_data: None,
            keypairs: Vec::new(),
            rate_mbit: None,
            timeout_secs: None,
        }
    }
}

/// One node of a deployment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeProgress {
    /// Node name.
    pub node: String,
    /// Where it stands.
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

impl NodeProgress {
    /// Whether the node's part has ended ([`TERMINAL`]).
    pub fn is_terminal(&self) -> bool {
        TERMINAL.contains(&self.state)
    }
}

/// A deployment with its nodes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    pub summary: Option<Value>,
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

/// One change of a deployment, from its change log
/// (`GET /v1/deployments/{id}/changes`, server-sent events; the schema `Change`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeploymentChange {
    /// 1, 2, 3 ... per deployment (the SSE event id).
    pub seq: i64,
    /// `created`, `session`, `node`, `takeover`, `retry` or `end`.
    pub kind: String,
    /// Database clock, Unix seconds.
    pub at: i64,
    /// What changed (`node`: node, state, reason; `session`: session, owner;
    /// `takeover`: owner, epoch; `end`: state, reason).
    pub data: Value,
}

/// Where a node stands (`GET /v1/nodes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// In no project.
    Free,
    /// In a project, not deployed by it.
    Allocated,
    /// Its project's newest deployment of it is running.
    Deploying,
    /// That deployment ended verified or booted.
    Deployed,
    /// That deployment failed on it.
    Failed,
    /// A reclaim of it is running.
    Reclaiming,
}

impl NodeStatus {
    /// Every state, in the order a node usually passes through them.
    pub const ALL: [NodeStatus; 6] = [
        NodeStatus::Free,
        NodeStatus::Allocated,
        NodeStatus::Deploying,
        NodeStatus::Deployed,
        NodeStatus::Failed,
        NodeStatus::Reclaiming,
    ];

    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Free => "free",
            NodeStatus::Allocated => "allocated",
            NodeStatus::Deploying => "deploying",
            NodeStatus::Deployed => "deployed",
            NodeStatus::Failed => "failed",
            NodeStatus::Reclaiming => "reclaiming",
        }
    }
}

/// One row of `GET /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSummary {
    /// Node name.
    pub name: String,
    /// Its project (`None`: free).
    pub project: Option<String>,
    /// Where it stands.
    pub state: NodeStatus,
    /// Its project's newest deployment of it.
    pub last_deployment: Option<i64>,
    /// The node's state in that deployment.
    pub last_deployment_state: Option<String>,
    /// Seconds since its runtime last checked in.
    pub checkin_age_secs: Option<i64>,
}

/// What the control plane last heard from a node's runtime
/// (`GET /v1/nodes/{node}/runtime`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
    pub inventory: Option<Value>,
    /// The newest phase report of any instruction (phase, status, exit_code,
    /// detail): e.g. why the runtime refused a wipe or a disk target.
    pub last_report: Option<Value>,
}

// ---------------------------------------------------------------------------
// Reclaim
// ---------------------------------------------------------------------------

/// `POST /v1/nodes/{node}/reclaim`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReclaimRequest {
    /// Erase the node's disks before it is free: `none` (default), `discard` or `zero`.
    #[serde(default)]
    pub wipe: WipeSpec,
    /// Seconds to wait for the runtime to come back (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// Disk erasure on reclaim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum WipeSpec {
    /// Leave the disks as they are.
    #[default]
    None,
    /// Discard every block (fast where the device supports it).
    Discard,
    /// Write zeroes over every disk.
    Zero,
}

/// One phase of a reclaim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReclaimPhase {
    /// runtime | wipe | networks | free.
    pub phase: String,
    /// Wall time, seconds.
    pub secs: f64,
    /// What happened.
    pub detail: String,
}

/// The result of a reclaim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reclaimed {
    /// Node name.
    pub node: String,
    /// The project it left.
    pub project: String,
    /// How the runtime came back: `already-running`, `kexec` or `bmc`.
    pub method: String,
    /// Phases in order.
    pub phases: Vec<ReclaimPhase>,
    /// Total seconds.
    pub secs: f64,
}
