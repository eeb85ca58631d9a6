//! `/v0`: the HIL-compatible calls (paths, verbs and JSON shapes of HIL's
//! `docs/rest_api.md`), as the server's `http/v0/` handlers accept and send
//! them.
//!
//! The server builds its `/v0` views as JSON objects, whose keys come out
//! sorted; the view structs here declare their fields in that order, so a
//! decoded view encodes to the server's bytes again (pinned by the golden
//! HIL session, `control-plane/src/tests/golden/hil_v0.txt`).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A field that may be absent, `null` or a value: `None` = absent,
/// `Some(None)` = `null` (serde maps both to `None` otherwise).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

// ---------------------------------------------------------------------------
// Projects
// ---------------------------------------------------------------------------

/// `POST /v0/project/{p}/connect_node` and `detach_node`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeArg {
    /// Node name.
    pub node: String,
}

// ---------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------

/// Which nodes `GET /v0/nodes/{all|free}` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFilter {
    /// Every node.
    All,
    /// Nodes in no project.
    Free,
}

impl NodeFilter {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeFilter::All => "all",
            NodeFilter::Free => "free",
        }
    }
}

/// `PUT /v0/node/{node}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRegister {
    /// The BMC: `{"type": "ipmi"|"redfish"|"qmp"|"none", ...}` (the server's
    /// `drivers::ObmConfig`; its fields depend on the driver, and the server
    /// validates them).
    pub obm: Value,
    /// Metadata labels and their JSON values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
}

/// `POST /v0/node/{node}/power_cycle` (an absent body means `force: false`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerCycle {
    /// Hard reset instead of a soft one.
    #[serde(default)]
    pub force: bool,
}

/// A node's power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    /// Powered on.
    On,
    /// Powered off.
    Off,
}

/// `GET /v0/node/{node}/power_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PowerStatus {
    /// `on` or `off`.
    pub power_status: PowerState,
}

/// `PUT /v0/node/{node}/boot_device`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootDev {
    /// `disk`, `pxe` or `none` (the server answers 422 to anything else).
    pub bootdev: String,
}

/// `PUT /v0/node/{node}/nic/{nic}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicRegister {
    /// `xx:xx:xx:xx:xx:xx`.
    pub macaddr: String,
}

/// `PUT /v0/node/{node}/metadata/{label}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataValue {
    /// Any JSON value.
    pub value: Value,
}

/// `GET /v0/node/{node}`: HIL's node view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Metadata labels, each value as its JSON text (HIL's shape).
    pub metadata: BTreeMap<String, String>,
    /// Node name.
    pub name: String,
    /// The node's NICs.
    pub nics: Vec<NicView>,
    /// The project holding it (`null`: free).
    pub project: Option<String>,
}

/// One NIC of a [`NodeView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicView {
    /// NIC name.
    pub label: String,
    /// MAC address.
    pub macaddr: String,
    /// Attached networks by channel.
    pub networks: BTreeMap<String, String>,
    /// The switch port it is wired to: shown to admins only (absent for
    /// others; `null` when not wired).
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub port: Option<Option<String>>,
    /// The switch of that port: admins only, like `port`.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub switch: Option<Option<String>>,
}

// ---------------------------------------------------------------------------
// Networks and networking actions
// ---------------------------------------------------------------------------

/// `PUT /v0/network/{network}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    /// Owning project, or `admin`.
    pub owner: String,
    /// Project with access (`""`: public, admin-owned only).
    pub access: String,
    /// VLAN id (`""`: allocate from the pool).
    pub net_id: String,
}

/// One network of `GET /v0/networks` (a map from the network's name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSummary {
    /// The VLAN id, as text.
    pub network_id: String,
    /// Projects with access; `null` for none (public).
    pub projects: Option<Vec<String>>,
}

/// `GET /v0/network/{network}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkView {
    /// Projects with access; `null` for none (public).
    pub access: Option<Vec<String>>,
    /// `vlan/native` and `vlan/<id>`.
    pub channels: Vec<String>,
    /// Attached NICs by node.
    #[serde(rename = "connected-nodes")]
    pub connected_nodes: BTreeMap<String, Vec<String>>,
    /// Network name.
    pub name: String,
    /// Owning project, or `admin`.
    pub owner: String,
}

/// One attachment of `GET /v0/network/{network}/attachments` (a map from
/// the node's name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Channel.
    pub channel: String,
    /// NIC name.
    pub nic: String,
    /// The node's project.
    pub project: Option<String>,
}

/// `POST /v0/node/{node}/nic/{nic}/connect_network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectNetwork {
    /// Network name.
    pub network: String,
    /// `vlan/native` (default) or `vlan/<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// `POST /v0/node/{node}/nic/{nic}/detach_network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetachNetwork {
    /// Network name.
    pub network: String,
}

/// The answer of an asynchronous networking call (connect, detach, revert).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusId {
    /// Id for `GET /v0/networking_action/{status_id}`.
    pub status_id: String,
}

/// State of a networking action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ActionStatus {
    /// Not done yet.
    Pending,
    /// The switch was changed.
    Done,
    /// The switch change failed.
    Error,
}

/// Kind of a networking action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Connect or detach one network.
    ModifyPort,
    /// Remove every network from a port.
    RevertPort,
}

/// `GET /v0/networking_action/{status_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkingAction {
    /// Channel.
    pub channel: String,
    /// The network connected (`null`: detached / reverted).
    pub new_network: Option<String>,
    /// NIC name.
    pub nic: String,
    /// Node name.
    pub node: String,
    /// PENDING, DONE or ERROR.
    pub status: ActionStatus,
    /// `modify_port` or `revert_port`.
    #[serde(rename = "type")]
    pub kind: ActionKind,
}

// ---------------------------------------------------------------------------
// Switches and ports
// ---------------------------------------------------------------------------

/// `PUT /v0/switch/{switch}`: `type` selects the driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum SwitchRegister {
    /// A Linux bridge with `vlan_filtering 1`; ports are its member interfaces.
    #[serde(rename = "linux-bridge")]
    LinuxBridge {
        /// Bridge interface.
        bridge: String,
        /// Network namespace of the bridge.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        netns: Option<String>,
    },
    /// One bridge per VLAN in a namespace.
    #[serde(rename = "linux-vlan-bridges")]
    VlanBridges {
        /// The namespace.
        netns: String,
    },
    /// The per-node switch of a node at a parent control plane (nested
    /// instances; normally written by the inventory sync): ports are the
    /// node's NIC names.
    #[serde(rename = "upstream")]
    Upstream {
        /// Base URL of the parent.
        url: String,
        /// Project at the parent that holds the node.
        project: String,
        /// The node's name at the parent.
        node: String,
    },
}

/// `GET /v0/switch/{switch}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchView {
    /// HIL's capability names, e.g. `nativeless-trunk-mode`.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Switch name.
    pub name: String,
    /// The ports, as HIL shows them.
    pub ports: Vec<PortLabel>,
}

/// A port in [`SwitchView`]: `{"label": <port>}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortLabel {
    /// Port name.
    pub label: String,
}

/// `GET /v0/switch/{switch}/port/{port}`: `{}` for a port with nothing wired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortView {
    /// Attached networks of the wired NIC by channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<BTreeMap<String, String>>,
    /// The wired NIC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic: Option<String>,
    /// Its node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// `POST /v0/switch/{switch}/port/{port}/connect_nic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeNic {
    /// Node name.
    pub node: String,
    /// NIC name.
    pub nic: String,
}

// ---------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------

/// `PUT /v0/auth/basic/user/{user}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    /// Password.
    pub password: String,
    /// Administrator (`is-admin` accepted too).
    #[serde(default, rename = "is_admin", alias = "is-admin")]
    pub is_admin: bool,
}

/// `PATCH /v0/auth/basic/user/{user}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// Administrator or not (not one's own).
    pub is_admin: bool,
}

/// A user in `GET /v0/auth/basic/users` (a map from user name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// Administrator.
    pub is_admin: bool,
    /// Projects the user is a member of, sorted.
    pub projects: Vec<String>,
}

/// `PUT /v0/node/{node}/obm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObmEnabled {
    /// Enable (an obmd node: get a node token) or disable.
    pub enabled: bool,
}

/// `POST /v0/auth/basic/user/{user}/add_project` and `remove_project`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectArg {
    /// Project name.
    pub project: String,
}
