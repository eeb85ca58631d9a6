//! Idempotency keys: the first answer to a mutating market or ledger
//! request, stored in the transaction that made its effect.

use sqlx::AnyPool;

use crate::db::Tx;

/// A stored answer: (request hash, HTTP status, JSON body).
pub type Stored = (String, i64, String);

/// Claims `(principal, key)` inside `tx` (on PostgreSQL a concurrent claim
/// of the same key waits for this transaction); false when the key was
/// used already.
pub async fn claim(tx: &mut Tx<'_>, principal: &str, key: &str, hash: &str, now: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO idempotency_keys (principal, idem_key, request_hash, status, response, created_at) \
         VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT (principal, idem_key) DO NOTHING",
    )
    .bind(principal)
    .bind(key)
    .bind(hash)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Stores the answer of a claimed key (same transaction as the claim).
pub async fn answer(tx: &mut Tx<'_>, principal: &str, key: &str, status: i64, body: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE idempotency_keys SET status = $3, response = $4 WHERE principal = $1 AND idem_key = $2")
        .bind(principal)
        .bind(key)
        .bind(status)
        .bind(body)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// The stored answer of a used key.
pub async fn get(pool: &AnyPool, principal: &str, key: &str) -> Result<Option<Stored>, sqlx::Error> {
    sqlx::query_as("SELECT request_hash, status, response FROM idempotency_keys WHERE principal = $1 AND idem_key = $2")
        .bind(principal)
        .bind(key)
        .fetch_optional(pool)
        .await
}

/// Forgets keys older than `before` (unix seconds); returns how many.
pub async fn prune(tx: &mut Tx<'_>, before: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1").bind(before).execute(&mut **tx).await?;
    Ok(r.rows_affected())
}
