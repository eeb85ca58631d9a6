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
//!   (see [`crate::upstream`]).
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
    /// The parent control plane (of an `upstream` node) failed or refused.
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamError),
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
        /// Unix socket of the node's serial console (a QEMU
        /// `-chardev socket,server=on,wait=off` behind `-serial`), for the
        /// console log.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        console: Option<String>,
        /// qdev id of the boot disk (`-device ...,id=<this>`), for `bootdev disk`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disk_device: Option<String>,
        /// qdev id of the network boot NIC, for `bootdev pxe`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pxe_device: Option<String>,
    },
    /// No BMC (e.g. a namespace node of the demo fabric): power and console
    /// calls answer 501; reclaim works only through the node's runtime.
    #[serde(rename = "none")]
    None {},
    /// A node imported from a parent control plane (`serve --upstream`):
    /// everything is delegated to the parent. Written by the inventory sync.
    #[serde(rename = "upstream")]
    Upstream {
        /// Base URL of the parent.
        url: String,
        /// Project at the parent that holds the node.
        project: String,
        /// The node's name at the parent.
        node: String,
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
            ObmConfig::Qmp { socket, console, disk_device, pxe_device } => {
                if !socket.starts_with('/') {
                    return Err("obm.socket must be an absolute path".into());
                }
                if console.as_ref().is_some_and(|c| !c.starts_with('/')) {
                    return Err("obm.console must be an absolute path".into());
                }
                for (field, id) in [("disk_device", disk_device), ("pxe_device", pxe_device)] {
                    if id.as_ref().is_some_and(|i| !valid_qdev_id(i)) {
                        return Err(format!("obm.{field} must be a qdev id (letter, then up to 63 of [A-Za-z0-9_.-])"));
                    }
                }
                Ok(())
            }
            ObmConfig::None {} => Ok(()),
            ObmConfig::Upstream { url, project, node } => validate_upstream(url, project, node),
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
            ObmConfig::Qmp { socket, .. } => {
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
            ObmConfig::None {} => Err(DriverError::Unsupported("the node has no BMC (obm type none)")),
            ObmConfig::Upstream { url, project, node } => {
                Ok(crate::upstream::client(url, project)?.power(node, op).await?)
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
            ObmConfig::Qmp { socket, .. } => {
                let v = qmp::execute(socket, "query-status").await?;
                Ok(v.get("running").and_then(|r| r.as_bool()).unwrap_or(false))
            }
            ObmConfig::None {} => Err(DriverError::Unsupported("the node has no BMC (obm type none)")),
            ObmConfig::Upstream { url, project, node } => {
                Ok(crate::upstream::client(url, project)?.power_status(node).await?)
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
            ObmConfig::Qmp { socket, disk_device, pxe_device, .. } => {
                qmp::set_bootdev(socket, dev, disk_device.as_deref(), pxe_device.as_deref()).await
            }
            ObmConfig::None {} => Err(DriverError::Unsupported("the node has no BMC (obm type none)")),
            ObmConfig::Upstream { url, project, node } => {
                Ok(crate::upstream::client(url, project)?.set_bootdev(node, dev).await?)
            }
            #[cfg(test)]
            ObmConfig::Mock { id } => {
                mock::with(id, |s| s.log.push(format!("bootdev {dev}")));
                Ok(())
            }
        }
    }

    /// Open the node's serial console as a byte stream (read-only use).
    pub async fn open_console(&self) -> Result<ConsoleStream, DriverError> {
        match self {
            ObmConfig::Qmp { console: Some(path), .. } => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| DriverError::Protocol(format!("console socket {path}: {e}")))?;
                Ok(Box::new(s))
            }
            ObmConfig::Qmp { console: None, .. } => {
                Err(DriverError::Unsupported("this qmp node has no console socket (obm.console) configured"))
            }
            ObmConfig::Ipmi { .. } => {
                // A session left active (e.g. by a crashed server) would make
                // activate fail; end it first. Failure here is expected when
                // no session is active.
                let _ = self.ipmitool(&["sol", "deactivate"]).await;
                self.sol_activate().await
            }
            ObmConfig::Redfish { .. } => {
                Err(DriverError::Unsupported("the redfish driver does not capture the console"))
            }
            ObmConfig::None {} => Err(DriverError::Unsupported("the node has no BMC (obm type none)")),
            ObmConfig::Upstream { url, project, node } => {
                let up = crate::upstream::client(url, project)?;
                up.console_start(node).await?;
                Ok(upstream_console(up, node.clone()))
            }
            #[cfg(test)]
            ObmConfig::Mock { .. } => Err(DriverError::Unsupported("the mock driver has no console")),
        }
    }

    /// `ipmitool ... sol activate` as a child process whose stdout is the
    /// console. Its stdin is a pipe that stays open and silent (EOF would end
    /// the session); dropping the stream kills the process. Returns once
    /// ipmitool reports the session operational (its banner line is not part
    /// of the console), or fails if it exits first.
    async fn sol_activate(&self) -> Result<ConsoleStream, DriverError> {
        use tokio::io::AsyncBufReadExt;
        let (args, password) = self.ipmitool_args(&["sol", "activate"]);
        let mut child = Command::new("ipmitool")
            .args(&args)
            .env("IPMI_PASSWORD", password)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| DriverError::Spawn { program: "ipmitool".into(), source })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| DriverError::Protocol("ipmitool: no stdout".into()))?;
        let mut stdout = tokio::io::BufReader::new(stdout);
        let mut banner = String::new();
        let read = tokio::time::timeout(DRIVER_TIMEOUT, stdout.read_line(&mut banner))
            .await
            .map_err(|_| DriverError::Timeout)?
            .map_err(|e| DriverError::Protocol(format!("ipmitool sol: {e}")))?;
        if read == 0 || !banner.contains("SOL Session operational") {
            let status = child.wait().await.map(|s| s.to_string()).unwrap_or_default();
            return Err(DriverError::Command {
                program: "ipmitool".into(),
                status,
                stderr: format!("sol activate failed: {}", banner.trim()),
            });
        }
        Ok(Box::new(ChildConsole { _child: child, _stdin: stdin, stdout }))
    }

    fn ipmitool_args(&self, cmd: &[&str]) -> (Vec<String>, String) {
        let ObmConfig::Ipmi { host, port, user, password, interface, cipher_suite } = self else {
            unreachable!("ipmitool called for a non-ipmi obm")
        };
        let port = port.unwrap_or(623).to_string();
        let iface = interface.as_deref().unwrap_or("lanplus");
        let mut args: Vec<String> =
            ["-I", iface, "-H", host, "-p", &port, "-U", user, "-E"].iter().map(|s| s.to_string()).collect();
        if let Some(cs) = cipher_suite {
            args.extend(["-C".to_string(), cs.to_string()]);
        }
        args.extend(cmd.iter().map(|s| s.to_string()));
        (args, password.clone())
    }

    async fn ipmitool(&self, cmd: &[&str]) -> Result<String, DriverError> {
        let (args, password) = self.ipmitool_args(cmd);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // -E: password from IPMI_PASSWORD, so it never shows up in `ps`.
        run("ipmitool", &args, &[("IPMI_PASSWORD", &password)]).await
    }
}

/// A console read from a child process's stdout; the child is killed when
/// this is dropped.
struct ChildConsole {
    _child: tokio::process::Child,
    _stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::io::BufReader<tokio::process::ChildStdout>,
}

impl tokio::io::AsyncRead for ChildConsole {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

/// A console byte stream returned by [`ObmConfig::open_console`].
pub type ConsoleStream = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// True for a legal QEMU qdev id (and never an option-like string).
pub fn valid_qdev_id(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
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
        let mut r = session(socket, vec![json!({ "execute": command })]).await?;
        Ok(r.pop().unwrap_or(Value::Null))
    }

    /// Run `commands` (full QMP messages) in one session, in order; return
    /// each `return` value. Stops at the first error.
    pub(super) async fn session(socket: &str, commands: Vec<Value>) -> Result<Vec<Value>, DriverError> {
        tokio::time::timeout(DRIVER_TIMEOUT, session_inner(socket, commands)).await.map_err(|_| DriverError::Timeout)?
    }

    async fn session_inner(socket: &str, commands: Vec<Value>) -> Result<Vec<Value>, DriverError> {
        let proto = |e: std::io::Error| DriverError::Protocol(format!("qmp: {e}"));
        let stream = UnixStream::connect(socket).await.map_err(proto)?;
        let (r, mut w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        // Greeting.
        let greeting = lines.next_line().await.map_err(proto)?;
        if !greeting.is_some_and(|g| g.contains("QMP")) {
            return Err(DriverError::Protocol("qmp: no greeting".into()));
        }
        let mut results = Vec::new();
        let all = std::iter::once(json!({ "execute": "qmp_capabilities" })).chain(commands);
        for (i, cmd) in all.enumerate() {
            let mut msg = cmd.to_string();
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
                    if i > 0 {
                        results.push(ret.clone());
                    }
                    break;
                }
                if let Some(err) = v.get("error") {
                    return Err(DriverError::Protocol(format!("qmp {}: {err}", cmd["execute"])));
                }
                // Asynchronous events are skipped.
            }
        }
        Ok(results)
    }

    fn path(id: &str) -> String {
        format!("/machine/peripheral/{id}")
    }

    /// The wanted `bootindex` of (disk, nic) for a HIL boot device: the
    /// chosen device first, the other one out of the boot order; `none`
    /// takes both out (the firmware's default order applies).
    pub(super) fn boot_indexes(dev: &str) -> (i64, i64) {
        match dev {
            "disk" => (1, -1),
            "pxe" => (-1, 1),
            _ => (-1, -1),
        }
    }

    /// Set the boot device by changing the devices' `bootindex` properties
    /// (QEMU rewrites the firmware boot order at the next reset), then read
    /// them back to verify.
    pub(super) async fn set_bootdev(
        socket: &str,
        dev: &str,
        disk: Option<&str>,
        nic: Option<&str>,
    ) -> Result<(), DriverError> {
        match (dev, disk, nic) {
            ("disk", None, _) => {
                return Err(DriverError::Unsupported("this qmp node has no obm.disk_device configured"));
            }
            ("pxe", _, None) => return Err(DriverError::Unsupported("this qmp node has no obm.pxe_device configured")),
            (_, None, None) => {
                return Err(DriverError::Unsupported(
                    "this qmp node has neither obm.disk_device nor obm.pxe_device configured",
                ));
            }
            _ => {}
        }
        let (disk_idx, nic_idx) = boot_indexes(dev);
        let mut wanted: Vec<(&str, i64)> = Vec::new();
        // Clear first: QEMU refuses two devices with the same bootindex.
        for (id, idx) in [(disk, disk_idx), (nic, nic_idx)] {
            if let Some(id) = id
                && idx < 0
            {
                wanted.push((id, idx));
            }
        }
        for (id, idx) in [(disk, disk_idx), (nic, nic_idx)] {
            if let Some(id) = id
                && idx >= 0
            {
                wanted.push((id, idx));
            }
        }
        let mut cmds: Vec<Value> = wanted
            .iter()
            .map(|(id, idx)| {
                json!({"execute": "qom-set", "arguments": {"path": path(id), "property": "bootindex", "value": idx}})
            })
            .collect();
        cmds.extend(
            wanted
                .iter()
                .map(|(id, _)| json!({"execute": "qom-get", "arguments": {"path": path(id), "property": "bootindex"}})),
        );
        let results = session(socket, cmds).await?;
        let got = &results[wanted.len()..];
        for ((id, idx), v) in wanted.iter().zip(got) {
            if v.as_i64() != Some(*idx) {
                return Err(DriverError::Protocol(format!("qmp: {id} bootindex is {v} after setting {idx}")));
            }
        }
        Ok(())
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
    /// One Linux bridge per VLAN inside network namespace `netns`: a native
    /// network enslaves the port itself to the VLAN's bridge, a tagged one
    /// enslaves the 802.1Q sub-interface `<port>.<vid>`. Needs no bridge VLAN
    /// filtering in the kernel.
    #[serde(rename = "linux-vlan-bridges")]
    VlanBridges {
        /// Network namespace holding the ports (e.g. a fabric's switch namespace).
        netns: String,
    },
    /// The per-node switch of a node imported from a parent control plane:
    /// ports are the node's NIC names; a nested network with VLAN label `v`
    /// is the parent network `<project>-v<v>`. Written by the inventory sync.
    #[serde(rename = "upstream")]
    Upstream {
        /// Base URL of the parent.
        url: String,
        /// Project at the parent that holds the node.
        project: String,
        /// The node's name at the parent.
        node: String,
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

fn validate_upstream(url: &str, project: &str, node: &str) -> Result<(), String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err("upstream url must be an http:// or https:// URL".into());
    }
    crate::names::check_name("project", project)?;
    crate::names::check_name("node", node)
}

/// The console of an upstream node: the parent's console log, polled once a
/// second; new bytes are passed on. Dropping the stream stops the parent's
/// capture.
fn upstream_console(up: std::sync::Arc<crate::upstream::Upstream>, node: String) -> ConsoleStream {
    use tokio::io::AsyncWriteExt;
    let (mut tx, rx) = tokio::io::duplex(64 * 1024);
    let cancel = tokio_util::sync::CancellationToken::new();
    let stopped = cancel.clone();
    tokio::spawn(async move {
        let mut seen = String::new();
        loop {
            match up.console_show(&node).await {
                Ok(log) => {
                    // The parent keeps a bounded log: continue after what we
                    // passed on when it is still there, else pass it all.
                    let new = match log.strip_prefix(seen.as_str()) {
                        Some(rest) => rest.to_string(),
                        None => log.clone(),
                    };
                    if !new.is_empty() && tx.write_all(new.as_bytes()).await.is_err() {
                        break;
                    }
                    seen = log;
                }
                Err(crate::upstream::UpstreamError::NodeGone(_)) => break,
                Err(e) => tracing::debug!(%node, error = %e, "upstream console poll failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                // The reader is gone: stop polling.
                _ = stopped.cancelled() => break,
            }
        }
        let _ = up.console_stop(&node).await;
    });
    Box::new(UpstreamConsole { rx, _stop: cancel.drop_guard() })
}

/// Read end of an upstream console; dropping it stops the poller.
struct UpstreamConsole {
    rx: tokio::io::DuplexStream,
    _stop: tokio_util::sync::DropGuard,
}

impl tokio::io::AsyncRead for UpstreamConsole {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.rx).poll_read(cx, buf)
    }
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
            SwitchConfig::VlanBridges { netns } => {
                if !valid_ifname(netns) {
                    return Err("netns is not a valid namespace name".into());
                }
                if !std::path::Path::new("/run/netns").join(netns).exists() {
                    return Err(format!("network namespace {netns:?} does not exist"));
                }
                Ok(())
            }
            SwitchConfig::Upstream { url, project, node } => validate_upstream(url, project, node),
            #[cfg(test)]
            SwitchConfig::Mock { .. } => Ok(()),
        }
    }

    /// Check a port name for this switch type.
    pub fn validate_port(&self, port: &str) -> Result<(), String> {
        match self {
            SwitchConfig::LinuxBridge { .. } | SwitchConfig::VlanBridges { .. } => {
                if valid_ifname(port) {
                    Ok(())
                } else {
                    Err("port must be a Linux interface name (max 15 characters)".into())
                }
            }
            SwitchConfig::Upstream { .. } => crate::names::check_name("port", port),
            #[cfg(test)]
            SwitchConfig::Mock { .. } => Ok(()),
        }
    }

    async fn bridge_cmd(&self, args: &[&str]) -> Result<(), DriverError> {
        let netns = match self {
            SwitchConfig::LinuxBridge { netns, .. } => netns,
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
            SwitchConfig::VlanBridges { netns } => vlan_bridges::connect(netns, port, vlan, native).await,
            SwitchConfig::Upstream { url, project, node } => {
                if !native {
                    return Err(DriverError::Unsupported(
                        "nested (upstream) networks carry only the native channel: tags are not translated between levels",
                    ));
                }
                let up = crate::upstream::client(url, project)?;
                Ok(up.connect(node, port, &up.network_name(vlan)).await?)
            }
            #[cfg(test)]
            SwitchConfig::Mock { key, fail, hold } => {
                mock_op(key, *fail, *hold, format!("add {port} {vlan} native={native}")).await
            }
        }
    }

    /// Remove `vlan` (attached untagged if `native`, else tagged) from `port`.
    pub async fn del_vlan(&self, port: &str, vlan: u16, native: bool) -> Result<(), DriverError> {
        match self {
            SwitchConfig::LinuxBridge { .. } => {
                let vid = vlan.to_string();
                self.bridge_cmd(&["vlan", "del", "dev", port, "vid", &vid]).await
            }
            SwitchConfig::VlanBridges { netns } => vlan_bridges::disconnect(netns, port, vlan, native).await,
            SwitchConfig::Upstream { url, project, node } => {
                let up = crate::upstream::client(url, project)?;
                Ok(up.detach(node, port, &up.network_name(vlan)).await?)
            }
            #[cfg(test)]
            SwitchConfig::Mock { key, fail, hold } => mock_op(key, *fail, *hold, format!("del {port} {vlan}")).await,
        }
    }
}

/// The `linux-vlan-bridges` switch: per-VLAN bridges and 802.1Q
/// sub-interfaces, all inside one network namespace, driven with `ip -n`.
///
/// * bridge of VLAN `N`: `mcvlanN` (created on first use, `stp_state 0`,
///   deleted when its last member leaves);
/// * `vlan/native`: the port itself is enslaved to the VLAN's bridge;
/// * `vlan/N`: the sub-interface `<port>.N` (`ip link add ... type vlan id N`;
///   `mcq<port ifindex>.N` when that name would exceed 15 characters) is
///   enslaved to the VLAN's bridge;
/// * the first connection takes the port off a bridge the driver does not
///   manage (e.g. the fabric's default bridge), so an attached port never
///   stays on the shared default segment;
/// * detach removes exactly what connect created (port `nomaster`, or the
///   sub-interface deleted), then garbage-collects an empty VLAN bridge.
///
/// Operations on one namespace are serialized (bridge creation and
/// garbage collection would race otherwise).
mod vlan_bridges {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};

    use serde_json::Value;

    use super::{DriverError, run};

    const BRIDGE_PREFIX: &str = "mcvlan";

    fn ns_lock(netns: &str) -> Arc<tokio::sync::Mutex<()>> {
        static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
        let mut map = LOCKS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        map.entry(netns.to_string()).or_default().clone()
    }

    /// Name of VLAN `vlan`'s bridge.
    pub(super) fn bridge_name(vlan: u16) -> String {
        format!("{BRIDGE_PREFIX}{vlan}")
    }

    /// Name of the sub-interface carrying `vlan` tagged on `port`.
    pub(super) fn subif_name(port: &str, ifindex: u64, vlan: u16) -> String {
        let name = format!("{port}.{vlan}");
        if name.len() <= 15 { name } else { format!("mcq{ifindex}.{vlan}") }
    }

    async fn ip(netns: &str, args: &[&str]) -> Result<String, DriverError> {
        let mut a = vec!["-n", netns];
        a.extend_from_slice(args);
        run("ip", &a, &[]).await
    }

    /// `ip -d -j link show dev <dev>`, or `None` if there is no such device.
    async fn link(netns: &str, dev: &str) -> Result<Option<Value>, DriverError> {
        match ip(netns, &["-d", "-j", "link", "show", "dev", dev]).await {
            Ok(out) => {
                let v: Value = serde_json::from_str(&out)
                    .map_err(|e| DriverError::Protocol(format!("ip -j link show {dev}: {e}")))?;
                Ok(v.get(0).cloned())
            }
            Err(DriverError::Command { stderr, .. }) if stderr.contains("does not exist") => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn require_port(netns: &str, port: &str) -> Result<Value, DriverError> {
        link(netns, port).await?.ok_or_else(|| DriverError::Command {
            program: "ip".into(),
            status: "port check".into(),
            stderr: format!("port {port} does not exist in netns {netns}"),
        })
    }

    fn kind(link: &Value) -> Option<&str> {
        link["linkinfo"]["info_kind"].as_str()
    }

    async fn ensure_bridge(netns: &str, vlan: u16) -> Result<String, DriverError> {
        let br = bridge_name(vlan);
        match link(netns, &br).await? {
            Some(l) if kind(&l) == Some("bridge") => {}
            Some(_) => {
                return Err(DriverError::Protocol(format!("{br} exists in {netns} but is not a bridge")));
            }
            None => {
                ip(netns, &["link", "add", &br, "type", "bridge", "stp_state", "0"]).await?;
            }
        }
        ip(netns, &["link", "set", &br, "up"]).await?;
        Ok(br)
    }

    /// Delete VLAN `vlan`'s bridge if it exists and has no members left.
    async fn gc_bridge(netns: &str, vlan: u16) -> Result<(), DriverError> {
        let br = bridge_name(vlan);
        if link(netns, &br).await?.is_none() {
            return Ok(());
        }
        let out = ip(netns, &["-j", "link", "show", "master", &br]).await?;
        let members: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        if members.as_array().is_none_or(|m| m.is_empty()) {
            ip(netns, &["link", "del", &br]).await?;
        }
        Ok(())
    }

    pub(super) async fn connect(netns: &str, port: &str, vlan: u16, native: bool) -> Result<(), DriverError> {
        let lock = ns_lock(netns);
        let _guard = lock.lock().await;
        let p = require_port(netns, port).await?;
        ensure_bridge(netns, vlan).await?;
        let res = enslave(netns, port, &p, vlan, native).await;
        if res.is_err() {
            // Leave nothing behind: a bridge created for this call goes again.
            let _ = gc_bridge(netns, vlan).await;
        }
        res
    }

    async fn enslave(netns: &str, port: &str, p: &Value, vlan: u16, native: bool) -> Result<(), DriverError> {
        let br = bridge_name(vlan);
        if native {
            // Moves the port off any previous master in one step.
            ip(netns, &["link", "set", port, "master", &br]).await?;
        } else {
            let ifindex = p["ifindex"].as_u64().unwrap_or(0);
            let sub = subif_name(port, ifindex, vlan);
            if link(netns, &sub).await?.is_none() {
                let vid = vlan.to_string();
                match ip(netns, &["link", "add", "link", port, "name", &sub, "type", "vlan", "id", &vid]).await {
                    Err(DriverError::Command { stderr, .. }) if stderr.contains("Unknown device type") => {
                        return Err(DriverError::Unsupported(
                            "this kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q): tagged channels are unavailable",
                        ));
                    }
                    other => other.map(drop)?,
                }
            }
            if p["master"].as_str().is_some_and(|m| !m.starts_with(BRIDGE_PREFIX)) {
                ip(netns, &["link", "set", port, "nomaster"]).await?;
            }
            ip(netns, &["link", "set", &sub, "master", &br]).await?;
            ip(netns, &["link", "set", &sub, "up"]).await?;
        }
        ip(netns, &["link", "set", port, "up"]).await.map(drop)
    }

    pub(super) async fn disconnect(netns: &str, port: &str, vlan: u16, native: bool) -> Result<(), DriverError> {
        let lock = ns_lock(netns);
        let _guard = lock.lock().await;
        let p = require_port(netns, port).await?;
        let br = bridge_name(vlan);
        if native {
            if p["master"].as_str() == Some(br.as_str()) {
                ip(netns, &["link", "set", port, "nomaster"]).await?;
            }
        } else {
            let sub = subif_name(port, p["ifindex"].as_u64().unwrap_or(0), vlan);
            if let Some(l) = link(netns, &sub).await?
                && kind(&l) == Some("vlan")
            {
                ip(netns, &["link", "del", &sub]).await?;
            }
        }
        gc_bridge(netns, vlan).await
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
    fn vlan_bridges_names_fit_ifnamsiz() {
        assert_eq!(vlan_bridges::bridge_name(4094), "mcvlan4094");
        assert_eq!(vlan_bridges::subif_name("mc1234abp0", 7, 4094), "mc1234abp0.4094");
        assert_eq!(vlan_bridges::subif_name("mc1234abp10", 123456, 4094), "mcq123456.4094");
        let bad: Result<SwitchConfig, _> = serde_json::from_str(r#"{"type":"linux-vlan-bridges","netns":"-x"}"#);
        assert!(bad.unwrap().validate().is_err());
        let missing: SwitchConfig =
            serde_json::from_str(r#"{"type":"linux-vlan-bridges","netns":"mcnoexist9"}"#).unwrap();
        assert!(missing.validate().unwrap_err().contains("does not exist"));
        assert!(serde_json::from_str::<SwitchConfig>(r#"{"type":"linux-vlan-bridges"}"#).is_err());
    }

    #[test]
    fn ifname_validation() {
        assert!(valid_ifname("veth-a.1"));
        assert!(!valid_ifname("-x"));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("0123456789abcdef"));
    }
}
