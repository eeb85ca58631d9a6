//! What the control plane passes to [`crate::Netboot::start`]: mode, ports, files, pool.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use crate::pool::Pool;

/// Which DHCP role the server plays on the provisioning network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Isolated provisioning network: this server hands out addresses from [`Config::pool`] and
    /// boot files to every client (netboot or not, known or not: unknown ones get an address only).
    Full,
    /// Coexists with the site's DHCP server: answers only netboot clients whose backend decision is
    /// [`crate::Decision::Netboot`], with boot information and no address (`yiaddr` 0).
    Proxy,
    /// No DHCP sockets at all; TFTP only (the site DHCP server points here).
    Off,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Full => "full",
            Mode::Proxy => "proxy",
            Mode::Off => "off",
        })
    }
}

/// A mode name other than `full`, `proxy`, `off`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown netboot mode {0:?} (want full, proxy or off)")]
pub struct ParseModeError(pub String);

impl FromStr for Mode {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Mode::Full),
            "proxy" => Ok(Mode::Proxy),
            "off" => Ok(Mode::Off),
            other => Err(ParseModeError(other.to_owned())),
        }
    }
}

/// The netboot server's configuration. Every field but `mode` and `server_ip` has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `full`, `proxy` or `off` (see [`Mode`]). Required.
    pub mode: Mode,
    /// Provisioning interface: every socket gets `SO_BINDTODEVICE` to it (needs root or
    /// CAP_NET_RAW). Default: none, listen on all interfaces (broadcast replies then leave by the
    /// default route's interface, so set it in production).
    #[serde(default)]
    pub interface: Option<String>,
    /// This server's address on the provisioning network: option 54 (server id), `siaddr` (TFTP
    /// server) in every reply, and the TFTP listen address. Required. (DHCP sockets listen on
    /// 0.0.0.0 to receive broadcasts.)
    pub server_ip: Ipv4Addr,
    /// DHCP server port. Default 67; tests use 0 (any free port).
    #[serde(default = "default_dhcp_port")]
    pub dhcp_port: u16,
    /// DHCP client port, where broadcast and unicast replies go. Default 68.
    #[serde(default = "default_client_port")]
    pub client_port: u16,
    /// PXE boot-server port, proxy mode only (firmware that asks there after a proxy offer).
    /// Default `Some(4011)`; `None` = don't listen.
    #[serde(default = "default_proxy_port")]
    pub proxy_port: Option<u16>,
    /// TFTP port, on `server_ip` (so replies leave from the address clients were told). Default
    /// 69; 0 = no TFTP server.
    #[serde(default = "default_tftp_port")]
    pub tftp_port: u16,
    /// Directory whose regular files (directly in it, no subdirectories) TFTP serves read-only.
    /// Default `/usr/lib/ipxe` (Debian's `ipxe`: undionly.kpxe, ipxe.efi, snponly.efi).
    #[serde(default = "default_boot_dir")]
    pub boot_dir: PathBuf,
    /// Boot file (TFTP) for PXE BIOS clients (option 93 = 0). Default `undionly.kpxe`.
    #[serde(default = "default_bios_file")]
    pub bios_file: String,
    /// Boot file (TFTP) for PXE x64 UEFI clients (option 93 = 7 or 9). Default `ipxe.efi`
    /// (`snponly.efi` for cards whose UEFI driver iPXE lacks).
    #[serde(default = "default_uefi_file")]
    pub uefi_file: String,
    /// Boot file for UEFI HTTP boot clients (`HTTPClient`, option 93 = 16), an http URL of an iPXE
    /// EFI binary, e.g. `http://10.0.0.1:8080/boot/ipxe.efi`. Default none: HTTPClient is not answered.
    #[serde(default)]
    pub http_ipxe_url: Option<String>,
    /// Address pool; required in full mode, ignored otherwise. Default none.
    #[serde(default)]
    pub pool: Option<Pool>,
    /// DHCP packets accepted per MAC per second; more are dropped and counted `rate_limited`.
    /// Default 4.
    #[serde(default = "default_max_per_mac_per_sec")]
    pub max_per_mac_per_sec: u32,
    /// Backend calls (decide, lease_*) in flight at once; packets beyond it are dropped and counted
    /// `busy`. Default 64.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: usize,
    /// Time limit of one backend call in milliseconds; a late answer counts as `backend_errors`
    /// and the packet gets no reply. Default 5000.
    #[serde(default = "default_backend_timeout_ms")]
    pub backend_timeout_ms: u64,
    /// TFTP transfers at once; more requests are refused with an ERROR (counted `tftp_refused`).
    /// Default 64.
    #[serde(default = "default_max_tftp_transfers")]
    pub max_tftp_transfers: usize,
    /// Send every DHCP reply back to the request's source address and port instead of broadcast /
    /// `ciaddr` / relay (for tests on loopback, and servers on non-standard ports). Default false.
    #[serde(default)]
    pub reply_to_source: bool,
}

fn default_dhcp_port() -> u16 {
    67
}
fn default_client_port() -> u16 {
    68
}
fn default_proxy_port() -> Option<u16> {
    Some(4011)
}
fn default_tftp_port() -> u16 {
    69
}
fn default_boot_dir() -> PathBuf {
    PathBuf::from("/usr/lib/ipxe")
}
fn default_bios_file() -> String {
    "undionly.kpxe".to_owned()
}
fn default_uefi_file() -> String {
    "ipxe.efi".to_owned()
}
fn default_max_per_mac_per_sec() -> u32 {
    4
}
fn default_max_inflight() -> usize {
    64
}
fn default_max_tftp_transfers() -> usize {
    64
}
fn default_backend_timeout_ms() -> u64 {
    5000
}

impl Config {
    /// A config with every default, as if deserialized from `mode` and `server_ip` alone.
    pub fn new(mode: Mode, server_ip: Ipv4Addr) -> Config {
        Config {
            mode,
            interface: None,
            server_ip,
            dhcp_port: default_dhcp_port(),
            client_port: default_client_port(),
            proxy_port: default_proxy_port(),
            tftp_port: default_tftp_port(),
            boot_dir: default_boot_dir(),
            bios_file: default_bios_file(),
            uefi_file: default_uefi_file(),
            http_ipxe_url: None,
            pool: None,
            max_per_mac_per_sec: default_max_per_mac_per_sec(),
            max_inflight: default_max_inflight(),
            backend_timeout_ms: default_backend_timeout_ms(),
            max_tftp_transfers: default_max_tftp_transfers(),
            reply_to_source: false,
        }
    }

    /// Checks what serde cannot: full mode has a sane pool, limits are not zero.
    pub fn validate(&self) -> Result<(), String> {
        if self.mode == Mode::Full {
            let pool = self.pool.as_ref().ok_or("full mode needs a pool")?;
            pool.validate()?;
        }
        if self.max_inflight == 0 {
            return Err("max_inflight must be at least 1".into());
        }
        if self.max_tftp_transfers == 0 {
            return Err("max_tftp_transfers must be at least 1".into());
        }
        if self.max_per_mac_per_sec == 0 {
            return Err("max_per_mac_per_sec must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_from_minimal_toml() {
        let cfg: Config = toml::from_str("mode = \"proxy\"\nserver_ip = \"10.0.0.1\"\n").expect("parses");
        assert_eq!(cfg, Config::new(Mode::Proxy, Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(cfg.proxy_port, Some(4011));
        assert_eq!(cfg.boot_dir, PathBuf::from("/usr/lib/ipxe"));
    }

    #[test]
    fn unknown_fields_and_modes_refused() {
        assert!(toml::from_str::<Config>("mode = \"full\"\nserver_ip = \"10.0.0.1\"\nbogus = 1\n").is_err());
        assert!(toml::from_str::<Config>("mode = \"dhcp\"\nserver_ip = \"10.0.0.1\"\n").is_err());
        assert_eq!("off".parse::<Mode>(), Ok(Mode::Off));
        assert!("Full".parse::<Mode>().is_err());
    }

    #[test]
    fn full_mode_needs_a_pool() {
        let mut cfg = Config::new(Mode::Full, Ipv4Addr::new(10, 0, 0, 1));
        assert!(cfg.validate().is_err());
        let toml = r#"
mode = "full"
server_ip = "10.0.0.1"
[pool]
start = "10.0.0.100"
end = "10.0.0.110"
netmask = "255.255.255.0"
router = "10.0.0.1"
dns = ["10.0.0.1"]
lease_secs = 600
reservations = [["52:54:00:00:00:01", "10.0.0.50"]]
"#;
        cfg = toml::from_str(toml).expect("parses");
        cfg.validate().expect("valid");
        let pool = cfg.pool.expect("pool");
        assert_eq!(pool.reservations[0].0.to_string(), "52:54:00:00:00:01");
    }
}
