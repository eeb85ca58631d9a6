//! The `linux-bridge` switch: a VLAN-filtering Linux bridge driven with
//! `bridge vlan add/del`, optionally inside a network namespace; ports are
//! its member interfaces.

use super::{DriverError, DriverFuture, Switch, run};

/// A VLAN-filtering Linux bridge.
#[derive(Debug, Clone)]
pub(super) struct LinuxBridge {
    /// Network namespace the bridge lives in, if not the host's.
    pub(super) netns: Option<String>,
}

impl Switch for LinuxBridge {
    fn add_vlan<'a>(&'a self, port: &'a str, vlan: u16, native: bool) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let vid = vlan.to_string();
            if native {
                // The default VLAN 1 would otherwise leak frames between
                // tenants' untagged traffic.
                let _ = self.bridge_cmd(&["vlan", "del", "dev", port, "vid", "1"]).await;
                self.bridge_cmd(&["vlan", "add", "dev", port, "vid", &vid, "pvid", "untagged"]).await
            } else {
                self.bridge_cmd(&["vlan", "add", "dev", port, "vid", &vid]).await
            }
        })
    }

    fn del_vlan<'a>(&'a self, port: &'a str, vlan: u16, _native: bool) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let vid = vlan.to_string();
            self.bridge_cmd(&["vlan", "del", "dev", port, "vid", &vid]).await
        })
    }
}

/// Checks that `bridge` exists (in `netns`, or the host's namespace) and is
/// a Linux bridge, before a switch is registered on it.
pub(super) async fn check_exists(bridge: &str, netns: Option<&str>) -> Result<(), String> {
    let Some(ns) = netns else {
        // The host's namespace: sysfs says it directly.
        let dev = std::path::Path::new("/sys/class/net").join(bridge);
        if !dev.exists() {
            return Err(format!("bridge {bridge:?} does not exist"));
        }
        if !dev.join("bridge").is_dir() {
            return Err(format!("{bridge:?} is not a Linux bridge"));
        }
        return Ok(());
    };
    if !std::path::Path::new("/run/netns").join(ns).exists() {
        return Err(format!("network namespace {ns:?} does not exist"));
    }
    let out = run("ip", &["-n", ns, "-d", "-j", "link", "show", "dev", bridge], &[])
        .await
        .map_err(|_| format!("bridge {bridge:?} does not exist in network namespace {ns:?}"))?;
    let links: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("ip -j link: {e}"))?;
    if links[0]["linkinfo"]["info_kind"] != "bridge" {
        return Err(format!("{bridge:?} in network namespace {ns:?} is not a Linux bridge"));
    }
    Ok(())
}

impl LinuxBridge {
    async fn bridge_cmd(&self, args: &[&str]) -> Result<(), DriverError> {
        match &self.netns {
            Some(ns) => {
                let mut a = vec!["netns", "exec", ns.as_str(), "bridge"];
                a.extend_from_slice(args);
                run("ip", &a, &[]).await.map(drop)
            }
            None => run("bridge", args, &[]).await.map(drop),
        }
    }
}
