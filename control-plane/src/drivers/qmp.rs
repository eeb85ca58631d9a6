//! The `qmp` BMC of a VM node: the QEMU Machine Protocol on a unix socket
//! (`cont`/`stop`/`system_reset`, `bootindex` for the boot device), and the
//! serial console from a QEMU chardev socket.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::{Bmc, ConsoleStream, DRIVER_TIMEOUT, DriverError, DriverFuture, PowerOp};

/// A VM's QMP socket.
#[derive(Debug, Clone)]
pub(super) struct Qmp {
    pub(super) socket: String,
    /// Unix socket of the serial console.
    pub(super) console: Option<String>,
    /// qdev id of the boot disk.
    pub(super) disk_device: Option<String>,
    /// qdev id of the network boot NIC.
    pub(super) pxe_device: Option<String>,
}

impl Bmc for Qmp {
    fn power(&self, op: PowerOp) -> DriverFuture<'_, ()> {
        Box::pin(async move {
            let cmds: &[&str] = match op {
                PowerOp::On => &["cont"],
                PowerOp::Off => &["stop"],
                PowerOp::Cycle => &["system_reset", "cont"],
            };
            for c in cmds {
                execute(&self.socket, c).await?;
            }
            Ok(())
        })
    }

    fn power_status(&self) -> DriverFuture<'_, bool> {
        Box::pin(async move {
            let v = execute(&self.socket, "query-status").await?;
            Ok(v.get("running").and_then(|r| r.as_bool()).unwrap_or(false))
        })
    }

    fn set_bootdev<'a>(&'a self, dev: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(set_bootdev(&self.socket, dev, self.disk_device.as_deref(), self.pxe_device.as_deref()))
    }

    fn open_console(&self) -> DriverFuture<'_, ConsoleStream> {
        Box::pin(async move {
            let Some(path) = &self.console else {
                return Err(DriverError::Unsupported("this qmp node has no console socket (obm.console) configured"));
            };
            let s = UnixStream::connect(path)
                .await
                .map_err(|e| DriverError::Protocol(format!("console socket {path}: {e}")))?;
            Ok(Box::new(s) as ConsoleStream)
        })
    }
}

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
