//! The deployments running in this process: one `watch` channel of progress
//! snapshots each, and a notifier for metadata fetches (a sign that a
//! deployed system booted).
//!
//! A deployment is registered *before* its engine task is spawned and
//! unregistered only after its end is stored, so a reader that finds no
//! channel can trust the database.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::watch;

use super::Deployment;

/// Live deployments' progress channels, and a notifier for metadata fetches.
#[derive(Debug, Default)]
pub struct Deploys {
    live: Mutex<HashMap<i64, watch::Sender<Deployment>>>,
    /// Woken whenever a deployed node fetched its metadata (a sign it booted).
    pub metadata_fetched: tokio::sync::Notify,
    fetched: Mutex<HashSet<(i64, String)>>,
}

impl Deploys {
    /// The progress channel of deployment `id`, while it runs here.
    pub fn get(&self, id: i64) -> Option<watch::Sender<Deployment>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    /// How many deployments run here.
    pub fn running(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Registers `d` as running here; returns its progress channel.
    pub fn register(&self, d: Deployment) -> watch::Sender<Deployment> {
        let id = d.id;
        let (tx, _) = watch::channel(d);
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx.clone());
        tx
    }

    /// Forgets deployment `id` (its end is stored).
    pub fn remove(&self, id: i64) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        self.fetched.lock().unwrap_or_else(|p| p.into_inner()).retain(|(d, _)| *d != id);
    }

    /// Records that `node` of deployment `id` fetched its metadata (the new system is up).
    pub fn note_fetch(&self, id: i64, node: &str) {
        if self.get(id).is_some() {
            self.fetched.lock().unwrap_or_else(|p| p.into_inner()).insert((id, node.to_owned()));
            self.metadata_fetched.notify_waiters();
        }
    }

    /// Whether `node` of deployment `id` fetched its metadata.
    pub fn fetched(&self, id: i64, node: &str) -> bool {
        self.fetched.lock().unwrap_or_else(|p| p.into_inner()).contains(&(id, node.to_owned()))
    }
}
