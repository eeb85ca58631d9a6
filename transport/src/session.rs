//! A multicast session: what sender and receivers agree on out of band.

use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use crate::error::TransportError;
use crate::packet::OVERHEAD;

// The key has a module of its own; a spec carries one, and it is still found here.
pub use crate::key::SessionKey;

/// IPv4 + UDP header bytes.
pub const IP_UDP_OVERHEAD: usize = 28;
/// Symbol alignment used for every block (RFC 6330 `Al`).
pub const SYMBOL_ALIGNMENT: u16 = 8;

/// Everything a receiver needs, besides the signed manifest, to take part in
/// a session. The control plane hands it to nodes over unicast; for the CLI
/// it is a JSON file (`metalcast send --session-out`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    /// Random session identifier carried in every packet (32 bits: it tells
    /// sessions apart for counting and the XDP program; what keeps them
    /// apart is the per-session key, see `docs/wire-protocol.md`).
    pub session_id: u32,
    /// Multicast group (239.0.0.0/8, administratively scoped) the symbols go to.
    pub group: Ipv4Addr,
    /// UDP port of the group.
    pub port: u16,
    /// Unicast address of the sender's control socket (reports go here).
    pub sender: SocketAddrV4,
    /// MAC key, hex.
    pub key: SessionKey,
    /// Symbol size in bytes (multiple of 8; fits the MTU with headers).
    pub symbol_size: u16,
    /// Root hash of the manifest being sent: binds the session to one image.
    pub root_hash: String,
}

impl SessionSpec {
    /// A fresh session for an image: random session id and key, the largest
    /// symbol that fits `mtu`.
    pub fn new(root_hash: &str, group: SocketAddrV4, sender: SocketAddrV4, mtu: usize) -> Result<Self, TransportError> {
        let mut id = [0u8; 4];
        getrandom::fill(&mut id).expect("the OS random number generator is available");
        let s = SessionSpec {
            session_id: u32::from_le_bytes(id),
            group: *group.ip(),
            port: group.port(),
            sender,
            key: SessionKey::generate(),
            symbol_size: Self::symbol_size_for_mtu(mtu)?,
            root_hash: root_hash.to_string(),
        };
        s.validate()?;
        Ok(s)
    }

    /// The largest symbol size that fits `mtu` with IP, UDP, our header and
    /// MAC (1440 for 1500, which it fills exactly; 8936 for 9000).
    pub fn symbol_size_for_mtu(mtu: usize) -> Result<u16, TransportError> {
        let room = mtu
            .checked_sub(IP_UDP_OVERHEAD + OVERHEAD)
            .filter(|&r| r >= 64)
            .ok_or_else(|| TransportError::Config(format!("MTU {mtu} leaves no room for a symbol")))?;
        let t = (room.min(u16::MAX as usize) as u16) / SYMBOL_ALIGNMENT * SYMBOL_ALIGNMENT;
        Ok(t)
    }

    /// Checks the spec's own constraints.
    pub fn validate(&self) -> Result<(), TransportError> {
        if !self.group.is_multicast() && !self.group.is_loopback() {
            return Err(TransportError::Config(format!(
                "group {} is neither multicast nor loopback (unicast test mode)",
                self.group
            )));
        }
        if self.symbol_size < 64 || !self.symbol_size.is_multiple_of(SYMBOL_ALIGNMENT) {
            return Err(TransportError::Config(format!(
                "symbol size {} is not a multiple of {SYMBOL_ALIGNMENT} of at least 64",
                self.symbol_size
            )));
        }
        if self.port == 0 {
            return Err(TransportError::Config("port 0".into()));
        }
        Ok(())
    }

    /// Reads a spec from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, TransportError> {
        let s: SessionSpec =
            serde_json::from_slice(bytes).map_err(|e| TransportError::Config(format!("session spec: {e}")))?;
        s.validate()?;
        Ok(s)
    }

    /// The group as a socket address.
    pub fn group_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.group, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbol_sizes() {
        let t = SessionSpec::symbol_size_for_mtu(1500).unwrap();
        assert_eq!(t, 1440);
        assert_eq!(IP_UDP_OVERHEAD + OVERHEAD + usize::from(t), 1500, "a symbol packet fills the MTU");
        assert_eq!(SessionSpec::symbol_size_for_mtu(9000).unwrap(), 8936);
        assert!(SessionSpec::symbol_size_for_mtu(80).is_err());
    }

    #[test]
    fn json_round_trip_and_unknown_fields() {
        let s = SessionSpec {
            session_id: 1,
            group: "239.1.2.3".parse().unwrap(),
            port: 5000,
            sender: "10.0.0.1:5001".parse().unwrap(),
            key: SessionKey::from_bytes([3; 32]),
            symbol_size: 1440,
            root_hash: "ab".into(),
        };
        let j = serde_json::to_vec(&s).unwrap();
        assert_eq!(SessionSpec::from_json(&j).unwrap(), s);
        assert!(!format!("{s:?}").contains("0303"), "key leaked into debug output");
        let mut v: serde_json::Value = serde_json::from_slice(&j).unwrap();
        v["extra"] = 1.into();
        assert!(SessionSpec::from_json(v.to_string().as_bytes()).is_err());
        v = serde_json::from_slice(&j).unwrap();
        v["group"] = "10.1.1.1".into();
        assert!(SessionSpec::from_json(v.to_string().as_bytes()).is_err());
        v = serde_json::from_slice(&j).unwrap();
        v["session_id"] = (1u64 << 32).into();
        assert!(
            SessionSpec::from_json(v.to_string().as_bytes()).is_err(),
            "a session id wider than the wire's 32 bits"
        );
    }
}
