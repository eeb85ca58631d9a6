//! Network bring-up: pick the interface, set it up, and configure IPv4
//! statically or by DHCP (messages from `dhcproto`, a UDP socket bound to
//! the interface; the server's replies are requested as broadcasts since the
//! node has no address yet). A DHCP lease is then kept for as long as the
//! process runs by a background thread (RFC 2131 section 4.4.5): renewed at
//! T1 by a REQUEST unicast to the server, rebound at T2 by a broadcast
//! REQUEST, and when it expires the address is dropped and the client goes
//! back to DISCOVER.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// The DHCP lease keeper (method `dhcp`).
    pub dhcp: Option<Arc<DhcpKeeper>>,
}

impl NetInfo {
    /// The address now: a DHCP lease can change it (a new lease after
    /// expiry); `None` while a lease has expired and no new one came yet.
    pub fn addr_now(&self) -> Option<Ipv4Addr> {
        match &self.dhcp {
            Some(k) => k.addr(),
            None => Some(self.addr),
        }
    }
}

/// The state of a kept DHCP lease, shared with the thread that keeps it.
#[derive(Debug, Default)]
pub struct DhcpKeeper {
    addr: Mutex<Option<Ipv4Addr>>,
    renewals: AtomicU64,
    rebinds: AtomicU64,
    expiries: AtomicU64,
}

impl DhcpKeeper {
    /// The leased address (`None` after expiry until a new lease).
    pub fn addr(&self) -> Option<Ipv4Addr> {
        *self.addr.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// (renewals, rebinds, expiries) so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.renewals.load(Ordering::Relaxed),
            self.rebinds.load(Ordering::Relaxed),
            self.expiries.load(Ordering::Relaxed),
        )
    }
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
    let mut keeper = None;
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
            let acquired = Instant::now();
            apply_lease(&iface, &lease).map_err(cfg_err)?;
            let k = Arc::new(DhcpKeeper { addr: Mutex::new(Some(lease.addr)), ..Default::default() });
            let (kk, ifc, m) = (Arc::clone(&k), iface.clone(), mac_bytes(&mac));
            std::thread::Builder::new()
                .name("dhcp-lease".into())
                .spawn(move || keep_lease(&ifc, m, lease, acquired, &kk))
                .map_err(cfg_err)?;
            keeper = Some(k);
            (lease_addr_of(&keeper), "dhcp")
        }
    };
    if method != "existing" {
        wait_carrier(&iface, Duration::from_secs(10));
    }
    Ok(NetInfo { iface, mac, addr, secs: t0.elapsed().as_secs_f64(), method, dhcp: keeper })
}

fn lease_addr_of(k: &Option<Arc<DhcpKeeper>>) -> Ipv4Addr {
    k.as_ref().and_then(|k| k.addr()).unwrap_or(Ipv4Addr::UNSPECIFIED)
}

fn apply_lease(iface: &str, lease: &Lease) -> std::io::Result<()> {
    sys::set_ipv4(iface, lease.addr, lease.prefix)?;
    if let Some(gw) = lease.router {
        sys::add_default_route(gw)?;
    }
    Ok(())
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
    /// Lease time in seconds (option 51); `None` or `u32::MAX`: infinite.
    pub lease_secs: Option<u32>,
    /// Renewal time T1 in seconds (option 58), if the server set it.
    pub t1_secs: Option<u32>,
    /// Rebinding time T2 in seconds (option 59), if the server set it.
    pub t2_secs: Option<u32>,
}

impl Lease {
    /// (T1, T2, expiry) after the lease was acknowledged, RFC 2131 defaults
    /// (T1 = 0.5, T2 = 0.875 of the lease) where the server set none, and
    /// kept in order (T1 <= T2 <= expiry); `None` for an infinite lease.
    pub fn timers(&self) -> Option<(Duration, Duration, Duration)> {
        let l = self.lease_secs.filter(|l| *l != u32::MAX)?;
        let lease = Duration::from_secs(u64::from(l));
        let t2 = self.t2_secs.map_or(lease * 7 / 8, |t| Duration::from_secs(u64::from(t))).min(lease);
        let t1 = self.t1_secs.map_or(lease / 2, |t| Duration::from_secs(u64::from(t))).min(t2);
        Some((t1, t2, lease))
    }
}

/// The longest wait for an answer before retransmitting a renewal or
/// rebinding REQUEST: half the time left until T2 or expiry (RFC 2131
/// section 4.4.5), at least 1 s and at most 60 s, never past the deadline.
/// The keeper starts at 1 s and doubles up to this, so a server that is
/// back after a short outage is found quickly.
pub fn retransmit_after(left: Duration) -> Duration {
    (left / 2).clamp(Duration::from_secs(1), Duration::from_secs(60)).min(left)
}

/// A renewing or rebinding REQUEST (RFC 2131 4.3.2): our address in
/// `ciaddr`, no requested-address or server-id option, no broadcast flag
/// (the server answers unicast to `ciaddr`).
pub fn renew_message(xid: u32, mac: [u8; 6], ciaddr: Ipv4Addr) -> Vec<u8> {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest).set_xid(xid).set_ciaddr(ciaddr).set_chaddr(&mac);
    m.opts_mut().insert(DhcpOption::MessageType(MessageType::Request));
    encode_with_wanted_options(m)
}

/// Adds the options the client asks for (mask, router, lease, T1, T2) and encodes `m`.
fn encode_with_wanted_options(mut m: Message) -> Vec<u8> {
    m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
        OptionCode::Rebinding,
    ]));
    let mut buf = Vec::with_capacity(300);
    m.encode(&mut Encoder::new(&mut buf)).expect("encoding a well-formed DHCP message into a Vec cannot fail");
    buf
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
    encode_with_wanted_options(m)
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
    let secs = |code| match m.opts().get(code) {
        Some(DhcpOption::AddressLeaseTime(t) | DhcpOption::Renewal(t) | DhcpOption::Rebinding(t)) => Some(*t),
        _ => None,
    };
    let (lease_secs, t1_secs, t2_secs) =
        (secs(OptionCode::AddressLeaseTime), secs(OptionCode::Renewal), secs(OptionCode::Rebinding));
    Some((ty, Lease { addr: m.yiaddr(), prefix, router, server, lease_secs, t1_secs, t2_secs }))
}

fn new_xid(mac: [u8; 6]) -> u32 {
    let mut xid_bytes = [0u8; 4];
    for (i, b) in mac[2..].iter().enumerate() {
        xid_bytes[i] = *b;
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    u32::from_le_bytes(xid_bytes) ^ std::process::id() ^ nanos
}

fn client_socket(iface: &str) -> Result<UdpSocket, String> {
    let sock = UdpSocket::bind("0.0.0.0:68").map_err(|e| format!("binding port 68: {e}"))?;
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::BindToDevice, &std::ffi::OsString::from(iface))
        .map_err(|e| format!("SO_BINDTODEVICE: {e}"))?;
    sock.set_broadcast(true).map_err(|e| format!("SO_BROADCAST: {e}"))?;
    Ok(sock)
}

/// Sends one renewing (unicast to `to`) or rebinding (broadcast) REQUEST
/// and waits up to `wait` for its answer: `Some(Ok(lease))` for an ACK,
/// `Some(Err(()))` for a NAK, `None` for silence or a local error.
fn renew_once(iface: &str, mac: [u8; 6], lease: &Lease, to: Ipv4Addr, wait: Duration) -> Option<Result<Lease, ()>> {
    let sock = match client_socket(iface) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("metalcast: DHCP renewal on {iface}: {e}");
            std::thread::sleep(wait);
            return None;
        }
    };
    let xid = new_xid(mac);
    if let Err(e) = sock.send_to(&renew_message(xid, mac, lease.addr), SocketAddr::from((to, 67))) {
        eprintln!("metalcast: DHCP renewal on {iface}: sending to {to}: {e}");
        std::thread::sleep(wait);
        return None;
    }
    let until = Instant::now() + wait;
    let mut buf = [0u8; 1500];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).ok()?;
        let Ok(n) = sock.recv(&mut buf) else { return None };
        match parse_reply(&buf[..n], xid) {
            Some((MessageType::Ack, l)) => return Some(Ok(l)),
            Some((MessageType::Nak, _)) => return Some(Err(())),
            _ => {}
        }
    }
    None
}

/// Keeps `lease` (acknowledged at `acquired`) for as long as the process
/// runs: renew at T1 (unicast to the server), rebind at T2 (broadcast), and
/// on expiry (or a NAK) drop the address and DISCOVER again. Never returns
/// for a finite lease.
fn keep_lease(iface: &str, mac: [u8; 6], mut lease: Lease, mut acquired: Instant, k: &DhcpKeeper) {
    let set_addr = |a: Option<Ipv4Addr>| *k.addr.lock().unwrap_or_else(|p| p.into_inner()) = a;
    loop {
        let Some((t1, t2, expiry)) = lease.timers() else {
            println!("metalcast: DHCP lease of {} is infinite: no renewal", lease.addr);
            return;
        };
        std::thread::sleep((acquired + t1).saturating_duration_since(Instant::now()));
        let mut answer = None;
        // RENEWING: unicast to the server until T2; then REBINDING: broadcast until expiry.
        for (to, until, state) in
            [(lease.server, acquired + t2, "renewing"), (Ipv4Addr::BROADCAST, acquired + expiry, "rebinding")]
        {
            if answer.is_some() {
                break;
            }
            if state == "rebinding" {
                k.rebinds.fetch_add(1, Ordering::Relaxed);
                println!(
                    "metalcast: DHCP renewal of {} unanswered by {}; rebinding (broadcast)",
                    lease.addr, lease.server
                );
            }
            // Retransmit after 1 s, doubling up to the RFC's "half the time left" (see retransmit_after).
            let mut backoff = Duration::from_secs(1);
            while let Some(left) = until.checked_duration_since(Instant::now()).filter(|l| !l.is_zero()) {
                let sent = Instant::now();
                let wait = backoff.min(retransmit_after(left));
                backoff *= 2;
                if let Some(a) = renew_once(iface, mac, &lease, to, wait) {
                    answer = Some((a, sent, state));
                    break;
                }
            }
        }
        match answer {
            Some((Ok(new), sent, state)) => {
                if (new.addr != lease.addr || new.prefix != lease.prefix)
                    && let Err(e) = apply_lease(iface, &new)
                {
                    eprintln!("metalcast: DHCP: configuring {}: {e}", new.addr);
                }
                // Timers run from when the REQUEST was sent (RFC 2131 4.4.5).
                acquired = sent;
                let verb = if state == "renewing" { "renewed" } else { "rebound" };
                k.renewals.fetch_add(1, Ordering::Relaxed);
                println!(
                    "metalcast: DHCP lease of {} {verb} by {} (lease {}s, T1 {}s, T2 {}s)",
                    new.addr,
                    new.server,
                    new.lease_secs.unwrap_or(u32::MAX),
                    new.timers().map_or(0, |t| t.0.as_secs()),
                    new.timers().map_or(0, |t| t.1.as_secs()),
                );
                set_addr(Some(new.addr));
                lease = new;
                continue;
            }
            Some((Err(()), _, _)) => println!("metalcast: DHCP server refused the lease of {} (NAK)", lease.addr),
            None => println!("metalcast: DHCP lease of {} expired", lease.addr),
        }
        // Expired or refused: stop using the address, then DISCOVER until a new lease comes.
        k.expiries.fetch_add(1, Ordering::Relaxed);
        set_addr(None);
        if let Err(e) = sys::clear_ipv4(iface) {
            eprintln!("metalcast: DHCP: dropping {} from {iface}: {e}", lease.addr);
        }
        println!("metalcast: address {} dropped from {iface}; discovering again", lease.addr);
        loop {
            match dhcp(iface, mac, Duration::from_secs(60)) {
                Ok(new) => {
                    acquired = Instant::now();
                    if let Err(e) = apply_lease(iface, &new) {
                        eprintln!("metalcast: DHCP: configuring {}: {e}", new.addr);
                    }
                    println!("metalcast: DHCP new lease of {} from {}", new.addr, new.server);
                    set_addr(Some(new.addr));
                    lease = new;
                    break;
                }
                Err(e) => eprintln!("metalcast: {e}; trying again"),
            }
        }
    }
}

fn dhcp(iface: &str, mac: [u8; 6], timeout: Duration) -> Result<Lease, NetError> {
    let err = |reason: String| NetError::Dhcp { iface: iface.to_string(), reason };
    let sock = client_socket(iface).map_err(err)?;
    let server: SocketAddr = "255.255.255.255:67".parse().expect("static address");
    let xid = new_xid(mac);
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
                server: Ipv4Addr::new(10, 77, 0, 1),
                lease_secs: None,
                t1_secs: None,
                t2_secs: None,
            }
        );
        assert_eq!(l.timers(), None, "no lease time: infinite, never renewed");
        assert!(parse_reply(&b, 8).is_none(), "other transaction");
        assert!(parse_reply(&b[..20], 7).is_none(), "truncated");
        // With a lease time and T1/T2 from the server.
        ack.opts_mut().insert(DhcpOption::AddressLeaseTime(120));
        ack.opts_mut().insert(DhcpOption::Renewal(4));
        ack.opts_mut().insert(DhcpOption::Rebinding(7));
        let mut b = Vec::new();
        ack.encode(&mut Encoder::new(&mut b)).unwrap();
        let (_, l) = parse_reply(&b, 7).unwrap();
        let s = Duration::from_secs;
        assert_eq!(l.timers(), Some((s(4), s(7), s(120))));
    }

    #[test]
    fn lease_timers_and_renewal_messages() {
        let s = Duration::from_secs;
        let lease = |l, t1, t2| Lease {
            addr: Ipv4Addr::new(10, 0, 0, 5),
            prefix: 24,
            router: None,
            server: Ipv4Addr::new(10, 0, 0, 1),
            lease_secs: l,
            t1_secs: t1,
            t2_secs: t2,
        };
        assert_eq!(lease(Some(3600), None, None).timers(), Some((s(1800), s(3150), s(3600))), "RFC 2131 defaults");
        assert_eq!(lease(Some(u32::MAX), None, None).timers(), None, "infinite");
        // Out-of-order server values are kept in order: T1 <= T2 <= lease.
        assert_eq!(lease(Some(100), Some(90), Some(200)).timers(), Some((s(90), s(100), s(100))));
        assert_eq!(lease(Some(100), Some(80), Some(50)).timers(), Some((s(50), s(50), s(100))));
        assert_eq!(retransmit_after(s(600)), s(60));
        assert_eq!(retransmit_after(s(10)), s(5));
        assert_eq!(retransmit_after(s(1)), s(1));
        assert_eq!(retransmit_after(Duration::from_millis(300)), Duration::from_millis(300), "never past T2/expiry");
        let mac = [0x52, 0x54, 0, 1, 2, 3];
        let r = Message::decode(&mut Decoder::new(&renew_message(9, mac, Ipv4Addr::new(10, 0, 0, 5)))).unwrap();
        assert_eq!(r.opts().msg_type(), Some(MessageType::Request));
        assert_eq!(r.ciaddr(), Ipv4Addr::new(10, 0, 0, 5));
        assert!(!r.flags().broadcast(), "the server answers a renewal unicast");
        assert!(r.opts().get(OptionCode::RequestedIpAddress).is_none(), "RFC 2131 4.3.2: no requested address");
        assert!(r.opts().get(OptionCode::ServerIdentifier).is_none(), "RFC 2131 4.3.2: no server id");
    }
}
