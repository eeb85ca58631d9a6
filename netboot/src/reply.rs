//! Building the reply message (with dhcproto) and choosing where it goes.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode};

use crate::backend::Lease;
use crate::classify::{Client, Request};
use crate::config::Config;
use crate::decide::BootFile;
use crate::pool::Pool;

/// Option 43 for PXE clients: sub-option 6 (PXE_DISCOVERY_CONTROL) = 8 (boot from the `file`
/// field and `siaddr`, no boot-server discovery), then END.
pub const PXE_VENDOR_OPTIONS: [u8; 4] = [6, 1, 8, 255];

/// The longest boot file name that fits the 128-byte `file` field with its NUL.
const FILE_FIELD_MAX: usize = 127;

/// What kind of reply to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Full mode OFFER (DISCOVER) or ACK (REQUEST) of `lease`, with a boot file if allowed.
    Lease {
        /// OFFER or ACK.
        kind: MessageType,
        /// The address and its lease time.
        lease: Lease,
        /// Boot file, if the node may netboot.
        boot: Option<BootFile>,
    },
    /// Full mode NAK.
    Nak,
    /// Proxy reply: no address, boot information only. `kind` is OFFER (to a DISCOVER) or ACK.
    Proxy {
        /// OFFER or ACK.
        kind: MessageType,
        /// The boot file.
        boot: BootFile,
    },
}

/// The reply to `msg` (already classified as `req`): xid, flags, giaddr, chaddr copied; opt 97 echoed.
pub fn build(msg: &Message, req: &Request, answer: &Answer, cfg: &Config) -> Message {
    let mut out = Message::default();
    out.set_opcode(Opcode::BootReply)
        .set_htype(HType::Eth)
        .set_xid(msg.xid())
        .set_flags(msg.flags())
        .set_giaddr(msg.giaddr())
        .set_chaddr(&req.mac.0);
    let server_id = DhcpOption::ServerIdentifier(cfg.server_ip);
    match answer {
        Answer::Nak => {
            out.opts_mut().insert(DhcpOption::MessageType(MessageType::Nak));
            out.opts_mut().insert(server_id);
            return out;
        }
        Answer::Lease { kind, lease, boot } => {
            out.set_yiaddr(lease.ip).set_siaddr(cfg.server_ip);
            if *kind == MessageType::Ack {
                out.set_ciaddr(req.ciaddr);
            }
            out.opts_mut().insert(DhcpOption::MessageType(*kind));
            out.opts_mut().insert(server_id);
            if let Some(pool) = &cfg.pool {
                lease_options(&mut out, pool, lease);
            }
            if let Some(boot) = boot {
                boot_options(&mut out, req, boot, false);
            }
        }
        Answer::Proxy { kind, boot } => {
            out.set_yiaddr(Ipv4Addr::UNSPECIFIED).set_siaddr(cfg.server_ip);
            if *kind == MessageType::Ack {
                out.set_ciaddr(req.ciaddr);
            }
            out.opts_mut().insert(DhcpOption::MessageType(*kind));
            out.opts_mut().insert(server_id);
            boot_options(&mut out, req, boot, true);
        }
    }
    if let Some(uuid) = &req.uuid {
        out.opts_mut().insert(DhcpOption::ClientMachineIdentifier(uuid.clone()));
    }
    out
}

fn lease_options(out: &mut Message, pool: &Pool, lease: &Lease) {
    out.opts_mut().insert(DhcpOption::SubnetMask(pool.netmask));
    if let Some(router) = pool.router {
        out.opts_mut().insert(DhcpOption::Router(vec![router]));
    }
    if !pool.dns.is_empty() {
        out.opts_mut().insert(DhcpOption::DomainNameServer(pool.dns.clone()));
    }
    out.opts_mut().insert(DhcpOption::AddressLeaseTime(lease.secs));
}

/// `file`/option 67, option 60 (`PXEClient`/`HTTPClient`) and, for PXE firmware and all proxy
/// replies, option 43 with discovery control 8.
fn boot_options(out: &mut Message, req: &Request, boot: &BootFile, proxy: bool) {
    let name = boot.as_str();
    if name.len() <= FILE_FIELD_MAX {
        out.set_fname_str(name);
    }
    out.opts_mut().insert(DhcpOption::BootfileName(name.as_bytes().to_vec()));
    let class: &[u8] = match req.client {
        Ok(Client::HttpUefi64) => b"HTTPClient",
        _ => b"PXEClient",
    };
    out.opts_mut().insert(DhcpOption::ClassIdentifier(class.to_vec()));
    let pxe_firmware = matches!(req.client, Ok(Client::PxeBios | Client::PxeUefi64));
    if proxy || pxe_firmware {
        out.opts_mut().insert(DhcpOption::VendorExtensions(PXE_VENDOR_OPTIONS.to_vec()));
    }
}

/// Where a reply goes (RFC 2131 4.1): the request's source for the 4011 port and with
/// `reply_to_source`; the relay (`giaddr`, server port); broadcast for NAKs; `ciaddr` when the
/// client has an address; else broadcast to the client port.
pub fn destination(
    msg: &Message,
    source: SocketAddr,
    answer: &Answer,
    on_proxy_port: bool,
    cfg: &Config,
) -> SocketAddr {
    if on_proxy_port || cfg.reply_to_source {
        return source;
    }
    if !msg.giaddr().is_unspecified() {
        return SocketAddr::V4(SocketAddrV4::new(msg.giaddr(), 67));
    }
    let broadcast = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, cfg.client_port));
    if *answer == Answer::Nak || msg.ciaddr().is_unspecified() {
        return broadcast;
    }
    SocketAddr::V4(SocketAddrV4::new(msg.ciaddr(), cfg.client_port))
}
