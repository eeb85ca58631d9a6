//! The user-space half of the XDP program's parse: the UDP payload of a
//! frame the program redirected (Ethernet, up to two VLAN tags, IPv4 without
//! fragmentation or IPv6 without extension headers, UDP). Frames come from
//! the kernel, but are checked as if hostile: a bad one yields `None`.

const ETH_HLEN: usize = 14;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The UDP payload of `frame`, bounded by the UDP length field, or `None` if
/// `frame` is not a well-formed unfragmented UDP datagram.
pub fn udp_payload(frame: &[u8]) -> Option<&[u8]> {
    let mut off = ETH_HLEN;
    let mut proto = be16(frame, 12)?;
    for _ in 0..2 {
        if proto != 0x8100 && proto != 0x88a8 {
            break;
        }
        proto = be16(frame, off + 2)?;
        off += 4;
    }
    let l4 = match proto {
        0x0800 => {
            let vihl = *frame.get(off)?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            if vihl >> 4 != 4 || ihl < 20 || *frame.get(off + 9)? != 17 || be16(frame, off + 6)? & 0x3fff != 0 {
                return None;
            }
            off + ihl
        }
        0x86dd => {
            if *frame.get(off)? >> 4 != 6 || *frame.get(off + 6)? != 17 {
                return None;
            }
            off + 40
        }
        _ => return None,
    };
    let ulen = usize::from(be16(frame, l4 + 4)?);
    if ulen < 8 {
        return None;
    }
    frame.get(l4 + 8..l4 + ulen)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::testing::{self, Frame};

    #[test]
    fn payloads_of_crafted_frames() {
        let g = Ipv4Addr::new(239, 1, 2, 3);
        let p = testing::mc_symbol(7, 1);
        assert_eq!(udp_payload(&Frame::v4(g, 5000, p.clone()).build()), Some(&p[..]));
        assert_eq!(udp_payload(&Frame::v4(g, 5000, p.clone()).vlan(&[0x8100]).build()), Some(&p[..]));
        assert_eq!(udp_payload(&Frame::v4(g, 5000, p.clone()).vlan(&[0x88a8, 0x8100]).build()), Some(&p[..]));
        assert_eq!(udp_payload(&Frame::v6("ff15::1".parse().unwrap(), 5000, p.clone()).build()), Some(&p[..]));
        // Ethernet padding after a short datagram is not payload.
        let mut padded = Frame::v4(g, 5000, vec![1, 2, 3]).build();
        padded.resize(60, 0);
        assert_eq!(udp_payload(&padded), Some(&[1u8, 2, 3][..]));
        assert_eq!(udp_payload(&Frame::v4(g, 5000, p.clone()).frag(0x2000).build()), None);
        assert_eq!(udp_payload(&Frame::v6("ff15::1".parse().unwrap(), 5000, p.clone()).v6_fragment().build()), None);
        assert_eq!(udp_payload(&Frame::v4(g, 22, p.clone()).tcp().build()), None);
        assert_eq!(udp_payload(&testing::arp()), None);
        let full = Frame::v4(g, 5000, p.clone()).build();
        for len in 0..full.len() {
            assert_eq!(udp_payload(&full[..len]), None, "truncated to {len}");
        }
    }
}
