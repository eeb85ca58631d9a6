//! Shared parts of the node-runtime integration tests: a runtime-API server
//! and a multicast sender running inside a fabric host's namespace.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metalcast_fabric::Host;
use metalcast_image::{Bundle, SecretKey};
use metalcast_runtime_api::server::{NodeRecord, RuntimeApi};
use metalcast_runtime_api::{Action, Deploy, Handover, Phase, Status, Target};
use metalcast_transport::{Sender, SenderConfig, SenderSummary, SessionSpec};

/// The control-plane side, served from a thread inside a host's namespace.
pub struct Server {
    pub api: RuntimeApi,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Serves `api` on `host`'s address, `port`; returns once it listens.
    pub fn start(host: &Host, port: u16, api: RuntimeApi) -> Server {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let addr = SocketAddrV4::new(host.ipv4(), port);
        let a = api.clone();
        let thread = host
            .spawn_in(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    let l = tokio::net::TcpListener::bind(addr).await.expect("bind the API port");
                    ready_tx.send(()).unwrap();
                    a.serve(l, async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
                });
            })
            .unwrap();
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("server listening");
        Server { api, stop: Some(stop), thread: Some(thread) }
    }

    /// Stops serving (a control-plane restart, as the node sees it).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Polls `f` until it returns Some or `timeout` passes (a deadline, not a timed assertion).
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < timeout, "gave up after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for `node`'s check-in number `n` (1-based) and returns the record.
pub fn wait_checkins(api: &RuntimeApi, node: &str, n: usize, timeout: Duration) -> NodeRecord {
    wait_until(timeout, &format!("check-in #{n} of {node}"), || api.node(node).filter(|r| r.checkins.len() >= n))
}

/// Waits until `node` reported `phase` for `instruction`; panics on a failed phase.
pub fn wait_phase(api: &RuntimeApi, node: &str, instruction: u64, phase: Phase, timeout: Duration) -> NodeRecord {
    wait_until(timeout, &format!("{node}: {phase:?} of instruction {instruction}"), || {
        let r = api.node(node)?;
        if let Some(f) = r.reports.iter().find(|x| x.instruction == instruction && x.status == Status::Failed) {
            panic!("{node}: phase {:?} failed (exit class {}): {}", f.phase, f.exit_code, f.detail);
        }
        r.reports.iter().any(|x| x.instruction == instruction && x.phase == phase).then_some(r)
    })
}

/// A fresh session for `bundle` from `sender` on a group unique to this process.
pub fn session(bundle: &Bundle, sender: Ipv4Addr, group_last: u8) -> SessionSpec {
    let port = 40000 + (std::process::id() % 10000) as u16 * 2;
    SessionSpec::new(
        &bundle.manifest.root_hash,
        SocketAddrV4::new(Ipv4Addr::new(239, 77, 6, group_last), port),
        SocketAddrV4::new(sender, port + 1),
        1500,
    )
    .unwrap()
}

/// A deploy instruction for `bundle` over `spec`.
pub fn deploy(bundle: &Bundle, spec: &SessionSpec, target: Target, handover: Handover, append: &str) -> Action {
    Action::Deploy(Deploy {
        session: spec.clone(),
        manifest_b64: Deploy::encode_manifest(&bundle.signed_manifest().to_bytes()),
        target,
        handover,
        cmdline_append: append.into(),
        idle_timeout_secs: 60,
    })
}

/// Starts a sender for `bundle` on `host`, waiting for `receivers`; join with `.join()`.
pub fn start_sender(
    host: &Host,
    bundle: &Path,
    spec: &SessionSpec,
    receivers: usize,
    rate_mbit: u64,
) -> std::thread::JoinHandle<SenderSummary> {
    let (bundle, spec, local) = (bundle.to_path_buf(), spec.clone(), host.ipv4());
    host.spawn_in(move || {
        let b = Bundle::open(&bundle).unwrap();
        let cfg = SenderConfig {
            local,
            rate: Some(rate_mbit * 1_000_000 / 8),
            expected_receivers: receivers,
            join_timeout: Duration::from_secs(120),
            receiver_timeout: Duration::from_secs(60),
            ..Default::default()
        };
        Sender::new(&spec, &b, cfg).unwrap().run(&mut |_| {}).unwrap()
    })
    .unwrap()
}

/// A signing key pair in `dir`: (secret, path of the public key file).
pub fn keypair(dir: &Path) -> (SecretKey, std::path::PathBuf) {
    let k = SecretKey::generate();
    k.save(&dir.join("site")).unwrap();
    (k, dir.join("site.pub"))
}

/// A child process killed (and reaped) on drop.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub type Shared<T> = Arc<std::sync::Mutex<T>>;
