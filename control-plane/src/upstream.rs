//! Recursive HaaS: a nested control plane whose inventory is the nodes one
//! project holds at a parent metalcast (`serve --upstream URL
//! --upstream-project P --upstream-token T`).
//!
//! * [`Upstream`] is the REST client of the parent's `/v0` API, acting as a
//!   member of project `P`. Every error it returns is an [`UpstreamError`]
//!   whose text is safe for API callers (no URL, no token, no addresses).
//! * The `upstream` BMC driver ([`crate::drivers::ObmConfig::Upstream`]) and
//!   the `upstream` switch driver ([`crate::drivers::SwitchConfig::Upstream`])
//!   delegate power, boot device, console and NIC connect/detach to the
//!   parent, through the same handlers and networking actions every other
//!   driver uses. The server's one client ([`Upstream`], in
//!   `drivers::parent`) is handed to the drivers from `AppState` (the token
//!   never enters the database).
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
//!   its own deployment (`deploy.rs`); at the root the multicast really runs.
//!
//! See `docs/recursion.md`.

use std::collections::BTreeSet;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use sqlx::Row;

use crate::app::AppState;
use crate::authz::Caller;
use crate::drivers::ObmConfig;
use crate::http::ApiError;

pub use crate::drivers::parent::{MAX_BACKOFF, NodeEvent, Upstream, UpstreamConfig, UpstreamError};

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        ApiError::Driver(crate::drivers::DriverError::Upstream(e))
    }
}

/// Hook of `network_create`: on a nested instance, create the parent
/// network that carries the new network with VLAN label `vlan`.
pub async fn network_created(st: &AppState, vlan: u16) -> Result<(), crate::app::Error> {
    if let Some(up) = &st.upstream {
        up.network_create(&up.network_name(vlan)).await.map_err(crate::drivers::DriverError::Upstream)?;
    }
    Ok(())
}

/// Hook of `network_delete`: on a nested instance, delete the parent network.
pub async fn network_deleted(st: &AppState, vlan: u16) -> Result<(), crate::app::Error> {
    if let Some(up) = &st.upstream {
        up.network_delete(&up.network_name(vlan)).await.map_err(crate::drivers::DriverError::Upstream)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Node events (GET /v1/events)
// ---------------------------------------------------------------------------

/// OpenAPI description of the event log (merged into `/v1/openapi.json`).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(paths(list_events), components(schemas(NodeEvent)))]
pub struct EventsDoc;

/// Routes of the node event log.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/events", get(list_events))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    node: Option<String>,
}

/// `GET /v1/events[?node=N]`: node events of the caller's projects (admins: all), oldest first.
#[utoipa::path(get, path = "/v1/events",
    params(("node" = Option<String>, Query, description = "only events of this node")),
    responses((status = 200, body = [NodeEvent]), (status = 401, body = crate::http::v1::openapi::ErrorBody)))]
async fn list_events(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Vec<NodeEvent>>, ApiError> {
    if c.user.is_none() {
        return Err(ApiError::Unauthenticated);
    }
    let rows = sqlx::query(
        "SELECT id, node, project, kind, reason, created_at FROM node_events \
         WHERE ($1 = '' OR node = $1) ORDER BY id",
    )
    .bind(q.node.unwrap_or_default())
    .fetch_all(&st.db.pool)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let project: Option<String> = r.try_get(2)?;
        let visible = match &project {
            Some(p) => c.has_project(p),
            None => c.admin,
        };
        if visible {
            out.push(NodeEvent {
                id: r.try_get(0)?,
                node: r.try_get(1)?,
                project,
                kind: r.try_get(3)?,
                reason: r.try_get(4)?,
                created_at: r.try_get(5)?,
            });
        }
    }
    Ok(Json(out))
}

// ---------------------------------------------------------------------------
// Inventory sync
// ---------------------------------------------------------------------------

/// What one sync pass changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Nodes imported.
    pub added: Vec<String>,
    /// Nodes removed because the parent took them back.
    pub removed: Vec<String>,
}

/// Start the background sync of `st`'s upstream inventory (none if the
/// server is not nested). Abort the handle to stop it.
pub fn spawn_sync(st: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    let up = st.upstream.clone()?;
    let st = st.clone();
    Some(tokio::spawn(async move {
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
                        ApiError::Driver(d) => d.to_string(),
                        other => format!("{other:?}"),
                    };
                    tracing::warn!(error = %cause, retry_in = ?delay, "upstream inventory sync failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = up.kicked() => {}
            }
        }
    }))
}

/// Nodes in the local database that were imported from `up`.
async fn imported_nodes(st: &AppState, up: &Upstream) -> Result<BTreeSet<String>, ApiError> {
    let rows = sqlx::query("SELECT name, obm FROM nodes").fetch_all(&st.db.pool).await?;
    let mut out = BTreeSet::new();
    for r in rows {
        let name: String = r.try_get(0)?;
        let obm: String = r.try_get(1)?;
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
pub async fn sync_once(st: &AppState, up: &Upstream) -> Result<SyncReport, ApiError> {
    let remote: BTreeSet<String> = up.project_nodes().await.map_err(up_err)?.into_iter().collect();
    let local = imported_nodes(st, up).await?;
    let mut report = SyncReport::default();
    for node in remote.difference(&local) {
        let v = match up.node(node).await {
            Ok(v) => v,
            // Taken back between the two calls: the next pass sees that.
            Err(UpstreamError::NodeGone(_)) => continue,
            Err(e) => return Err(up_err(e)),
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

fn up_err(e: UpstreamError) -> ApiError {
    e.into()
}

/// Insert an imported node: the node (upstream BMC), its NICs, a switch of
/// its own whose ports are the NIC names, each NIC wired to its port, and
/// the parent's metadata.
async fn import_node(st: &AppState, up: &Upstream, node: &str, v: &Value) -> Result<(), ApiError> {
    let obm = serde_json::to_string(&up.obm_for(node)).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let sw = serde_json::to_string(&up.switch_for(node)).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let mut tx = st.db.pool.begin().await?;
    let res = sqlx::query("INSERT INTO nodes (name, project, obm) VALUES ($1, NULL, $2)")
        .bind(node)
        .bind(&obm)
        .execute(&mut *tx)
        .await;
    if let Err(e) = res {
        // A node of that name registered locally by the admin wins.
        tracing::warn!(%node, error = %e, "cannot import upstream node");
        return Ok(());
    }
    sqlx::query("INSERT INTO switches (name, config) VALUES ($1, $2)").bind(node).bind(&sw).execute(&mut *tx).await?;
    for nic in v["nics"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let (Some(label), Some(mac)) = (nic["label"].as_str(), nic["macaddr"].as_str()) else {
            continue;
        };
        sqlx::query("INSERT INTO ports (switch, name) VALUES ($1, $2)")
            .bind(node)
            .bind(label)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO nics (node, name, macaddr, port_switch, port_name) VALUES ($1, $2, $3, $1, $2)")
            .bind(node)
            .bind(label)
            .bind(mac)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(meta) = v["metadata"].as_object() {
        for (label, value) in meta {
            // The parent returns each value as its JSON text.
            let text = value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
            sqlx::query("INSERT INTO node_metadata (node, label, value) VALUES ($1, $2, $3)")
                .bind(node)
                .bind(label)
                .bind(text)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    tracing::info!(%node, "imported node from upstream");
    Ok(())
}

/// Event ids sort chronologically: nanoseconds since the epoch, then randomness.
fn event_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{nanos:020}{}", crate::auth::random_hex(4))
}

/// Records a node event (`GET /v1/events`) for `project`'s members (admins only when `None`).
pub async fn record_event(
    st: &AppState,
    node: &str,
    project: Option<&str>,
    kind: &str,
    reason: &str,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO node_events (id, node, project, kind, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(event_id())
    .bind(node)
    .bind(project)
    .bind(kind)
    .bind(reason)
    .bind(crate::now())
    .execute(&st.db.pool)
    .await?;
    Ok(())
}

/// Remove a node the parent took back: it leaves its project, its networks
/// are detached (the parent detached them already), pending actions end,
/// and a `reclaimed` event with `reason` is recorded for its project.
pub async fn reclaim_node(st: &AppState, node: &str, reason: &str) -> Result<(), ApiError> {
    let mut tx = st.db.pool.begin().await?;
    let project: Option<String> =
        match sqlx::query("SELECT project FROM nodes WHERE name = $1").bind(node).fetch_optional(&mut *tx).await? {
            Some(r) => r.try_get(0)?,
            None => return Ok(()),
        };
    sqlx::query("DELETE FROM attachments WHERE node = $1").bind(node).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM network_actions WHERE node = $1").bind(node).execute(&mut *tx).await?;
    sqlx::query("UPDATE nics SET port_switch = NULL, port_name = NULL WHERE node = $1")
        .bind(node)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM nics WHERE node = $1").bind(node).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM ports WHERE switch = $1").bind(node).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM switches WHERE name = $1").bind(node).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM node_metadata WHERE node = $1").bind(node).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM nodes WHERE name = $1").bind(node).execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO node_events (id, node, project, kind, reason, created_at) \
         VALUES ($1, $2, $3, 'reclaimed', $4, $5)",
    )
    .bind(event_id())
    .bind(node)
    .bind(&project)
    .bind(reason)
    .bind(crate::now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    st.consoles.stop(node);
    st.action_done.notify_waiters();
    tracing::warn!(%node, ?project, %reason, "node reclaimed by the parent");
    Ok(())
}
