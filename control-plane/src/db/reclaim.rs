//! Reclaims in progress (migration 0021): marked while they run.

use super::{Backend, Writer, clock_sql};

/// Marks `node` as being reclaimed from `project` by `replica`; false when
/// another reclaim of it runs (on a live replica: a dead one's mark is replaced).
pub async fn begin(
    w: &Writer,
    backend: Backend,
    node: &str,
    project: &str,
    replica: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = w.begin().await?;
    sqlx::query("DELETE FROM node_reclaims WHERE node = $1 AND replica NOT IN (SELECT id FROM replicas)")
        .bind(node)
        .execute(&mut *tx)
        .await?;
    let sql = format!(
        "INSERT INTO node_reclaims (node, project, replica, started_at) VALUES ($1, $2, $3, ({})) \
         ON CONFLICT (node) DO NOTHING",
        clock_sql(backend)
    );
    let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(node).bind(project).bind(replica).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(r.rows_affected() == 1)
}

/// Clears `replica`'s mark on `node`.
pub async fn end(w: &Writer, node: &str, replica: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM node_reclaims WHERE node = $1 AND replica = $2")
        .bind(node)
        .bind(replica)
        .execute(w.pool())
        .await?;
    Ok(())
}
