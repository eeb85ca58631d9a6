//! Node events (`GET /v1/events`): why a node left a project, why a wipe was refused.

use sqlx::AnyPool;

/// A node event row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    /// Sorts chronologically.
    pub id: String,
    /// Node name.
    pub node: String,
    /// Project that held the node (`None`: none).
    pub project: Option<String>,
    /// What happened, e.g. `reclaimed`, `wipe-refused`.
    pub kind: String,
    /// Why.
    pub reason: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Events, oldest first; `node` empty: of every node.
pub async fn list(pool: &AnyPool, node: &str) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, node, project, kind, reason, created_at FROM node_events WHERE ($1 = '' OR node = $1) ORDER BY id",
    )
    .bind(node)
    .fetch_all(pool)
    .await
}

/// Stores an event.
pub async fn insert<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(exec: E, e: &EventRow) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO node_events (id, node, project, kind, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&e.id)
        .bind(&e.node)
        .bind(&e.project)
        .bind(&e.kind)
        .bind(&e.reason)
        .bind(e.created_at)
        .execute(exec)
        .await
        .map(drop)
}
