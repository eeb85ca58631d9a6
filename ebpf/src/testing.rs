//! Crafted frames for the verdict and parser tests.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A metalcast packet (header, a small body, a dummy MAC) of `kind`, of the
/// wire version the XDP program matches.
pub(crate) fn mc_packet(kind: u8, session: u32, a: u32) -> Vec<u8> {
    mc_packet_version(crate::xdp_rx::WIRE_VERSION, kind, session, a)
}

/// [`mc_packet`] with another wire version byte (version 5's layout:
/// version, kind, u32 session id, u32 sequence number, u24 block, u24 ESI).
pub(crate) fn mc_packet_version(version: u8, kind: u8, session: u32, a: u32) -> Vec<u8> {
    let mut p = vec![version, kind];
    p.extend(session.to_le_bytes());
    p.extend(42u32.to_le_bytes());
    p.extend(&a.to_le_bytes()[..3]);
    p.extend(&5u32.to_le_bytes()[..3]); // ESI
    p.extend([0xAB; 32]);
    p.extend([0x5A; 16]);
    p
}

/// A symbol packet of `block` as wire version 4 framed it: magic "MC",
/// version 4, kind, u64 session id, u64 sequence number, u32 block, u32 ESI.
pub(crate) fn mc_symbol_v4(session: u64, block: u32) -> Vec<u8> {
    let mut p = b"MC".to_vec();
    p.extend([4, 1]);
    p.extend(session.to_le_bytes());
    p.extend(42u64.to_le_bytes());
    p.extend(block.to_le_bytes());
    p.extend(5u32.to_le_bytes());
    p.extend([0xAB; 32]);
    p.extend([0x5A; 16]);
    p
}

/// A symbol packet of `block`.
pub(crate) fn mc_symbol(session: u32, block: u32) -> Vec<u8> {
    mc_packet(1, session, block)
}

/// An ARP request, padded to 60 bytes.
pub(crate) fn arp() -> Vec<u8> {
    let mut p = vec![0xff; 6];
    p.extend([0x02, 0, 0, 0, 0, 1, 0x08, 0x06]);
    p.extend([0, 1, 8, 0, 6, 4, 0, 1]);
    p.extend([0u8; 20]);
    p.extend([0u8; 18]);
    p
}

enum Dst {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// An Ethernet frame carrying a UDP (or TCP) datagram.
pub(crate) struct Frame {
    dst: Dst,
    port: u16,
    payload: Vec<u8>,
    tags: Vec<u16>,
    frag_off: u16,
    v6_frag: bool,
    tcp: bool,
}

impl Frame {
    pub(crate) fn v4(dst: Ipv4Addr, port: u16, payload: Vec<u8>) -> Frame {
        Frame { dst: Dst::V4(dst), port, payload, tags: vec![], frag_off: 0, v6_frag: false, tcp: false }
    }

    pub(crate) fn v6(dst: Ipv6Addr, port: u16, payload: Vec<u8>) -> Frame {
        Frame { dst: Dst::V6(dst), ..Frame::v4(Ipv4Addr::UNSPECIFIED, port, payload) }
    }

    /// VLAN tags (TPIDs, outermost first).
    pub(crate) fn vlan(mut self, tpids: &[u16]) -> Frame {
        self.tags = tpids.to_vec();
        self
    }

    /// IPv4 flags/fragment offset word (0x2000 = more fragments).
    pub(crate) fn frag(mut self, frag_off: u16) -> Frame {
        self.frag_off = frag_off;
        self
    }

    /// An IPv6 fragment extension header before the UDP header.
    pub(crate) fn v6_fragment(mut self) -> Frame {
        self.v6_frag = true;
        self
    }

    /// TCP instead of UDP (a 20-byte header with the destination port).
    pub(crate) fn tcp(mut self) -> Frame {
        self.tcp = true;
        self
    }

    pub(crate) fn build(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        if self.tcp {
            l4.extend(40000u16.to_be_bytes());
            l4.extend(self.port.to_be_bytes());
            l4.extend([0u8; 8]);
            l4.extend([0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            l4.extend(40000u16.to_be_bytes());
            l4.extend(self.port.to_be_bytes());
            l4.extend(((8 + self.payload.len()) as u16).to_be_bytes());
            l4.extend([0, 0]);
        }
        l4.extend(&self.payload);
        let proto: u8 = if self.tcp { 6 } else { 17 };

        let mut f = vec![0x01, 0x00, 0x5e, 0x4d, 0x01, 0x01, 0x02, 0, 0, 0, 0, 2];
        for (i, tpid) in self.tags.iter().enumerate() {
            f.extend(tpid.to_be_bytes());
            f.extend((10 + i as u16).to_be_bytes()); // TCI: VLAN 10, 11
        }
        match &self.dst {
            Dst::V4(d) => {
                f.extend(0x0800u16.to_be_bytes());
                let total = (20 + l4.len()) as u16;
                f.extend([0x45, 0]);
                f.extend(total.to_be_bytes());
                f.extend([0, 1]);
                f.extend(self.frag_off.to_be_bytes());
                f.extend([1, proto, 0, 0]);
                f.extend([10, 77, 0, 1]);
                f.extend(d.octets());
            }
            Dst::V6(d) => {
                f.extend(0x86ddu16.to_be_bytes());
                let ext = if self.v6_frag { 8 } else { 0 };
                f.extend([0x60, 0, 0, 0]);
                f.extend(((ext + l4.len()) as u16).to_be_bytes());
                f.push(if self.v6_frag { 44 } else { proto });
                f.push(1);
                f.extend("fd00::1".parse::<Ipv6Addr>().expect("literal").octets());
                f.extend(d.octets());
                if self.v6_frag {
                    f.extend([proto, 0, 0, 0, 0, 0, 0, 1]);
                }
            }
        }
        f.extend(l4);
        f
    }
}

fn bpf_capable() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .ok_or("no CapEff")?;
    if caps & (1 << 39) == 0 { Err("needs CAP_BPF (run as root)".into()) } else { Ok(()) }
}

/// Whether the test must skip (printing why), or fail under `METALCAST_REQUIRE_PRIVILEGED=1`.
pub(crate) fn must_skip(name: &str) -> bool {
    let Err(reason) = bpf_capable() else { return false };
    assert!(std::env::var("METALCAST_REQUIRE_PRIVILEGED").map_or(true, |v| v != "1"), "{name} cannot run: {reason}");
    eprintln!("SKIP {name}: {reason}");
    true
}

/// Returns from the test, printing SKIP, without `CAP_BPF`.
macro_rules! skip_unless_bpf {
    ($name:literal) => {
        if $crate::testing::must_skip($name) {
            return;
        }
    };
}
pub(crate) use skip_unless_bpf;
