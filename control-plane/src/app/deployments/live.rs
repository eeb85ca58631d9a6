//! The deployments running in this process: one `watch` channel of progress
//! snapshots each, and a notifier for metadata fetches (a sign that a
//! deployed system booted).
//!
//! A deployment is registered *before* its engine task is spawned and
//! unregistered only after its end is stored, so a reader that finds no
//! channel can trust the database.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

use super::Deployment;

/// Live deployments' progress channels, and a notifier for metadata fetches.
#[derive(Debug, Default)]
pub struct Deploys {
    live: Mutex<HashMap<i64, watch::Sender<Deployment>>>,
    /// Woken whenever a deployed node fetched its metadata here (a sign it
    /// booted; the fetch itself is stored on the node's deployment row).
    pub metadata_fetched: tokio::sync::Notify,
    /// Wake-ups of this process's change streams ([`super::changes`]).
    pub changes: super::changes::Changes,
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
    }
}
