//! The DHCP receive loop of one socket (67 or 4011): admit in line, answer in bounded tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dhcproto::Encodable;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::backend::Backend;
use crate::counters::{Counters, inc};
use crate::handler::{DhcpHandler, Reply, Via};

/// Largest datagram read; longer ones are truncated and then fail to decode (counted malformed).
const MAX_DATAGRAM: usize = 4096;
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) struct Listener<B> {
    pub(crate) socket: Arc<UdpSocket>,
    pub(crate) handler: Arc<DhcpHandler<B>>,
    pub(crate) via: Via,
    pub(crate) counters: Arc<Counters>,
    pub(crate) inflight: Arc<Semaphore>,
}

impl<B: Backend> Listener<B> {
    /// Runs until `shutdown` is cancelled; in-flight answers are then aborted.
    pub(crate) async fn serve(self, shutdown: CancellationToken) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut tasks = JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            let received = tokio::select! {
                () = shutdown.cancelled() => break,
                r = self.socket.recv_from(&mut buf) => r,
            };
            let (len, source) = match received {
                Ok(ok) => ok,
                Err(e) => {
                    warn!(error = %e, "DHCP receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Some((msg, req)) = self.handler.admit(&buf[..len], Instant::now()) else {
                continue;
            };
            let Ok(permit) = Arc::clone(&self.inflight).try_acquire_owned() else {
                inc(&self.counters.busy);
                debug!(mac = %req.mac, "DHCP request dropped: too many backend calls in flight");
                continue;
            };
            let handler = Arc::clone(&self.handler);
            let socket = Arc::clone(&self.socket);
            let counters = Arc::clone(&self.counters);
            let via = self.via;
            tasks.spawn(async move {
                let _permit = permit;
                if let Some(reply) = handler.respond(&msg, &req, source, via).await {
                    send(&socket, &reply, &counters).await;
                }
            });
        }
        tasks.shutdown().await;
    }
}

async fn send(socket: &UdpSocket, reply: &Reply, counters: &Counters) {
    let bytes = match reply.message.to_vec() {
        Ok(b) => b,
        Err(e) => {
            inc(&counters.send_errors);
            warn!(error = %e, "cannot encode DHCP reply");
            return;
        }
    };
    let to: SocketAddr = reply.to;
    match tokio::time::timeout(SEND_TIMEOUT, socket.send_to(&bytes, to)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            inc(&counters.send_errors);
            warn!(error = %e, %to, "cannot send DHCP reply");
        }
        Err(_) => {
            inc(&counters.send_errors);
            warn!(%to, "DHCP reply send timed out");
        }
    }
}
