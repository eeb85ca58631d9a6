//! Receive-path CPU profile, no network: replays recorded symbol packets of a
//! random (incompressible) bundle into a [`Receiver`] and measures the
//! receiver's CPU time (its receive and decode threads), at 0% and at a given
//! random loss of source symbols, plus microbenchmarks of the parts (MAC
//! check, symbol copy, RaptorQ decode of one block, chunk hash).
//!
//! ```sh
//! cargo run --release -p metalcast-transport --example rx_profile -- [MiB] [loss%] [mtu]
//! ```
//!
//! Prints CPU seconds per GB of image; wall time is not used (shared machine).

use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use metalcast_image::{Bundle, spec_from_inputs};
use metalcast_transport::erasure::FewErasures;
use metalcast_transport::layout::Layout;
use metalcast_transport::packet;
use metalcast_transport::{ChunkSink, PacketSource, Receiver, ReceiverConfig, SessionKey, SessionSpec, TransportError};
use raptorq::{EncodingPacket, PayloadId, SourceBlockDecoder, SourceBlockEncoder};

fn cpu(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn thread_cpu() -> f64 {
    cpu(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Both receiver threads (receive and decode); nothing else runs meanwhile.
fn process_cpu() -> f64 {
    cpu(libc::CLOCK_PROCESS_CPUTIME_ID)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

struct Replay {
    pkts: Vec<Vec<u8>>,
    pos: usize,
    n: usize,
}

impl PacketSource for Replay {
    fn recv(&mut self, _timeout: Duration) -> Result<usize, TransportError> {
        self.pos += self.n;
        self.n = (self.pkts.len() - self.pos).min(64);
        Ok(self.n)
    }
    fn get(&self, i: usize) -> &[u8] {
        &self.pkts[self.pos + i]
    }
}

struct Null;
impl ChunkSink for Null {
    fn write_chunk(
        &mut self,
        _: &metalcast_image::Manifest,
        _: usize,
        _: &[u8],
    ) -> Result<(), metalcast_image::BundleError> {
        Ok(())
    }
}

fn seal(spec: &SessionSpec, seq: u64, b: u32, esi: u32, sym: &[u8]) -> Vec<u8> {
    packet::build_symbol(&spec.key, spec.session_id, seq, b, esi, sym)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).map_or(64, |s| s.parse().unwrap());
    let loss: f64 = args.get(2).map_or(1.0, |s| s.parse().unwrap()) / 100.0;
    let mtu: usize = args.get(3).map_or(9000, |s| s.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let data: Vec<u8> = (0..mib << 20).map(|_| rng.next() as u8).collect();
    std::fs::write(dir.path().join("kernel"), &data).unwrap();
    let bspec =
        spec_from_inputs("p", Some(dir.path().join("kernel")), vec![], String::new(), None, None, None).unwrap();
    metalcast_image::build(&bspec, &dir.path().join("b.mcb"), None, &indicatif::ProgressBar::hidden()).unwrap();
    let bundle = Bundle::open(&dir.path().join("b.mcb")).unwrap();
    let m = &bundle.manifest;
    let sink_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let spec = SessionSpec {
        session_id: 1,
        group: Ipv4Addr::LOCALHOST,
        port: 9,
        sender: match sink_sock.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        },
        key: SessionKey::from_bytes([7; 32]),
        symbol_size: SessionSpec::symbol_size_for_mtu(mtu).unwrap(),
        root_hash: m.root_hash.clone(),
    };
    let layout = Layout::new(m, spec.symbol_size);
    let t = usize::from(spec.symbol_size);
    println!("{mib} MiB, {} blocks, K = {}, T = {t}, loss {:.1}%", layout.blocks.len(), layout.k_max, loss * 100.0);

    // Packets: every block's source symbols (lost at `loss`), then losses + 2 repair symbols.
    let mut stats = (0u64, 0u64); // blocks with loss, lost symbols
    let make = |loss: f64, rng: &mut Rng, stats: &mut (u64, u64)| -> Vec<Vec<u8>> {
        let mut pkts = Vec::new();
        let mut seq = 0u64;
        let mut buf = vec![0u8; layout.padded_len()];
        for (b, blk) in layout.blocks.iter().enumerate() {
            buf.fill(0);
            bundle.read_data(blk.offset, &mut buf[..blk.len as usize]).unwrap();
            let mut lost = 0u32;
            for esi in 0..blk.k {
                seq += 1;
                if rng.chance(loss) {
                    lost += 1;
                    continue;
                }
                pkts.push(seal(&spec, seq, b as u32, esi, &buf[esi as usize * t..(esi as usize + 1) * t]));
            }
            if lost > 0 {
                stats.0 += 1;
                stats.1 += u64::from(lost);
                let enc = SourceBlockEncoder::new(0, &layout.oti(), &buf);
                for p in enc.repair_packets(0, lost + 2) {
                    seq += 1;
                    pkts.push(seal(&spec, seq, b as u32, p.payload_id().encoding_symbol_id(), p.data()));
                }
            }
        }
        pkts
    };
    let gb = m.data_len as f64 / 1e9;
    for &p in &[0.0, loss] {
        let mut st = (0, 0);
        let pkts = make(p, &mut rng, &mut st);
        let npk = pkts.len();
        let cfg = ReceiverConfig { id: 1, linger: Duration::ZERO, ..Default::default() };
        // In a thread of its own, so that `perf report --comms rx-run,metalcast-decod` shows the receiver only.
        let c0 = process_cpu();
        let (s, r) = std::thread::scope(|sc| {
            std::thread::Builder::new()
                .name("rx-run".into())
                .spawn_scoped(sc, || {
                    let rx = Receiver::with_source(&spec, m, cfg, Box::new(Replay { pkts, pos: 0, n: 0 })).unwrap();
                    let s = rx.run(&mut Null, &mut |_| {}).unwrap();
                    (s, thread_cpu())
                })
                .unwrap()
                .join()
                .unwrap()
        });
        let c = process_cpu() - c0;
        println!(
            "receiver run at {:.1}% loss: {npk} packets, {} blocks lost symbols ({} symbols), decoded {}, \
             retries {}: {:.3} CPU s/GB ({:.3} on the receive thread), {:.2} us/packet",
            p * 100.0,
            st.0,
            st.1,
            s.decoded_blocks,
            s.decode_retries,
            c / gb,
            r / gb,
            c * 1e6 / npk as f64
        );
        stats = st;
    }
    let _ = stats;

    // Parts.
    let mut buf = vec![0u8; layout.padded_len()];
    let blk = layout.blocks[0];
    bundle.read_data(blk.offset, &mut buf[..blk.len as usize]).unwrap();
    let pkts: Vec<Vec<u8>> =
        (0..layout.k_max).map(|e| seal(&spec, 0, 0, e, &buf[e as usize * t..(e as usize + 1) * t])).collect();
    let reps = 20;
    let c0 = thread_cpu();
    for _ in 0..reps {
        for p in &pkts {
            std::hint::black_box(packet::open(&spec.key, spec.session_id, 0, p).unwrap());
        }
    }
    let per_pkt = (thread_cpu() - c0) / (reps * pkts.len()) as f64;
    println!(
        "MAC check (AEGIS-128L, {} B): {:.2} us/packet = {:.3} CPU s/GB",
        pkts[0].len(),
        per_pkt * 1e6,
        per_pkt / t as f64 * 1e9
    );
    let mut dst = vec![0u8; layout.padded_len()];
    let c0 = thread_cpu();
    for _ in 0..reps * 10 {
        for (e, p) in pkts.iter().enumerate() {
            dst[e * t..(e + 1) * t].copy_from_slice(&p[28..28 + t]);
        }
        std::hint::black_box(&dst);
    }
    let c = (thread_cpu() - c0) / (reps * 10) as f64;
    println!(
        "symbol copy into block buffer: {:.3} ms/block = {:.3} CPU s/GB",
        c * 1e3,
        c / layout.padded_len() as f64 * 1e9
    );
    let c0 = thread_cpu();
    for _ in 0..reps {
        std::hint::black_box(blake3::hash(&buf));
    }
    let c = (thread_cpu() - c0) / reps as f64;
    println!("chunk BLAKE3: {:.3} ms/block = {:.3} CPU s/GB", c * 1e3, c / layout.padded_len() as f64 * 1e9);
    let c0 = thread_cpu();
    for _ in 0..reps {
        std::hint::black_box(vec![0u8; layout.padded_len()]);
    }
    let c = (thread_cpu() - c0) / reps as f64;
    println!("zeroed 1-block alloc+free: {:.3} ms/block", c * 1e3);
    let enc = SourceBlockEncoder::new(0, &layout.oti(), &buf);
    for lost in [1u32, 2, 3, 5, 10, 20, 40, 80] {
        let reps = 10;
        let c0 = thread_cpu();
        for r in 0..reps {
            let mut d = SourceBlockDecoder::new(0, &layout.oti(), layout.padded_len() as u64);
            let gone: Vec<u32> = (0..lost).map(|i| (i * 37 + r * 11) % layout.k_max).collect();
            let src = (0..layout.k_max)
                .filter(|e| !gone.contains(e))
                .map(|e| EncodingPacket::new(PayloadId::new(0, e), buf[e as usize * t..(e as usize + 1) * t].to_vec()));
            let rep = enc.repair_packets(r * 100, lost);
            let out = d.decode(src.chain(rep).collect::<Vec<_>>());
            assert!(out.is_none_or(|o| o == buf), "decode with {lost} lost");
        }
        let c = (thread_cpu() - c0) / f64::from(reps);
        // Includes generating `lost` repair symbols (cheap next to decoding) and the source copies.
        println!(
            "raptorq decode, {lost} source symbols lost: {:.2} ms/block = {:.3} CPU s/GB if every block",
            c * 1e3,
            c / layout.padded_len() as f64 * 1e9
        );
    }
    let mut few = FewErasures::new(layout.k_max);
    let t0 = thread_cpu();
    let k = layout.k_max;
    let rep = enc.repair_packets(0, 1);
    few.decode(&mut buf.clone(), t, k, &[0], &[(rep[0].payload_id().encoding_symbol_id(), rep[0].data().to_vec())]);
    println!("few-erasure decoder setup (identity encode): {:.2} ms", (thread_cpu() - t0) * 1e3);
    for lost in [1u32, 2, 3, 5, 8, 12, 20, 30, 40, 60, 80, 120] {
        let reps = 10;
        let repairs: Vec<(u32, Vec<u8>)> = enc
            .repair_packets(0, lost)
            .into_iter()
            .map(|p| (p.payload_id().encoding_symbol_id(), p.data().to_vec()))
            .collect();
        let mut work = buf.clone();
        let mut c = 0.0;
        for r in 0..reps {
            let mut gone: Vec<u32> = (0..lost).map(|i| (i * 37 + r * 11) % k).collect();
            gone.sort();
            gone.dedup();
            for &g in &gone {
                work[g as usize * t..(g as usize + 1) * t].fill(0);
            }
            let c0 = thread_cpu();
            let ok = few.decode(&mut work, t, blk.k, &gone, &repairs[..gone.len()]);
            c += thread_cpu() - c0;
            assert!(!ok || work == buf, "few-erasure decode with {lost} lost is wrong");
            work.copy_from_slice(&buf);
        }
        let c = c / f64::from(reps);
        println!(
            "few-erasure decode, {lost} source symbols lost: {:.3} ms/block = {:.3} CPU s/GB if every block",
            c * 1e3,
            c / layout.padded_len() as f64 * 1e9
        );
    }
}
