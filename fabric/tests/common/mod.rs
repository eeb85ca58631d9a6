//! Helpers shared by the fabric integration tests (UDP/multicast traffic).
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// The test multicast group (inside 239.0.0.0/8).
pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 77, 0, 1);

/// A UDP socket bound to `port` that joined `group` on `ifaddr`.
/// Must be called on a thread inside the receiver's namespace.
pub fn mcast_receiver(group: Ipv4Addr, port: u16, ifaddr: Ipv4Addr) -> UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    s.set_reuse_address(true).expect("reuseaddr");
    s.bind(&SocketAddrV4::new(group, port).into()).expect("bind");
    s.join_multicast_v4(&group, &ifaddr).expect("join");
    s.set_recv_buffer_size(8 << 20).expect("rcvbuf");
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    s
}

/// A UDP socket for sending to multicast from `ifaddr`.
pub fn mcast_sender(ifaddr: Ipv4Addr) -> UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    s.set_multicast_if_v4(&ifaddr).expect("mcast if");
    s.set_multicast_ttl_v4(1).expect("ttl");
    s.bind(&SocketAddrV4::new(ifaddr, 0).into()).expect("bind");
    s.into()
}

/// A unicast UDP receiver bound to `addr:port`, with a short read timeout.
pub fn udp_receiver(addr: Ipv4Addr, port: u16) -> UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    s.set_recv_buffer_size(8 << 20).expect("rcvbuf");
    s.bind(&SocketAddrV4::new(addr, port).into()).expect("bind");
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    s
}

/// Receives until `idle` passes without a packet or `deadline` is reached;
/// returns the payloads.
pub fn drain(sock: &UdpSocket, idle: Duration, deadline: Duration) -> Vec<Vec<u8>> {
    let start = Instant::now();
    let mut last = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while start.elapsed() < deadline && last.elapsed() < idle {
        match sock.recv(&mut buf) {
            Ok(n) => {
                out.push(buf[..n].to_vec());
                last = Instant::now();
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    out
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An `AF_PACKET` socket seeing every frame of the calling thread's namespace;
/// use with [`count_group_frames`]. Must be called inside the namespace.
pub fn sniffer() -> Socket {
    const ETH_P_ALL: u16 = 0x0003;
    let s = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))))
        .expect("AF_PACKET socket");
    s.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    s
}

/// Counts UDP frames addressed to `group`'s multicast MAC (IGMP queries for
/// the group don't count) until `idle` passes without any frame (bounded by
/// 10 s).
pub fn count_group_frames(sniffer: &Socket, group: Ipv4Addr, idle: Duration) -> usize {
    let g = group.octets();
    let mac = [0x01, 0x00, 0x5e, g[1] & 0x7f, g[2], g[3]];
    let start = Instant::now();
    let mut last = Instant::now();
    let mut count = 0;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    while last.elapsed() < idle && start.elapsed() < Duration::from_secs(10) {
        if let Ok(n) = sniffer.recv(&mut buf) {
            last = Instant::now();
            // SAFETY: `recv` initialised the first `n` bytes of `buf`.
            let frame: Vec<u8> = buf[..n.min(24)].iter().map(|b| unsafe { b.assume_init() }).collect();
            // dst MAC, ethertype IPv4, IP protocol UDP.
            if frame.len() == 24 && frame[..6] == mac && frame[12..14] == [0x08, 0x00] && frame[23] == 17 {
                count += 1;
            }
        }
    }
    count
}
