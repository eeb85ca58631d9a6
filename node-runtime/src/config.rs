//! The agent's configuration, from flags or from the kernel command line
//! (when the runtime boots as PID 1 the command line is all it gets).
//!
//! Kernel command line keys (documented in `docs/node-runtime.md`):
//! - `metalcast.cp=http://10.0.0.1:8080`: the control plane's base URL (required);
//!   several replicas' URLs separated by commas, tried in turn when one fails;
//! - `ip=<client>:<server>:<gw>:<netmask>:<host>:<dev>:<autoconf>` (the
//!   kernel's nfsroot syntax; only client, gw, netmask and dev are used) or
//!   `ip=dhcp` / no `ip=`: DHCP on the first interface that gets a lease;
//! - `metalcast.iface=<name>`: the interface to use (default: first non-loopback);
//! - `metalcast.role=runtime|tenant` (default runtime);
//! - `metalcast.handover=kexec|vm|none` (default: the instruction's): `none` only reports;
//! - `metalcast.kexec=auto|file|load` (default auto): how a kexec hand-over
//!   stages the kernel (`kexec_file_load`, falling back to / forcing `kexec_load`);
//! - `metalcast.allow_unsigned=1`: accept unsigned manifests (hashes are still checked);
//! - `metalcast.attended=<secs>`: attended mode (console menu of the images
//!   offered, default after the countdown);
//! - `metalcast.marker=<text>`: printed as `metalcast-marker: <text>` when init starts;
//! - `metalcast.hash=<device>:<bytes>`: init prints the BLAKE3 of the device's first bytes.

use std::net::Ipv4Addr;

/// How the network comes up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetConfig {
    /// DHCP (DISCOVER/OFFER/REQUEST/ACK).
    Dhcp,
    /// A fixed address.
    Static {
        /// Address.
        addr: Ipv4Addr,
        /// Prefix length.
        prefix: u8,
        /// Default gateway, if any.
        gateway: Option<Ipv4Addr>,
    },
    /// Already configured (the agent runs on a configured host, e.g. in a test namespace).
    Existing {
        /// The address to use.
        addr: Ipv4Addr,
    },
}

/// Values read from a kernel command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootArgs {
    /// `metalcast.cp`.
    pub control_plane: Option<String>,
    /// `ip=` parsed; `None` means DHCP.
    pub net: Option<NetConfig>,
    /// `ip=` device field or `metalcast.iface`.
    pub iface: Option<String>,
    /// `metalcast.role`.
    pub role: Option<String>,
    /// `metalcast.handover`.
    pub handover: Option<String>,
    /// `metalcast.kexec`.
    pub kexec: Option<String>,
    /// `metalcast.allow_unsigned=1`.
    pub allow_unsigned: bool,
    /// `metalcast.marker`.
    pub marker: Option<String>,
    /// `metalcast.hash`: (device, bytes).
    pub hash: Option<(String, u64)>,
    /// `metalcast.attended=SECS`: attended mode with this countdown.
    pub attended: Option<u64>,
    /// `metalcast.token=`: the check-in token the control plane's netboot
    /// put on this command line (sent with every check-in).
    pub token: Option<String>,
}

fn prefix_of(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let p = m.leading_ones();
    (m.checked_shl(p).unwrap_or(0) == 0).then_some(p as u8)
}

/// Parses the kernel's `ip=` value.
pub fn parse_ip(v: &str) -> Result<(Option<NetConfig>, Option<String>), String> {
    if matches!(v, "dhcp" | "on" | "any" | "") {
        return Ok((Some(NetConfig::Dhcp), None));
    }
    let f: Vec<&str> = v.split(':').collect();
    let addr: Ipv4Addr = f[0].parse().map_err(|_| format!("ip={v}: client address {:?}", f[0]))?;
    let gw = match f.get(2).copied().unwrap_or("") {
        "" => None,
        g => Some(g.parse::<Ipv4Addr>().map_err(|_| format!("ip={v}: gateway {g:?}"))?),
    };
    let prefix = match f.get(3).copied().unwrap_or("") {
        "" => 24,
        m => prefix_of(m.parse().map_err(|_| format!("ip={v}: netmask {m:?}"))?)
            .ok_or_else(|| format!("ip={v}: netmask {m} is not contiguous"))?,
    };
    let dev = f.get(5).filter(|d| !d.is_empty()).map(|d| d.to_string());
    Ok((Some(NetConfig::Static { addr, prefix, gateway: gw }), dev))
}

/// Parses a whole kernel command line; unknown words are ignored, malformed metalcast ones are errors.
pub fn parse_cmdline(line: &str) -> Result<BootArgs, String> {
    let mut a = BootArgs::default();
    for w in line.split_ascii_whitespace() {
        let (k, v) = w.split_once('=').unwrap_or((w, ""));
        match k {
            "ip" => {
                let (net, dev) = parse_ip(v)?;
                a.net = net;
                if dev.is_some() {
                    a.iface = dev;
                }
            }
            "metalcast.cp" => a.control_plane = Some(v.trim_end_matches('/').to_string()),
            "metalcast.iface" => a.iface = Some(v.to_string()),
            "metalcast.role" => a.role = Some(v.to_string()),
            "metalcast.handover" => a.handover = Some(v.to_string()),
            "metalcast.kexec" => a.kexec = Some(v.to_string()),
            "metalcast.allow_unsigned" => a.allow_unsigned = v == "1",
            "metalcast.marker" => a.marker = Some(v.to_string()),
            "metalcast.token" => {
                if v.is_empty() || v.len() > 512 || !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err("metalcast.token=: want a printable token of at most 512 bytes".into());
                }
                a.token = Some(v.to_string());
            }
            "metalcast.attended" => {
                a.attended = Some(v.parse().map_err(|_| format!("metalcast.attended={v}: want seconds"))?);
            }
            "metalcast.hash" => {
                let (dev, n) = v.rsplit_once(':').ok_or_else(|| format!("metalcast.hash={v}: want DEVICE:BYTES"))?;
                let n = n.parse().map_err(|_| format!("metalcast.hash={v}: {n:?} is not a byte count"))?;
                a.hash = Some((dev.to_string(), n));
            }
            _ => {}
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline() {
        let a = parse_cmdline(
            "console=ttyS0 ip=10.77.0.101::10.77.0.1:255.255.255.0::eth0:off metalcast.cp=http://10.77.0.1:8080/ metalcast.kexec=load metalcast.marker=hello metalcast.hash=/dev/vda:4096",
        )
        .unwrap();
        assert_eq!(
            a.net,
            Some(NetConfig::Static {
                addr: "10.77.0.101".parse().unwrap(),
                prefix: 24,
                gateway: Some("10.77.0.1".parse().unwrap())
            })
        );
        assert_eq!(a.iface.as_deref(), Some("eth0"));
        assert_eq!(a.control_plane.as_deref(), Some("http://10.77.0.1:8080"));
        assert_eq!(a.marker.as_deref(), Some("hello"));
        assert_eq!(a.kexec.as_deref(), Some("load"));
        assert_eq!(a.hash, Some(("/dev/vda".into(), 4096)));
        assert_eq!(parse_cmdline("ip=dhcp").unwrap().net, Some(NetConfig::Dhcp));
        assert_eq!(parse_cmdline("metalcast.token=mcn1.abc quiet").unwrap().token.as_deref(), Some("mcn1.abc"));
        assert!(parse_cmdline("metalcast.token=").is_err());
        assert_eq!(parse_cmdline("quiet").unwrap().net, None);
        assert!(parse_cmdline("ip=10.0.0.1:::255.0.255.0").is_err());
        assert!(parse_cmdline("ip=bogus").is_err());
        assert!(parse_cmdline("metalcast.hash=/dev/vda").is_err());
        assert_eq!(
            parse_ip("10.0.0.2:::255.255.0.0").unwrap().0,
            Some(NetConfig::Static { addr: "10.0.0.2".parse().unwrap(), prefix: 16, gateway: None })
        );
    }
}
