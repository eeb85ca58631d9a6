//! Operational counters (atomics), read by the control plane's metrics.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// What the server did with every packet; `snapshot` names are stable snake_case.
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        impl Counters {
            /// Every counter with its stable name, in declaration order.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters! {
    /// DHCP datagrams received (both ports).
    packets,
    /// Dropped before any decision: undecodable, wrong op/htype/hlen, no message type, non-unicast MAC.
    malformed,
    /// Requests that are not netboot clients (or an unsupported architecture / no boot file for them).
    not_netboot,
    /// Netboot clients whose backend decision was `AddressOnly`.
    unknown_or_denied,
    /// Full mode OFFERs sent.
    offers,
    /// Full mode ACKs sent.
    acks,
    /// Full mode NAKs sent.
    naks,
    /// Full mode RELEASE/DECLINE handled.
    releases,
    /// Proxy mode replies sent (port 67 and 4011).
    proxy_replies,
    /// Full mode DISCOVERs with no free address.
    pool_exhausted,
    /// Dropped by the per-MAC rate limit.
    rate_limited,
    /// Dropped because `max_inflight` backend calls were already running.
    busy,
    /// Backend calls that failed or timed out.
    backend_errors,
    /// Replies the socket refused to send.
    send_errors,
    /// Requests ignored on purpose (REQUEST for another server, INFORM, wrong message on 4011...).
    ignored,
    /// TFTP transfers that read their whole file.
    tftp_sent,
    /// TFTP requests refused (bad name, missing file, write).
    tftp_refused,
    /// Bytes of completed TFTP transfers.
    tftp_bytes,
}

impl Counters {
    /// A new set of zeroed counters.
    pub fn new() -> Counters {
        Counters::default()
    }

    /// The value of counter `name` (0 if there is no such counter).
    pub fn get(&self, name: &str) -> u64 {
        self.snapshot().into_iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| v)
    }
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_are_stable() {
        let c = Counters::new();
        inc(&c.offers);
        inc(&c.offers);
        let snap = c.snapshot();
        assert_eq!(snap[0].0, "packets");
        assert!(snap.contains(&("offers", 2)));
        assert_eq!(c.get("offers"), 2);
        assert_eq!(c.get("tftp_bytes"), 0);
        // The names the control plane's metrics are written against.
        let names: Vec<&str> = snap.iter().map(|(n, _)| *n).collect();
        for want in [
            "packets",
            "malformed",
            "not_netboot",
            "unknown_or_denied",
            "offers",
            "acks",
            "naks",
            "releases",
            "proxy_replies",
            "rate_limited",
            "backend_errors",
            "tftp_sent",
            "tftp_refused",
            "tftp_bytes",
        ] {
            assert!(names.contains(&want), "{want} missing");
        }
    }
}
