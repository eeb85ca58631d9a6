//! Network bring-up: pick the interface, set it up, and configure IPv4
//! statically or by DHCP (messages from `dhcproto`, a UDP socket bound to
//! the interface; the server's replies are requested as broadcasts since the
//! node has no address yet).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

use crate::config::NetConfig;
use crate::sys;

/// Network bring-up failures.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// No usable interface appeared.
    #[error("no network interface (besides lo) appeared within {0:?}")]
    NoInterface(Duration),
    /// The named interface does not exist.
    #[error("interface {0} not found")]
    UnknownInterface(String),
    /// Configuring the interface failed.
    #[error("configuring {iface}: {source}")]
    Config {
        /// The interface.
        iface: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// DHCP got no lease.
    #[error("DHCP on {iface}: {reason}")]
    Dhcp {
        /// The interface.
        iface: String,
        /// What went wrong.
        reason: String,
    },
}

/// The configured provisioning interface.
#[derive(Debug, Clone)]
pub struct NetInfo {
    /// Interface name.
    pub iface: String,
    /// Its MAC, `aa:bb:..`.
    pub mac: String,
    /// Its IPv4 address.
    pub addr: Ipv4Addr,
    /// Seconds the bring-up took.
    pub secs: f64,
    /// `static`, `dhcp` or `existing`.
    pub method: &'static str,
}

/// Interfaces other than `lo`, by interface index.
pub fn interfaces() -> Vec<String> {
    let mut v: Vec<(u32, String)> = std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n != "lo")
                .map(|n| {
                    let idx = std::fs::read_to_string(format!("/sys/class/net/{n}/ifindex"))
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(u32::MAX);
                    (idx, n)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.into_iter().map(|(_, n)| n).collect()
}

/// The MAC of an interface.
pub fn mac_of(iface: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).ok().map(|s| s.trim().to_ascii_lowercase())
}

fn mac_bytes(mac: &str) -> [u8; 6] {
    let mut out = [0u8; 6];
    for (o, h) in out.iter_mut().zip(mac.split(':')) {
        *o = u8::from_str_radix(h, 16).unwrap_or(0);
    }
    out
}

/// Brings the network up as configured; waits up to `timeout` for an interface to appear.
pub fn bring_up(cfg: &NetConfig, iface: Option<&str>, timeout: Duration) -> Result<NetInfo, NetError> {
    let t0 = Instant::now();
    let iface = loop {
        let all = interfaces();
        match iface {
            Some(want) if all.iter().any(|i| i == want) => break want.to_string(),
            None if !all.is_empty() => break all[0].clone(),
            _ => {}
        }
        if t0.elapsed() > timeout {
            return Err(match iface {
                Some(w) => NetError::UnknownInterface(w.to_string()),
                None => NetError::NoInterface(timeout),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mac = mac_of(&iface).ok_or_else(|| NetError::UnknownInterface(iface.clone()))?;
    let cfg_err = |source| NetError::Config { iface: iface.clone(), source };
    let (addr, method) = match cfg {
        NetConfig::Existing { addr } => (*addr, "existing"),
        NetConfig::Static { addr, prefix, gateway } => {
            sys::link_up(&iface).map_err(cfg_err)?;
            sys::set_ipv4(&iface, *addr, *prefix).map_err(cfg_err)?;
            if let Some(gw) = gateway {
                sys::add_default_route(*gw).map_err(cfg_err)?;
            }
            (*addr, "static")
        }
        NetConfig::Dhcp => {
            sys::link_up(&iface).map_err(cfg_err)?;
            let lease = dhcp(&iface, mac_bytes(&mac), timeout)?;
            sys::set_ipv4(&iface, lease.addr, lease.prefix).map_err(cfg_err)?;
            if let Some(gw) = lease.router {
                sys::add_default_route(gw).map_err(cfg_err)?;
            }
            (lease.addr, "dhcp")
        }
    };
    if method != "existing" {
        wait_carrier(&iface, Duration::from_secs(10));
    }
    Ok(NetInfo { iface, mac, addr, secs: t0.elapsed().as_secs_f64(), method })
}

fn wait_carrier(iface: &str, timeout: Duration) {
    let t0 = Instant::now();
    let p = format!("/sys/class/net/{iface}/carrier");
    while t0.elapsed() < timeout {
        if std::fs::read_to_string(Path::new(&p)).is_ok_and(|s| s.trim() == "1") {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A DHCP lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Our address.
    pub addr: Ipv4Addr,
    /// Prefix length from the subnet mask option (24 if absent).
    pub prefix: u8,
    /// First router, if offered.
    pub router: Option<Ipv4Addr>,
    /// The server that acknowledged.
    pub server: Ipv4Addr,
}

/// A DHCP client message (DISCOVER, or REQUEST for `requested` from `server`).
pub fn client_message(xid: u32, mac: [u8; 6], requested: Option<(Ipv4Addr, Ipv4Addr)>) -> Vec<u8> {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest).set_xid(xid).set_flags(Flags::default().set_broadcast()).set_chaddr(&mac);
    let opts = m.opts_mut();
    match requested {
        None => {
            opts.insert(DhcpOption::MessageType(MessageType::Discover));
        }
        Some((addr, server)) => {
            opts.insert(DhcpOption::MessageType(MessageType::Request));
            opts.insert(DhcpOption::RequestedIpAddress(addr));
            opts.insert(DhcpOption::ServerIdentifier(server));
        }
    }
    opts.insert(DhcpOption::ParameterRequestList(vec![OptionCode::SubnetMask, OptionCode::Router]));
    let mut buf = Vec::with_capacity(300);
    m.encode(&mut Encoder::new(&mut buf)).expect("encoding a well-formed DHCP message into a Vec cannot fail");
    buf
}

/// Parses a server reply for transaction `xid`: (type, offered address, lease facts).
pub fn parse_reply(bytes: &[u8], xid: u32) -> Option<(MessageType, Lease)> {
    let m = Message::decode(&mut Decoder::new(bytes)).ok()?;
    if m.opcode() != Opcode::BootReply || m.xid() != xid {
        return None;
    }
    let ty = m.opts().msg_type()?;
    let prefix = match m.opts().get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(mask)) => u32::from(*mask).leading_ones() as u8,
        _ => 24,
    };
    let router = match m.opts().get(OptionCode::Router) {
        Some(DhcpOption::Router(r)) => r.first().copied(),
        _ => None,
    };
    let server = match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) => *s,
        _ => m.siaddr(),
    };
    Some((ty, Lease { addr: m.yiaddr(), prefix, router, server }))
}

fn dhcp(iface: &str, mac: [u8; 6], timeout: Duration) -> Result<Lease, NetError> {
    let err = |reason: String| NetError::Dhcp { iface: iface.to_string(), reason };
    let sock = UdpSocket::bind("0.0.0.0:68").map_err(|e| err(format!("binding port 68: {e}")))?;
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::BindToDevice, &std::ffi::OsString::from(iface))
        .map_err(|e| err(format!("SO_BINDTODEVICE: {e}")))?;
    sock.set_broadcast(true).map_err(|e| err(format!("SO_BROADCAST: {e}")))?;
    let server: SocketAddr = "255.255.255.255:67".parse().expect("static address");
    let mut xid_bytes = [0u8; 4];
    for (i, b) in mac[2..].iter().enumerate() {
        xid_bytes[i] = *b;
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let xid = u32::from_le_bytes(xid_bytes) ^ std::process::id() ^ nanos;
    let t0 = Instant::now();
    let mut buf = [0u8; 1500];
    let mut retry = Duration::from_millis(500);
    let mut offer: Option<Lease> = None;
    while t0.elapsed() < timeout {
        let msg = client_message(xid, mac, offer.as_ref().map(|o| (o.addr, o.server)));
        sock.send_to(&msg, server).map_err(|e| err(format!("sending: {e}")))?;
        let until = Instant::now() + retry;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).map_err(|e| err(e.to_string()))?;
            let Ok(n) = sock.recv(&mut buf) else { break };
            match parse_reply(&buf[..n], xid) {
                Some((MessageType::Offer, l)) if offer.is_none() => {
                    offer = Some(l);
                    break;
                }
                Some((MessageType::Ack, l)) if offer.is_some() => return Ok(l),
                Some((MessageType::Nak, _)) => {
                    offer = None;
                    break;
                }
                _ => {}
            }
        }
        retry = (retry * 2).min(Duration::from_secs(4));
    }
    Err(err(format!("no lease within {timeout:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discover_and_reply_round_trip() {
        let mac = [0x52, 0x54, 0, 1, 2, 3];
        let d = Message::decode(&mut Decoder::new(&client_message(7, mac, None))).unwrap();
        assert_eq!(d.opts().msg_type(), Some(MessageType::Discover));
        assert_eq!(&d.chaddr()[..6], &mac);
        assert!(d.flags().broadcast());
        // A server's ACK.
        let mut ack = Message::default();
        ack.set_opcode(Opcode::BootReply).set_xid(7).set_yiaddr(Ipv4Addr::new(10, 77, 0, 120)).set_chaddr(&mac);
        ack.opts_mut().insert(DhcpOption::MessageType(MessageType::Ack));
        ack.opts_mut().insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        ack.opts_mut().insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 77, 0, 1)));
        let mut b = Vec::new();
        ack.encode(&mut Encoder::new(&mut b)).unwrap();
        let (ty, l) = parse_reply(&b, 7).unwrap();
        assert_eq!(ty, MessageType::Ack);
        assert_eq!(
            l,
            Lease {
                addr: Ipv4Addr::new(10, 77, 0, 120),
                prefix: 24,
                router: None,
                server: Ipv4Addr::new(10, 77, 0, 1)
            }
        );
        assert!(parse_reply(&b, 8).is_none(), "other transaction");
        assert!(parse_reply(&b[..20], 7).is_none(), "truncated");
    }
}
