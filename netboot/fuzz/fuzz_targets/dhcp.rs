//! Bytes -> decode -> classify -> a MemoryBackend decision (synchronous) -> the reply each mode
//! would send -> encode -> decode. Invariants: no panic; proxy replies never carry an address;
//! only the allowed MAC ever gets a boot file; every reply encodes and decodes.
#![no_main]

use std::net::Ipv4Addr;

use dhcproto::v4::MessageType;
use dhcproto::{Decodable, Decoder, Encodable};
use libfuzzer_sys::fuzz_target;
use metalcast_netboot::reply::{self, Answer};
use metalcast_netboot::{Config, Mac, MemoryBackend, Mode, Pool, boot_file, classify, decode};

const ALLOWED: Mac = Mac([0x52, 0x54, 0x00, 0x00, 0x00, 0x01]);

fn config(mode: Mode) -> Config {
    let mut cfg = Config::new(mode, Ipv4Addr::new(10, 0, 0, 1));
    cfg.http_ipxe_url = Some("http://10.0.0.1/ipxe.efi".into());
    cfg.pool = Some(Pool {
        start: Ipv4Addr::new(10, 0, 0, 100),
        end: Ipv4Addr::new(10, 0, 0, 103),
        netmask: Ipv4Addr::new(255, 255, 255, 0),
        router: Some(Ipv4Addr::new(10, 0, 0, 1)),
        dns: vec![Ipv4Addr::new(10, 0, 0, 1)],
        lease_secs: 60,
        reservations: vec![],
    });
    cfg
}

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = decode(data) else { return };
    let Ok(req) = classify(&msg) else { return };
    let backend = MemoryBackend::new();
    backend.allow(ALLOWED, "http://10.0.0.1/script.ipxe");
    for mode in [Mode::Full, Mode::Proxy] {
        let cfg = config(mode);
        let boot = req.client.ok().and_then(|c| boot_file(c, &backend.decision(req.mac), &cfg));
        if req.mac != ALLOWED {
            assert!(boot.is_none(), "boot file for a MAC that may not netboot");
        }
        let answer = match (mode, req.msg_type) {
            (Mode::Proxy, MessageType::Discover | MessageType::Request) => match boot {
                Some(boot) => Answer::Proxy { kind: MessageType::Offer, boot },
                None => continue,
            },
            (Mode::Full, MessageType::Discover) => {
                let pool = cfg.pool.as_ref().expect("pool");
                match backend.offer_now(req.mac, req.requested_ip, pool) {
                    Some(lease) => Answer::Lease { kind: MessageType::Offer, lease, boot },
                    None => continue,
                }
            }
            (Mode::Full, MessageType::Request) => Answer::Nak,
            _ => continue,
        };
        let out = reply::build(&msg, &req, &answer, &cfg);
        if mode == Mode::Proxy {
            assert!(out.yiaddr().is_unspecified(), "proxy reply with an address");
        }
        let bytes = out.to_vec().expect("reply encodes");
        let back = dhcproto::v4::Message::decode(&mut Decoder::new(&bytes)).expect("reply decodes");
        assert_eq!(back.xid(), msg.xid());
    }
});
