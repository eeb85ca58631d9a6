//! Console logs (HIL's `show_console` / `start_console` / `stop_console`).
//!
//! Starting a node's console opens the driver's console stream
//! ([`crate::drivers::ObmConfig::open_console`]) and spawns a task that
//! appends what it reads to an in-memory log bounded to [`MAX_LOG_BYTES`]
//! (the oldest bytes are dropped). Showing returns the log; stopping ends
//! the task and deletes the log. Releasing a node from its project or
//! deleting it stops its console, so the next tenant never sees the previous
//! one's output.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::AsyncReadExt;

use crate::drivers::ConsoleStream;

/// Most bytes of console output kept per node.
pub const MAX_LOG_BYTES: usize = 256 * 1024;

#[derive(Debug, Default)]
struct Log {
    bytes: VecDeque<u8>,
    /// Bytes dropped from the front because of the bound.
    dropped: u64,
}

#[derive(Debug)]
struct Session {
    log: Arc<Mutex<Log>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Running console captures, keyed by node name.
#[derive(Debug, Default)]
pub struct Consoles {
    sessions: Mutex<HashMap<String, Session>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent; survive a poisoned lock.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Consoles {
    /// True if `node`'s console is being captured.
    pub fn is_running(&self, node: &str) -> bool {
        lock(&self.sessions).contains_key(node)
    }

    /// Start capturing `stream` as `node`'s console (replaces nothing: if a
    /// capture is already running, `stream` is dropped and `false` returned).
    pub fn start(&self, node: &str, mut stream: ConsoleStream) -> bool {
        let mut sessions = lock(&self.sessions);
        if sessions.contains_key(node) {
            return false;
        }
        let log = Arc::new(Mutex::new(Log::default()));
        let sink = Arc::clone(&log);
        let name = node.to_string();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        let mut l = lock(&sink);
                        l.bytes.extend(&buf[..n]);
                        let excess = l.bytes.len().saturating_sub(MAX_LOG_BYTES);
                        l.bytes.drain(..excess);
                        l.dropped += excess as u64;
                    }
                    Err(e) => {
                        tracing::warn!(node = %name, error = %e, "console stream failed");
                        break;
                    }
                }
            }
            tracing::info!(node = %name, "console stream ended");
        });
        sessions.insert(node.to_string(), Session { log, task });
        true
    }

    /// The captured log of `node` (lossy UTF-8), or `None` if not started.
    pub fn show(&self, node: &str) -> Option<String> {
        let sessions = lock(&self.sessions);
        let s = sessions.get(node)?;
        let l = lock(&s.log);
        let (a, b) = l.bytes.as_slices();
        let mut v = Vec::with_capacity(a.len() + b.len());
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        Some(String::from_utf8_lossy(&v).into_owned())
    }

    /// Stop capturing and delete the log; true if a capture was running.
    pub fn stop(&self, node: &str) -> bool {
        lock(&self.sessions).remove(node).is_some()
    }

    /// Stop every capture (at shutdown).
    pub fn stop_all(&self) {
        lock(&self.sessions).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn log_is_bounded_and_keeps_the_newest_bytes() {
        let c = Consoles::default();
        let (mut w, r) = tokio::io::duplex(1 << 16);
        assert!(c.start("n", Box::new(r)));
        assert!(!c.start("n", Box::new(tokio::io::empty())), "second start keeps the first capture");
        let total = MAX_LOG_BYTES + 10_000;
        let data: Vec<u8> = (0..total).map(|i| b'a' + (i % 26) as u8).collect();
        tokio::io::AsyncWriteExt::write_all(&mut w, &data).await.unwrap();
        drop(w);
        // The reader finishes once it has seen EOF; wait for its task.
        let task = {
            let mut s = lock(&c.sessions);
            let sess = s.get_mut("n").unwrap();
            std::mem::replace(&mut sess.task, tokio::spawn(async {}))
        };
        task.await.unwrap();
        let log = c.show("n").unwrap();
        assert_eq!(log.len(), MAX_LOG_BYTES);
        assert_eq!(log.as_bytes(), &data[total - MAX_LOG_BYTES..]);
        assert!(c.stop("n"));
        assert!(c.show("n").is_none());
        assert!(!c.stop("n"));
    }
}
