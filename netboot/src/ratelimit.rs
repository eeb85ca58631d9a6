//! Per-MAC flood bound with a bounded table.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::mac::Mac;

/// How many MACs the limiter tracks at once; beyond it, new MACs are refused until old windows expire.
pub(crate) const MAX_TRACKED: usize = 4096;
const WINDOW: Duration = Duration::from_secs(1);

/// Allows `per_sec` packets per MAC per one-second window.
#[derive(Debug)]
pub(crate) struct RateLimit {
    per_sec: u32,
    table: Mutex<HashMap<Mac, (Instant, u32)>>,
}

impl RateLimit {
    pub(crate) fn new(per_sec: u32) -> RateLimit {
        RateLimit { per_sec, table: Mutex::new(HashMap::new()) }
    }

    /// Whether one more packet from `mac` at `now` is allowed.
    pub(crate) fn allow(&self, mac: Mac, now: Instant) -> bool {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if !table.contains_key(&mac) && table.len() >= MAX_TRACKED {
            table.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if table.len() >= MAX_TRACKED {
                return false;
            }
        }
        let entry = table.entry(mac).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= self.per_sec {
            return false;
        }
        entry.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_mac_window() {
        let rl = RateLimit::new(2);
        let t0 = Instant::now();
        let a = Mac([2, 0, 0, 0, 0, 1]);
        let b = Mac([2, 0, 0, 0, 0, 2]);
        assert!(rl.allow(a, t0));
        assert!(rl.allow(a, t0));
        assert!(!rl.allow(a, t0));
        assert!(rl.allow(b, t0), "another MAC has its own budget");
        assert!(rl.allow(a, t0 + WINDOW), "a new window");
    }

    #[test]
    fn table_is_bounded() {
        let rl = RateLimit::new(1);
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED as u32 {
            let b = i.to_be_bytes();
            assert!(rl.allow(Mac([2, 0, b[0], b[1], b[2], b[3]]), t0));
        }
        let new = Mac([2, 1, 0, 0, 0, 0]);
        assert!(!rl.allow(new, t0), "full table refuses new MACs within the window");
        assert!(rl.allow(new, t0 + WINDOW), "expired windows are purged");
        assert!(rl.table.lock().expect("lock").len() <= MAX_TRACKED);
    }
}
