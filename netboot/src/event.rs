//! One step of a node's boot, for the control plane's event log.

use std::fmt;
use std::net::Ipv4Addr;

/// One step of a node's boot, reported through [`crate::Backend::event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Full mode OFFER (`ip` is always set by this crate; `Option` for the control plane's own use).
    DhcpOffered {
        /// The offered address.
        ip: Option<Ipv4Addr>,
        /// Boot file or URL, if the node may netboot.
        boot_file: Option<String>,
    },
    /// Full mode ACK.
    DhcpAcked {
        /// The bound address.
        ip: Ipv4Addr,
        /// Boot file or URL, if the node may netboot.
        boot_file: Option<String>,
    },
    /// Full mode NAK for a requested address.
    DhcpNak {
        /// The refused address.
        ip: Ipv4Addr,
    },
    /// Proxy mode reply (on the DHCP port or the PXE boot-server port).
    ProxyOffered {
        /// Boot file or URL.
        boot_file: String,
        /// The port the request came to (67 or 4011 in production).
        port: u16,
    },
    /// A TFTP transfer sent every block of its file. async-tftp does not report the client's last
    /// ACK, so a client that vanishes during the final window is still reported here.
    TftpSent {
        /// The file name as requested.
        file: String,
        /// Bytes sent.
        bytes: u64,
    },
    /// A TFTP request refused (bad name, missing file, write).
    TftpRefused {
        /// The file name as requested.
        file: String,
        /// Why.
        reason: String,
    },
}

fn with_file(f: &mut fmt::Formatter<'_>, boot_file: &Option<String>) -> fmt::Result {
    match boot_file {
        Some(b) => write!(f, " with {b}"),
        None => f.write_str(" (no boot file)"),
    }
}

/// `bytes` in B, KiB, MiB or GiB with one decimal.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::DhcpOffered { ip, boot_file } => {
                match ip {
                    Some(ip) => write!(f, "DHCP offered {ip}")?,
                    None => f.write_str("DHCP offered no address")?,
                }
                with_file(f, boot_file)
            }
            Event::DhcpAcked { ip, boot_file } => {
                write!(f, "DHCP acknowledged {ip}")?;
                with_file(f, boot_file)
            }
            Event::DhcpNak { ip } => write!(f, "DHCP refused {ip} (NAK)"),
            Event::ProxyOffered { boot_file, port } => write!(f, "proxyDHCP offered {boot_file} (port {port})"),
            Event::TftpSent { file, bytes } => write!(f, "{file} sent over TFTP ({})", size(*bytes)),
            Event::TftpRefused { file, reason } => write!(f, "TFTP refused {file:?}: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_sentences() {
        let ip = Ipv4Addr::new(10, 0, 0, 5);
        let e = Event::DhcpOffered { ip: Some(ip), boot_file: Some("ipxe.efi".into()) };
        assert_eq!(e.to_string(), "DHCP offered 10.0.0.5 with ipxe.efi");
        let e = Event::DhcpAcked { ip, boot_file: None };
        assert_eq!(e.to_string(), "DHCP acknowledged 10.0.0.5 (no boot file)");
        let e = Event::TftpSent { file: "ipxe.efi".into(), bytes: 1024 * 1024 };
        assert_eq!(e.to_string(), "ipxe.efi sent over TFTP (1.0 MiB)");
        let e = Event::TftpSent { file: "x".into(), bytes: 1000 };
        assert_eq!(e.to_string(), "x sent over TFTP (1000 B)");
        let e = Event::TftpSent { file: "x".into(), bytes: 1536 };
        assert_eq!(e.to_string(), "x sent over TFTP (1.5 KiB)");
        let e = Event::ProxyOffered { boot_file: "undionly.kpxe".into(), port: 4011 };
        assert_eq!(e.to_string(), "proxyDHCP offered undionly.kpxe (port 4011)");
        assert_eq!(Event::DhcpNak { ip }.to_string(), "DHCP refused 10.0.0.5 (NAK)");
    }
}
