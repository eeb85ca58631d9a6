//! `metalcast-node receive` stopped by SIGTERM or SIGINT (no privileges
//! needed: the session is loopback unicast, and no sender ever comes). The
//! signal used to end the process on the spot and leave its `.partial`
//! outputs behind; now the receive stops, removes them as on any other
//! failure, and exits with 128 + the signal's number.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use metalcast_image::{Bundle, spec_from_inputs};
use metalcast_transport::{SessionKey, SessionSpec};
use nix::sys::signal::Signal;

const NODE: &str = env!("CARGO_BIN_EXE_metalcast-node");

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A small unsigned bundle's manifest and a loopback session spec for it,
/// written to `dir`.
fn session_files(dir: &Path) {
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(dir.join("kernel"), &data).unwrap();
    std::fs::write(dir.join("initrd"), b"tiny initrd").unwrap();
    let spec = spec_from_inputs("t", Some(dir.join("kernel")), vec![dir.join("initrd")], "ro".into(), None, None, None)
        .unwrap();
    metalcast_image::build(&spec, &dir.join("b.mcb"), None, &indicatif::ProgressBar::hidden()).unwrap();
    let b = Bundle::open(&dir.join("b.mcb")).unwrap();
    std::fs::write(dir.join("image.mcm"), b.signed_manifest().to_bytes()).unwrap();
    let session = SessionSpec {
        session_id: 11,
        group: Ipv4Addr::LOCALHOST,
        port: free_port(),
        sender: SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port()),
        key: SessionKey::generate(),
        symbol_size: SessionSpec::symbol_size_for_mtu(1500).unwrap(),
        root_hash: b.manifest.root_hash.clone(),
    };
    std::fs::write(dir.join("session.json"), serde_json::to_vec(&session).unwrap()).unwrap();
}

fn partials(out: &Path) -> Vec<String> {
    std::fs::read_dir(out)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".partial"))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits at most `limit` for `child` to exit.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn stopped_by(signal: Signal, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    session_files(dir.path());
    let out = dir.path().join("out");
    let mut child = Command::new(NODE)
        .args(["receive", "--allow-unsigned", "--quiet", "--rx-path", "socket", "--iface-addr", "127.0.0.1"])
        .args(["--timeout", "120", "--manifest"])
        .arg(dir.path().join("image.mcm"))
        .arg("--session")
        .arg(dir.path().join("session.json"))
        .arg("--output")
        .arg(&out)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The outputs exist as `.partial` files while the receive waits for data.
    let start = Instant::now();
    while partials(&out).len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(30), "no partial outputs appeared");
        assert!(child.try_wait().unwrap().is_none(), "the receiver exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    // Bound against a receiver that ignores the signal (it would wait out its 120 s timeout).
    let status = wait_bounded(&mut child, Duration::from_secs(30)).expect("the receiver did not stop");
    assert_eq!(status.code(), Some(code), "{signal}: {status}");
    assert_eq!(partials(&out), Vec::<String>::new(), "{signal} left partial outputs behind");
}

#[test]
fn sigterm_stops_the_receiver_and_removes_its_partial_outputs() {
    stopped_by(Signal::SIGTERM, 143);
}

#[test]
fn sigint_stops_the_receiver_and_removes_its_partial_outputs() {
    stopped_by(Signal::SIGINT, 130);
}
