//! The API between the node runtime (`metalcast-node agent`) and the control
//! plane, specified in `docs/runtime-api.md`.
//!
//! Parts:
//! - the wire types (this module): [`CheckIn`] with its [`Inventory`],
//!   [`Instruction`]s the node long-polls for, and phase [`Report`]s;
//! - [`server`] (feature `server`): the control-plane side, an axum router
//!   over an in-memory node table that the control plane mounts and drives
//!   ([`server::RuntimeApi::push`] queues an instruction for a node).
//!
//! Every body is JSON; unknown fields are rejected so that a version skew is
//! an error and not a silently ignored instruction.

use base64::Engine;
use serde::{Deserialize, Serialize};

pub use metalcast_transport::SessionSpec;

#[cfg(feature = "server")]
pub mod server;

/// Path prefix of every runtime endpoint.
pub const PREFIX: &str = "/v1/runtime";
/// Longest long-poll the server honours, in seconds.
pub const MAX_WAIT_SECS: u64 = 60;

/// What the node is running when it checks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The metalcast runtime (bootstrap initramfs): ready for a deployment.
    Runtime,
    /// A tenant OS that carries the agent (it can be reclaimed by kexec).
    Tenant,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    /// Kernel name (`eth0`, `ens3`).
    pub name: String,
    /// MAC address, lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The kernel driver bound to it, if known (`virtio_net`, `e1000`).
    #[serde(default)]
    pub driver: Option<String>,
}

/// One block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Kernel name (`vda`, `sda`, `nvme0n1`).
    pub name: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Whether the kernel says it is rotational.
    #[serde(default)]
    pub rotational: bool,
}

/// The hardware a node reports at check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Network interfaces except loopback, by interface index.
    pub nics: Vec<Nic>,
    /// Online CPUs.
    pub cpus: u32,
    /// `MemTotal` from `/proc/meminfo`, in bytes.
    pub memory_bytes: u64,
    /// Whole block devices (no partitions, loop or ram devices).
    pub disks: Vec<Disk>,
    /// The running kernel's release (`uname -r`).
    pub kernel: String,
}

/// `POST /v1/runtime/checkin`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckIn {
    /// The node's identity: the MAC of the interface it reached the control plane through.
    pub node: String,
    /// What is running.
    pub role: Role,
    /// `/proc/sys/kernel/random/boot_id`: changes at every boot and every kexec.
    pub boot_id: String,
    /// The agent's version.
    pub version: String,
    /// The node's address on the provisioning network.
    pub address: String,
    /// Seconds since this kernel booted.
    pub uptime_secs: f64,
    /// Seconds the network bring-up took (DHCP or static).
    pub network_secs: f64,
    /// Hardware inventory.
    pub inventory: Inventory,
    /// The check-in token the control plane's netboot put on this runtime's
    /// kernel command line (`metalcast.token=`): signed, expiring, bound to
    /// the node's MAC. Absent for a runtime started by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Reply to a check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckInReply {
    /// The id to use in the node's URLs (the MAC from the check-in).
    pub node: String,
    /// Random per server process: a change tells the node the server restarted.
    pub server_epoch: u64,
    /// Long-poll duration the server suggests, seconds.
    pub wait_secs: u64,
}

/// Where a deployment is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Target {
    /// Every part into memory (memfds); no disk is touched.
    Memory,
    /// The bundle's disk-like part (`disk`, `rootfs` or `vm-disk`) to a block
    /// device with `O_DIRECT`, holes skipped, flushed before hand-over; kernel
    /// and initrds still go to memory for kexec.
    Disk {
        /// The block device, e.g. `/dev/vda`.
        device: String,
    },
}

/// What to do once the bundle is written and verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Handover {
    /// `kexec_file_load` the bundle's kernel + initrds, then reboot into it.
    Kexec,
    /// Run the bundle's `vm-disk` under QEMU (VM mode).
    Vm,
    /// Nothing: report and wait for the next instruction (tests, pre-staging).
    None,
}

/// A deployment: receive a bundle from a multicast session and hand over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    /// The multicast session (includes the per-session MAC key: this body is confidential).
    pub session: SessionSpec,
    /// The bundle's signed manifest (`SignedManifest::to_bytes`), standard base64.
    pub manifest_b64: String,
    /// Where to write.
    pub target: Target,
    /// What to do after verification.
    pub handover: Handover,
    /// Appended to the bundle's kernel command line (e.g. a cloud-init seed URL).
    #[serde(default)]
    pub cmdline_append: String,
    /// Give up after this many seconds without session data.
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
}

fn default_idle() -> u64 {
    30
}

impl Deploy {
    /// Encodes signed manifest bytes for [`Deploy::manifest_b64`].
    pub fn encode_manifest(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// The signed manifest bytes.
    pub fn manifest_bytes(&self) -> Result<Vec<u8>, ApiError> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.manifest_b64)
            .map_err(|e| ApiError::Invalid(format!("manifest_b64: {e}")))
    }
}

/// How disks are erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WipeMode {
    /// `BLKDISCARD` over the whole device (fast; fails where the device cannot discard).
    Discard,
    /// `BLKZEROOUT` over the whole device (the kernel writes zeroes, or unmaps where that reads back as zeroes).
    Zero,
}

/// Erase block devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wipe {
    /// How.
    pub mode: WipeMode,
    /// Devices (`/dev/vda`); empty: every whole disk in the node's inventory.
    #[serde(default)]
    pub devices: Vec<String>,
}

/// Serve an image this node holds to other nodes: the node becomes the
/// sender of a new multicast session (seed mode, `docs/node-runtime.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// The new session (fresh id and MAC key, as for a deployment). Its
    /// `root_hash` names the image to serve, which the node must hold; its
    /// `sender` is this node's address and a free port (the control socket).
    pub session: SessionSpec,
    /// Cap on the send rate, UDP payload bytes per second (default
    /// 12 500 000 = 100 Mbit/s): the node shares its link with its tenant. The
    /// rate adapts to the receivers' loss below the cap.
    #[serde(default = "default_seed_rate")]
    pub rate_bytes_per_sec: u64,
    /// Receivers that must report done before the session ends (default 1).
    #[serde(default = "default_receivers")]
    pub expected_receivers: usize,
    /// How long to wait for `expected_receivers` to join before sending
    /// anyway, and for a silent receiver before giving up on it (default 30 s).
    #[serde(default = "default_idle")]
    pub join_timeout_secs: u64,
}

fn default_seed_rate() -> u64 {
    12_500_000
}

fn default_receivers() -> usize {
    1
}

/// What the node is told to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Action {
    /// Receive, write, verify, hand over.
    Deploy(Deploy),
    /// Erase disks before the node goes back to the free pool (reclaim).
    Wipe(Wipe),
    /// Send an image this node holds (from an earlier deployment) in a new session.
    Seed(Seed),
    /// Check in again (e.g. after the inventory changed).
    CheckIn,
    /// Power the node off.
    PowerOff,
}

impl Action {
    /// The id of the multicast session this action runs in (deploy and seed), if any.
    pub fn session_id(&self) -> Option<u64> {
        match self {
            Action::Deploy(d) => Some(u64::from(d.session.session_id)),
            Action::Seed(s) => Some(u64::from(s.session.session_id)),
            Action::Wipe(_) | Action::CheckIn | Action::PowerOff => None,
        }
    }
}

/// An instruction, as returned by the long-poll. (No `deny_unknown_fields`
/// here: serde cannot combine it with `flatten`; the flattened [`Action`]
/// variants reject unknown fields themselves.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instruction {
    /// Unique per server; reports name it.
    pub id: u64,
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
}

/// One image offered to a node in attended mode (`GET .../offers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferEntry {
    /// Position in the list; `POST .../offers/{index}` chooses it.
    pub index: usize,
    /// What the console shows.
    pub name: String,
    /// Chosen when the countdown runs out.
    pub default: bool,
}

/// Reply to `GET /v1/runtime/nodes/{node}/offers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offers {
    /// The images offered, possibly none.
    pub offers: Vec<OfferEntry>,
}

/// Reply to `POST /v1/runtime/nodes/{node}/offers/{index}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chosen {
    /// The instruction queued for the node (delivered by the next poll).
    pub instruction: u64,
}

/// The phases a node reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The instruction was accepted and parsed (manifest trusted).
    Accept,
    /// Receiving and writing the bundle.
    Receive,
    /// Flushing the target (disk) to stable storage.
    Flush,
    /// Re-reading what was written and checking every chunk hash.
    Verify,
    /// Loading the new kernel (kexec) or starting the VM; the last report before the node goes away.
    Handover,
    /// Erasing disks (a `wipe` instruction).
    Wipe,
    /// The VM of a `vm` hand-over exited (reported under the deploy's instruction).
    VmExit,
    /// Serving a held image as a session's sender (a `seed` instruction).
    Seed,
}

/// Outcome of a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The phase completed.
    Ok,
    /// The phase failed; `exit_code` says what kind of failure.
    Failed,
}

/// `POST /v1/runtime/nodes/{node}/reports`: one finished phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The instruction this phase belongs to.
    pub instruction: u64,
    /// The node's boot id (tells reports of different boots apart).
    pub boot_id: String,
    /// Which phase.
    pub phase: Phase,
    /// How it went.
    pub status: Status,
    /// Wall time of the phase, seconds.
    pub secs: f64,
    /// Exit code class of a failure (`docs/node-runtime.md`), 0 on success.
    pub exit_code: u8,
    /// Human-readable detail (error chain, or a summary).
    #[serde(default)]
    pub detail: String,
    /// Machine-readable detail (e.g. the receiver summary).
    #[serde(default)]
    pub data: serde_json::Value,
    /// The fountain session of the instruction ([`Action::session_id`]),
    /// for a deploy or seed instruction: a report names the session it
    /// belongs to, and the server refuses one that names another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
}

/// Errors in API bodies.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field has a bad value.
    #[error("invalid body: {0}")]
    Invalid(String),
}

/// Normalises a MAC for use as a node id: lower-case, colon-separated, 6 bytes.
pub fn normalize_mac(s: &str) -> Result<String, ApiError> {
    let bytes: Vec<&str> = s.split(':').collect();
    if bytes.len() != 6 || bytes.iter().any(|b| b.len() != 2 || !b.bytes().all(|c| c.is_ascii_hexdigit())) {
        return Err(ApiError::Invalid(format!("node id {s:?} is not a MAC address like 52:54:00:12:34:56")));
    }
    Ok(s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_json_shape() {
        let i = Instruction { id: 7, action: Action::PowerOff };
        assert_eq!(serde_json::to_value(&i).unwrap(), serde_json::json!({"id": 7, "action": "power-off"}));
        assert_eq!(serde_json::from_value::<Instruction>(serde_json::to_value(&i).unwrap()).unwrap(), i);
        let spec =
            SessionSpec::new("ab", "239.1.1.1:5000".parse().unwrap(), "10.0.0.1:5001".parse().unwrap(), 1500).unwrap();
        let d = Instruction {
            id: 8,
            action: Action::Deploy(Deploy {
                session: spec,
                manifest_b64: Deploy::encode_manifest(b"m"),
                target: Target::Disk { device: "/dev/vda".into() },
                handover: Handover::Kexec,
                cmdline_append: "ip=dhcp".into(),
                idle_timeout_secs: 30,
            }),
        };
        let mut v = serde_json::to_value(&d).unwrap();
        assert_eq!(serde_json::from_value::<Instruction>(v.clone()).unwrap(), d);
        v["surprise"] = 1.into();
        assert!(serde_json::from_value::<Instruction>(v).is_err(), "unknown deploy field accepted");
        let t: Target = serde_json::from_str(r#"{"kind":"disk","device":"/dev/vda"}"#).unwrap();
        assert_eq!(t, Target::Disk { device: "/dev/vda".into() });
        assert!(serde_json::from_str::<Target>(r#"{"kind":"disk","device":"/dev/vda","x":1}"#).is_err());
        assert!(serde_json::from_str::<Instruction>(r#"{"id":1,"action":"format-everything"}"#).is_err());
    }

    #[test]
    fn seed_json_shape_and_defaults() {
        let spec =
            SessionSpec::new("ab", "239.1.1.1:5000".parse().unwrap(), "10.0.0.7:5001".parse().unwrap(), 1500).unwrap();
        let mut v = serde_json::json!({"id": 9, "action": "seed", "session": spec});
        let i: Instruction = serde_json::from_value(v.clone()).unwrap();
        let Action::Seed(s) = &i.action else { panic!("{i:?}") };
        assert_eq!((s.rate_bytes_per_sec, s.expected_receivers, s.join_timeout_secs), (12_500_000, 1, 30));
        assert_eq!(s.session, spec);
        assert_eq!(serde_json::from_value::<Instruction>(serde_json::to_value(&i).unwrap()).unwrap(), i);
        v["rate_bytes_per_sec"] = 1_000_000.into();
        let Action::Seed(s) = serde_json::from_value::<Instruction>(v.clone()).unwrap().action else { unreachable!() };
        assert_eq!(s.rate_bytes_per_sec, 1_000_000);
        v["root_hash"] = "ab".into();
        assert!(serde_json::from_value::<Instruction>(v).is_err(), "unknown seed field accepted");
        assert_eq!(serde_json::to_value(Phase::VmExit).unwrap(), "vm-exit");
        assert_eq!(serde_json::to_value(Phase::Seed).unwrap(), "seed");
    }

    #[test]
    fn macs() {
        assert_eq!(normalize_mac("52:54:00:AB:cd:01").unwrap(), "52:54:00:ab:cd:01");
        for bad in ["", "52:54:00:ab:cd", "52:54:00:ab:cd:0g", "../../etc", "52-54-00-ab-cd-01"] {
            assert!(normalize_mac(bad).is_err(), "{bad}");
        }
    }
}
