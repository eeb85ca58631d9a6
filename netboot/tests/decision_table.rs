//! The decision table on golden packets, through the same handler the sockets use:
//! client kind (options 60/77/93/97) x mode x backend decision -> exact reply or none.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use metalcast_netboot::{
    Client, Config, Counters, Decision, DhcpHandler, Event, MemoryBackend, Mode, NotNetboot, Via, classify,
};

fn source() -> SocketAddr {
    "0.0.0.0:68".parse().expect("addr")
}

fn config(mode: Mode) -> Config {
    let mut cfg = Config::new(mode, SERVER);
    cfg.pool = Some(pool(100, 150));
    cfg.http_ipxe_url = Some(HTTP_IPXE.into());
    cfg.max_per_mac_per_sec = 1000;
    cfg
}

struct Rig {
    handler: DhcpHandler<MemoryBackend>,
    backend: Arc<MemoryBackend>,
    counters: Arc<Counters>,
}

fn rig(cfg: Config) -> Rig {
    let backend = Arc::new(MemoryBackend::new());
    let counters = Arc::new(Counters::new());
    Rig { handler: DhcpHandler::new(cfg, Arc::clone(&backend), Arc::clone(&counters)), backend, counters }
}

impl Rig {
    async fn send(&self, m: &Message) -> Option<Message> {
        self.send_via(m, Via::Dhcp(67)).await
    }
    async fn send_via(&self, m: &Message, via: Via) -> Option<Message> {
        let reply = self.handler.handle(&bytes(m), source(), via).await?;
        // What goes on the wire decodes and re-encodes to the same bytes.
        let sent = bytes(&reply.message);
        let wire = decode(&sent);
        assert_eq!(bytes(&wire), sent);
        Some(wire)
    }
}

/// Each kind of client, and the boot file it should get when the backend says Netboot
/// (None = it is not served a boot file).
/// A client kind, its boot file when allowed, and the option 60 the reply carries.
type Row = (Kind, Option<&'static str>, Option<&'static [u8]>);

fn kinds() -> Vec<Row> {
    let mut bad_uuid_len = pxe_bios();
    bad_uuid_len.name = "pxe-bios, option 97 of 16 bytes";
    bad_uuid_len.uuid = Some(uuid()[1..].to_vec());
    let mut bad_uuid_lead = pxe_bios();
    bad_uuid_lead.name = "pxe-bios, option 97 not starting with 0";
    bad_uuid_lead.uuid = Some({
        let mut u = uuid();
        u[0] = 1;
        u
    });
    let mut no_arch = pxe_bios();
    no_arch.name = "PXEClient without option 93";
    no_arch.arch = None;
    let mut arm = pxe_uefi(11);
    arm.name = "pxe arm64 (93 = 11)";
    let mut http_wrong_arch = http_uefi();
    http_wrong_arch.name = "HTTPClient with 93 = 7";
    http_wrong_arch.arch = Some(7);
    let mut ipxe_no_class = ipxe(0);
    ipxe_no_class.name = "iPXE user class without option 60";
    ipxe_no_class.class = None;
    vec![
        (pxe_bios(), Some("undionly.kpxe"), Some(b"PXEClient")),
        (pxe_uefi(7), Some("ipxe.efi"), Some(b"PXEClient")),
        (pxe_uefi(9), Some("ipxe.efi"), Some(b"PXEClient")),
        (http_uefi(), Some(HTTP_IPXE), Some(b"HTTPClient")),
        (ipxe(0), Some(SCRIPT), Some(b"PXEClient")),
        (ipxe(7), Some(SCRIPT), Some(b"PXEClient")),
        (ipxe(16), Some(SCRIPT), Some(b"PXEClient")),
        (plain(), None, None),
        (bad_uuid_len, None, None),
        (bad_uuid_lead, None, None),
        (no_arch, None, None),
        (arm, None, None),
        (http_wrong_arch, None, None),
        (ipxe_no_class, None, None),
    ]
}

fn has_pxe_firmware_vendor_opts(kind: &Kind) -> bool {
    kind.user_class.is_none() && kind.class.is_some_and(|c| c.starts_with(b"PXEClient"))
}

#[tokio::test]
async fn table_per_mode_and_decision() {
    for mode in [Mode::Full, Mode::Proxy, Mode::Off] {
        for allowed in [true, false] {
            for (i, (kind, boot, want_class)) in kinds().into_iter().enumerate() {
                let r = rig(config(mode));
                let m = mac(i as u8 + 1);
                if allowed {
                    r.backend.allow(m, SCRIPT);
                }
                let what = format!("{mode:?} allowed={allowed} {}", kind.name);
                let discover = message(m, MessageType::Discover, &kind.opts());
                let reply = r.send(&discover).await;
                let boot = boot.filter(|_| allowed);
                match (mode, boot) {
                    (Mode::Off, _) | (Mode::Proxy, None) => {
                        assert!(reply.is_none(), "{what}: expected no reply, got {reply:?}");
                        continue;
                    }
                    _ => {}
                }
                let reply = reply.unwrap_or_else(|| panic!("{what}: no reply"));
                assert_eq!(reply.opts().msg_type(), Some(MessageType::Offer), "{what}");
                assert_eq!(reply.xid(), discover.xid(), "{what}");
                assert_eq!(reply.chaddr(), &m.0, "{what}");
                assert!(reply.flags().broadcast(), "{what}: flags copied");
                assert_eq!(server_id(&reply), Some(SERVER), "{what}");
                assert_eq!(reply.siaddr(), SERVER, "{what}");
                assert_eq!(bootfile(&reply).as_deref(), boot, "{what}: option 67");
                let fname = reply
                    .fname_str()
                    .map(|r| r.expect("utf8").trim_end_matches('\0').to_owned())
                    .filter(|s| !s.is_empty());
                assert_eq!(fname.as_deref(), boot, "{what}: file field");
                assert_eq!(class(&reply).as_deref(), boot.and(want_class), "{what}: option 60");
                let uuid_echo = match reply.opts().get(OptionCode::ClientMachineIdentifier) {
                    Some(DhcpOption::ClientMachineIdentifier(u)) => Some(u.clone()),
                    _ => None,
                };
                let valid_uuid = kind.uuid.clone().filter(|u| u.len() == 17 && u[0] == 0);
                assert_eq!(uuid_echo, valid_uuid, "{what}: option 97 echoed only when valid");
                match mode {
                    Mode::Proxy => {
                        assert_eq!(reply.yiaddr(), Ipv4Addr::UNSPECIFIED, "{what}: proxy never hands out an address");
                        assert_eq!(vendor(&reply).as_deref(), Some(&[6u8, 1, 8, 255][..]), "{what}: option 43");
                        assert!(reply.opts().get(OptionCode::SubnetMask).is_none(), "{what}");
                        assert_eq!(r.counters.get("proxy_replies"), 1, "{what}");
                    }
                    Mode::Full => {
                        let p = pool(100, 150);
                        assert!(p.in_range(reply.yiaddr()), "{what}: yiaddr {} from the pool", reply.yiaddr());
                        assert_eq!(r.backend.address_of(m), Some(reply.yiaddr()), "{what}: held for this MAC");
                        assert_eq!(
                            reply.opts().get(OptionCode::SubnetMask),
                            Some(&DhcpOption::SubnetMask(p.netmask)),
                            "{what}"
                        );
                        assert_eq!(
                            reply.opts().get(OptionCode::Router),
                            Some(&DhcpOption::Router(vec![p.router.expect("router")]))
                        );
                        assert_eq!(
                            reply.opts().get(OptionCode::DomainNameServer),
                            Some(&DhcpOption::DomainNameServer(p.dns.clone()))
                        );
                        assert_eq!(
                            reply.opts().get(OptionCode::AddressLeaseTime),
                            Some(&DhcpOption::AddressLeaseTime(p.lease_secs))
                        );
                        let want_43 = boot.is_some() && has_pxe_firmware_vendor_opts(&kind);
                        assert_eq!(vendor(&reply).is_some(), want_43, "{what}: option 43 for PXE firmware only");
                        assert_eq!(r.counters.get("offers"), 1, "{what}");
                    }
                    Mode::Off => unreachable!(),
                }
            }
        }
    }
}

#[test]
fn classify_reports_the_client_kind_and_why_not() {
    let kind = |k: &Kind| classify(&message(mac(1), MessageType::Discover, &k.opts())).expect("classifies").client;
    assert_eq!(kind(&pxe_bios()), Ok(Client::PxeBios));
    assert_eq!(kind(&pxe_uefi(7)), Ok(Client::PxeUefi64));
    assert_eq!(kind(&pxe_uefi(9)), Ok(Client::PxeUefi64));
    assert_eq!(kind(&http_uefi()), Ok(Client::HttpUefi64));
    assert_eq!(kind(&ipxe(0)), Ok(Client::Ipxe { uefi: false }));
    assert_eq!(kind(&ipxe(9)), Ok(Client::Ipxe { uefi: true }));
    assert_eq!(kind(&plain()), Err(NotNetboot::NoVendorClass));
    let mut k = pxe_bios();
    k.uuid = Some(vec![0; 3]);
    assert_eq!(kind(&k), Err(NotNetboot::BadUuid));
    k.uuid = None;
    assert_eq!(kind(&k), Ok(Client::PxeBios), "option 97 is optional");
    k.arch = None;
    assert_eq!(kind(&k), Err(NotNetboot::NoArch));
    assert_eq!(kind(&pxe_uefi(6)), Err(NotNetboot::UnknownArch(6)));
    let mut with_prefix = ipxe(7);
    with_prefix.user_class = Some(b"\x04iPXE");
    assert_eq!(kind(&with_prefix), Ok(Client::Ipxe { uefi: true }), "RFC 3004 length-prefixed user class");
}

#[tokio::test]
async fn full_mode_request_ack_nak_release() {
    let r = rig(config(Mode::Full));
    let (a, b) = (mac(1), mac(2));
    r.backend.allow(a, SCRIPT);
    let offer = r.send(&message(a, MessageType::Discover, &ipxe(7).opts())).await.expect("offer");
    let ip = offer.yiaddr();
    let mut opts = ipxe(7).opts();
    opts.push(DhcpOption::RequestedIpAddress(ip));
    opts.push(DhcpOption::ServerIdentifier(SERVER));
    let ack = r.send(&message(a, MessageType::Request, &opts)).await.expect("ack");
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), ip);
    assert_eq!(bootfile(&ack).as_deref(), Some(SCRIPT));
    assert!(
        r.backend
            .events()
            .iter()
            .any(|(m, _, e)| *m == Some(a) && *e == Event::DhcpAcked { ip, boot_file: Some(SCRIPT.into()) })
    );

    // Another MAC asking for a's address is refused.
    let nak = r.send(&message(b, MessageType::Request, &[DhcpOption::RequestedIpAddress(ip)])).await.expect("nak");
    assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));
    assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(bootfile(&nak).is_none());
    assert_eq!(r.counters.get("naks"), 1);

    // A REQUEST for another server is none of our business.
    let other = [DhcpOption::RequestedIpAddress(ip), DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 9, 0, 254))];
    assert!(r.send(&message(b, MessageType::Request, &other)).await.is_none());
    assert_eq!(r.counters.get("ignored"), 1);

    // Renewal: ciaddr set, no option 50 -> unicast ACK.
    let mut renew = message(a, MessageType::Request, &[]);
    renew.set_ciaddr(ip);
    let reply = r.handler.handle(&bytes(&renew), source(), Via::Dhcp(67)).await.expect("renew ack");
    assert_eq!(reply.message.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(reply.message.ciaddr(), ip);
    assert_eq!(reply.to, SocketAddr::from((ip, 68)), "unicast to ciaddr");
    assert!(bootfile(&reply.message).is_none(), "plain renewal of a non-netboot packet gets no boot file");

    // Release: b may now have it.
    let mut release = message(a, MessageType::Release, &[]);
    release.set_ciaddr(ip);
    assert!(r.send(&release).await.is_none());
    assert_eq!(r.counters.get("releases"), 1);
    assert_eq!(r.backend.address_of(a), None);
    let ack = r.send(&message(b, MessageType::Request, &[DhcpOption::RequestedIpAddress(ip)])).await.expect("ack");
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
}

#[tokio::test]
async fn full_mode_pool_exhaustion() {
    let mut cfg = config(Mode::Full);
    cfg.pool = Some(pool(10, 11));
    let r = rig(cfg);
    let mut got = Vec::new();
    for n in 1..=3 {
        got.push(r.send(&message(mac(n), MessageType::Discover, &[])).await.map(|m| m.yiaddr()));
    }
    assert_eq!(got[0], Some(Ipv4Addr::new(10, 9, 0, 10)));
    assert_eq!(got[1], Some(Ipv4Addr::new(10, 9, 0, 11)));
    assert_eq!(got[2], None);
    assert_eq!(r.counters.get("pool_exhausted"), 1);
    assert_eq!(r.counters.get("offers"), 2);
}

#[tokio::test]
async fn proxy_port_4011_answers_request_unicast() {
    let r = rig(config(Mode::Proxy));
    r.backend.allow(mac(1), SCRIPT);
    let mut req = message(mac(1), MessageType::Request, &pxe_uefi(7).opts());
    req.set_ciaddr(Ipv4Addr::new(192, 168, 1, 50));
    let from: SocketAddr = "192.168.1.50:68".parse().expect("addr");
    let reply = r.handler.handle(&bytes(&req), from, Via::Pxe(4011)).await.expect("reply");
    assert_eq!(reply.to, from);
    assert_eq!(reply.message.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(reply.message.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(bootfile(&reply.message).as_deref(), Some("ipxe.efi"));
    assert_eq!(
        r.backend.events().last().map(|(_, _, e)| e.clone()),
        Some(Event::ProxyOffered { boot_file: "ipxe.efi".into(), port: 4011 })
    );
    // A DISCOVER on 4011 is not served.
    let d = message(mac(1), MessageType::Discover, &pxe_uefi(7).opts());
    assert!(r.handler.handle(&bytes(&d), from, Via::Pxe(4011)).await.is_none());
}

#[tokio::test]
async fn destinations() {
    let r = rig(config(Mode::Full));
    let reply = r.handler.handle(&bytes(&message(mac(1), MessageType::Discover, &[])), source(), Via::Dhcp(67)).await;
    assert_eq!(reply.expect("offer").to, SocketAddr::from((Ipv4Addr::BROADCAST, 68)));
    let mut relayed = message(mac(2), MessageType::Discover, &[]);
    relayed.set_giaddr(Ipv4Addr::new(10, 9, 0, 1));
    let reply = r.handler.handle(&bytes(&relayed), source(), Via::Dhcp(67)).await.expect("offer");
    assert_eq!(reply.to, SocketAddr::from((Ipv4Addr::new(10, 9, 0, 1), 67)));
    assert_eq!(reply.message.giaddr(), Ipv4Addr::new(10, 9, 0, 1));
    let mut cfg = config(Mode::Full);
    cfg.reply_to_source = true;
    let r = rig(cfg);
    let from: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let reply = r.handler.handle(&bytes(&message(mac(1), MessageType::Discover, &[])), from, Via::Dhcp(67)).await;
    assert_eq!(reply.expect("offer").to, from);
}

#[tokio::test]
async fn backend_errors_and_timeouts_give_no_reply() {
    let mut cfg = config(Mode::Proxy);
    cfg.backend_timeout_ms = 50;
    let r = rig(cfg);
    r.backend.allow(mac(1), SCRIPT);
    let d = message(mac(1), MessageType::Discover, &pxe_bios().opts());
    r.backend.set_failing(true);
    assert!(r.send(&d).await.is_none());
    assert_eq!(r.counters.get("backend_errors"), 1);
    r.backend.set_failing(false);
    r.backend.set_delay(Some(Duration::from_millis(500)));
    let t0 = Instant::now();
    assert!(r.send(&d).await.is_none());
    assert!(t0.elapsed() < Duration::from_millis(400), "bounded by the timeout");
    assert_eq!(r.counters.get("backend_errors"), 2);
    r.backend.set_delay(None);
    assert!(r.send(&d).await.is_some());
}

#[tokio::test]
async fn address_only_and_unknown_are_counted() {
    let r = rig(config(Mode::Proxy));
    r.backend.set_decision(mac(2), Decision::AddressOnly);
    assert!(r.send(&message(mac(1), MessageType::Discover, &pxe_bios().opts())).await.is_none());
    assert!(r.send(&message(mac(2), MessageType::Discover, &pxe_bios().opts())).await.is_none());
    assert!(r.send(&message(mac(3), MessageType::Discover, &plain().opts())).await.is_none());
    assert_eq!(r.counters.get("unknown_or_denied"), 2);
    assert_eq!(r.counters.get("not_netboot"), 1);
    assert_eq!(r.counters.get("proxy_replies"), 0);
    assert!(r.backend.events().is_empty());
}

#[test]
fn rate_limit_per_mac() {
    let mut cfg = config(Mode::Full);
    cfg.max_per_mac_per_sec = 3;
    let r = rig(cfg);
    let now = Instant::now();
    let d = bytes(&message(mac(1), MessageType::Discover, &[]));
    let admitted = (0..20).filter(|_| r.handler.admit(&d, now).is_some()).count();
    assert_eq!(admitted, 3);
    assert_eq!(r.counters.get("rate_limited"), 17);
    assert!(r.handler.admit(&bytes(&message(mac(2), MessageType::Discover, &[])), now).is_some());
}

fn golden() -> Vec<u8> {
    bytes(&message(mac(1), MessageType::Discover, &pxe_bios().opts()))
}

#[test]
fn malformed_packets_are_dropped_and_counted() {
    let r = rig(config(Mode::Full));
    let now = Instant::now();
    let good = golden();
    assert!(r.handler.admit(&good, now).is_some());
    let mut dropped = 0;
    let mut expect_drop = |b: &[u8], what: &str| {
        assert!(r.handler.admit(b, now).is_none(), "{what} admitted");
        dropped += 1;
    };
    // Truncated anywhere before the options end (the END option is the last byte).
    for len in 0..240 {
        expect_drop(&good[..len], &format!("truncated to {len}"));
    }
    expect_drop(b"GET / HTTP/1.1\r\n\r\n", "garbage");
    let patch = |at: usize, v: u8| {
        let mut b = good.clone();
        b[at] = v;
        b
    };
    expect_drop(&patch(0, 2), "BOOTREPLY op");
    expect_drop(&patch(1, 6), "IEEE 802 htype");
    expect_drop(&patch(2, 16), "hlen 16");
    expect_drop(&patch(2, 200), "hlen 200 (past chaddr)");
    expect_drop(&patch(28, 0x01), "multicast chaddr");
    // First option after the magic cookie is the message type (53, len 1); make its length lie.
    assert_eq!(good[240], 53);
    expect_drop(&patch(241, 250), "option length past the end");
    // Option 94 (client network interface) with a length other than 3: found by the fuzzer, where
    // dhcproto's debug assertion panicked. Whatever the decoder makes of it, no panic escapes.
    let at = good.windows(2).position(|w| w == [94, 3]).expect("option 94 in the golden packet");
    for len in [0u8, 1, 2, 4] {
        let b = patch(at + 1, len);
        let _ = std::panic::catch_unwind(|| metalcast_netboot::decode(&b)).expect("no panic escapes decode");
    }
    let mut no_type = message(mac(1), MessageType::Discover, &[]);
    no_type.opts_mut().remove(OptionCode::MessageType);
    expect_drop(&bytes(&no_type), "BOOTP without option 53");
    expect_drop(&bytes(&message(mac(1), MessageType::Offer, &[])), "server message");
    assert_eq!(r.counters.get("malformed"), dropped);
    assert_eq!(r.counters.get("packets"), dropped + 1);
}

mod random {
    use super::*;
    use proptest::prelude::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..700)) {
            let rt = runtime();
            for mode in [Mode::Full, Mode::Proxy] {
                let r = rig(config(mode));
                let _ = rt.block_on(r.handler.handle(&data, source(), Via::Dhcp(67)));
                prop_assert_eq!(r.counters.get("packets"), 1);
            }
        }

        #[test]
        fn mutated_golden_packets_never_panic_nor_leak(
            edits in proptest::collection::vec((0usize..300, any::<u8>()), 1..8),
            cut in 0usize..400,
        ) {
            let rt = runtime();
            let mut data = golden();
            for (at, v) in edits {
                if at < data.len() { data[at] = v; }
            }
            data.truncate(cut.max(1));
            for mode in [Mode::Full, Mode::Proxy] {
                let r = rig(config(mode));
                // Nobody is allowed: whatever the bytes, no boot file may come out.
                if let Some(reply) = rt.block_on(r.handler.handle(&data, source(), Via::Dhcp(67))) {
                    prop_assert!(bootfile(&reply.message).is_none());
                    prop_assert_eq!(mode, Mode::Full);
                }
            }
        }
    }
}

/// The control plane implements `Backend` from outside the crate, with plain `async fn`s.
mod outside {
    use std::net::IpAddr;
    use std::sync::Mutex;

    use super::*;
    use metalcast_netboot::{Backend, BackendError, Lease, Mac, Pool};

    #[derive(Default)]
    struct Fixed {
        events: Mutex<Vec<Event>>,
    }

    impl Backend for Fixed {
        async fn decide(&self, mac: Mac, client: Client) -> Result<Decision, BackendError> {
            Ok(Decision::Netboot { script_url: format!("http://cp/boot/{mac}/{client:?}") })
        }
        async fn lease_offer(&self, _: Mac, _: Option<Ipv4Addr>, pool: &Pool) -> Result<Option<Lease>, BackendError> {
            Ok(Some(Lease { ip: pool.end, secs: 30 }))
        }
        async fn lease_commit(&self, _: Mac, _: Ipv4Addr, _: &Pool) -> Result<Option<Lease>, BackendError> {
            Err(BackendError::from(String::from("database is down")))
        }
        async fn lease_release(&self, _: Mac, _: Ipv4Addr) -> Result<(), BackendError> {
            Ok(())
        }
        fn event(&self, _: Option<Mac>, _: IpAddr, event: Event) {
            self.events.lock().expect("lock").push(event);
        }
    }

    #[tokio::test]
    async fn an_outside_backend_drives_the_handler() {
        let backend = Arc::new(Fixed::default());
        let counters = Arc::new(Counters::new());
        let h = DhcpHandler::new(config(Mode::Full), Arc::clone(&backend), Arc::clone(&counters));
        let d = bytes(&message(mac(7), MessageType::Discover, &ipxe(0).opts()));
        let offer = h.handle(&d, source(), Via::Dhcp(67)).await.expect("offer").message;
        assert_eq!(offer.yiaddr(), pool(100, 150).end);
        let url = "http://cp/boot/52:54:00:00:00:07/Ipxe { uefi: false }";
        assert_eq!(bootfile(&offer).as_deref(), Some(url));
        assert_eq!(offer.opts().get(OptionCode::AddressLeaseTime), Some(&DhcpOption::AddressLeaseTime(30)));
        let r = bytes(&message(mac(7), MessageType::Request, &[DhcpOption::RequestedIpAddress(offer.yiaddr())]));
        assert!(h.handle(&r, source(), Via::Dhcp(67)).await.is_none(), "backend error: no reply, not a NAK");
        assert_eq!(counters.get("backend_errors"), 1);
        assert_eq!(counters.get("naks"), 0);
        assert_eq!(backend.events.lock().expect("lock").len(), 1);
    }
}

#[tokio::test]
async fn long_signed_urls_go_in_option_67_only() {
    let r = rig(config(Mode::Full));
    let url = format!("http://10.0.0.1:8080/boot/52:54:00:00:00:01/script.ipxe?t={}", "a".repeat(200));
    r.backend.allow(mac(1), &url);
    let offer = r.send(&message(mac(1), MessageType::Discover, &ipxe(9).opts())).await.expect("offer");
    assert_eq!(bootfile(&offer), Some(url), "the whole URL in option 67");
    let fname = offer.fname().map(|f| f.iter().take_while(|b| **b != 0).count()).unwrap_or(0);
    assert_eq!(fname, 0, "a URL that does not fit the 128-byte file field is not truncated into it");
}
