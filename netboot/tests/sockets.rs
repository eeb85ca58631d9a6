//! Socket-level tests without VMs: `Netboot` on loopback with high ports, replies sent back to the
//! client's source (`reply_to_source`), a `MemoryBackend`, real packets built with dhcproto, and a
//! small TFTP client (RRQ with blksize/windowsize, OACK, windowed ACKs).

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use dhcproto::v4::{DhcpOption, Message, MessageType};
use metalcast_netboot::{Config, Counters, Event, MemoryBackend, Mode, Netboot, NetbootError};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(2);
const QUIET: Duration = Duration::from_millis(300);

/// A UDP port that was free a moment ago (TFTP's port 0 means "off", so tests pick one).
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

struct Server {
    netboot: Netboot,
    backend: Arc<MemoryBackend>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(6), self.netboot.stopped()).await.expect("stops in time");
    }
    fn dhcp(&self) -> SocketAddr {
        self.netboot.local_addrs().dhcp.expect("dhcp bound")
    }
}

fn base(mode: Mode) -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::new(mode, SERVER);
    cfg.dhcp_port = 0;
    cfg.proxy_port = Some(0);
    cfg.tftp_port = 0;
    cfg.reply_to_source = true;
    cfg.boot_dir = dir.path().to_owned();
    cfg.pool = Some(pool(100, 101));
    (cfg, dir)
}

async fn start(cfg: Config, dir: tempfile::TempDir) -> Server {
    let backend = Arc::new(MemoryBackend::new());
    let counters = Arc::new(Counters::new());
    let shutdown = CancellationToken::new();
    let netboot =
        Netboot::start(cfg, Arc::clone(&backend), Arc::clone(&counters), shutdown.clone()).await.expect("starts");
    Server { netboot, backend, counters, shutdown, _dir: dir }
}

struct Client(UdpSocket);

impl Client {
    async fn new() -> Client {
        Client(UdpSocket::bind("127.0.0.1:0").await.expect("bind"))
    }
    async fn ask(&self, to: SocketAddr, m: &Message) -> Option<Message> {
        self.0.send_to(&bytes(m), to).await.expect("send");
        self.recv(WAIT).await
    }
    async fn recv(&self, wait: Duration) -> Option<Message> {
        let mut buf = vec![0u8; 2048];
        let (n, _) = tokio::time::timeout(wait, self.0.recv_from(&mut buf)).await.ok()?.expect("recv");
        Some(decode(&buf[..n]))
    }
}

#[tokio::test]
async fn full_mode_offer_ack_nak_and_exhaustion() {
    let (cfg, dir) = base(Mode::Full);
    let s = start(cfg, dir).await;
    assert_eq!(s.netboot.local_addrs().pxe, None, "4011 is proxy-only");
    assert_eq!(s.netboot.local_addrs().tftp, None, "tftp_port 0 = no TFTP");
    let c = Client::new().await;
    s.backend.allow(mac(1), SCRIPT);

    let offer = c.ask(s.dhcp(), &message(mac(1), MessageType::Discover, &pxe_uefi(7).opts())).await.expect("offer");
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 9, 0, 100));
    assert_eq!(offer.siaddr(), SERVER);
    assert_eq!(bootfile(&offer).as_deref(), Some("ipxe.efi"));

    let req = [DhcpOption::RequestedIpAddress(offer.yiaddr()), DhcpOption::ServerIdentifier(SERVER)];
    let ack = c.ask(s.dhcp(), &message(mac(1), MessageType::Request, &req)).await.expect("ack");
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), offer.yiaddr());

    // Another MAC asking for the same address: NAK.
    let nak = c.ask(s.dhcp(), &message(mac(2), MessageType::Request, &req)).await.expect("nak");
    assert_eq!(nak.opts().msg_type(), Some(MessageType::Nak));

    // An unknown, non-netboot client still gets the last address, without a boot file...
    let offer2 = c.ask(s.dhcp(), &message(mac(3), MessageType::Discover, &plain().opts())).await.expect("offer");
    assert_eq!(offer2.yiaddr(), Ipv4Addr::new(10, 9, 0, 101));
    assert_eq!(bootfile(&offer2), None);
    // ...and then the pool is empty.
    assert!(c.ask(s.dhcp(), &message(mac(4), MessageType::Discover, &[])).await.is_none());
    assert_eq!(s.counters.get("pool_exhausted"), 1);
    assert_eq!(s.counters.get("offers"), 2);
    assert_eq!(s.counters.get("acks"), 1);
    assert_eq!(s.counters.get("naks"), 1);
    let events: Vec<Event> = s.backend.events().into_iter().map(|(_, _, e)| e).collect();
    assert!(events.contains(&Event::DhcpOffered { ip: Some(offer.yiaddr()), boot_file: Some("ipxe.efi".into()) }));
    s.stop().await;
}

#[tokio::test]
async fn proxy_mode_replies_without_address_and_ignores_unknown() {
    let (cfg, dir) = base(Mode::Proxy);
    let s = start(cfg, dir).await;
    let c = Client::new().await;
    s.backend.allow(mac(1), SCRIPT);

    let offer =
        c.ask(s.dhcp(), &message(mac(1), MessageType::Discover, &pxe_bios().opts())).await.expect("proxy offer");
    assert_eq!(offer.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(offer.siaddr(), SERVER);
    assert_eq!(bootfile(&offer).as_deref(), Some("undionly.kpxe"));
    assert_eq!(vendor(&offer).as_deref(), Some(&[6u8, 1, 8, 255][..]));
    assert_eq!(class(&offer).as_deref(), Some(&b"PXEClient"[..]));

    // Unknown MAC, and a known MAC that is not a netboot client: silence.
    assert!(c.ask(s.dhcp(), &message(mac(2), MessageType::Discover, &pxe_bios().opts())).await.is_none());
    assert!(c.ask(s.dhcp(), &message(mac(1), MessageType::Discover, &plain().opts())).await.is_none());

    // The PXE boot-server port: REQUEST answered unicast to the asking socket.
    let pxe = s.netboot.local_addrs().pxe.expect("4011 bound");
    let mut req = message(mac(1), MessageType::Request, &ipxe(7).opts());
    req.set_ciaddr(Ipv4Addr::new(127, 0, 0, 1));
    let ack = c.ask(pxe, &req).await.expect("4011 ack");
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(bootfile(&ack).as_deref(), Some(SCRIPT));
    assert_eq!(s.counters.get("proxy_replies"), 2);
    assert_eq!(s.counters.get("unknown_or_denied"), 1);
    assert_eq!(s.counters.get("not_netboot"), 1);
    s.stop().await;
}

#[tokio::test]
async fn discover_flood_is_rate_limited() {
    let (mut cfg, dir) = base(Mode::Proxy);
    cfg.max_per_mac_per_sec = 4;
    let s = start(cfg, dir).await;
    let c = Client::new().await;
    s.backend.allow(mac(1), SCRIPT);
    let d = bytes(&message(mac(1), MessageType::Discover, &pxe_bios().opts()));
    for _ in 0..50 {
        c.0.send_to(&d, s.dhcp()).await.expect("send");
    }
    let mut replies = 0;
    while c.recv(QUIET).await.is_some() {
        replies += 1;
    }
    // All 50 arrive on loopback within one window (the loop takes far less than a second).
    assert_eq!(s.counters.get("packets"), 50);
    assert!(replies <= 4, "{replies} replies");
    assert_eq!(s.counters.get("rate_limited"), 50 - s.counters.get("proxy_replies"));
    assert!(s.counters.get("rate_limited") >= 46);
    s.stop().await;
}

#[tokio::test]
async fn off_mode_has_no_dhcp_socket() {
    let (mut cfg, dir) = base(Mode::Off);
    cfg.tftp_port = free_port();
    let s = start(cfg, dir).await;
    assert_eq!(s.netboot.local_addrs().dhcp, None);
    assert_eq!(s.netboot.local_addrs().pxe, None);
    assert!(s.netboot.local_addrs().tftp.is_some());
    s.stop().await;
}

#[tokio::test]
async fn startup_errors_name_the_port_or_interface() {
    let (mut cfg, dir) = base(Mode::Proxy);
    cfg.interface = Some("nosuchif0".into());
    let backend = Arc::new(MemoryBackend::new());
    let err =
        Netboot::start(cfg, Arc::clone(&backend), Arc::default(), CancellationToken::new()).await.expect_err("fails");
    assert!(matches!(err, NetbootError::BindDevice { .. }), "{err}");
    assert!(err.to_string().contains("nosuchif0"), "{err}");

    let (mut cfg, _dir2) = base(Mode::Off);
    cfg.server_ip = Ipv4Addr::new(192, 0, 2, 77); // not ours: TFTP cannot bind it
    cfg.tftp_port = free_port();
    cfg.boot_dir = dir.path().to_owned();
    let err =
        Netboot::start(cfg, Arc::clone(&backend), Arc::default(), CancellationToken::new()).await.expect_err("fails");
    assert!(err.to_string().contains("192.0.2.77"), "{err}");

    let (mut cfg, _dir3) = base(Mode::Full);
    cfg.pool = None;
    let err = Netboot::start(cfg, backend, Arc::default(), CancellationToken::new()).await.expect_err("fails");
    assert!(matches!(err, NetbootError::Config(_)), "{err}");
}

// --- TFTP -------------------------------------------------------------------------------------

const RRQ: u16 = 1;
const WRQ: u16 = 2;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

fn request(op: u16, name: &[u8], opts: &[(&str, &str)]) -> Vec<u8> {
    let mut p = op.to_be_bytes().to_vec();
    p.extend_from_slice(name);
    p.push(0);
    p.extend_from_slice(b"octet\0");
    for (k, v) in opts {
        p.extend_from_slice(k.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    }
    p
}

fn ack(block: u16) -> Vec<u8> {
    let mut p = ACK.to_be_bytes().to_vec();
    p.extend_from_slice(&block.to_be_bytes());
    p
}

#[derive(Debug, PartialEq, Eq)]
enum Fetch {
    File(Vec<u8>),
    Error(u16),
    Silence,
}

/// Reads `name` with RFC 2348 blksize and RFC 7440 windowsize, ACKing the end of each window.
async fn tftp_get(server: SocketAddr, name: &[u8], blksize: usize, window: u16) -> Fetch {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let (bs, ws) = (blksize.to_string(), window.to_string());
    sock.send_to(&request(RRQ, name, &[("blksize", &bs), ("windowsize", &ws)]), server).await.expect("send");
    let mut buf = vec![0u8; 70_000];
    let mut file = Vec::new();
    let mut expected: u16 = 1;
    let (mut blksize, mut window) = (512, 1);
    loop {
        let Ok(got) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf)).await else {
            return Fetch::Silence;
        };
        let (n, tid) = got.expect("recv");
        let p = &buf[..n];
        let op = u16::from_be_bytes([p[0], p[1]]);
        match op {
            ERROR => return Fetch::Error(u16::from_be_bytes([p[2], p[3]])),
            OACK => {
                let fields: Vec<&[u8]> = p[2..].split(|b| *b == 0).collect();
                for kv in fields.chunks(2) {
                    if let [k, v] = kv {
                        let v: usize = std::str::from_utf8(v).expect("utf8").parse().expect("number");
                        match *k {
                            b"blksize" => blksize = v,
                            b"windowsize" => window = v as u16,
                            _ => {}
                        }
                    }
                }
                sock.send_to(&ack(0), tid).await.expect("ack 0");
            }
            DATA => {
                let block = u16::from_be_bytes([p[2], p[3]]);
                let data = &p[4..];
                if block != expected {
                    continue; // a resend or out of order: wait for the window to be resent
                }
                file.extend_from_slice(data);
                expected = expected.wrapping_add(1);
                let last = data.len() < blksize;
                if last || block.is_multiple_of(window) {
                    sock.send_to(&ack(block), tid).await.expect("ack");
                }
                if last {
                    return Fetch::File(file);
                }
            }
            other => panic!("unexpected TFTP opcode {other}"),
        }
    }
}

#[tokio::test]
async fn tftp_serves_boot_files_and_refuses_escapes() {
    let (mut cfg, dir) = base(Mode::Proxy);
    cfg.tftp_port = free_port();
    // A file of many blocks whose size is not a multiple of the block size, and one that is.
    let body: Vec<u8> = (0..200_003u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(dir.path().join("undionly.kpxe"), &body).expect("write");
    let exact = vec![7u8; 4096];
    std::fs::write(dir.path().join("ipxe.efi"), &exact).expect("write");
    std::fs::create_dir(dir.path().join("subdir")).expect("mkdir");
    let s = start(cfg, dir).await;
    let tftp = s.netboot.local_addrs().tftp.expect("tftp bound");
    s.backend.allow(mac(1), SCRIPT);

    // A 4011 exchange from this host teaches the server which MAC 127.0.0.1 is.
    let c = Client::new().await;
    let mut req = message(mac(1), MessageType::Request, &pxe_bios().opts());
    req.set_ciaddr(Ipv4Addr::new(127, 0, 0, 1));
    c.ask(s.netboot.local_addrs().pxe.expect("4011"), &req).await.expect("4011 ack");

    assert_eq!(tftp_get(tftp, b"undionly.kpxe", 1024, 4).await, Fetch::File(body.clone()));
    assert_eq!(tftp_get(tftp, b"ipxe.efi", 1024, 1).await, Fetch::File(exact.clone()));
    assert_eq!(tftp_get(tftp, b"undionly.kpxe", 1468, 8).await, Fetch::File(body.clone()));
    // The last transfer's reader is dropped a moment after the last ACK.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.counters.get("tftp_sent"), 3);
    assert_eq!(s.counters.get("tftp_bytes"), 2 * body.len() as u64 + exact.len() as u64);
    let sent: Vec<_> = s.backend.events().into_iter().filter(|(_, _, e)| matches!(e, Event::TftpSent { .. })).collect();
    assert_eq!(sent[0].0, Some(mac(1)), "TFTP peer mapped to the MAC seen on 4011");
    assert_eq!(sent[0].2, Event::TftpSent { file: "undionly.kpxe".into(), bytes: body.len() as u64 });

    // Refusals: an ERROR packet and a count each.
    for (name, code) in [
        (&b"../etc/passwd"[..], 2),
        (b"/etc/passwd", 2),
        (b"subdir", 2),
        (b"subdir/../undionly.kpxe", 2),
        (b"missing.efi", 1),
    ] {
        assert_eq!(tftp_get(tftp, name, 512, 1).await, Fetch::Error(code), "{}", String::from_utf8_lossy(name));
    }
    assert_eq!(s.counters.get("tftp_refused"), 5);
    // A NUL ends the name on the wire, so "a\0b" is the name "a" with mode "b": async-tftp drops
    // the malformed request without an answer. Nothing is sent and nothing is opened.
    assert_eq!(tftp_get(tftp, b"a\0b", 512, 1).await, Fetch::Silence);
    assert_eq!(s.counters.get("tftp_refused"), 5);
    // Writes are refused.
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sock.send_to(&request(WRQ, b"new.efi", &[]), tftp).await.expect("send");
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf)).await.expect("answer").expect("recv");
    assert_eq!(u16::from_be_bytes([buf[0], buf[1]]), ERROR, "{:?}", &buf[..n]);
    assert_eq!(s.counters.get("tftp_refused"), 6);
    let refused = s.backend.events().into_iter().filter(|(_, _, e)| matches!(e, Event::TftpRefused { .. })).count();
    assert_eq!(refused, 6);
    s.stop().await;
}

#[tokio::test]
async fn backend_concurrency_is_bounded() {
    let (mut cfg, dir) = base(Mode::Proxy);
    cfg.max_inflight = 1;
    cfg.backend_timeout_ms = 400;
    let s = start(cfg, dir).await;
    s.backend.set_delay(Some(Duration::from_millis(300)));
    let c = Client::new().await;
    for n in 1..=3 {
        s.backend.allow(mac(n), SCRIPT);
        c.0.send_to(&bytes(&message(mac(n), MessageType::Discover, &pxe_bios().opts())), s.dhcp()).await.expect("send");
    }
    let first = c.recv(WAIT).await.expect("the one in flight is answered");
    assert_eq!(first.chaddr(), &mac(1).0);
    assert!(c.recv(QUIET).await.is_none());
    assert_eq!(s.counters.get("busy"), 2);
    // A slower backend than the timeout: no reply, counted, and the slot is free again.
    s.backend.set_delay(Some(Duration::from_millis(1000)));
    assert!(c.ask(s.dhcp(), &message(mac(2), MessageType::Discover, &pxe_bios().opts())).await.is_none());
    assert_eq!(s.counters.get("backend_errors"), 1);
    s.backend.set_delay(None);
    assert!(c.ask(s.dhcp(), &message(mac(3), MessageType::Discover, &pxe_bios().opts())).await.is_some());
    s.stop().await;
}

#[tokio::test]
async fn tftp_transfers_are_bounded() {
    let (mut cfg, dir) = base(Mode::Off);
    cfg.tftp_port = free_port();
    cfg.max_tftp_transfers = 1;
    std::fs::write(dir.path().join("ipxe.efi"), vec![1u8; 10_000]).expect("write");
    let s = start(cfg, dir).await;
    let tftp = s.netboot.local_addrs().tftp.expect("tftp bound");
    // A holds the only slot: it gets the OACK and never ACKs.
    let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    a.send_to(&request(RRQ, b"ipxe.efi", &[("blksize", "512")]), tftp).await.expect("send");
    let mut buf = [0u8; 1024];
    tokio::time::timeout(WAIT, a.recv_from(&mut buf)).await.expect("oack").expect("recv");
    assert_eq!(u16::from_be_bytes([buf[0], buf[1]]), OACK);
    assert_eq!(tftp_get(tftp, b"ipxe.efi", 512, 1).await, Fetch::Error(2), "second transfer refused");
    assert_eq!(s.counters.get("tftp_refused"), 1);
    s.stop().await;
}

#[tokio::test]
async fn bound_to_the_loopback_device() {
    let (mut cfg, dir) = base(Mode::Proxy);
    cfg.interface = Some("lo".into());
    cfg.tftp_port = free_port();
    let backend = Arc::new(MemoryBackend::new());
    let counters = Arc::new(Counters::new());
    let shutdown = CancellationToken::new();
    let netboot = match Netboot::start(cfg, Arc::clone(&backend), Arc::clone(&counters), shutdown.clone()).await {
        Ok(n) => n,
        Err(NetbootError::BindDevice { source, .. }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("skipped: SO_BINDTODEVICE needs root or CAP_NET_RAW ({source})");
            return;
        }
        Err(e) => panic!("start: {e}"),
    };
    let s = Server { netboot, backend, counters, shutdown, _dir: dir };
    s.backend.allow(mac(1), SCRIPT);
    let c = Client::new().await;
    let offer = c.ask(s.dhcp(), &message(mac(1), MessageType::Discover, &pxe_bios().opts())).await;
    assert_eq!(offer.as_ref().and_then(bootfile).as_deref(), Some("undionly.kpxe"));
    s.stop().await;
}
