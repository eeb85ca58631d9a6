//! Built-in netboot's calls (`docs/netboot.md`): what a node boots
//! (`/v1/nodes/{node}/boot`), full mode's address leases
//! (`/v1/netboot/leases`) and enrollments of unknown machines
//! (`/v1/enrollments`).

use serde::{Deserialize, Serialize};

/// What a node boots when it netboots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum BootChoice {
    /// The metalcast runtime.
    Runtime,
    /// Its local disk (the tenant OS a disk deployment wrote).
    Local,
    /// Nothing (no boot file).
    None,
}

/// A node's netboot choice (`GET|PUT /v1/nodes/{node}/boot`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeBoot {
    /// What it boots.
    pub boot: BootChoice,
}

/// A full-mode address lease (`GET /v1/netboot/leases`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpLease {
    /// Address.
    pub ip: String,
    /// Holder's MAC.
    pub mac: String,
    /// The node with that MAC, if any.
    pub node: Option<String>,
    /// `offered` (held briefly) or `bound`.
    pub state: String,
    /// Unix seconds (database clock).
    pub expires_at: i64,
}

/// A machine that netbooted in enrollment mode (`GET /v1/enrollments`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrollment {
    /// The MAC it checked in with.
    pub mac: String,
    /// `pending`, `accepted` or `rejected`.
    pub state: String,
    /// Its address on the provisioning network at its latest check-in.
    pub address: String,
    /// The runtime's inventory from its latest check-in (CPUs, memory, disks, NICs).
    pub inventory: serde_json::Value,
    /// Unix seconds.
    pub first_seen: i64,
    /// Unix seconds.
    pub last_seen: i64,
    /// The node it became (accepted).
    pub node: Option<String>,
}

/// `POST /v1/enrollments/{mac}/accept`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentAccept {
    /// Name of the new node.
    pub node: String,
    /// Name of its NIC (default `eth0`).
    #[serde(default)]
    pub nic: Option<String>,
    /// Its BMC, as in `PUT /v0/node/{node}` (default: none).
    #[serde(default)]
    pub obm: Option<serde_json::Value>,
}
