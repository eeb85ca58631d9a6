//! Recursive HaaS: a nested control plane whose inventory is the nodes one
//! project holds at a parent metalcast (`serve --upstream URL
//! --upstream-project P --upstream-token T`).
//!
//! * [`Upstream`] (in `drivers::parent`) is the REST client of the parent's
//!   API, acting as a member of project `P`. Every error it returns is an
//!   [`UpstreamError`] whose text is safe for API callers (no URL, no token,
//!   no addresses).
//! * The `upstream` BMC and switch drivers (`drivers::upstream`) delegate
//!   power, boot device, console and NIC connect/detach to the parent,
//!   through the same use cases and networking actions every other driver
//!   uses. The server's one client is handed to the drivers from `AppState`
//!   (the token never enters the database).
//! * A nested network with VLAN label `v` maps onto the parent network
//!   `<P>-v<v>`, created (owner and access `P`) when the nested network is
//!   created and deleted with it ([`Upstream::network_name`]).
//! * [`spawn_sync`] imports the nodes of `P` (with their NICs and metadata)
//!   and removes nodes the parent took back, recording the reason as a node
//!   event (`GET /v1/events`). It runs every `sync_interval`, immediately
//!   when a driver call finds a node gone upstream, and backs off
//!   exponentially (up to [`MAX_BACKOFF`]) while the parent is unreachable.
//! * Deployments are delegated: the nested instance uploads the image to the
//!   parent (private to `P`, [`Upstream::ensure_image`]), creates the
//!   deployment there as `P` and mirrors the parent's per-node progress into
//!   its own deployment (`app::deployments::engine`); at the root the
//!   multicast really runs.
//!
//! See `docs/recursion.md`.

use std::collections::BTreeSet;

use metalcast_operator_api::v0::NodeView;

use super::AppState;
use super::error::{Error, Result};
use crate::db;
use crate::drivers::{DriverError, ObmConfig};

pub use crate::drivers::parent::{MAX_BACKOFF, Upstream, UpstreamConfig, UpstreamError};

/// Hook of network creation: on a nested instance, create the parent
/// network that carries the new network with VLAN label `vlan`.
pub async fn network_created(st: &AppState, vlan: u16) -> Result<()> {
    if let Some(up) = &st.upstream {
        up.network_create(&up.network_name(vlan)).await.map_err(DriverError::Upstream)?;
    }
    Ok(())
}

/// Hook of network deletion: on a nested instance, delete the parent network.
pub async fn network_deleted(st: &AppState, vlan: u16) -> Result<()> {
    if let Some(up) = &st.upstream {
        up.network_delete(&up.network_name(vlan)).await.map_err(DriverError::Upstream)?;
    }
    Ok(())
}

/// What one sync pass changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Nodes imported.
    pub added: Vec<String>,
    /// Nodes removed because the parent took them back.
    pub removed: Vec<String>,
}

/// Start the background sync of `st`'s upstream inventory (none if the
/// server is not nested). It stops at shutdown (`st.tasks`); abort the
/// handle to stop it earlier.
pub fn spawn_sync(st: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    let up = st.upstream.clone()?;
    let st = st.clone();
    Some(st.tasks.clone().spawn(async move {
        let interval = up.sync_interval();
        let mut delay = interval;
        loop {
            match sync_once(&st, &up).await {
                Ok(r) => {
                    if !r.added.is_empty() || !r.removed.is_empty() {
                        tracing::info!(added = ?r.added, removed = ?r.removed, "upstream inventory synced");
                    }
                    delay = interval;
                }
                Err(e) => {
                    delay = (delay * 2).clamp(interval, MAX_BACKOFF.max(interval));
                    let cause = match &e {
                        Error::Driver(d) => d.to_string(),
                        other => format!("{other:?}"),
                    };
                    tracing::warn!(error = %cause, retry_in = ?delay, "upstream inventory sync failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = up.kicked() => {}
                _ = st.tasks.shutting_down() => return,
            }
        }
    }))
}

/// Nodes in the local database that were imported from `up`.
async fn imported_nodes(st: &AppState, up: &Upstream) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for (name, obm) in db::upstream::nodes_with_obm(&st.db.pool).await? {
        if let Ok(ObmConfig::Upstream { url, project, .. }) = serde_json::from_str::<ObmConfig>(&obm)
            && url == up.url()
            && project == up.project()
        {
            out.insert(name);
        }
    }
    Ok(out)
}

/// One sync pass: import new nodes of the project, drop the ones it lost.
/// Fails (changing nothing) when the parent cannot be asked.
pub async fn sync_once(st: &AppState, up: &Upstream) -> Result<SyncReport> {
    let remote: BTreeSet<String> = up.project_nodes().await?.into_iter().collect();
    let local = imported_nodes(st, up).await?;
    let mut report = SyncReport::default();
    for node in remote.difference(&local) {
        let v = match up.node(node).await {
            Ok(v) => v,
            // Taken back between the two calls: the next pass sees that.
            Err(UpstreamError::NodeGone(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        import_node(st, up, node, &v).await?;
        report.added.push(node.clone());
    }
    let gone: Vec<&String> = local.difference(&remote).collect();
    let events = if gone.is_empty() { Vec::new() } else { up.events().await.unwrap_or_default() };
    for node in gone {
        let why = events.iter().rev().find(|e| &e.node == node && e.project.as_deref() == Some(up.project()));
        let reason = match why {
            Some(e) => format!("the parent took the node back: {}", e.reason),
            None => format!("the parent took the node back: it is no longer in project {:?} there", up.project()),
        };
        reclaim_node(st, node, &reason).await?;
        report.removed.push(node.clone());
    }
    Ok(report)
}

/// Insert an imported node: the node (upstream BMC), its NICs, a switch of
/// its own whose ports are the NIC names, each NIC wired to its port, and
/// the parent's metadata. A node of that name registered locally by the admin wins.
async fn import_node(st: &AppState, up: &Upstream, node: &str, v: &NodeView) -> Result<()> {
    let obm = serde_json::to_string(&up.obm_for(node)).map_err(Error::internal)?;
    let switch = serde_json::to_string(&up.switch_for(node)).map_err(Error::internal)?;
    let nics = v.nics.iter().map(|nic| (nic.label.as_str(), nic.macaddr.as_str())).collect();
    // The parent sends each metadata value as its JSON text, as stored here.
    let metadata = v.metadata.iter().map(|(label, value)| (label.as_str(), value.clone())).collect();
    let import = db::upstream::Import { node, obm: &obm, switch: &switch, nics, metadata };
    let mut tx = st.db.writer.begin().await?;
    if db::upstream::import(&mut tx, &import).await? {
        tx.commit().await?;
        tracing::info!(%node, "imported node from upstream");
    }
    Ok(())
}

/// Remove a node the parent took back: it leaves its project, its networks
/// are detached (the parent detached them already), pending actions end,
/// and a `reclaimed` event with `reason` is recorded for its project.
pub async fn reclaim_node(st: &AppState, node: &str, reason: &str) -> Result<()> {
    let mut tx = st.db.writer.begin().await?;
    // Sub-leases of the node end first, with the parent's reason.
    super::market::leases::node_gone(st, &mut tx, node, reason).await?;
    let Some(project) = db::upstream::remove(&mut tx, node).await? else { return Ok(()) };
    db::events::insert(&mut *tx, &super::events::new_row(node, project.as_deref(), "reclaimed", reason)).await?;
    tx.commit().await?;
    st.consoles.stop(node);
    st.action_done.notify_waiters();
    tracing::warn!(%node, ?project, %reason, "node reclaimed by the parent");
    Ok(())
}
