//! Which MAC was last seen behind an IP address (from DHCP replies), so TFTP events name the node.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use crate::mac::Mac;

const MAX_PEERS: usize = 4096;

/// A bounded IP -> MAC map; the oldest entries are forgotten first.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    inner: Mutex<(HashMap<IpAddr, Mac>, VecDeque<IpAddr>)>,
}

impl Peers {
    pub(crate) fn remember(&self, ip: IpAddr, mac: Mac) {
        if ip.is_unspecified() {
            return;
        }
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *guard;
        if map.insert(ip, mac).is_none() {
            order.push_back(ip);
            while order.len() > MAX_PEERS {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
    }

    pub(crate) fn lookup(&self, ip: IpAddr) -> Option<Mac> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.0.get(&ip).copied()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn bounded_and_latest_wins() {
        let p = Peers::default();
        let ip = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..(MAX_PEERS as u32 + 10) {
            p.remember(ip(i), Mac([2, 0, 0, 0, 0, (i % 250) as u8]));
        }
        assert_eq!(p.lookup(ip(0)), None, "oldest forgotten");
        assert_eq!(
            p.lookup(ip(MAX_PEERS as u32 + 9)),
            Some(Mac([2, 0, 0, 0, 0, ((MAX_PEERS as u32 + 9) % 250) as u8]))
        );
        p.remember(ip(5000), Mac([2, 0, 0, 0, 0, 1]));
        p.remember(ip(5000), Mac([2, 0, 0, 0, 0, 2]));
        assert_eq!(p.lookup(ip(5000)), Some(Mac([2, 0, 0, 0, 0, 2])));
        assert_eq!(p.inner.lock().expect("lock").0.len(), MAX_PEERS);
    }
}
