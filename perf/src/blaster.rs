//! The raw multicast blaster: the image's bytes in MTU-sized UDP datagrams
//! (8-byte offset + data), sent once with UDP GSO, no coding, no repair, no
//! authentication, paced at the link rate when one is emulated. Receivers
//! count (or write) what arrives and stop at the end marker. Its time is the
//! fabric's physical limit for one pass of the image; under loss it delivers
//! less than everything (the delivered fraction says how much).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

use crate::contender::{BLASTER, Contender, Env, Outcome, check_files};
use crate::sys::thread_cpu_secs;

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 77, 9, 10);
const HEADER: usize = 8;
const END: u64 = u64::MAX;

/// See the module docs.
#[derive(Debug)]
pub struct Blaster;

fn receiver_socket(iface: Ipv4Addr, port: u16) -> anyhow::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddrV4::new(GROUP, port).into())?;
    s.join_multicast_v4(&GROUP, &iface)?;
    // As root, a large buffer regardless of rmem_max (the socket path's best case).
    if nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &(32 << 20)).is_err() {
        s.set_recv_buffer_size(32 << 20)?;
    }
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(s.into())
}

/// Receives until the end marker (or `idle` without packets after the first); returns (bytes, done at, CPU s).
fn receive(s: &UdpSocket, out: Option<std::fs::File>, idle: Duration, limit: Instant) -> (u64, Instant, f64) {
    let cpu0 = thread_cpu_secs();
    let mut buf = vec![0u8; 65536];
    let mut got = 0u64;
    let mut last = Instant::now();
    let mut started = false;
    loop {
        match s.recv(&mut buf) {
            Ok(n) if n >= HEADER => {
                let off = u64::from_le_bytes(buf[..HEADER].try_into().expect("8 bytes"));
                last = Instant::now();
                if off == END {
                    break;
                }
                started = true;
                got += (n - HEADER) as u64;
                if let Some(f) = &out {
                    let _ = f.write_all_at(&buf[HEADER..n], off);
                }
            }
            Ok(_) => {}
            Err(_) => {
                if (started && last.elapsed() > idle) || Instant::now() > limit {
                    break;
                }
            }
        }
    }
    (got, last, thread_cpu_secs() - cpu0)
}

/// Sends the file once; returns CPU seconds.
fn send(local: Ipv4Addr, port: u16, file: PathBuf, mtu: u32, link_mbit: u64, receivers: usize) -> anyhow::Result<f64> {
    let cpu0 = thread_cpu_secs();
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.bind(&SocketAddrV4::new(local, 0).into())?;
    s.set_multicast_if_v4(&local)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_loop_v4(false)?;
    s.set_send_buffer_size(4 << 20)?;
    let payload = mtu as usize - 28 - HEADER;
    let dgram = payload + HEADER;
    let per_batch = (65_000 / dgram).max(1);
    let gso = nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::UdpGsoSegment, &(dgram as i32)).is_ok();
    let per_batch = if gso { per_batch } else { 1 };
    let s: UdpSocket = s.into();
    let dest = SocketAddrV4::new(GROUP, port);
    let f = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
    let len = f.metadata()?.len();
    // Pacing on Ethernet-frame bytes at the link rate (tbf counts the same).
    let frame_rate = link_mbit as f64 * 125_000.0;
    let t0 = Instant::now();
    let mut sent_frames = 0f64;
    let mut batch = vec![0u8; per_batch * dgram];
    let mut off = 0u64;
    while off < len {
        let mut used = 0;
        for _ in 0..per_batch {
            if off >= len {
                break;
            }
            let n = payload.min((len - off) as usize);
            batch[used..used + HEADER].copy_from_slice(&off.to_le_bytes());
            f.read_exact_at(&mut batch[used + HEADER..used + HEADER + n], off)?;
            used += HEADER + n;
            off += n as u64;
            sent_frames += (HEADER + n + 28 + 14) as f64;
        }
        // ENOBUFS from a full qdisc: retry shortly (a real blaster would be paced by the NIC).
        loop {
            match s.send_to(&batch[..used], dest) {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => std::thread::sleep(Duration::from_micros(200)),
                Err(e) => return Err(e).context("blaster send"),
            }
        }
        if frame_rate > 0.0 {
            let due = Duration::from_secs_f64(sent_frames / frame_rate);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    // End markers, spread out so a lossy link still gets one.
    for _ in 0..(20 + receivers) {
        s.send_to(&END.to_le_bytes(), dest)?;
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(thread_cpu_secs() - cpu0)
}

impl Contender for Blaster {
    fn name(&self) -> &'static str {
        BLASTER
    }

    fn udp(&self) -> bool {
        true
    }

    fn available(&self) -> Result<(), String> {
        Ok(())
    }

    fn run(&self, env: &Env<'_>) -> anyhow::Result<Outcome> {
        let f = env.fabric;
        let n = f.receivers().len();
        let limit = Instant::now() + env.timeout;
        let files: Vec<PathBuf> = (0..n).map(|i| env.work.join(format!("r{i}.bin"))).collect();
        let mut rx = Vec::new();
        for (h, file) in f.receivers().iter().zip(&files) {
            let (ip, port, file, verify) = (h.ipv4(), env.port, file.clone(), env.verify);
            let (tx, ready) = std::sync::mpsc::channel();
            rx.push(h.spawn_in(move || -> anyhow::Result<(u64, Instant, f64)> {
                let s = receiver_socket(ip, port);
                let _ = tx.send(s.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")));
                let out = verify.then(|| std::fs::File::create(&file)).transpose()?;
                Ok(receive(&s?, out, Duration::from_secs(3), limit))
            })?);
            ready.recv().context("blaster receiver thread")?.map_err(anyhow::Error::msg)?;
        }
        // Joins must reach the snooping switch before the first datagram.
        let until = Instant::now() + Duration::from_secs(10);
        while f.switch().mdb()?.iter().filter(|(_, g)| g == &GROUP.to_string()).count() < n {
            anyhow::ensure!(Instant::now() < until, "blaster receivers' joins did not reach the switch in 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        let t0 = Instant::now();
        let (ip, port, file, mtu, link) =
            (f.sender().ipv4(), env.port, env.image.bundle.clone(), env.mtu, env.link_mbit);
        let sender = f.sender().spawn_in(move || send(ip, port, file, mtu, link, n))?;
        let sent = sender.join().map_err(|_| anyhow::anyhow!("blaster sender panicked"))?;
        let mut out = Outcome::default();
        for h in rx {
            let (got, done, cpu) = h.join().map_err(|_| anyhow::anyhow!("blaster receiver panicked"))??;
            out.secs = out.secs.max(done.saturating_duration_since(t0).as_secs_f64());
            out.delivered.push(got);
            out.receiver_cpu += cpu;
        }
        out.sender_cpu = sent?;
        // Under loss the blaster delivers less than everything: only complete copies are compared.
        if env.verify && out.delivered.iter().all(|&d| d == env.image.bundle_bytes) {
            let (_, same) = check_files(&files, env.image.bundle_hash)?;
            out.identical = Some(same);
        }
        Ok(out)
    }
}
