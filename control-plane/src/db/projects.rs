//! Projects.

use super::Writer;
use sqlx::AnyPool;

use super::{Backend, Tx};

/// Every project's name, sorted.
pub async fn list(pool: &AnyPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM projects ORDER BY name").fetch_all(pool).await
}

/// Whether `name` exists.
pub async fn exists(pool: &AnyPool, name: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM projects WHERE name = $1").bind(name).fetch_one(pool).await?;
    Ok(n > 0)
}

/// Creates `name` (a unique violation if it exists).
pub async fn insert(w: &Writer, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO projects (name) VALUES ($1)").bind(name).execute(w.pool()).await.map(drop)
}

/// What still holds a project (a project is deleted only when all are 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holdings {
    /// Nodes in it.
    pub nodes: i64,
    /// Networks it owns.
    pub owned_networks: i64,
    /// Networks it can access.
    pub network_access: i64,
    /// Images it owns.
    pub images: i64,
}

/// Counts what holds `name`.
pub async fn holdings(pool: &AnyPool, name: &str) -> Result<Holdings, sqlx::Error> {
    let count = |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).bind(name).fetch_one(pool).await };
    Ok(Holdings {
        nodes: count("SELECT COUNT(*) FROM nodes WHERE project = $1").await?,
        owned_networks: count("SELECT COUNT(*) FROM networks WHERE owner = $1").await?,
        network_access: count("SELECT COUNT(*) FROM network_access WHERE project = $1").await?,
        images: count("SELECT COUNT(*) FROM images WHERE owner = $1").await?,
    })
}

/// Deletes `name` with its memberships and image shares; its keypairs become the user's own.
pub async fn delete(w: &Writer, name: &str) -> Result<(), sqlx::Error> {
    let mut tx = w.begin().await?;
    sqlx::query("DELETE FROM user_projects WHERE project = $1").bind(name).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM image_members WHERE project = $1").bind(name).execute(&mut *tx).await?;
    sqlx::query("UPDATE keypairs SET project = NULL WHERE project = $1").bind(name).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM projects WHERE name = $1").bind(name).execute(&mut *tx).await?;
    tx.commit().await
}

/// Within `tx`: locks the project's row (PostgreSQL) or takes the database's
/// write lock (SQLite, which has no row locks: a no-op write now, so the
/// transaction never has to upgrade a read lock later, which fails with
/// SQLITE_BUSY under concurrent writers in WAL mode). Returns whether the
/// project exists. Serializes a project's quota-counted changes.
pub async fn lock(tx: &mut Tx<'_>, backend: Backend, name: &str) -> Result<bool, sqlx::Error> {
    Ok(match backend {
        Backend::Postgres => sqlx::query("SELECT name FROM projects WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?
            .is_some(),
        Backend::Sqlite => {
            sqlx::query("UPDATE projects SET name = name WHERE name = $1")
                .bind(name)
                .execute(&mut **tx)
                .await?
                .rows_affected()
                == 1
        }
    })
}

/// Whether `name` exists (inside `tx`).
pub async fn exists_tx(tx: &mut Tx<'_>, name: &str) -> Result<bool, sqlx::Error> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM projects WHERE name = $1").bind(name).fetch_one(&mut **tx).await?;
    Ok(n > 0)
}
