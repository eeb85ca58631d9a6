//! Per-project quotas and what counts against them.

use sqlx::Any;

use super::Tx;

/// A project's limits as stored: (max_nodes, max_images, max_image_bytes), `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct QuotaRow {
    /// Most nodes.
    pub max_nodes: Option<i64>,
    /// Most images.
    pub max_images: Option<i64>,
    /// Most bytes of bundle files.
    pub max_image_bytes: Option<i64>,
}

/// What a project uses now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Nodes held.
    pub nodes: i64,
    /// Images owned.
    pub images: i64,
    /// Bytes of the owned images' bundle files.
    pub image_bytes: i64,
}

/// The quota of `project` (unlimited when none is set).
pub async fn get<'e, E: sqlx::Executor<'e, Database = Any>>(exec: E, project: &str) -> Result<QuotaRow, sqlx::Error> {
    let row = sqlx::query_as("SELECT max_nodes, max_images, max_image_bytes FROM quotas WHERE project = $1")
        .bind(project)
        .fetch_optional(exec)
        .await?;
    Ok(row.unwrap_or_default())
}

/// What `project` uses, within `tx`.
pub async fn usage(tx: &mut Tx<'_>, project: &str) -> Result<Usage, sqlx::Error> {
    let nodes: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM nodes WHERE project = $1").bind(project).fetch_one(&mut **tx).await?;
    // SUM is NUMERIC on PostgreSQL, which sqlx::Any cannot decode: cast it.
    let (images, image_bytes): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), CAST(COALESCE(SUM(stored_bytes), 0) AS BIGINT) FROM images WHERE owner = $1")
            .bind(project)
            .fetch_one(&mut **tx)
            .await?;
    Ok(Usage { nodes, images, image_bytes })
}

/// Replaces `project`'s quota, within `tx`.
pub async fn set(tx: &mut Tx<'_>, project: &str, q: QuotaRow) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM quotas WHERE project = $1").bind(project).execute(&mut **tx).await?;
    sqlx::query("INSERT INTO quotas (project, max_nodes, max_images, max_image_bytes) VALUES ($1, $2, $3, $4)")
        .bind(project)
        .bind(q.max_nodes)
        .bind(q.max_images)
        .bind(q.max_image_bytes)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
