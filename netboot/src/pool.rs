//! The full-mode address pool and the network options that go with a lease.

use std::net::Ipv4Addr;

use serde::Deserialize;

use crate::mac::Mac;

/// Addresses this server may hand out in full mode, and the options sent with them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// First address of the dynamic range.
    pub start: Ipv4Addr,
    /// Last address of the dynamic range (inclusive).
    pub end: Ipv4Addr,
    /// Option 1.
    pub netmask: Ipv4Addr,
    /// Option 3; default none.
    #[serde(default)]
    pub router: Option<Ipv4Addr>,
    /// Option 6; default empty (not sent).
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Option 51, seconds. Default 3600.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u32,
    /// Fixed addresses per MAC (may lie outside `start..=end`); never given to another MAC.
    #[serde(default)]
    pub reservations: Vec<(Mac, Ipv4Addr)>,
}

fn default_lease_secs() -> u32 {
    3600
}

impl Pool {
    /// Whether `ip` is in the dynamic range.
    pub fn in_range(&self, ip: Ipv4Addr) -> bool {
        (self.start..=self.end).contains(&ip)
    }

    /// The address reserved for `mac`, if any.
    pub fn reservation(&self, mac: Mac) -> Option<Ipv4Addr> {
        self.reservations.iter().find(|(m, _)| *m == mac).map(|(_, ip)| *ip)
    }

    /// Whether `ip` is reserved for a MAC other than `mac`.
    pub fn reserved_for_other(&self, ip: Ipv4Addr, mac: Mac) -> bool {
        self.reservations.iter().any(|(m, r)| *r == ip && *m != mac)
    }

    /// Whether `mac` may hold `ip`: its reservation, or (if it has none) a dynamic address not
    /// reserved for someone else.
    pub fn allows(&self, mac: Mac, ip: Ipv4Addr) -> bool {
        match self.reservation(mac) {
            Some(r) => r == ip,
            None => self.in_range(ip) && !self.reserved_for_other(ip, mac),
        }
    }

    /// The dynamic range in order.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.start)..=u32::from(self.end)).map(Ipv4Addr::from)
    }

    /// Checks the range and netmask.
    pub fn validate(&self) -> Result<(), String> {
        if self.start > self.end {
            return Err(format!("pool start {} is after end {}", self.start, self.end));
        }
        let mask = u32::from(self.netmask);
        if mask.leading_ones() + mask.trailing_zeros() != 32 {
            return Err(format!("pool netmask {} is not contiguous", self.netmask));
        }
        if self.lease_secs == 0 {
            return Err("pool lease_secs must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        Pool {
            start: Ipv4Addr::new(10, 0, 0, 10),
            end: Ipv4Addr::new(10, 0, 0, 12),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            router: None,
            dns: vec![],
            lease_secs: 60,
            reservations: vec![(Mac([2, 0, 0, 0, 0, 1]), Ipv4Addr::new(10, 0, 0, 11))],
        }
    }

    #[test]
    fn reservations_bind_both_ways() {
        let p = pool();
        let owner = Mac([2, 0, 0, 0, 0, 1]);
        let other = Mac([2, 0, 0, 0, 0, 2]);
        assert!(p.allows(owner, Ipv4Addr::new(10, 0, 0, 11)));
        assert!(!p.allows(owner, Ipv4Addr::new(10, 0, 0, 10)));
        assert!(!p.allows(other, Ipv4Addr::new(10, 0, 0, 11)));
        assert!(p.allows(other, Ipv4Addr::new(10, 0, 0, 12)));
        assert!(!p.allows(other, Ipv4Addr::new(10, 0, 0, 13)));
        assert_eq!(p.addresses().count(), 3);
    }

    #[test]
    fn validate_catches_bad_ranges() {
        let mut p = pool();
        p.validate().expect("valid");
        p.netmask = Ipv4Addr::new(255, 0, 255, 0);
        assert!(p.validate().is_err());
        p = pool();
        std::mem::swap(&mut p.start, &mut p.end);
        assert!(p.validate().is_err());
    }
}
