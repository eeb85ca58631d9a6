//! Sender and receiver over loopback unicast (no privileges needed): the
//! whole protocol path, byte-identical results, forged packets rejected; and
//! recorded packets replayed into a receiver: a chunk that fails its hash.
//! Multicast fan-out and loss run on the namespace fabric (`tests/fabric.rs`).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use metalcast_image::{Bundle, spec_from_inputs};
use metalcast_transport::{
    ChunkSink, MemorySink, Receiver, ReceiverConfig, Sender, SenderConfig, SessionKey, SessionSpec,
};

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn bundle(dir: &std::path::Path, mib: usize) -> Bundle {
    let mut x = 0x1234_5678_9abc_def1u64;
    let data: Vec<u8> = (0..mib << 20)
        .map(|i| {
            if i % 4096 < 2048 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            } else {
                (i / 4096) as u8
            }
        })
        .collect();
    std::fs::write(dir.join("kernel"), &data).unwrap();
    std::fs::write(dir.join("initrd"), b"tiny initrd").unwrap();
    let spec = spec_from_inputs("t", Some(dir.join("kernel")), vec![dir.join("initrd")], "ro".into(), None, None, None)
        .unwrap();
    metalcast_image::build(&spec, &dir.join("b.mcb"), None, &indicatif::ProgressBar::hidden()).unwrap();
    Bundle::open(&dir.join("b.mcb")).unwrap()
}

fn spec_for(b: &Bundle) -> SessionSpec {
    SessionSpec {
        session_id: 77,
        group: Ipv4Addr::LOCALHOST,
        port: free_port(),
        sender: SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port()),
        key: SessionKey::generate(),
        symbol_size: SessionSpec::symbol_size_for_mtu(1500).unwrap(),
        root_hash: b.manifest.root_hash.clone(),
    }
}

#[test]
fn loopback_transfer_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path(), 24);
    let spec = spec_for(&b);
    let m = b.manifest.clone();
    let rx =
        Receiver::new(&spec, &m, ReceiverConfig { id: 1, idle_timeout: Duration::from_secs(20), ..Default::default() })
            .unwrap();
    let summary = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let cfg = SenderConfig { rate: Some(200_000_000), expected_receivers: 1, ..Default::default() };
            Sender::new(&spec, &b, cfg).unwrap().run(&mut |_| {}).unwrap()
        });
        let mut sink = KeepsStored { sink: MemorySink::new(&m), stored: vec![None; m.chunks.len()] };
        let r = rx.run(&mut sink, &mut |_| {}).unwrap();
        assert_eq!(sink.sink.parts[0], std::fs::read(dir.path().join("kernel")).unwrap());
        assert_eq!(sink.sink.parts[1], b"tiny initrd");
        // Every stored chunk was handed over in its stored form, exactly as the bundle holds it.
        let mut want = Vec::new();
        for (i, c) in m.chunks.iter().enumerate() {
            if c.is_hole() {
                assert!(sink.stored[i].is_none(), "hole {i}");
            } else {
                b.read_stored(i, &mut want).unwrap();
                assert_eq!(sink.stored[i].as_deref(), Some(&want[..]), "chunk {i} (raw: {})", c.raw);
            }
        }
        assert!(m.chunks.iter().any(|c| c.raw) && m.chunks.iter().any(|c| !c.raw && !c.is_hole()));
        let snd = sender.join().unwrap();
        (r, snd)
    });
    let (r, s) = summary;
    assert!(r.acked, "sender never acknowledged done");
    assert_eq!(s.done(), 1);
    assert_eq!(r.rejected.total(), 0);
    assert!(s.wire_ratio < 1.2, "wire ratio {}", s.wire_ratio);
    eprintln!("{r:?}\n{s:?}");
}

/// A memory sink that also records every chunk's stored form.
struct KeepsStored {
    sink: MemorySink,
    stored: Vec<Option<Vec<u8>>>,
}

impl ChunkSink for KeepsStored {
    fn write_chunk(
        &mut self,
        m: &metalcast_image::Manifest,
        index: usize,
        data: &[u8],
    ) -> Result<(), metalcast_image::BundleError> {
        self.sink.write_chunk(m, index, data)
    }

    fn stored_chunk(
        &mut self,
        _m: &metalcast_image::Manifest,
        index: usize,
        stored: &[u8],
    ) -> Result<(), metalcast_image::BundleError> {
        assert!(self.stored[index].replace(stored.to_vec()).is_none(), "chunk {index} handed over twice");
        Ok(())
    }
}

/// Replays phase 1 once, then phase 2 over and over (a carousel), with a
/// pause between rounds so the receiver's decode thread gets to finish.
struct Replay {
    phases: [Vec<Vec<u8>>; 2],
    phase: usize,
    pos: usize,
    n: usize,
    rounds: usize,
}

impl metalcast_transport::PacketSource for Replay {
    fn recv(&mut self, _timeout: Duration) -> Result<usize, metalcast_transport::TransportError> {
        self.pos += self.n;
        if self.pos >= self.phases[self.phase].len() {
            if self.rounds == 0 {
                self.n = 0;
                return Ok(0);
            }
            std::thread::sleep(Duration::from_millis(20));
            self.rounds -= if self.phase == 1 { 1 } else { 0 };
            self.phase = 1;
            self.pos = 0;
        }
        self.n = (self.phases[self.phase].len() - self.pos).min(64);
        Ok(self.n)
    }
    fn get(&self, i: usize) -> &[u8] {
        &self.phases[self.phase][self.pos + i]
    }
}

/// A key holder (or a corrupting path) can make an authentic symbol carry
/// wrong bytes: the decoded chunk then fails the manifest's hash, is never
/// written, and the block is fetched and decoded again from fresh symbols.
#[test]
fn a_chunk_that_fails_its_hash_is_never_written_and_fetched_afresh() {
    use metalcast_transport::layout::Layout;
    use metalcast_transport::packet;
    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path(), 3);
    let control = UdpSocket::bind("127.0.0.1:0").unwrap();
    let spec = SessionSpec {
        sender: match control.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            a => panic!("{a}"),
        },
        ..spec_for(&b)
    };
    let m = b.manifest.clone();
    let layout = Layout::new(&m, spec.symbol_size);
    let t = usize::from(spec.symbol_size);
    let mut seq = 0u64;
    let mut pkt = |blk: usize, esi: u32, sym: &[u8]| {
        let p = packet::build_symbol(&spec.key, spec.session_id, seq, blk as u32, esi, sym);
        seq += 1;
        p
    };
    // Phase 1: every block's source symbols, except that block 0 lacks ESI 5
    // and gets an authentic repair symbol of garbage instead.
    // Phase 2 (the carousel): block 0's source symbols again.
    let (mut first, mut again) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; layout.padded_len()];
    for (i, blk) in layout.blocks.iter().enumerate() {
        buf.fill(0);
        b.read_data(blk.offset, &mut buf[..blk.len as usize]).unwrap();
        for esi in 0..blk.k {
            let sym = &buf[esi as usize * t..(esi as usize + 1) * t];
            if i != 0 || esi != 5 {
                first.push(pkt(i, esi, sym));
            }
            if i == 0 {
                again.push(pkt(i, esi, sym));
            }
        }
        if i == 0 {
            first.push(pkt(0, layout.k_max, &vec![0xa5; t]));
        }
    }
    let src = Replay { phases: [first, again], phase: 0, pos: 0, n: 0, rounds: 100 };
    let cfg =
        ReceiverConfig { id: 9, idle_timeout: Duration::from_secs(10), linger: Duration::ZERO, ..Default::default() };
    let rx = Receiver::with_source(&spec, &m, cfg, Box::new(src)).unwrap();
    // Counts writes per chunk: a corrupt chunk written and later overwritten would show as two.
    struct Counting(MemorySink, Vec<u32>);
    impl ChunkSink for Counting {
        fn write_chunk(
            &mut self,
            m: &metalcast_image::Manifest,
            index: usize,
            data: &[u8],
        ) -> Result<(), metalcast_image::BundleError> {
            self.1[index] += 1;
            self.0.write_chunk(m, index, data)
        }
    }
    let mut counting = Counting(MemorySink::new(&m), vec![0; m.chunks.len()]);
    let s = rx.run(&mut counting, &mut |_| {}).unwrap();
    let Counting(sink, writes) = counting;
    assert!(writes.iter().all(|&w| w <= 1), "a chunk was written twice: {writes:?}");
    assert_eq!(s.hash_failures, 1, "{s:?}");
    assert!(s.decoded_blocks >= 1, "{s:?}");
    assert_eq!(sink.parts[0], std::fs::read(dir.path().join("kernel")).unwrap(), "a corrupt chunk was written");
    assert_eq!(sink.parts[1], b"tiny initrd");
}

/// UDP GRO on the socket path: the sender's GSO batch reaches a UDP_GRO
/// socket over loopback as one coalesced read (as a NIC's or veth's GRO
/// would deliver it), and `SocketSource` splits it back into exactly the
/// datagrams sent, the short last one included.
#[test]
fn gro_reads_are_split_into_the_datagrams_sent() {
    use metalcast_transport::PacketSource;
    use nix::sys::socket::{setsockopt, sockopt};

    let port = free_port();
    let mut src = metalcast_transport::SocketSource::join_group(
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
        Ipv4Addr::LOCALHOST,
        1000,
    )
    .unwrap();
    if !src.gro() {
        println!("SKIP gro_reads_are_split_into_the_datagrams_sent: this kernel refuses UDP_GRO");
        return;
    }
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    setsockopt(&tx, sockopt::UdpGsoSegment, &1100).unwrap();
    let payload: Vec<u8> = (0..10 * 1100 + 500u32).map(|i| (i * 7 % 251) as u8).collect();
    tx.send_to(&payload, (Ipv4Addr::LOCALHOST, port)).unwrap();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while got.len() < 11 && std::time::Instant::now() < deadline {
        let n = src.recv(Duration::from_millis(200)).unwrap();
        got.extend((0..n).map(|i| src.get(i).to_vec()));
    }
    let want: Vec<Vec<u8>> = payload.chunks(1100).map(<[u8]>::to_vec).collect();
    assert_eq!(got.len(), want.len(), "datagrams received");
    assert!(got == want, "datagrams differ from those sent");
    assert!(src.coalesced_reads() >= 1, "no coalesced read: the split was not exercised");
}

/// An ack is lost as easily as a symbol. A receiver whose done report was
/// acked while the ack never reached it repeats the report; the sender, just
/// finished with everyone, must still answer it rather than leave the
/// receiver to wait out its whole linger.
#[test]
fn a_done_report_repeated_after_the_last_ack_is_acked_again() {
    use metalcast_transport::packet::{self, FailReason, Kind, Report, ReportState};
    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path(), 1);
    let spec = spec_for(&b);
    // This test is the only receiver: it listens where the symbols go (unicast test mode).
    let data = UdpSocket::bind(spec.group_addr()).unwrap();
    data.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let control = UdpSocket::bind("127.0.0.1:0").unwrap();
    control.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // Every report is fresh: its counter is above the last one's.
    let counter = std::cell::Cell::new(0u64);
    let report = |state| {
        counter.set(counter.get() + 1);
        let r = Report {
            receiver: 5,
            counter: counter.get(),
            state,
            reason: FailReason::None,
            blocks_done: 0,
            received: 0,
            rejected: 0,
            max_seq: 0,
            needs: vec![],
        };
        let mut body = Vec::new();
        r.encode(&mut body);
        packet::build(&spec.key, Kind::Report, spec.session_id, 0, 0, &body)
    };
    let nblocks = metalcast_transport::layout::Layout::new(&b.manifest, spec.symbol_size).blocks.len() as u32;
    std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let cfg = SenderConfig { rate: Some(200_000_000), expected_receivers: 1, ..Default::default() };
            Sender::new(&spec, &b, cfg).unwrap().run(&mut |_| {}).unwrap()
        });
        // Report "receiving" (hearing the group) until a poll says the first pass is over.
        let mut buf = vec![0u8; 65536];
        loop {
            control.send_to(&report(ReportState::Receiving), spec.sender).unwrap();
            let n = data.recv(&mut buf).expect("the sender polls once its first pass is over");
            if let Ok((h, body)) = packet::open(&spec.key, spec.session_id, 0, &buf[..n])
                && h.kind == Kind::Poll
                && u32::from_le_bytes(body.try_into().unwrap()) >= nblocks
            {
                break;
            }
        }
        let ack = |buf: &mut [u8]| -> bool {
            while let Ok(n) = control.recv(buf) {
                if let Ok((h, body)) = packet::open(&spec.key, spec.session_id, 0, &buf[..n])
                    && h.kind == Kind::Ack
                {
                    assert_eq!(body, 5u64.to_le_bytes());
                    return true;
                }
            }
            false
        };
        control.send_to(&report(ReportState::Done), spec.sender).unwrap();
        assert!(ack(&mut buf), "first done report acked");
        // That ack "was lost": the receiver repeats its report 50 ms later, as
        // `Receiver` does (by then the sender has left its main loop).
        std::thread::sleep(Duration::from_millis(50));
        control.send_to(&report(ReportState::Done), spec.sender).unwrap();
        assert!(ack(&mut buf), "a repeated done report after the session ended was not acked");
        let summary = sender.join().unwrap();
        assert_eq!(summary.done(), 1);
    });
}

/// A sender whose owner stops it (the control plane shutting down) returns
/// `Cancelled` within a loop turn, both while it waits for receivers to join
/// and while it sends, instead of running out its join timeout or deadline.
#[test]
fn a_cancelled_sender_stops_at_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path(), 1);
    let spec = spec_for(&b);
    let cancel = Arc::new(AtomicBool::new(false));
    let cfg = SenderConfig {
        rate: Some(1_000_000),
        expected_receivers: 1,
        join_timeout: Duration::from_secs(60),
        cancel: Some(Arc::clone(&cancel)),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let result = std::thread::scope(|s| {
        let sender = s.spawn(|| Sender::new(&spec, &b, cfg).unwrap().run(&mut |_| {}));
        std::thread::sleep(Duration::from_millis(300));
        cancel.store(true, Ordering::Relaxed);
        sender.join().unwrap()
    });
    match result {
        Err(metalcast_transport::TransportError::Cancelled { receivers_left }) => assert_eq!(receivers_left, 1),
        other => panic!("expected Cancelled, got {other:?}"),
    }
    // Bound, not a speed target: far below the 60 s join timeout it would otherwise wait out.
    assert!(started.elapsed() < Duration::from_secs(30), "cancel was not honoured");
}

fn v4(a: std::net::SocketAddr) -> SocketAddrV4 {
    match a {
        std::net::SocketAddr::V4(a) => a,
        a => panic!("{a} is not IPv4"),
    }
}

/// Reports are authentic but were not fresh: an attacker who captured a
/// receiver's early reports and resends them (from its own address) after
/// that receiver is done moved it back to "receiving", kept the sender
/// waiting and ended the session with the receiver "timed-out" at the
/// attacker's address. Now each report carries a counter that must rise:
/// replays are rejected as stale and counted, and the sender finishes at once
/// with the receiver done at its real address.
#[test]
fn replayed_reports_are_rejected_as_stale_and_change_nothing() {
    use metalcast_transport::packet::{self, Kind, Report, ReportState};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path(), 4);
    let spec = spec_for(&b);
    let m = b.manifest.clone();
    // An on-path tap between receiver and sender: a relay that keeps a copy
    // of every report. The sender sees the receiver at `near_sender`'s address.
    let near_receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let near_sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&near_receiver, &near_sender] {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    }
    let receiver_addr = v4(near_sender.local_addr().unwrap());
    let rx_spec = SessionSpec { sender: v4(near_receiver.local_addr().unwrap()), ..spec.clone() };
    let captured: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let reply_to = Mutex::new(None);
    let stop = AtomicBool::new(false);
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    // The relay stops when told, or on its own should the test fail first.
    let relaying = || !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(90);

    std::thread::scope(|s| {
        s.spawn(|| {
            let mut buf = vec![0u8; 2048];
            while relaying() {
                if let Ok((n, from)) = near_receiver.recv_from(&mut buf) {
                    *reply_to.lock().unwrap() = Some(from);
                    captured.lock().unwrap().push(buf[..n].to_vec());
                    let _ = near_sender.send_to(&buf[..n], spec.sender);
                }
            }
        });
        s.spawn(|| {
            let mut buf = vec![0u8; 2048];
            while relaying() {
                if let Ok(n) = near_sender.recv(&mut buf)
                    && let Some(to) = *reply_to.lock().unwrap()
                {
                    let _ = near_receiver.send_to(&buf[..n], to);
                }
            }
        });
        let sender = s.spawn(|| {
            let cfg = SenderConfig {
                rate: Some(200_000_000),
                expected_receivers: 1,
                // Longer than the attack below: a sender that believed the
                // replays would still be waiting when the attacker gives up.
                receiver_timeout: Duration::from_secs(30),
                ..Default::default()
            };
            Sender::new(&spec, &b, cfg).unwrap().run(&mut |_| {})
        });
        let cfg = ReceiverConfig { id: 7, idle_timeout: Duration::from_secs(20), ..Default::default() };
        let r = Receiver::new(&rx_spec, &m, cfg).unwrap().run(&mut MemorySink::new(&m), &mut |_| {}).unwrap();
        assert!(r.acked, "the done report was never acked");
        // The captured reports sent before the first done report: hello and receiving.
        let early: Vec<Vec<u8>> = captured
            .lock()
            .unwrap()
            .iter()
            .take_while(|p| {
                let (h, body) = packet::open(&spec.key, spec.session_id, 0, p).unwrap();
                h.kind == Kind::Report && Report::decode(body).unwrap().state != ReportState::Done
            })
            .cloned()
            .collect();
        assert!(!early.is_empty(), "no early report was captured");
        // The attack: those reports again and again, from the attacker's address.
        let attack = Instant::now();
        let mut replays = 0u64;
        while !sender.is_finished() && attack.elapsed() < Duration::from_secs(20) {
            for p in &early {
                attacker.send_to(p, spec.sender).unwrap();
                replays += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let finished_after = attack.elapsed();
        stop.store(true, Ordering::Relaxed);
        let summary = sender.join().unwrap().expect("the session succeeds");
        eprintln!("{replays} replays over {finished_after:?}: {summary:?}");
        let rx = &summary.receivers[..];
        assert_eq!(rx.len(), 1, "{rx:?}");
        assert_eq!(rx[0].state, "done", "a replay moved the receiver back: {rx:?}");
        assert_eq!(rx[0].addr, receiver_addr.to_string(), "the receiver is recorded at another address");
        assert!(summary.rejected_by_reason.stale > 0, "replays not counted as stale: {:?}", summary.rejected_by_reason);
        assert_eq!(summary.rejected_reports, summary.rejected_by_reason.stale, "{:?}", summary.rejected_by_reason);
        // A bound against a sender held up by the replays, not a speed target:
        // the farewell ends 200 ms after the last done report.
        assert!(finished_after < Duration::from_secs(10), "the sender kept running {finished_after:?} under replays");
    });
}

/// The offset in the bundle file of a stored chunk's data.
fn chunk_file_offset(b: &Bundle, chunk: usize) -> u64 {
    metalcast_image::format::DATA_OFFSET + b.manifest.chunks[chunk].offset.expect("a stored chunk")
}

/// A bundle with one flipped byte in one chunk used to be streamed as is:
/// every receiver decoded that block, failed its hash, discarded it and
/// asked again, forever. The sender checks every chunk against the manifest
/// before it sends it, and refuses the bundle naming the chunk; nothing of
/// that chunk goes on the wire.
#[test]
fn the_sender_refuses_a_bundle_with_a_corrupt_chunk() {
    use metalcast_transport::packet::{self, FailReason, Kind, Report, ReportState};
    use std::os::unix::fs::FileExt;

    let dir = tempfile::tempdir().unwrap();
    let path = {
        let b = bundle(dir.path(), 3);
        b.path().to_path_buf()
    };
    let b = Bundle::open(&path).unwrap();
    let (block, victim) = b.manifest.stored_chunks().enumerate().nth(1).map(|(i, c)| (i, c.index)).unwrap();
    let at = chunk_file_offset(&b, victim) + u64::from(b.manifest.chunks[victim].stored) / 2;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_all_at(&[byte[0] ^ 0x01], at).unwrap();
    drop(f);
    let b = Bundle::open(&path).unwrap();
    let spec = spec_for(&b);
    // Listens where the symbols go (unicast test mode), and reports "receiving"
    // so that the first pass starts.
    let data = UdpSocket::bind(spec.group_addr()).unwrap();
    data.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let control = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut counter = 0;
    let mut receiving = || {
        counter += 1;
        let r = Report {
            receiver: 1,
            counter,
            state: ReportState::Receiving,
            reason: FailReason::None,
            blocks_done: 0,
            received: 0,
            rejected: 0,
            max_seq: 0,
            needs: vec![],
        };
        let mut body = Vec::new();
        r.encode(&mut body);
        let _ = control.send_to(&packet::build(&spec.key, Kind::Report, spec.session_id, 0, 0, &body), spec.sender);
    };
    let started = std::time::Instant::now();
    let result = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let cfg = SenderConfig {
                rate: Some(50_000_000),
                expected_receivers: 1,
                join_timeout: Duration::from_secs(2),
                receiver_timeout: Duration::from_secs(5),
                deadline: Some(Duration::from_secs(60)),
                ..Default::default()
            };
            Sender::new(&spec, &b, cfg).unwrap().run(&mut |_| {})
        });
        let mut buf = vec![0u8; 65536];
        while !sender.is_finished() {
            receiving();
            if let Ok(n) = data.recv(&mut buf)
                && let Ok((h, _)) = packet::open(&spec.key, spec.session_id, 0, &buf[..n])
            {
                assert!(
                    !(h.kind == Kind::Symbol && h.a as usize == block),
                    "a symbol of the corrupt chunk's block was sent"
                );
            }
        }
        sender.join().unwrap()
    });
    match result {
        Err(metalcast_transport::TransportError::CorruptChunk { chunk, source }) => {
            assert_eq!(chunk, victim, "{source}");
            eprintln!("refused: chunk {chunk}: {source}");
        }
        other => panic!("expected CorruptChunk for chunk {victim}, got {other:?}"),
    }
    // Bound, not a speed target: far below the deadline it would otherwise run into.
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// Packets of a corrupt block, authentic under the session key (a sender
/// whose copy of the chunk is wrong, or a key holder): the receiver decodes
/// the block, fails its hash, discards it and asks again; the carousel sends
/// the same bytes again. After `MAX_HASH_FAILURES` failures of the block it
/// stops with `CorruptBlock` and tells the sender why, instead of looping
/// until the carousel stops.
#[test]
fn a_block_that_keeps_failing_its_hash_stops_the_receiver() {
    use metalcast_transport::layout::Layout;
    use metalcast_transport::packet::{self, FailReason, Kind, Report, ReportState};
    use metalcast_transport::receiver::MAX_HASH_FAILURES;

    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path(), 3);
    let control = UdpSocket::bind("127.0.0.1:0").unwrap();
    control.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let spec = SessionSpec { sender: v4(control.local_addr().unwrap()), ..spec_for(&b) };
    let m = b.manifest.clone();
    let layout = Layout::new(&m, spec.symbol_size);
    let t = usize::from(spec.symbol_size);
    let mut seq = 0u64;
    let mut pkt = |blk: usize, esi: u32, sym: &[u8]| {
        let p = packet::build_symbol(&spec.key, spec.session_id, seq, blk as u32, esi, sym);
        seq += 1;
        p
    };
    // Phase 1: every block's source symbols, block 0's from a copy of its
    // stored bytes with one byte flipped. Phase 2, the carousel: block 0's
    // (corrupt) source symbols again and again.
    let (mut first, mut again) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; layout.padded_len()];
    for (i, blk) in layout.blocks.iter().enumerate() {
        buf.fill(0);
        b.read_data(blk.offset, &mut buf[..blk.len as usize]).unwrap();
        if i == 0 {
            buf[blk.len as usize / 2] ^= 0x01;
        }
        for esi in 0..blk.k {
            let sym = &buf[esi as usize * t..(esi as usize + 1) * t];
            first.push(pkt(i, esi, sym));
            if i == 0 {
                again.push(pkt(i, esi, sym));
            }
        }
    }
    let src = Replay { phases: [first, again], phase: 0, pos: 0, n: 0, rounds: 200 };
    let cfg =
        ReceiverConfig { id: 9, idle_timeout: Duration::from_secs(10), linger: Duration::ZERO, ..Default::default() };
    let rx = Receiver::with_source(&spec, &m, cfg, Box::new(src)).unwrap();
    let mut sink = MemorySink::new(&m);
    match rx.run(&mut sink, &mut |_| {}) {
        Err(metalcast_transport::TransportError::CorruptBlock { block, chunk, failures }) => {
            assert_eq!((block, chunk, failures), (0, layout.blocks[0].chunk, MAX_HASH_FAILURES));
        }
        other => panic!("expected CorruptBlock, got {other:?}"),
    }
    // The sender hears why: a failed report with its reason (after the need reports).
    let mut buf = vec![0u8; 2048];
    let failed = std::iter::from_fn(|| control.recv(&mut buf).ok().map(|n| buf[..n].to_vec()))
        .map(|p| {
            let (h, body) = packet::open(&spec.key, spec.session_id, 0, &p).unwrap();
            assert_eq!(h.kind, Kind::Report);
            Report::decode(body).unwrap()
        })
        .find(|r| r.state == ReportState::Failed)
        .expect("a failed report");
    assert_eq!((failed.receiver, failed.reason), (9, FailReason::CorruptBlock));
}

/// Records the datagrams it passes on while `recording` is set: a tap on the
/// receiver's link.
struct Recording {
    inner: metalcast_transport::SocketSource,
    log: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    recording: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl metalcast_transport::PacketSource for Recording {
    fn recv(&mut self, timeout: Duration) -> Result<usize, metalcast_transport::TransportError> {
        let n = self.inner.recv(timeout)?;
        if self.recording.load(std::sync::atomic::Ordering::Relaxed) {
            self.log.lock().unwrap().extend((0..n).map(|i| self.inner.get(i).to_vec()));
        }
        Ok(n)
    }
    fn get(&self, i: usize) -> &[u8] {
        self.inner.get(i)
    }
}

/// The sender dies mid-session and an attacker replays the session's
/// captured data packets into the receiver's socket: authentic, but nothing
/// new. They used to restart the idle timeout with every packet (31 s
/// instead of 5 s in the field); now only packets that advance the session
/// do, and the receiver times out as if the replays were not there.
#[test]
fn replayed_data_packets_do_not_keep_an_orphaned_receiver_alive() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path(), 8);
    let spec = spec_for(&b);
    let m = b.manifest.clone();
    let idle_timeout = Duration::from_secs(3);
    let log = Arc::new(Mutex::new(Vec::new()));
    let recording = Arc::new(AtomicBool::new(true));
    let source = Recording {
        inner: metalcast_transport::SocketSource::join(&spec, Ipv4Addr::LOCALHOST).unwrap(),
        log: Arc::clone(&log),
        recording: Arc::clone(&recording),
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let receiver_ended = AtomicBool::new(false);
    std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            let cfg = ReceiverConfig { id: 3, idle_timeout, linger: Duration::ZERO, ..Default::default() };
            let rx = Receiver::with_source(&spec, &m, cfg, Box::new(source)).unwrap();
            let r = rx.run(&mut MemorySink::new(&m), &mut |_| {});
            receiver_ended.store(true, Ordering::Relaxed);
            (r, Instant::now())
        });
        // A slow sender, stopped part way through its first pass.
        let sender = s.spawn(|| {
            let cfg = SenderConfig {
                rate: Some(1_000_000),
                adaptive: false,
                expected_receivers: 1,
                cancel: Some(Arc::clone(&cancel)),
                ..Default::default()
            };
            Sender::new(&spec, &b, cfg).unwrap().run(&mut |_| {})
        });
        std::thread::sleep(Duration::from_millis(1500));
        cancel.store(true, Ordering::Relaxed);
        assert!(
            matches!(sender.join().unwrap(), Err(metalcast_transport::TransportError::Cancelled { .. })),
            "the sender was to be stopped before the receiver finished"
        );
        let sender_gone = Instant::now();
        recording.store(false, Ordering::Relaxed);
        let captured = std::mem::take(&mut *log.lock().unwrap());
        assert!(!captured.is_empty(), "nothing was captured");
        // The replay: the captured packets into the receiver's socket, over and over.
        let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut replays = 0u64;
        'replay: while sender_gone.elapsed() < Duration::from_secs(30) {
            for chunk in captured.chunks(32) {
                if receiver_ended.load(Ordering::Relaxed) {
                    break 'replay;
                }
                for p in chunk {
                    let _ = attacker.send_to(p, spec.group_addr());
                    replays += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let (result, ended) = receiver.join().unwrap();
        let after = ended.duration_since(sender_gone);
        eprintln!("{replays} packets replayed; receiver ended {after:?} after the sender: {result:?}");
        assert!(
            matches!(result, Err(metalcast_transport::TransportError::Timeout { .. })),
            "expected a timeout, got {result:?}"
        );
        // A bound against a receiver kept alive by the replays, not a speed target.
        assert!(after < idle_timeout + Duration::from_secs(5), "timed out {after:?} after the sender died");
    });
}

/// A plan covers a block's need only for a bounded time: a receiver whose
/// need a plan covers stays silent about it, but if the planned burst never
/// comes it asks anyway once the plan is [`feedback::PLAN_HOLD`] old, and
/// an attacker replaying the captured plan (an authentic packet, not newer
/// than what the receiver has seen) cannot keep it silent longer.
#[test]
fn a_plan_silences_a_receiver_only_for_a_while_and_a_replayed_one_not_at_all() {
    use metalcast_transport::feedback;
    use metalcast_transport::layout::Layout;
    use metalcast_transport::packet::{self, Kind, Plan, PlanEntry, Report};
    use std::time::Instant;

    let dir = tempfile::tempdir().unwrap();
    let b = bundle(dir.path(), 3);
    let control = UdpSocket::bind("127.0.0.1:0").unwrap();
    control.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let spec = SessionSpec { sender: v4(control.local_addr().unwrap()), ..spec_for(&b) };
    let m = b.manifest.clone();
    let layout = Layout::new(&m, spec.symbol_size);
    let t = usize::from(spec.symbol_size);
    let data = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, spec.port);
    let mut seq = 0u64;
    let mut send = |kind: Kind, a: u32, esi: u32, body: &[u8]| {
        let p = if kind == Kind::Symbol {
            packet::build_symbol(&spec.key, spec.session_id, seq, a, esi, body)
        } else {
            packet::build(&spec.key, kind, spec.session_id, seq, a, body)
        };
        seq += 1;
        data.send_to(&p, to).unwrap();
        p
    };
    let plan = |entries: Vec<PlanEntry>| {
        let mut body = Vec::new();
        Plan { status_ms: 5000, backoff_us: 0, entries }.encode(&mut body);
        body
    };
    // Every report that asks for block 0, with when it came.
    let asks_for_block_0 = |until: Instant| -> Vec<(Instant, u32)> {
        let mut buf = vec![0u8; 2048];
        let mut out = Vec::new();
        while Instant::now() < until {
            if let Ok(n) = control.recv(&mut buf) {
                let (h, body) = packet::open(&spec.key, spec.session_id, 0, &buf[..n]).unwrap();
                assert_eq!(h.kind, Kind::Report);
                let r = Report::decode(body).unwrap();
                out.extend(r.needs.iter().filter(|(blk, _)| *blk == 0).map(|&(_, need)| (Instant::now(), need)));
            }
        }
        out
    };

    std::thread::scope(|s| {
        let cfg = ReceiverConfig {
            id: 3,
            idle_timeout: Duration::from_secs(3),
            linger: Duration::ZERO,
            ..Default::default()
        };
        let rx = s.spawn(|| Receiver::new(&spec, &m, cfg).unwrap().run(&mut MemorySink::new(&m), &mut |_| {}));
        std::thread::sleep(Duration::from_millis(100));
        // Plans from now on: status reports only every 5 s.
        send(Kind::Plan, 0, 0, &plan(vec![]));
        // Block 0 without its first 5 source symbols, a plan of 50 repair
        // symbols for it (more than it needs), then block 1's first symbol,
        // which closes block 0. The planned burst never comes.
        let mut buf = vec![0u8; layout.padded_len()];
        let blk = layout.blocks[0];
        b.read_data(blk.offset, &mut buf[..blk.len as usize]).unwrap();
        for esi in 5..blk.k {
            send(Kind::Symbol, 0, esi, &buf[esi as usize * t..(esi as usize + 1) * t]);
        }
        let covering = plan(vec![PlanEntry { block: 0, first: layout.k_max, count: 50 }]);
        let planned_at = Instant::now();
        let captured = send(Kind::Plan, 0, 0, &covering);
        let blk1 = layout.blocks[1];
        b.read_data(blk1.offset, &mut buf[..blk1.len as usize]).unwrap();
        send(Kind::Symbol, 1, 0, &buf[..t]);
        // The attacker replays the captured plan every 10 ms meanwhile.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_attack = std::sync::Arc::clone(&stop);
        let attacker = std::thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            while !stop_attack.load(std::sync::atomic::Ordering::Relaxed) {
                sock.send_to(&captured, to).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let asks = asks_for_block_0(planned_at + Duration::from_secs(1));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        attacker.join().unwrap();
        let (first, need) = *asks.first().expect("the receiver asked for block 0 once the plan's hold ran out");
        assert!(
            first.duration_since(planned_at) >= feedback::PLAN_HOLD - Duration::from_millis(10),
            "asked {:?} after a plan that covered it",
            first.duration_since(planned_at)
        );
        assert_eq!(need, 5, "asks for the 5 missing source symbols");
        // And it keeps asking while nothing comes (at most every ASK_RETRY).
        assert!(asks.len() >= 2, "{asks:?}");
        // A plan that does not cover the need does not silence it at all.
        let short = plan(vec![PlanEntry { block: 0, first: layout.k_max + 50, count: 2 }]);
        send(Kind::Plan, 0, 0, &short);
        assert!(!asks_for_block_0(Instant::now() + Duration::from_millis(500)).is_empty());
        // The receiver is still waiting for its data: it times out, as it should.
        let r = rx.join().unwrap();
        assert!(matches!(r, Err(metalcast_transport::TransportError::Timeout { .. })), "{r:?}");
    });
}
