//! Web console sessions (`ui_sessions`): the cookie's secret is stored only
//! as a BLAKE3 hash.

use super::Writer;
use sqlx::AnyPool;

/// A stored session.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    /// The public part of the cookie.
    pub id: String,
    /// Who signed in.
    pub user_name: String,
    /// Hex BLAKE3 of the cookie's secret.
    pub secret_hash: String,
    /// The anti-forgery token of the session's forms.
    pub csrf: String,
    /// Unix seconds, exclusive end of validity.
    pub expires_at: i64,
}

/// Stores a new session valid in `[created_at, expires_at)`.
pub async fn insert(w: &Writer, row: &SessionRow, created_at: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ui_sessions (id, user_name, secret_hash, csrf, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&row.id)
    .bind(&row.user_name)
    .bind(&row.secret_hash)
    .bind(&row.csrf)
    .bind(created_at)
    .bind(row.expires_at)
    .execute(w.pool())
    .await
    .map(drop)
}

/// The session `id` if it is still valid at `now`.
pub async fn get(pool: &AnyPool, id: &str, now: i64) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, user_name, secret_hash, csrf, expires_at FROM ui_sessions WHERE id = $1 AND expires_at > $2",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(pool)
    .await
}

/// Ends session `id`.
pub async fn delete(w: &Writer, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM ui_sessions WHERE id = $1").bind(id).execute(w.pool()).await.map(drop)
}

/// Forgets the sessions that expired by `now`; returns how many.
pub async fn delete_expired(w: &Writer, now: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1").bind(now).execute(w.pool()).await?;
    Ok(r.rows_affected())
}
