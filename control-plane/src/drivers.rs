//! Hardware drivers: BMCs (out-of-band management, "OBM" in HIL terms) and
//! switches.
//!
//! * BMC: `ipmi` (runs `ipmitool` over IPMI-over-LAN), `redfish` (HTTP),
//!   `qmp` (QEMU Machine Protocol on a unix socket, for VM nodes).
//! * Switch: `linux-bridge` (a VLAN-filtering Linux bridge driven with
//!   `bridge vlan add/del`, optionally inside a network namespace).
//!
//! A `mock` BMC and switch exist only in unit tests.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::Command;

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

// ---------------------------------------------------------------------------
// BMC
// ---------------------------------------------------------------------------

/// The `obm` object given when registering a node; `type` selects the driver.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum ObmConfig {
    /// IPMI over LAN through `ipmitool`.
    #[serde(rename = "ipmi")]
    Ipmi {
        /// BMC host name or address.
        host: String,
        /// BMC UDP port (default 623).
        #[serde(default)]
        port: Option<u16>,
        /// BMC user name.
        user: String,
        /// BMC password (stored, never returned by the API).
        password: String,
        /// ipmitool interface, `lanplus` (default) or `lan`.
        #[serde(default)]
        interface: Option<String>,
        /// IPMI 2.0 cipher suite id (`ipmitool -C`); ipmitool's default if absent.
        #[serde(default)]
        cipher_suite: Option<u8>,
    },
    /// Redfish over HTTP(S).
    #[serde(rename = "redfish")]
    Redfish {
        /// Base URL of the BMC, e.g. `http://127.0.0.1:8000`.
        url: String,
        /// System id under `/redfish/v1/Systems/`; first system if absent.
        #[serde(default)]
        system: Option<String>,
        /// HTTP Basic user, if the BMC requires it.
        #[serde(default)]
        user: Option<String>,
        /// HTTP Basic password.
        #[serde(default)]
        password: Option<String>,
    },
    /// QEMU Machine Protocol unix socket of a VM node.
    #[serde(rename = "qmp")]
    Qmp {
        /// Path of the QMP unix socket.
        socket: String,
    },
    /// In-memory BMC for unit tests.
    #[cfg(test)]
    #[serde(rename = "mock")]
    Mock {
        /// Key into the mock state table.
        id: String,
    },
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

impl ObmConfig {
    /// Check driver-specific fields for obviously bad values.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            ObmConfig::Ipmi { host, interface, .. } => {
                if host.is_empty() || host.starts_with('-') || host.len() > 253 {
                    return Err("obm.host is not a valid host".into());
                }
                if let Some(i) = interface
                    && i != "lan"
                    && i != "lanplus"
                {
                    return Err("obm.interface must be \"lan\" or \"lanplus\"".into());
                }
                Ok(())
            }
            ObmConfig::Redfish { url, .. } => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err("obm.url must be an http:// or https:// URL".into());
                }
                Ok(())
            }
            ObmConfig::Qmp { socket } => {
                if !socket.starts_with('/') {
                    return Err("obm.socket must be an absolute path".into());
                }
                Ok(())
            }
            #[cfg(test)]
            ObmConfig::Mock { .. } => Ok(()),
        }
    }

    /// Perform a power action.
    pub async fn power(&self, op: PowerOp) -> Result<(), DriverError> {
        match self {
            ObmConfig::Ipmi { .. } => {
                let verb = match op {
                    PowerOp::On => "on",
                    PowerOp::Off => "off",
                    PowerOp::Cycle => {
                        // `chassis power cycle` fails on a powered-off chassis;
                        // HIL semantics say cycle turns an off node on.
                        if !self.power_status().await? { "on" } else { "cycle" }
                    }
                };
                self.ipmitool(&["chassis", "power", verb]).await.map(drop)
            }
            ObmConfig::Redfish { .. } => {
                let reset = match op {
                    PowerOp::On => "On",
                    PowerOp::Off => "ForceOff",
                    PowerOp::Cycle => {
                        if self.power_status().await? {
                            "ForceRestart"
                        } else {
                            "On"
                        }
                    }
                };
                redfish::reset(self, reset).await
            }
            ObmConfig::Qmp { socket } => {
                let cmds: &[&str] = match op {
                    PowerOp::On => &["cont"],
                    PowerOp::Off => &["stop"],
                    PowerOp::Cycle => &["system_reset", "cont"],
                };
                for c in cmds {
                    qmp::execute(socket, c).await?;
                }
                Ok(())
            }
            #[cfg(test)]
            ObmConfig::Mock { id } => {
                mock::with(id, |s| {
                    s.on = !matches!(op, PowerOp::Off);
                    s.log.push(format!("power {op:?}"));
                });
                Ok(())
            }
        }
    }

    /// True if the node is powered on.
    pub async fn power_status(&self) -> Result<bool, DriverError> {
        match self {
            ObmConfig::Ipmi { .. } => {
                let out = self.ipmitool(&["chassis", "power", "status"]).await?;
                parse_ipmi_power(&out)
            }
            ObmConfig::Redfish { .. } => redfish::power_state(self).await,
            ObmConfig::Qmp { socket } => {
                let v = qmp::execute(socket, "query-status").await?;
                Ok(v.get("running").and_then(|r| r.as_bool()).unwrap_or(false))
            }
            #[cfg(test)]
            ObmConfig::Mock { id } => Ok(mock::with(id, |s| s.on)),
        }
    }

    /// Set the next boot device (one of [`BOOT_DEVICES`]).
    pub async fn set_bootdev(&self, dev: &str) -> Result<(), DriverError> {
        match self {
            ObmConfig::Ipmi { .. } => self.ipmitool(&["chassis", "bootdev", dev]).await.map(drop),
            ObmConfig::Redfish { .. } => {
                let target = match dev {
                    "disk" => "Hdd",
                    "pxe" => "Pxe",
                    _ => "None",
                };
                redfish::set_boot(self, target).await
            }
            ObmConfig::Qmp { .. } => Err(DriverError::Unsupported("the qmp driver cannot change the boot device")),
            #[cfg(test)]
            ObmConfig::Mock { id } => {
                mock::with(id, |s| s.log.push(format!("bootdev {dev}")));
                Ok(())
            }
        }
    }

    async fn ipmitool(&self, cmd: &[&str]) -> Result<String, DriverError> {
        let ObmConfig::Ipmi { host, port, user, password, interface, cipher_suite } = self else {
            unreachable!("ipmitool called for a non-ipmi obm")
        };
        let port = port.unwrap_or(623).to_string();
        let iface = interface.as_deref().unwrap_or("lanplus");
        let mut args = vec!["-I", iface, "-H", host, "-p", &port, "-U", user, "-E"];
        let cs = cipher_suite.map(|c| c.to_string());
        if let Some(cs) = &cs {
            args.extend_from_slice(&["-C", cs]);
        }
        args.extend_from_slice(cmd);
        // -E: password from IPMI_PASSWORD, so it never shows up in `ps`.
        run("ipmitool", &args, &[("IPMI_PASSWORD", password)]).await
    }
}

fn parse_ipmi_power(out: &str) -> Result<bool, DriverError> {
    let out = out.trim();
    if out.ends_with(" on") {
        Ok(true)
    } else if out.ends_with(" off") {
        Ok(false)
    } else {
        Err(DriverError::Protocol(format!("unexpected ipmitool output {out:?}")))
    }
}

mod redfish {
    use super::{DRIVER_TIMEOUT, DriverError, ObmConfig};
    use serde_json::{Value, json};

    fn parts(c: &ObmConfig) -> (&str, Option<&str>, Option<&str>, Option<&str>) {
        match c {
            ObmConfig::Redfish { url, system, user, password } => {
                (url.trim_end_matches('/'), system.as_deref(), user.as_deref(), password.as_deref())
            }
            _ => unreachable!("redfish called for a non-redfish obm"),
        }
    }

    fn client() -> Result<reqwest::Client, DriverError> {
        crate::install_tls_provider();
        reqwest::Client::builder().timeout(DRIVER_TIMEOUT).build().map_err(|e| DriverError::Protocol(e.to_string()))
    }

    fn auth(rb: reqwest::RequestBuilder, user: Option<&str>, pw: Option<&str>) -> reqwest::RequestBuilder {
        match user {
            Some(u) => rb.basic_auth(u, pw),
            None => rb,
        }
    }

    async fn send(rb: reqwest::RequestBuilder) -> Result<Value, DriverError> {
        let resp = rb
            .send()
            .await
            .map_err(|e| if e.is_timeout() { DriverError::Timeout } else { DriverError::Protocol(e.to_string()) })?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| DriverError::Protocol(e.to_string()))?;
        if !status.is_success() {
            return Err(DriverError::Protocol(format!("HTTP {status}: {body}")));
        }
        if body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&body).map_err(|e| DriverError::Protocol(e.to_string()))
    }

    /// URL of the managed system resource.
    async fn system_url(c: &ObmConfig) -> Result<String, DriverError> {
        let (base, system, user, pw) = parts(c);
        if let Some(s) = system {
            return Ok(format!("{base}/redfish/v1/Systems/{s}"));
        }
        let v = send(auth(client()?.get(format!("{base}/redfish/v1/Systems")), user, pw)).await?;
        let path = v["Members"][0]["@odata.id"]
            .as_str()
            .ok_or_else(|| DriverError::Protocol("no systems on this BMC".into()))?;
        Ok(format!("{base}{path}"))
    }

    pub(super) async fn reset(c: &ObmConfig, reset_type: &str) -> Result<(), DriverError> {
        let (_, _, user, pw) = parts(c);
        let url = format!("{}/Actions/ComputerSystem.Reset", system_url(c).await?);
        send(auth(client()?.post(url), user, pw).json(&json!({ "ResetType": reset_type }))).await.map(drop)
    }

    pub(super) async fn power_state(c: &ObmConfig) -> Result<bool, DriverError> {
        let (_, _, user, pw) = parts(c);
        let v = send(auth(client()?.get(system_url(c).await?), user, pw)).await?;
        match v["PowerState"].as_str() {
            Some("On") | Some("PoweringOn") => Ok(true),
            Some("Off") | Some("PoweringOff") => Ok(false),
            other => Err(DriverError::Protocol(format!("unexpected PowerState {other:?}"))),
        }
    }

    pub(super) async fn set_boot(c: &ObmConfig, target: &str) -> Result<(), DriverError> {
        let (_, _, user, pw) = parts(c);
        let body = json!({ "Boot": {
            "BootSourceOverrideTarget": target,
            "BootSourceOverrideEnabled": "Once",
        }});
        send(auth(client()?.patch(system_url(c).await?), user, pw).json(&body)).await.map(drop)
    }
}

mod qmp {
    use super::{DRIVER_TIMEOUT, DriverError};
    use serde_json::{Value, json};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::UnixStream;

    /// Open a QMP session, negotiate capabilities, run one command and return
    /// its `return` value.
    pub(super) async fn execute(socket: &str, command: &str) -> Result<Value, DriverError> {
        tokio::time::timeout(DRIVER_TIMEOUT, execute_inner(socket, command)).await.map_err(|_| DriverError::Timeout)?
    }

    async fn execute_inner(socket: &str, command: &str) -> Result<Value, DriverError> {
        let proto = |e: std::io::Error| DriverError::Protocol(format!("qmp: {e}"));
        let stream = UnixStream::connect(socket).await.map_err(proto)?;
        let (r, mut w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        // Greeting.
        let greeting = lines.next_line().await.map_err(proto)?;
        if !greeting.is_some_and(|g| g.contains("QMP")) {
            return Err(DriverError::Protocol("qmp: no greeting".into()));
        }
        for cmd in ["qmp_capabilities", command] {
            let mut msg = json!({ "execute": cmd }).to_string();
            msg.push('\n');
            w.write_all(msg.as_bytes()).await.map_err(proto)?;
            loop {
                let line = lines
                    .next_line()
                    .await
                    .map_err(proto)?
                    .ok_or_else(|| DriverError::Protocol("qmp: connection closed".into()))?;
                let v: Value = serde_json::from_str(&line).map_err(|e| DriverError::Protocol(format!("qmp: {e}")))?;
                if let Some(ret) = v.get("return") {
                    if cmd == command {
                        return Ok(ret.clone());
                    }
                    break;
                }
                if let Some(err) = v.get("error") {
                    return Err(DriverError::Protocol(format!("qmp {cmd}: {err}")));
                }
                // Asynchronous events are skipped.
            }
        }
        unreachable!("loop returns on the second command")
    }
}

#[cfg(test)]
pub(crate) mod mock {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    /// State of one mock BMC.
    #[derive(Debug, Default)]
    pub struct MockBmc {
        pub on: bool,
        pub log: Vec<String>,
    }

    fn table() -> &'static Mutex<HashMap<String, MockBmc>> {
        static T: OnceLock<Mutex<HashMap<String, MockBmc>>> = OnceLock::new();
        T.get_or_init(Default::default)
    }

    pub fn with<R>(id: &str, f: impl FnOnce(&mut MockBmc) -> R) -> R {
        let mut t = table().lock().unwrap();
        f(t.entry(id.to_string()).or_default())
    }

    /// Operations recorded by the mock BMC or switch `key`.
    pub fn log(key: &str) -> Vec<String> {
        with(key, |s| s.log.clone())
    }

    /// Gate that `hold` mock switches wait on; tests add permits.
    pub fn gate(key: &str) -> std::sync::Arc<tokio::sync::Semaphore> {
        static G: OnceLock<Mutex<HashMap<String, std::sync::Arc<tokio::sync::Semaphore>>>> = OnceLock::new();
        G.get_or_init(Default::default)
            .lock()
            .unwrap()
            .entry(key.to_string())
            .or_insert_with(|| std::sync::Arc::new(tokio::sync::Semaphore::new(0)))
            .clone()
    }
}

// ---------------------------------------------------------------------------
// Switches
// ---------------------------------------------------------------------------

/// The body of `PUT /switch/<name>`; `type` selects the driver.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum SwitchConfig {
    /// A Linux bridge with `vlan_filtering 1`; ports are its member interfaces.
    #[serde(rename = "linux-bridge")]
    LinuxBridge {
        /// Bridge interface name (informational; VLANs are set per port).
        bridge: String,
        /// Network namespace the bridge lives in, if not the host's.
        #[serde(default)]
        netns: Option<String>,
    },
    /// Switch that records operations, for unit tests.
    #[cfg(test)]
    #[serde(rename = "mock")]
    Mock {
        /// Key of the operation log / gate in the mock table.
        key: String,
        /// Fail every operation (to test the ERROR path).
        #[serde(default)]
        fail: bool,
        /// Block each operation until the test releases the gate.
        #[serde(default)]
        hold: bool,
    },
}

/// True for a legal Linux interface / netns name (and never an option flag).
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && !s.starts_with('-')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl SwitchConfig {
    /// Check the configuration.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            SwitchConfig::LinuxBridge { bridge, netns } => {
                if !valid_ifname(bridge) {
                    return Err("bridge is not a valid interface name".into());
                }
                if let Some(ns) = netns
                    && !valid_ifname(ns)
                {
                    return Err("netns is not a valid namespace name".into());
                }
                Ok(())
            }
            #[cfg(test)]
            SwitchConfig::Mock { .. } => Ok(()),
        }
    }

    /// Check a port name for this switch type.
    pub fn validate_port(&self, port: &str) -> Result<(), String> {
        match self {
            SwitchConfig::LinuxBridge { .. } => {
                if valid_ifname(port) {
                    Ok(())
                } else {
                    Err("port must be a Linux interface name (max 15 characters)".into())
                }
            }
            #[cfg(test)]
            SwitchConfig::Mock { .. } => Ok(()),
        }
    }

    async fn bridge_cmd(&self, args: &[&str]) -> Result<(), DriverError> {
        let netns = match self {
            SwitchConfig::LinuxBridge { netns, .. } => netns,
            #[cfg(test)]
            _ => unreachable!("bridge command for a non linux-bridge switch"),
        };
        match netns {
            Some(ns) => {
                let mut a = vec!["netns", "exec", ns.as_str(), "bridge"];
                a.extend_from_slice(args);
                run("ip", &a, &[]).await.map(drop)
            }
            None => run("bridge", args, &[]).await.map(drop),
        }
    }

    /// Make `port` carry `vlan`: untagged (native) or tagged.
    pub async fn add_vlan(&self, port: &str, vlan: u16, native: bool) -> Result<(), DriverError> {
        match self {
            SwitchConfig::LinuxBridge { .. } => {
                let vid = vlan.to_string();
                if native {
                    // The default VLAN 1 would otherwise leak frames between
                    // tenants' untagged traffic.
                    let _ = self.bridge_cmd(&["vlan", "del", "dev", port, "vid", "1"]).await;
                    self.bridge_cmd(&["vlan", "add", "dev", port, "vid", &vid, "pvid", "untagged"]).await
                } else {
                    self.bridge_cmd(&["vlan", "add", "dev", port, "vid", &vid]).await
                }
            }
            #[cfg(test)]
            SwitchConfig::Mock { key, fail, hold } => {
                mock_op(key, *fail, *hold, format!("add {port} {vlan} native={native}")).await
            }
        }
    }

    /// Remove `vlan` from `port`.
    pub async fn del_vlan(&self, port: &str, vlan: u16) -> Result<(), DriverError> {
        match self {
            SwitchConfig::LinuxBridge { .. } => {
                let vid = vlan.to_string();
                self.bridge_cmd(&["vlan", "del", "dev", port, "vid", &vid]).await
            }
            #[cfg(test)]
            SwitchConfig::Mock { key, fail, hold } => mock_op(key, *fail, *hold, format!("del {port} {vlan}")).await,
        }
    }
}

#[cfg(test)]
async fn mock_op(key: &str, fail: bool, hold: bool, entry: String) -> Result<(), DriverError> {
    if hold {
        mock::gate(key).acquire().await.expect("gate closed").forget();
    }
    if fail {
        return Err(DriverError::Command { program: "mock".into(), status: "1".into(), stderr: "mock failure".into() });
    }
    mock::with(key, |s| s.log.push(entry));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obm_config_rejects_unknown_fields_and_types() {
        let ok: ObmConfig =
            serde_json::from_str(r#"{"type":"ipmi","host":"127.0.0.1","port":9001,"user":"u","password":"p"}"#)
                .unwrap();
        assert!(ok.validate().is_ok());
        assert!(
            serde_json::from_str::<ObmConfig>(r#"{"type":"ipmi","host":"h","user":"u","password":"p","x":1}"#).is_err()
        );
        assert!(serde_json::from_str::<ObmConfig>(r#"{"type":"nope"}"#).is_err());
        let bad: ObmConfig =
            serde_json::from_str(r#"{"type":"ipmi","host":"-oProxy","user":"u","password":"p"}"#).unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn ipmi_power_output_parsing() {
        assert!(parse_ipmi_power("Chassis Power is on\n").unwrap());
        assert!(!parse_ipmi_power("Chassis Power is off").unwrap());
        assert!(parse_ipmi_power("garbage").is_err());
    }

    #[test]
    fn ifname_validation() {
        assert!(valid_ifname("veth-a.1"));
        assert!(!valid_ifname("-x"));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("0123456789abcdef"));
    }
}
