//! The deployment event outbox (`deployment_events`, migration 0020): each
//! change of a deployment's state is appended in the transaction that makes
//! it, numbered 1, 2, 3 ... per deployment, and announced on PostgreSQL by
//! `NOTIFY` on [`CHANNEL`] (delivered when the transaction commits), so an
//! event stream on any replica wakes at once and reads every event in order.

use sqlx::AnyPool;

use super::{Backend, Tx, clock_sql};

/// The `LISTEN`/`NOTIFY` channel; the payload is the deployment id.
pub const CHANNEL: &str = "metalcast_deployment_events";

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventRow {
    /// Deployment id.
    pub deployment: i64,
    /// 1, 2, 3 ... per deployment.
    pub seq: i64,
    /// What happened (`created`, `session`, `node`, `takeover`, `retry`, `end`).
    pub kind: String,
    /// JSON object.
    pub data: String,
    /// Database clock, s.
    pub at: i64,
}

/// Locks deployment `id`'s row until the end of `tx` (PostgreSQL: `FOR
/// UPDATE`; SQLite has one writer at a time) and returns its state and
/// owner, or `None` if it does not exist. Appends to its outbox are made
/// under this lock, so their numbers follow one another without a gap.
pub async fn lock(tx: &mut Tx<'_>, backend: Backend, id: i64) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    let sql = match backend {
        Backend::Postgres => "SELECT state, owner FROM deployments WHERE id = $1 FOR UPDATE",
        Backend::Sqlite => "SELECT state, owner FROM deployments WHERE id = $1",
    };
    sqlx::query_as(sql).bind(id).fetch_optional(&mut **tx).await
}

/// Appends event `kind` with `data` to deployment `id`'s outbox in `tx`
/// (which holds the deployment's row: [`lock`], or an `UPDATE` of it);
/// returns its number.
pub async fn append(
    tx: &mut Tx<'_>,
    backend: Backend,
    id: i64,
    kind: &str,
    data: &serde_json::Value,
) -> Result<i64, sqlx::Error> {
    let sql = format!(
        "INSERT INTO deployment_events (deployment, seq, kind, data, at) \
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, ({}) FROM deployment_events WHERE deployment = $1 \
         RETURNING seq",
        clock_sql(backend)
    );
    let seq: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(kind)
        .bind(data.to_string())
        .fetch_one(&mut **tx)
        .await?;
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(id.to_string()).execute(&mut **tx).await?;
    }
    Ok(seq)
}

/// Deployment `id`'s events after number `after`, in order, at most `limit`.
pub async fn after(pool: &AnyPool, id: i64, after: i64, limit: i64) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT deployment, seq, kind, data, at FROM deployment_events WHERE deployment = $1 AND seq > $2 \
         ORDER BY seq LIMIT $3",
    )
    .bind(id)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}
