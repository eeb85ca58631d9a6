//! The drivers' configuration: the `obm` object of `PUT /v0/node/<n>` and
//! the body of `PUT /v0/switch/<s>` (`type` selects the driver), their
//! checks, and the choice of implementation.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::parent::Upstream;
use super::{Bmc, Switch};

/// The `obm` object given when registering a node; `type` selects the driver.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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
    /// CCI-MOC's obmd (what HIL master registers nodes with: `PUT
    /// /v0/node/<n> {"obmd": {"uri", "admin_token"}}`). Power, boot device
    /// and console work once the OBM is enabled (`PUT /v0/node/<n>/obm`),
    /// which stores the node token obmd issues.
    #[serde(rename = "obmd")]
    Obmd {
        /// obmd's URL of the node, e.g. `https://obmd.example:8080/node/n1`.
        uri: String,
        /// obmd's admin token (stored, never returned by the API).
        admin_token: String,
        /// The node token while the OBM is enabled (set by the server).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(read_only)]
        token: Option<String>,
    },
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
}

impl ObmConfig {
    /// The driver's name (its `type`), for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ObmConfig::Ipmi { .. } => "ipmi",
            ObmConfig::Redfish { .. } => "redfish",
            ObmConfig::Qmp { .. } => "qmp",
            ObmConfig::None {} => "none",
            ObmConfig::Obmd { .. } => "obmd",
            ObmConfig::Upstream { .. } => "upstream",
        }
    }

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
            ObmConfig::Obmd { uri, admin_token, .. } => {
                let ok = reqwest::Url::parse(uri)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.query().is_none());
                if !ok {
                    return Err("obmd.uri must be an http:// or https:// URL of the node at obmd".into());
                }
                if admin_token.is_empty()
                    || admin_token.len() > 256
                    || !admin_token.bytes().all(|b| b.is_ascii_graphic())
                {
                    return Err("obmd.admin_token must be 1-256 printable characters".into());
                }
                Ok(())
            }
            ObmConfig::Upstream { url, project, node } => validate_upstream(url, project, node),
        }
    }

    /// The driver for this configuration; `parent` is the parent control
    /// plane's client of a nested instance (for `upstream` nodes).
    pub fn driver(&self, parent: Option<&Arc<Upstream>>) -> Box<dyn Bmc> {
        match self {
            ObmConfig::Ipmi { host, port, user, password, interface, cipher_suite } => Box::new(super::ipmi::Ipmi {
                host: host.clone(),
                port: port.unwrap_or(623),
                user: user.clone(),
                password: password.clone(),
                interface: interface.clone().unwrap_or_else(|| "lanplus".into()),
                cipher_suite: *cipher_suite,
            }),
            ObmConfig::Redfish { url, system, user, password } => Box::new(super::redfish::Redfish {
                url: url.trim_end_matches('/').to_string(),
                system: system.clone(),
                user: user.clone(),
                password: password.clone(),
            }),
            ObmConfig::Qmp { socket, console, disk_device, pxe_device } => Box::new(super::qmp::Qmp {
                socket: socket.clone(),
                console: console.clone(),
                disk_device: disk_device.clone(),
                pxe_device: pxe_device.clone(),
            }),
            ObmConfig::None {} => Box::new(super::none::NONE),
            ObmConfig::Obmd { uri, token: Some(token), .. } => {
                Box::new(super::obmd::Obmd { uri: uri.trim_end_matches('/').to_string(), token: token.clone() })
            }
            // Callers check first (`app::nodes::obm`); a 501 if one does not.
            ObmConfig::Obmd { token: None, .. } => Box::new(super::none::DISABLED),
            ObmConfig::Upstream { url, project, node } => {
                Box::new(super::upstream::UpstreamBmc { parent: parent_for(parent, url, project), node: node.clone() })
            }
        }
    }
}

/// The parent's client if it is the one `url` and `project` name.
fn parent_for(
    parent: Option<&Arc<Upstream>>,
    url: &str,
    project: &str,
) -> Result<Arc<Upstream>, super::parent::UpstreamError> {
    parent
        .filter(|p| p.url() == url && p.project() == project)
        .cloned()
        .ok_or(super::parent::UpstreamError::NotConfigured)
}

/// True for a legal QEMU qdev id (and never an option-like string).
pub fn valid_qdev_id(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The body of `PUT /switch/<name>`; `type` selects the driver.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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
}

fn validate_upstream(url: &str, project: &str, node: &str) -> Result<(), String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err("upstream url must be an http:// or https:// URL".into());
    }
    crate::names::check_name("project", project)?;
    crate::names::check_name("node", node)
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
        }
    }

    /// HIL's capability names of this switch type. Every driver here can
    /// carry tagged VLANs on a port with no native VLAN (a bridge port
    /// without a PVID; VLAN sub-interfaces only; the parent's own switch).
    pub fn capabilities(&self) -> &'static [&'static str] {
        &["nativeless-trunk-mode"]
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
        }
    }

    /// The driver for this configuration; `parent` as for [`ObmConfig::driver`].
    pub fn driver(&self, parent: Option<&Arc<Upstream>>) -> Box<dyn Switch> {
        match self {
            SwitchConfig::LinuxBridge { netns, .. } => {
                Box::new(super::linux_bridge::LinuxBridge { netns: netns.clone() })
            }
            SwitchConfig::VlanBridges { netns } => Box::new(super::vlan_bridges::VlanBridges { netns: netns.clone() }),
            SwitchConfig::Upstream { url, project, node } => Box::new(super::upstream::UpstreamSwitch {
                parent: parent_for(parent, url, project),
                node: node.clone(),
            }),
        }
    }
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
    fn vlan_bridges_config() {
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
