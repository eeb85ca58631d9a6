//! `Netboot`: binds the sockets of the configured mode and runs their tasks until shutdown.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backend::Backend;
use crate::config::{Config, Mode};
use crate::counters::Counters;
use crate::dhcp::Listener;
use crate::error::NetbootError;
use crate::handler::{DhcpHandler, Via};
use crate::peers::Peers;
use crate::{sys, tftp};

/// How long [`Netboot::stopped`] waits for each task after cancellation.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// The bound addresses of a running server (`None` = not listening).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddrs {
    /// DHCP (full or proxy mode).
    pub dhcp: Option<SocketAddr>,
    /// PXE boot-server port (proxy mode with `proxy_port`).
    pub pxe: Option<SocketAddr>,
    /// TFTP (`tftp_port` != 0).
    pub tftp: Option<SocketAddr>,
}

/// A running netboot server.
#[derive(Debug)]
pub struct Netboot {
    addrs: LocalAddrs,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

fn dhcp_socket(what: &'static str, port: u16, cfg: &Config) -> Result<UdpSocket, NetbootError> {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    let std = sys::udp_socket(what, addr, cfg.interface.as_deref())?;
    UdpSocket::from_std(std).map_err(|source| NetbootError::Bind { what, addr, source })
}

fn local(what: &'static str, s: &UdpSocket, port: u16) -> Result<SocketAddr, NetbootError> {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    s.local_addr().map_err(|source| NetbootError::Bind { what, addr, source })
}

impl Netboot {
    /// Binds every socket of `cfg.mode` (errors here are startup errors naming the port or
    /// interface) and spawns the tasks; they stop when `shutdown` is cancelled.
    pub async fn start<B: Backend>(
        cfg: Config,
        backend: Arc<B>,
        counters: Arc<Counters>,
        shutdown: CancellationToken,
    ) -> Result<Netboot, NetbootError> {
        cfg.validate().map_err(NetbootError::Config)?;
        let cfg = Arc::new(cfg);
        let peers = Arc::new(Peers::default());
        let mut addrs = LocalAddrs { dhcp: None, pxe: None, tftp: None };
        let mut listeners = Vec::new();
        if cfg.mode != Mode::Off {
            let socket = dhcp_socket("DHCP", cfg.dhcp_port, &cfg)?;
            let bound = local("DHCP", &socket, cfg.dhcp_port)?;
            addrs.dhcp = Some(bound);
            listeners.push(("DHCP", socket, Via::Dhcp(bound.port())));
        }
        if cfg.mode == Mode::Proxy
            && let Some(port) = cfg.proxy_port
        {
            let socket = dhcp_socket("proxyDHCP (PXE 4011)", port, &cfg)?;
            let bound = local("proxyDHCP (PXE 4011)", &socket, port)?;
            addrs.pxe = Some(bound);
            listeners.push(("proxyDHCP (PXE 4011)", socket, Via::Pxe(bound.port())));
        }
        let mut tasks = Vec::new();
        if cfg.tftp_port != 0 {
            let (bound, task) =
                tftp::start(&cfg, Arc::clone(&backend), Arc::clone(&counters), Arc::clone(&peers), shutdown.clone())
                    .await?;
            addrs.tftp = Some(bound);
            tasks.push(("TFTP", task));
        }
        let handler = Arc::new(DhcpHandler::with_peers(Arc::clone(&cfg), backend, Arc::clone(&counters), peers));
        let inflight = Arc::new(Semaphore::new(cfg.max_inflight));
        for (what, socket, via) in listeners {
            let listener = Listener {
                socket: Arc::new(socket),
                handler: Arc::clone(&handler),
                via,
                counters: Arc::clone(&counters),
                inflight: Arc::clone(&inflight),
            };
            tasks.push((what, tokio::spawn(listener.serve(shutdown.clone()))));
        }
        info!(mode = %cfg.mode, ?addrs, "netboot started");
        Ok(Netboot { addrs, tasks })
    }

    /// The bound addresses (tests bind port 0 and read them here).
    pub fn local_addrs(&self) -> LocalAddrs {
        self.addrs
    }

    /// Waits (at most 5 s per task) for the tasks to end after the shutdown token was cancelled;
    /// tasks still running then are aborted.
    pub async fn stopped(self) {
        for (what, mut task) in self.tasks {
            if tokio::time::timeout(STOP_WAIT, &mut task).await.is_err() {
                warn!("netboot {what} task did not stop in {STOP_WAIT:?}; aborting it");
                task.abort();
            }
        }
    }
}
