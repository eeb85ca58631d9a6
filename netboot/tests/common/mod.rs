//! Golden packets built with dhcproto, shared by the test files.
#![allow(dead_code)]

use std::net::Ipv4Addr;

use dhcproto::v4::{Architecture, DhcpOption, Flags, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use metalcast_netboot::{Mac, Pool};

pub const SERVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
pub const SCRIPT: &str = "http://127.0.0.1:8080/boot/script.ipxe?t=signed";
pub const HTTP_IPXE: &str = "http://127.0.0.1:8080/boot/ipxe.efi";

pub fn mac(n: u8) -> Mac {
    Mac([0x52, 0x54, 0x00, 0x00, 0x00, n])
}

pub fn uuid() -> Vec<u8> {
    let mut u = vec![0u8];
    u.extend(1..=16u8);
    u
}

pub fn pool(start: u8, end: u8) -> Pool {
    Pool {
        start: Ipv4Addr::new(10, 9, 0, start),
        end: Ipv4Addr::new(10, 9, 0, end),
        netmask: Ipv4Addr::new(255, 255, 255, 0),
        router: Some(Ipv4Addr::new(10, 9, 0, 1)),
        dns: vec![Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 3)],
        lease_secs: 600,
        reservations: vec![],
    }
}

/// The netboot-relevant options of one kind of client.
#[derive(Debug, Clone)]
pub struct Kind {
    pub name: &'static str,
    pub class: Option<&'static [u8]>,
    pub user_class: Option<&'static [u8]>,
    pub arch: Option<u16>,
    pub uuid: Option<Vec<u8>>,
}

impl Kind {
    pub fn opts(&self) -> Vec<DhcpOption> {
        let mut o = Vec::new();
        if let Some(c) = self.class {
            o.push(DhcpOption::ClassIdentifier(c.to_vec()));
        }
        if let Some(u) = self.user_class {
            o.push(DhcpOption::UserClass(u.to_vec()));
        }
        if let Some(a) = self.arch {
            o.push(DhcpOption::ClientSystemArchitecture(Architecture::from(a)));
            o.push(DhcpOption::ClientNetworkInterface(1, 3, 16));
        }
        if let Some(u) = &self.uuid {
            o.push(DhcpOption::ClientMachineIdentifier(u.clone()));
        }
        o
    }
}

pub fn pxe_bios() -> Kind {
    Kind {
        name: "pxe-bios",
        class: Some(b"PXEClient:Arch:00000:UNDI:002001"),
        user_class: None,
        arch: Some(0),
        uuid: Some(uuid()),
    }
}
pub fn pxe_uefi(arch: u16) -> Kind {
    Kind {
        name: "pxe-uefi",
        class: Some(b"PXEClient:Arch:00007:UNDI:003016"),
        user_class: None,
        arch: Some(arch),
        uuid: Some(uuid()),
    }
}
pub fn http_uefi() -> Kind {
    Kind {
        name: "http-uefi",
        class: Some(b"HTTPClient:Arch:00016:UNDI:003001"),
        user_class: None,
        arch: Some(16),
        uuid: None,
    }
}
pub fn ipxe(arch: u16) -> Kind {
    Kind {
        name: "ipxe",
        class: Some(b"PXEClient:Arch:00000:UNDI:002001"),
        user_class: Some(b"iPXE"),
        arch: Some(arch),
        uuid: None,
    }
}
pub fn plain() -> Kind {
    Kind { name: "plain", class: Some(b"udhcp 1.36.1"), user_class: None, arch: None, uuid: None }
}

/// A client request built with dhcproto.
pub fn message(mac: Mac, kind: MessageType, extra: &[DhcpOption]) -> Message {
    let mut m = Message::new_with_id(
        0x1234_5678,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac.0,
    );
    m.set_flags(Flags::default().set_broadcast());
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in extra {
        m.opts_mut().insert(o.clone());
    }
    m
}

pub fn bytes(m: &Message) -> Vec<u8> {
    m.to_vec().expect("encodes")
}

pub fn decode(b: &[u8]) -> Message {
    Message::decode(&mut Decoder::new(b)).expect("reply decodes")
}

pub fn opt(m: &Message, code: OptionCode) -> Option<&DhcpOption> {
    m.opts().get(code)
}

pub fn bootfile(m: &Message) -> Option<String> {
    match opt(m, OptionCode::BootfileName) {
        Some(DhcpOption::BootfileName(b)) => Some(String::from_utf8(b.clone()).expect("utf8")),
        _ => None,
    }
}

pub fn class(m: &Message) -> Option<Vec<u8>> {
    match opt(m, OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(b)) => Some(b.clone()),
        _ => None,
    }
}

pub fn vendor(m: &Message) -> Option<Vec<u8>> {
    match opt(m, OptionCode::VendorExtensions) {
        Some(DhcpOption::VendorExtensions(b)) => Some(b.clone()),
        _ => None,
    }
}

pub fn server_id(m: &Message) -> Option<Ipv4Addr> {
    match opt(m, OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}
