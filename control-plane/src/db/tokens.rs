//! API tokens (`mct_<id>_<secret>`; only an argon2 hash of the secret is stored).

use super::Writer;
use sqlx::AnyPool;

/// A token as listed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    /// Id (the public part).
    pub id: String,
    /// Owner.
    pub user_name: String,
    /// Free text.
    pub description: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Stores a token.
pub async fn insert(
    w: &Writer,
    id: &str,
    user: &str,
    secret_hash: &str,
    description: &str,
    created_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO api_tokens (id, user_name, secret_hash, description, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(user)
    .bind(secret_hash)
    .bind(description)
    .bind(created_at)
    .execute(w.pool())
    .await
    .map(drop)
}

/// The tokens of `user` (every token with `all`), oldest first.
pub async fn list(pool: &AnyPool, user: &str, all: bool) -> Result<Vec<TokenRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, user_name, description, created_at FROM api_tokens \
         WHERE user_name = $1 OR $2 = 1 ORDER BY created_at, id",
    )
    .bind(user)
    .bind(i64::from(all))
    .fetch_all(pool)
    .await
}

/// Deletes token `id` of `user` (of anyone with `any`); returns whether it did.
pub async fn delete(w: &Writer, id: &str, user: &str, any: bool) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND (user_name = $2 OR $3 = 1)")
        .bind(id)
        .bind(user)
        .bind(i64::from(any))
        .execute(w.pool())
        .await?;
    Ok(r.rows_affected() > 0)
}

/// The owner and secret hash of token `id`.
pub async fn secret(pool: &AnyPool, id: &str) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT user_name, secret_hash FROM api_tokens WHERE id = $1").bind(id).fetch_optional(pool).await
}
