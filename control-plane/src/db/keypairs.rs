//! SSH keypairs.

use super::Writer;
use sqlx::AnyPool;

/// A keypair row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeypairRow {
    /// Owner.
    pub owner_user: String,
    /// Name, unique per owner.
    pub name: String,
    /// Project it is shared with.
    pub project: Option<String>,
    /// OpenSSH public key line.
    pub public_key: String,
    /// `ssh-keygen -l` SHA256 fingerprint.
    pub fingerprint: String,
    /// Unix seconds.
    pub created_at: i64,
}

const COLUMNS: &str = "owner_user, name, project, public_key, fingerprint, created_at";

/// Every keypair, sorted by owner and name.
pub async fn all(pool: &AnyPool) -> Result<Vec<KeypairRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM keypairs ORDER BY owner_user, name")))
        .fetch_all(pool)
        .await
}

/// `owner`'s keypair `name`.
pub async fn get(pool: &AnyPool, owner: &str, name: &str) -> Result<Option<KeypairRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM keypairs WHERE owner_user = $1 AND name = $2")))
        .bind(owner)
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// Stores a keypair (a unique violation if the owner has one of that name).
pub async fn insert(w: &Writer, k: &KeypairRow) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO keypairs ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)")))
        .bind(&k.owner_user)
        .bind(&k.name)
        .bind(&k.project)
        .bind(&k.public_key)
        .bind(&k.fingerprint)
        .bind(k.created_at)
        .execute(w.pool())
        .await
        .map(drop)
}

/// Deletes `owner`'s keypair `name`; returns whether it existed.
pub async fn delete(w: &Writer, owner: &str, name: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM keypairs WHERE owner_user = $1 AND name = $2")
        .bind(owner)
        .bind(name)
        .execute(w.pool())
        .await?;
    Ok(r.rows_affected() > 0)
}
