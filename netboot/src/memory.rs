//! `MemoryBackend`: an in-memory [`Backend`] for tests, fuzzing and demos.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::backend::{Backend, Lease};
use crate::classify::Client;
use crate::decide::Decision;
use crate::error::BackendError;
use crate::event::Event;
use crate::mac::Mac;
use crate::pool::Pool;

/// How long an OFFERed address stays held for its MAC.
const OFFER_HOLD: Duration = Duration::from_secs(30);
/// Events kept (the oldest are dropped first).
const MAX_EVENTS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Held {
    mac: Mac,
    until: Instant,
}

/// Decisions per MAC (default [`Decision::AddressOnly`]), leases in a map, events in a list.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    decisions: Mutex<HashMap<Mac, Decision>>,
    leases: Mutex<HashMap<Ipv4Addr, Held>>,
    events: Mutex<Vec<(Option<Mac>, IpAddr, Event)>>,
    failing: AtomicBool,
    delay: Mutex<Option<Duration>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryBackend {
    /// An empty backend: every MAC is unknown (address only), no leases.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    /// Lets `mac` netboot with `script_url`.
    pub fn allow(&self, mac: Mac, script_url: &str) {
        self.set_decision(mac, Decision::Netboot { script_url: script_url.to_owned() });
    }

    /// Sets the decision for `mac`.
    pub fn set_decision(&self, mac: Mac, decision: Decision) {
        lock(&self.decisions).insert(mac, decision);
    }

    /// The decision for `mac`, synchronously.
    pub fn decision(&self, mac: Mac) -> Decision {
        lock(&self.decisions).get(&mac).cloned().unwrap_or(Decision::AddressOnly)
    }

    /// Makes every call fail (`true`) or work again.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    /// Delays every async call (to exercise the handler's timeout).
    pub fn set_delay(&self, delay: Option<Duration>) {
        *lock(&self.delay) = delay;
    }

    /// Events reported so far.
    pub fn events(&self) -> Vec<(Option<Mac>, IpAddr, Event)> {
        lock(&self.events).clone()
    }

    /// The address currently held (offered or bound) by `mac`.
    pub fn address_of(&self, mac: Mac) -> Option<Ipv4Addr> {
        let now = Instant::now();
        lock(&self.leases).iter().find(|(_, h)| h.mac == mac && h.until > now).map(|(ip, _)| *ip)
    }

    async fn gate(&self) -> Result<(), BackendError> {
        let delay = *lock(&self.delay);
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if self.failing.load(Ordering::Relaxed) {
            return Err(BackendError("memory backend set to fail".into()));
        }
        Ok(())
    }

    /// [`Backend::lease_offer`], synchronously.
    pub fn offer_now(&self, mac: Mac, requested: Option<Ipv4Addr>, pool: &Pool) -> Option<Lease> {
        let now = Instant::now();
        let mut leases = lock(&self.leases);
        leases.retain(|_, h| h.until > now);
        let hold = |leases: &mut HashMap<Ipv4Addr, Held>, ip: Ipv4Addr| {
            let until = leases.get(&ip).filter(|h| h.mac == mac).map_or(now, |h| h.until).max(now + OFFER_HOLD);
            leases.insert(ip, Held { mac, until });
            Some(Lease { ip, secs: pool.lease_secs })
        };
        if let Some(ip) = pool.reservation(mac) {
            return match leases.get(&ip) {
                Some(h) if h.mac != mac => None,
                _ => hold(&mut leases, ip),
            };
        }
        if let Some(ip) = leases.iter().find(|(ip, h)| h.mac == mac && pool.allows(mac, **ip)).map(|(ip, _)| *ip) {
            return hold(&mut leases, ip);
        }
        if let Some(ip) = requested.filter(|ip| pool.allows(mac, *ip) && !leases.contains_key(ip)) {
            return hold(&mut leases, ip);
        }
        let free = pool.addresses().find(|ip| pool.allows(mac, *ip) && !leases.contains_key(ip))?;
        hold(&mut leases, free)
    }

    /// [`Backend::lease_commit`], synchronously.
    pub fn commit_now(&self, mac: Mac, ip: Ipv4Addr, pool: &Pool) -> Option<Lease> {
        let now = Instant::now();
        let mut leases = lock(&self.leases);
        leases.retain(|_, h| h.until > now);
        if !pool.allows(mac, ip) || leases.get(&ip).is_some_and(|h| h.mac != mac) {
            return None;
        }
        leases.retain(|other, h| h.mac != mac || *other == ip);
        leases.insert(ip, Held { mac, until: now + Duration::from_secs(u64::from(pool.lease_secs)) });
        Some(Lease { ip, secs: pool.lease_secs })
    }
}

impl Backend for MemoryBackend {
    async fn decide(&self, mac: Mac, _client: Client) -> Result<Decision, BackendError> {
        self.gate().await?;
        Ok(self.decision(mac))
    }

    async fn lease_offer(
        &self,
        mac: Mac,
        requested: Option<Ipv4Addr>,
        pool: &Pool,
    ) -> Result<Option<Lease>, BackendError> {
        self.gate().await?;
        Ok(self.offer_now(mac, requested, pool))
    }

    async fn lease_commit(&self, mac: Mac, ip: Ipv4Addr, pool: &Pool) -> Result<Option<Lease>, BackendError> {
        self.gate().await?;
        Ok(self.commit_now(mac, ip, pool))
    }

    async fn lease_release(&self, mac: Mac, ip: Ipv4Addr) -> Result<(), BackendError> {
        self.gate().await?;
        let mut leases = lock(&self.leases);
        if leases.get(&ip).is_some_and(|h| h.mac == mac) {
            leases.remove(&ip);
        }
        Ok(())
    }

    fn event(&self, mac: Option<Mac>, peer: IpAddr, event: Event) {
        let mut events = lock(&self.events);
        if events.len() >= MAX_EVENTS {
            events.remove(0);
        }
        events.push((mac, peer, event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        Pool {
            start: Ipv4Addr::new(10, 0, 0, 10),
            end: Ipv4Addr::new(10, 0, 0, 11),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            router: None,
            dns: vec![],
            lease_secs: 60,
            reservations: vec![(Mac([2, 0, 0, 0, 0, 9]), Ipv4Addr::new(10, 0, 0, 50))],
        }
    }

    #[test]
    fn offer_prefers_reservation_then_own_then_requested_then_free() {
        let b = MemoryBackend::new();
        let p = pool();
        let (a, c, r) = (Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]), Mac([2, 0, 0, 0, 0, 9]));
        assert_eq!(b.offer_now(r, None, &p).map(|l| l.ip), Some(Ipv4Addr::new(10, 0, 0, 50)));
        assert_eq!(
            b.offer_now(a, Some(Ipv4Addr::new(10, 0, 0, 11)), &p).map(|l| l.ip),
            Some(Ipv4Addr::new(10, 0, 0, 11))
        );
        assert_eq!(b.offer_now(a, None, &p).map(|l| l.ip), Some(Ipv4Addr::new(10, 0, 0, 11)), "same MAC, same address");
        assert_eq!(
            b.offer_now(c, Some(Ipv4Addr::new(10, 0, 0, 11)), &p).map(|l| l.ip),
            Some(Ipv4Addr::new(10, 0, 0, 10))
        );
        assert_eq!(b.offer_now(Mac([2, 0, 0, 0, 0, 3]), None, &p), None, "pool exhausted");
    }

    #[test]
    fn commit_refuses_others_addresses() {
        let b = MemoryBackend::new();
        let p = pool();
        let (a, c) = (Mac([2, 0, 0, 0, 0, 1]), Mac([2, 0, 0, 0, 0, 2]));
        let ip = b.offer_now(a, None, &p).expect("offer").ip;
        assert_eq!(b.commit_now(c, ip, &p), None);
        assert_eq!(b.commit_now(a, ip, &p).map(|l| l.ip), Some(ip));
        assert_eq!(b.commit_now(c, Ipv4Addr::new(10, 0, 0, 50), &p), None, "reserved for another MAC");
        assert_eq!(b.commit_now(c, Ipv4Addr::new(10, 0, 0, 99), &p), None, "outside the pool");
        assert_eq!(b.address_of(a), Some(ip));
    }
}
