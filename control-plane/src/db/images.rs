//! Images of the registry and the projects they are shared with.

use super::Writer;
use sqlx::AnyPool;

use super::Tx;

/// An image row (visibility as stored: `public`, `private`, `shared`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ImageRow {
    /// Name.
    pub name: String,
    /// Owner project; `None` for administrator images.
    pub owner: Option<String>,
    /// `public`, `private` or `shared`.
    pub visibility: String,
    /// Hex root hash of the bundle's chunk table.
    pub root_hash: String,
    /// Bytes of the bundle file.
    pub stored_bytes: i64,
    /// Bytes of the extracted image.
    pub data_bytes: i64,
    /// Hex public key of the signer.
    pub signer: String,
    /// Uploading user.
    pub uploaded_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

const COLUMNS: &str = "name, owner, visibility, root_hash, stored_bytes, data_bytes, signer, uploaded_by, created_at";

/// Image `name`.
pub async fn get(pool: &AnyPool, name: &str) -> Result<Option<ImageRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM images WHERE name = $1")))
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// Every image, by name.
pub async fn all(pool: &AnyPool) -> Result<Vec<ImageRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM images ORDER BY name"))).fetch_all(pool).await
}

/// The projects image `name` is shared with, sorted.
pub async fn members(pool: &AnyPool, name: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT project FROM image_members WHERE image = $1 ORDER BY project")
        .bind(name)
        .fetch_all(pool)
        .await
}

/// Every (image, project) share.
pub async fn all_members(pool: &AnyPool) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT image, project FROM image_members").fetch_all(pool).await
}

/// Stores an image (a unique violation if the name is taken).
pub async fn insert(tx: &mut Tx<'_>, r: &ImageRow) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO images ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    )))
    .bind(&r.name)
    .bind(&r.owner)
    .bind(&r.visibility)
    .bind(&r.root_hash)
    .bind(r.stored_bytes)
    .bind(r.data_bytes)
    .bind(&r.signer)
    .bind(&r.uploaded_by)
    .bind(r.created_at)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Deletes image `name` and its shares in one transaction; returns whether it existed.
pub async fn delete(w: &Writer, name: &str) -> Result<bool, sqlx::Error> {
    let mut tx = w.begin().await?;
    sqlx::query("DELETE FROM image_members WHERE image = $1").bind(name).execute(&mut *tx).await?;
    let res = sqlx::query("DELETE FROM images WHERE name = $1").bind(name).execute(&mut *tx).await?;
    if res.rows_affected() == 0 {
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}

/// Sets the visibility of image `name`.
pub async fn set_visibility(w: &Writer, name: &str, visibility: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE images SET visibility = $1 WHERE name = $2")
        .bind(visibility)
        .bind(name)
        .execute(w.pool())
        .await
        .map(drop)
}

/// Shares image `name` with `project`.
pub async fn add_member(w: &Writer, name: &str, project: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO image_members (image, project) VALUES ($1, $2)")
        .bind(name)
        .bind(project)
        .execute(w.pool())
        .await
        .map(drop)
}

/// Stops sharing image `name` with `project`; returns whether it was shared.
pub async fn remove_member(w: &Writer, name: &str, project: &str) -> Result<bool, sqlx::Error> {
    let res = sqlx::query("DELETE FROM image_members WHERE image = $1 AND project = $2")
        .bind(name)
        .bind(project)
        .execute(w.pool())
        .await?;
    Ok(res.rows_affected() > 0)
}
