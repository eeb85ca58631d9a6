//! Hardware drivers: BMCs (out-of-band management, "OBM" in HIL terms) and
//! switches.
//!
//! * BMC: `ipmi` (runs `ipmitool` over IPMI-over-LAN), `redfish` (HTTP),
//!   `qmp` (QEMU Machine Protocol on a unix socket, for VM nodes).
//! * Switch: `linux-bridge` (a VLAN-filtering Linux bridge driven with
//!   `bridge vlan add/del`, optionally inside a network namespace) and
//!   `linux-vlan-bridges` (one plain Linux bridge per VLAN plus 802.1Q
//!   sub-interfaces, inside a network namespace; works on kernels without
//!   `CONFIG_BRIDGE_VLAN_FILTERING`).
//!
//! * `upstream` BMC and switch: a nested control plane's imported nodes;
//!   every operation is delegated to the parent metalcast's REST API
//!   ([`parent`] is its REST client; the sync is `crate::app::upstream`).
//!
//! One file per driver, each behind the [`Bmc`] or [`Switch`] trait; the
//! configuration (the API's `obm` and switch objects) is [`ObmConfig`] /
//! [`SwitchConfig`], and [`ObmConfig::driver`] / [`SwitchConfig::driver`]
//! pick the implementation. The server asks through a [`Chooser`]
//! ([`Standard`] in production), so a unit test can put its own in front:
//! the test-only BMC and switch (`mock.rs`) are chosen there and nowhere in
//! the production code. The `upstream` drivers get the parent's client
//! ([`parent::Upstream`]) passed in; nothing here reads server state or
//! globals.

mod config;
mod ipmi;
mod linux_bridge;
pub mod measured;
#[cfg(test)]
pub(crate) mod mock;
mod none;
pub mod obmd;
pub mod parent;
mod qmp;
mod redfish;
mod upstream;
mod vlan_bridges;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::process::Command;

pub use config::{ObmConfig, SwitchConfig, valid_ifname, valid_qdev_id};

/// How long a single driver operation may take before it is abandoned.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Failure of a hardware driver. The `Display` text may contain details for
/// the log; [`DriverError::public_message`] is what API callers see.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// An external command could not be started.
    #[error("could not run {program}: {source}")]
    Spawn {
        /// Program name.
        program: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An external command exited unsuccessfully.
    #[error("{program} failed ({status}): {stderr}")]
    Command {
        /// Program name.
        program: String,
        /// Exit status description.
        status: String,
        /// Captured standard error.
        stderr: String,
    },
    /// The operation did not complete in time.
    #[error("driver operation timed out")]
    Timeout,
    /// HTTP / protocol level failure talking to a BMC.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The driver cannot do this operation.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The parent control plane (of an `upstream` node) failed or refused.
    #[error(transparent)]
    Upstream(#[from] parent::UpstreamError),
}

impl DriverError {
    /// A message safe to return to API callers (no hosts, paths or output).
    pub fn public_message(&self) -> String {
        match self {
            DriverError::Spawn { program, .. } => format!("could not run {program}"),
            DriverError::Command { program, .. } => format!("{program} reported failure"),
            DriverError::Timeout => "operation timed out".into(),
            DriverError::Protocol(_) => "BMC protocol error".into(),
            DriverError::Unsupported(m) => (*m).into(),
            // Built to be public: no URL, token or transport details.
            DriverError::Upstream(e) => e.to_string(),
        }
    }
}

/// Run a program with arguments (no shell), with a timeout; return stdout.
async fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<String, DriverError> {
    let mut cmd = Command::new(program);
    cmd.args(args).kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    tracing::debug!(program, ?args, "running driver command");
    let out = tokio::time::timeout(DRIVER_TIMEOUT, cmd.output())
        .await
        .map_err(|_| DriverError::Timeout)?
        .map_err(|source| DriverError::Spawn { program: program.into(), source })?;
    if !out.status.success() {
        return Err(DriverError::Command {
            program: program.into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sends an HTTP driver request (redfish, obmd): the status and the body
/// text; a timeout is [`DriverError::Timeout`], any other transport failure
/// a protocol error.
async fn http_send(rb: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, String), DriverError> {
    let resp = rb
        .send()
        .await
        .map_err(|e| if e.is_timeout() { DriverError::Timeout } else { DriverError::Protocol(e.to_string()) })?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| DriverError::Protocol(e.to_string()))?;
    Ok((status, body))
}

/// A power action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerOp {
    /// Power on.
    On,
    /// Power off (hard).
    Off,
    /// Power cycle (turns the node on if it was off).
    Cycle,
}

/// Allowed boot devices (HIL's ipmi driver set).
pub const BOOT_DEVICES: &[&str] = &["disk", "pxe", "none"];

/// A console byte stream returned by [`Bmc::open_console`].
pub type ConsoleStream = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// The future of a driver operation.
pub type DriverFuture<'a, T> = BoxFuture<'a, Result<T, DriverError>>;

/// A node's out-of-band management (BMC).
pub trait Bmc: Send + Sync {
    /// Performs a power action.
    fn power(&self, op: PowerOp) -> DriverFuture<'_, ()>;
    /// Whether the node is powered on.
    fn power_status(&self) -> DriverFuture<'_, bool>;
    /// Sets the next boot device (one of [`BOOT_DEVICES`]).
    fn set_bootdev<'a>(&'a self, dev: &'a str) -> DriverFuture<'a, ()>;
    /// Opens the node's serial console as a byte stream (read-only use).
    fn open_console(&self) -> DriverFuture<'_, ConsoleStream>;
}

/// A switch that puts ports on VLANs.
pub trait Switch: Send + Sync {
    /// Makes `port` carry `vlan`: untagged (native) or tagged.
    fn add_vlan<'a>(&'a self, port: &'a str, vlan: u16, native: bool) -> DriverFuture<'a, ()>;
    /// Removes `vlan` (attached untagged if `native`, else tagged) from `port`.
    fn del_vlan<'a>(&'a self, port: &'a str, vlan: u16, native: bool) -> DriverFuture<'a, ()>;
}

/// Checks that what a switch configuration names is there (a `linux-bridge`'s
/// bridge, a `linux-vlan-bridges`' namespace), before it is registered.
pub async fn check_switch(cfg: &SwitchConfig) -> Result<(), String> {
    match cfg {
        SwitchConfig::LinuxBridge { bridge, netns } => linux_bridge::check_exists(bridge, netns.as_deref()).await,
        // `validate` checks its namespace; its bridges are made on demand.
        SwitchConfig::VlanBridges { .. } | SwitchConfig::Upstream { .. } => Ok(()),
    }
}

/// Picks the driver for a configuration. The server holds one; production
/// uses [`Standard`], unit tests one that answers some configurations with
/// their mock.
pub trait Chooser: Send + Sync + std::fmt::Debug {
    /// The driver of a node's BMC; `parent` as for [`ObmConfig::driver`].
    fn bmc(&self, obm: &ObmConfig, parent: Option<&Arc<parent::Upstream>>) -> Box<dyn Bmc>;
    /// The driver of a switch; `parent` as for [`SwitchConfig::driver`].
    fn switch(&self, cfg: &SwitchConfig, parent: Option<&Arc<parent::Upstream>>) -> Box<dyn Switch>;
}

/// The production choice: each configuration's own driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct Standard;

impl Chooser for Standard {
    fn bmc(&self, obm: &ObmConfig, parent: Option<&Arc<parent::Upstream>>) -> Box<dyn Bmc> {
        obm.driver(parent)
    }

    fn switch(&self, cfg: &SwitchConfig, parent: Option<&Arc<parent::Upstream>>) -> Box<dyn Switch> {
        cfg.driver(parent)
    }
}
