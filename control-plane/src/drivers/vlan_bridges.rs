//! The `linux-vlan-bridges` switch: per-VLAN bridges and 802.1Q
//! sub-interfaces, all inside one network namespace, driven with `ip -n`.
//!
//! * bridge of VLAN `N`: `mcvlanN` (created on first use, `stp_state 0`,
//!   deleted when its last member leaves);
//! * `vlan/native`: the port itself is enslaved to the VLAN's bridge;
//! * `vlan/N`: the sub-interface `<port>.N` (`ip link add ... type vlan id N`;
//!   `mcq<port ifindex>.N` when that name would exceed 15 characters) is
//!   enslaved to the VLAN's bridge;
//! * the first connection takes the port off a bridge the driver does not
//!   manage (e.g. the fabric's default bridge), so an attached port never
//!   stays on the shared default segment;
//! * detach removes exactly what connect created (port `nomaster`, or the
//!   sub-interface deleted), then garbage-collects an empty VLAN bridge.
//!
//! Operations on one namespace are serialized (bridge creation and
//! garbage collection would race otherwise).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

use super::{DriverError, DriverFuture, Switch, run};

/// One bridge per VLAN inside network namespace `netns`.
#[derive(Debug, Clone)]
pub(super) struct VlanBridges {
    /// Network namespace holding the ports.
    pub(super) netns: String,
}

impl Switch for VlanBridges {
    fn add_vlan<'a>(&'a self, port: &'a str, vlan: u16, native: bool) -> DriverFuture<'a, ()> {
        Box::pin(connect(&self.netns, port, vlan, native))
    }

    fn del_vlan<'a>(&'a self, port: &'a str, vlan: u16, native: bool) -> DriverFuture<'a, ()> {
        Box::pin(disconnect(&self.netns, port, vlan, native))
    }
}

const BRIDGE_PREFIX: &str = "mcvlan";

fn ns_lock(netns: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut map = LOCKS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    map.entry(netns.to_string()).or_default().clone()
}

/// Name of VLAN `vlan`'s bridge.
fn bridge_name(vlan: u16) -> String {
    format!("{BRIDGE_PREFIX}{vlan}")
}

/// Name of the sub-interface carrying `vlan` tagged on `port`.
fn subif_name(port: &str, ifindex: u64, vlan: u16) -> String {
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
            let v: Value =
                serde_json::from_str(&out).map_err(|e| DriverError::Protocol(format!("ip -j link show {dev}: {e}")))?;
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

async fn connect(netns: &str, port: &str, vlan: u16, native: bool) -> Result<(), DriverError> {
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

async fn disconnect(netns: &str, port: &str, vlan: u16, native: bool) -> Result<(), DriverError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_ifnamsiz() {
        assert_eq!(bridge_name(4094), "mcvlan4094");
        assert_eq!(subif_name("mc1234abp0", 7, 4094), "mc1234abp0.4094");
        assert_eq!(subif_name("mc1234abp10", 123456, 4094), "mcq123456.4094");
    }
}
