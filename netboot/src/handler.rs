//! The request handler: bytes -> checks -> backend -> reply. The socket loop (`dhcp.rs`) and the
//! tests drive the same code.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dhcproto::v4::{Message, MessageType};
use tracing::{debug, warn};

use crate::backend::Backend;
use crate::classify::{self, Client, Request};
use crate::config::{Config, Mode};
use crate::counters::{Counters, inc};
use crate::decide::{BootFile, Decision, boot_file};
use crate::error::BackendError;
use crate::event::Event;
use crate::peers::Peers;
use crate::ratelimit::RateLimit;
use crate::reply::{self, Answer};

/// Which socket a request came in on, with its bound port (for events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The DHCP server port (67).
    Dhcp(u16),
    /// The PXE boot-server port (4011), proxy mode.
    Pxe(u16),
}

/// A reply ready to send.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The DHCP message.
    pub message: Message,
    /// Where it goes.
    pub to: SocketAddr,
    /// What it answers (for tests and logs).
    pub answer: Answer,
}

/// Turns DHCP requests into replies for one [`Config`] and [`Backend`].
#[derive(Debug)]
pub struct DhcpHandler<B> {
    cfg: Arc<Config>,
    backend: Arc<B>,
    counters: Arc<Counters>,
    limit: RateLimit,
    peers: Arc<Peers>,
    timeout: Duration,
}

impl<B: Backend> DhcpHandler<B> {
    /// A handler; `counters` are shared with the caller.
    pub fn new(cfg: Config, backend: Arc<B>, counters: Arc<Counters>) -> DhcpHandler<B> {
        Self::with_peers(Arc::new(cfg), backend, counters, Arc::default())
    }

    pub(crate) fn with_peers(cfg: Arc<Config>, backend: Arc<B>, counters: Arc<Counters>, peers: Arc<Peers>) -> Self {
        DhcpHandler {
            limit: RateLimit::new(cfg.max_per_mac_per_sec),
            timeout: Duration::from_millis(cfg.backend_timeout_ms),
            cfg,
            backend,
            counters,
            peers,
        }
    }

    /// The cheap, synchronous part run in the receive loop: count, decode, classify, rate-limit.
    /// `None` = dropped (and counted).
    pub fn admit(&self, bytes: &[u8], now: Instant) -> Option<(Message, Request)> {
        inc(&self.counters.packets);
        let parsed = classify::decode(bytes).and_then(|msg| classify::classify(&msg).map(|req| (msg, req)));
        let (msg, req) = match parsed {
            Ok(ok) => ok,
            Err(reject) => {
                inc(&self.counters.malformed);
                debug!(%reject, "DHCP packet dropped");
                return None;
            }
        };
        if !self.limit.allow(req.mac, now) {
            inc(&self.counters.rate_limited);
            debug!(mac = %req.mac, "DHCP packet rate-limited");
            return None;
        }
        Some((msg, req))
    }

    /// `admit` then `respond`.
    pub async fn handle(&self, bytes: &[u8], source: SocketAddr, via: Via) -> Option<Reply> {
        let (msg, req) = self.admit(bytes, Instant::now())?;
        self.respond(&msg, &req, source, via).await
    }

    /// The decision for an admitted request: asks the backend (bounded by the timeout) and builds
    /// the reply, or `None` (counted).
    pub async fn respond(&self, msg: &Message, req: &Request, source: SocketAddr, via: Via) -> Option<Reply> {
        let answer = match self.cfg.mode {
            Mode::Off => None,
            Mode::Full => self.full(req, source, via).await,
            Mode::Proxy => self.proxy(req, source, via).await,
        }?;
        let to = reply::destination(msg, source, &answer, matches!(via, Via::Pxe(_)), &self.cfg);
        Some(Reply { message: reply::build(msg, req, &answer, &self.cfg), to, answer })
    }

    async fn call<T>(&self, what: &str, fut: impl Future<Output = Result<T, BackendError>>) -> Option<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                inc(&self.counters.backend_errors);
                warn!(error = %e, "netboot backend {what} failed");
                None
            }
            Err(_) => {
                inc(&self.counters.backend_errors);
                warn!("netboot backend {what} timed out after {:?}", self.timeout);
                None
            }
        }
    }

    /// The boot file for this request: `Ok(None)` = no boot file (counted why), `Err` = backend failed.
    async fn boot(&self, req: &Request) -> Result<Option<BootFile>, ()> {
        let client = match req.client {
            Ok(c) => c,
            Err(why) => {
                inc(&self.counters.not_netboot);
                debug!(mac = %req.mac, %why, "not a netboot client");
                return Ok(None);
            }
        };
        let decision = self.call("decide", self.backend.decide(req.mac, client)).await.ok_or(())?;
        Ok(self.boot_for(req, client, &decision))
    }

    fn boot_for(&self, req: &Request, client: Client, decision: &Decision) -> Option<BootFile> {
        let boot = boot_file(client, decision, &self.cfg);
        if boot.is_none() {
            if *decision == Decision::AddressOnly {
                inc(&self.counters.unknown_or_denied);
                debug!(mac = %req.mac, "backend: address only");
            } else {
                inc(&self.counters.not_netboot);
                debug!(mac = %req.mac, ?client, "no boot file configured for this client");
            }
        }
        boot
    }

    fn event(&self, req: &Request, source: SocketAddr, event: Event) {
        debug!(mac = %req.mac, %event, "netboot event");
        self.backend.event(Some(req.mac), source.ip(), event);
    }

    fn ignore(&self, req: &Request, why: &str) -> Option<Answer> {
        inc(&self.counters.ignored);
        debug!(mac = %req.mac, msg_type = ?req.msg_type, "ignored: {why}");
        None
    }

    async fn full(&self, req: &Request, source: SocketAddr, via: Via) -> Option<Answer> {
        let Some(pool) = &self.cfg.pool else {
            return self.ignore(req, "full mode without a pool");
        };
        if matches!(via, Via::Pxe(_)) {
            return self.ignore(req, "PXE boot-server port in full mode");
        }
        match req.msg_type {
            MessageType::Discover => {
                let boot = self.boot(req).await.ok()?;
                let lease = self.call("lease_offer", self.backend.lease_offer(req.mac, req.requested_ip, pool)).await?;
                let Some(lease) = lease else {
                    inc(&self.counters.pool_exhausted);
                    warn!(mac = %req.mac, "DHCP pool exhausted");
                    return None;
                };
                inc(&self.counters.offers);
                let boot_file = boot.as_ref().map(|b| b.as_str().to_owned());
                self.event(req, source, Event::DhcpOffered { ip: Some(lease.ip), boot_file });
                Some(Answer::Lease { kind: MessageType::Offer, lease, boot })
            }
            MessageType::Request => {
                if req.server_id.is_some_and(|s| s != self.cfg.server_ip) {
                    return self.ignore(req, "client chose another server");
                }
                let ip = req.requested_ip.or_else(|| Some(req.ciaddr).filter(|ip| !ip.is_unspecified()));
                let Some(ip) = ip else {
                    return self.ignore(req, "REQUEST without an address");
                };
                let lease = self.call("lease_commit", self.backend.lease_commit(req.mac, ip, pool)).await?;
                let Some(lease) = lease else {
                    inc(&self.counters.naks);
                    self.event(req, source, Event::DhcpNak { ip });
                    return Some(Answer::Nak);
                };
                let boot = self.boot(req).await.ok()?;
                inc(&self.counters.acks);
                self.peers.remember(IpAddr::V4(lease.ip), req.mac);
                let boot_file = boot.as_ref().map(|b| b.as_str().to_owned());
                self.event(req, source, Event::DhcpAcked { ip: lease.ip, boot_file });
                Some(Answer::Lease { kind: MessageType::Ack, lease, boot })
            }
            MessageType::Release | MessageType::Decline => {
                let ip = match req.msg_type {
                    MessageType::Release => req.ciaddr,
                    _ => req.requested_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
                };
                if ip.is_unspecified() {
                    return self.ignore(req, "RELEASE/DECLINE without an address");
                }
                self.call("lease_release", self.backend.lease_release(req.mac, ip)).await?;
                inc(&self.counters.releases);
                None
            }
            _ => self.ignore(req, "message type not served"),
        }
    }

    async fn proxy(&self, req: &Request, source: SocketAddr, via: Via) -> Option<Answer> {
        let (kind, port) = match (via, req.msg_type) {
            (Via::Dhcp(p), MessageType::Discover) => (MessageType::Offer, p),
            (Via::Dhcp(p), MessageType::Request) | (Via::Pxe(p), MessageType::Request) => (MessageType::Ack, p),
            _ => return self.ignore(req, "message type not served in proxy mode"),
        };
        let boot = self.boot(req).await.ok()??;
        inc(&self.counters.proxy_replies);
        if !req.ciaddr.is_unspecified() {
            self.peers.remember(IpAddr::V4(req.ciaddr), req.mac);
        }
        if matches!(via, Via::Pxe(_)) {
            self.peers.remember(source.ip(), req.mac);
        }
        self.event(req, source, Event::ProxyOffered { boot_file: boot.as_str().to_owned(), port });
        Some(Answer::Proxy { kind, boot })
    }
}
