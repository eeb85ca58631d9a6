//! The control plane's side: per-node decisions, leases and the event log.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};

use crate::classify::Client;
use crate::decide::Decision;
use crate::error::BackendError;
use crate::event::Event;
use crate::mac::Mac;
use crate::pool::Pool;

/// An address bound (or offered) to a MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub ip: Ipv4Addr,
    /// Lease time (option 51).
    pub secs: u32,
}

/// Implemented by the control plane over its database (and by [`crate::MemoryBackend`] for tests).
/// Every call is bounded by `Config::backend_timeout_ms`; an error or a late answer drops the
/// packet and counts `backend_errors`.
pub trait Backend: Send + Sync + 'static {
    /// Whether `mac` may netboot, and its iPXE script URL.
    fn decide(&self, mac: Mac, client: Client) -> impl Future<Output = Result<Decision, BackendError>> + Send;
    /// Full mode: an address for `mac` (its reservation, its current lease, the requested one if
    /// free, or a free one from `pool`), held as "offered" for a short time. `None` = pool exhausted.
    fn lease_offer(
        &self,
        mac: Mac,
        requested: Option<Ipv4Addr>,
        pool: &Pool,
    ) -> impl Future<Output = Result<Option<Lease>, BackendError>> + Send;
    /// Full mode REQUEST: bind `ip` to `mac` if it is offered to / leased by this MAC or free in
    /// the pool (and not reserved for another MAC); `None` = NAK.
    fn lease_commit(
        &self,
        mac: Mac,
        ip: Ipv4Addr,
        pool: &Pool,
    ) -> impl Future<Output = Result<Option<Lease>, BackendError>> + Send;
    /// Full mode RELEASE/DECLINE: `mac` gives `ip` back.
    fn lease_release(&self, mac: Mac, ip: Ipv4Addr) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// One step of a node's boot, for its event log (fire and forget; must not block). `mac` is
    /// `None` when a TFTP peer's address was not seen in a recent DHCP exchange.
    fn event(&self, mac: Option<Mac>, peer: IpAddr, event: Event);
}
