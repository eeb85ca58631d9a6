//! What a DHCP request is: who sent it (MAC), which message, and which kind of netboot client
//! (options 60, 77, 93, 97), or why it is dropped. Pure; no I/O.

use std::fmt;
use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder};

use crate::mac::Mac;

/// What kind of netboot client sent the packet (from options 60, 77, 93).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// PXE ROM, option 60 `PXEClient...`, option 93 = 0 (x86 BIOS).
    PxeBios,
    /// PXE ROM, option 60 `PXEClient...`, option 93 = 7 or 9 (x64 UEFI).
    PxeUefi64,
    /// UEFI HTTP boot, option 60 `HTTPClient...`, option 93 = 16 (x64 UEFI HTTP).
    HttpUefi64,
    /// iPXE (option 77 user class contains `iPXE`: QEMU's ROM, Debian's ipxe binaries, our own
    /// chainloaded ipxe.efi/undionly.kpxe); `uefi` from option 93.
    Ipxe {
        /// Option 93 is a UEFI architecture (7, 9, 16).
        uefi: bool,
    },
}

/// Option 93 values we know (RFC 4578, IANA "Processor Architecture Types").
const ARCH_BIOS: u16 = 0;
const ARCH_EFI_BC: u16 = 7;
const ARCH_EFI_X64: u16 = 9;
const ARCH_EFI_X64_HTTP: u16 = 16;

/// Why a request is not (or not fully) a netboot client; the request may still get an address in
/// full mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotNetboot {
    /// Option 60 missing or not `PXEClient...`/`HTTPClient...`.
    NoVendorClass,
    /// Option 93 missing.
    NoArch,
    /// Option 97 present but not 17 bytes with a leading 0.
    BadUuid,
    /// Option 93 value we have no boot file for (ARM, IA32, ...), or a class/arch mismatch.
    UnknownArch(u16),
}

impl fmt::Display for NotNetboot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotNetboot::NoVendorClass => f.write_str("no PXEClient/HTTPClient vendor class"),
            NotNetboot::NoArch => f.write_str("no client architecture (option 93)"),
            NotNetboot::BadUuid => f.write_str("malformed client UUID (option 97)"),
            NotNetboot::UnknownArch(a) => write!(f, "unsupported client architecture {a}"),
        }
    }
}

/// One DHCP request, checked and reduced to what the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `chaddr` (hardware type Ethernet, length 6, unicast).
    pub mac: Mac,
    /// Option 53.
    pub msg_type: MessageType,
    /// The netboot client kind, or why it is not one.
    pub client: Result<Client, NotNetboot>,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54 (which server the client chose), if sent.
    pub server_id: Option<Ipv4Addr>,
    /// `ciaddr` (non-zero when renewing, releasing, or asking on 4011).
    pub ciaddr: Ipv4Addr,
    /// Option 97 when present and valid (17 bytes, leading 0); echoed in replies.
    pub uuid: Option<Vec<u8>>,
    /// Option 60 as sent (echo decisions use the first bytes only).
    pub vendor_class: Option<Vec<u8>>,
}

/// Why a packet is dropped before any decision. Every one is counted as `malformed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// dhcproto could not decode the bytes (truncated, bad magic, option lengths that lie).
    #[error("undecodable DHCP packet: {0}")]
    Undecodable(String),
    /// `op` is not BOOTREQUEST.
    #[error("not a BOOTREQUEST")]
    NotRequest,
    /// `htype` is not Ethernet.
    #[error("hardware type is not Ethernet")]
    NotEthernet,
    /// `hlen` is not 6.
    #[error("hardware address length {0} (want 6)")]
    BadHlen(u8),
    /// `chaddr` is zero, broadcast or multicast.
    #[error("client hardware address {0} is not unicast")]
    NotUnicast(Mac),
    /// No option 53.
    #[error("no DHCP message type (BOOTP)")]
    NoMessageType,
    /// A server-side or unknown message type (OFFER, ACK, NAK, ...).
    #[error("message type {0:?} is not a client request")]
    NotClientMessage(MessageType),
}

/// Decodes one datagram with dhcproto.
///
/// A decoder panic is contained and becomes a `Reject`: dhcproto 0.15 has `debug_assert!`s on
/// option lengths (option 94 must be 3 bytes) that a lying length trips in builds with debug
/// assertions (found by `netboot/fuzz`); the receive loop must not die of it.
pub fn decode(bytes: &[u8]) -> Result<Message, Reject> {
    match std::panic::catch_unwind(|| Message::decode(&mut Decoder::new(bytes))) {
        Ok(Ok(msg)) => Ok(msg),
        Ok(Err(e)) => Err(Reject::Undecodable(e.to_string())),
        Err(_) => Err(Reject::Undecodable("the DHCP decoder panicked".into())),
    }
}

/// The pure check of one decoded request: what it is, or why it is dropped.
pub fn classify(msg: &Message) -> Result<Request, Reject> {
    if msg.opcode() != Opcode::BootRequest {
        return Err(Reject::NotRequest);
    }
    if msg.htype() != HType::Eth {
        return Err(Reject::NotEthernet);
    }
    // `hlen` comes from the wire; check it before `chaddr()`, which slices by it.
    if msg.hlen() != 6 {
        return Err(Reject::BadHlen(msg.hlen()));
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(msg.chaddr());
    let mac = Mac(mac);
    if !mac.is_unicast() {
        return Err(Reject::NotUnicast(mac));
    }
    let opts = msg.opts();
    let msg_type = opts.msg_type().ok_or(Reject::NoMessageType)?;
    match msg_type {
        MessageType::Discover
        | MessageType::Request
        | MessageType::Decline
        | MessageType::Release
        | MessageType::Inform => {}
        other => return Err(Reject::NotClientMessage(other)),
    }
    let requested_ip = match opts.get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let server_id = match opts.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    };
    let vendor_class = match opts.get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(v)) => Some(v.clone()),
        _ => None,
    };
    let uuid = match opts.get(OptionCode::ClientMachineIdentifier) {
        Some(DhcpOption::ClientMachineIdentifier(v)) if valid_uuid(v) => Some(v.clone()),
        _ => None,
    };
    Ok(Request {
        mac,
        msg_type,
        client: netboot_client(msg),
        requested_ip,
        server_id,
        ciaddr: msg.ciaddr(),
        uuid,
        vendor_class,
    })
}

/// Option 97 as the PXE spec has it: type 0, then a 16-byte UUID.
fn valid_uuid(v: &[u8]) -> bool {
    v.len() == 17 && v[0] == 0
}

/// smee-style netboot checks, then the client kind.
fn netboot_client(msg: &Message) -> Result<Client, NotNetboot> {
    let opts = msg.opts();
    let class = match opts.get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(v)) => v.as_slice(),
        _ => return Err(NotNetboot::NoVendorClass),
    };
    let http = if class.starts_with(b"HTTPClient") {
        true
    } else if class.starts_with(b"PXEClient") {
        false
    } else {
        return Err(NotNetboot::NoVendorClass);
    };
    let arch = match opts.get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => u16::from(*a),
        _ => return Err(NotNetboot::NoArch),
    };
    match opts.get(OptionCode::ClientMachineIdentifier) {
        None => {}
        Some(DhcpOption::ClientMachineIdentifier(v)) if valid_uuid(v) => {}
        Some(_) => return Err(NotNetboot::BadUuid),
    }
    let ipxe = match opts.get(OptionCode::UserClass) {
        Some(DhcpOption::UserClass(v)) => v.windows(4).any(|w| w == b"iPXE"),
        _ => false,
    };
    let client = match (ipxe, http, arch) {
        (true, _, ARCH_BIOS) => Client::Ipxe { uefi: false },
        (true, _, ARCH_EFI_BC | ARCH_EFI_X64 | ARCH_EFI_X64_HTTP) => Client::Ipxe { uefi: true },
        (false, true, ARCH_EFI_X64_HTTP) => Client::HttpUefi64,
        (false, false, ARCH_BIOS) => Client::PxeBios,
        (false, false, ARCH_EFI_BC | ARCH_EFI_X64) => Client::PxeUefi64,
        (_, _, other) => return Err(NotNetboot::UnknownArch(other)),
    };
    Ok(client)
}
