//! Node events (`GET /v1/events`): what happened to a node that its project
//! should know about (taken back by the parent, a wipe refused), visible to
//! the members of the project that held it (admins: all).

use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{Error, Result};
use crate::authz::Caller;
use crate::db;

/// Something that happened to a node that its project should learn about,
/// e.g. the parent taking it back.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeEvent {
    /// Event id.
    pub id: String,
    /// Node name.
    pub node: String,
    /// Project that held the node when it happened (`null`: none).
    pub project: Option<String>,
    /// `reclaimed`: the node was taken away by the parent control plane.
    pub kind: String,
    /// Human-readable reason.
    pub reason: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Event ids sort chronologically: nanoseconds since the epoch, then randomness.
fn event_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{nanos:020}{}", crate::auth::random_hex(4))
}

/// A new event row, stamped now.
pub(crate) fn new_row(node: &str, project: Option<&str>, kind: &str, reason: &str) -> db::events::EventRow {
    db::events::EventRow {
        id: event_id(),
        node: node.to_string(),
        project: project.map(str::to_string),
        kind: kind.to_string(),
        reason: reason.to_string(),
        created_at: crate::now(),
    }
}

/// Records a node event for `project`'s members (admins only when `None`).
pub async fn record(st: &AppState, node: &str, project: Option<&str>, kind: &str, reason: &str) -> Result<()> {
    Ok(db::events::insert(st.db.writer.pool(), &new_row(node, project, kind, reason)).await?)
}

/// Node events of the caller's projects (admins: all), oldest first; only `node`'s if given.
pub async fn list(st: &AppState, c: &Caller, node: Option<&str>) -> Result<Vec<NodeEvent>> {
    if c.user.is_none() {
        return Err(Error::Unauthenticated);
    }
    Ok(db::events::list(&st.db.pool, node.unwrap_or(""))
        .await?
        .into_iter()
        .filter(|e| c.require_project(e.project.as_deref()).is_ok())
        .map(|e| NodeEvent {
            id: e.id,
            node: e.node,
            project: e.project,
            kind: e.kind,
            reason: e.reason,
            created_at: e.created_at,
        })
        .collect())
}
