//! Nodes, their project and their metadata.

use super::Writer;
use sqlx::AnyPool;

use super::Tx;

/// A node's project: `None` when the node does not exist, `Some(None)` when it is free.
pub async fn project_of(pool: &AnyPool, node: &str) -> Result<Option<Option<String>>, sqlx::Error> {
    sqlx::query_scalar("SELECT project FROM nodes WHERE name = $1").bind(node).fetch_optional(pool).await
}

/// Every node's name (`free`: only those in no project), sorted.
pub async fn list(pool: &AnyPool, free: bool) -> Result<Vec<String>, sqlx::Error> {
    let sql = if free {
        "SELECT name FROM nodes WHERE project IS NULL ORDER BY name"
    } else {
        "SELECT name FROM nodes ORDER BY name"
    };
    sqlx::query_scalar(sql).fetch_all(pool).await
}

/// The nodes of `project`, sorted.
pub async fn in_project(pool: &AnyPool, project: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM nodes WHERE project = $1 ORDER BY name").bind(project).fetch_all(pool).await
}

/// Registers a free node with its BMC (`obm`, JSON) and metadata (label,
/// JSON text), in one transaction. `Ok(false)`: the name is taken.
pub async fn insert(w: &Writer, node: &str, obm: &str, metadata: &[(String, String)]) -> Result<bool, sqlx::Error> {
    let mut tx = w.begin().await?;
    let res = sqlx::query("INSERT INTO nodes (name, project, obm) VALUES ($1, NULL, $2)")
        .bind(node)
        .bind(obm)
        .execute(&mut *tx)
        .await;
    match res {
        Ok(_) => {}
        Err(e) if super::is_conflict(&e) => return Ok(false),
        Err(e) => return Err(e),
    }
    for (label, value) in metadata {
        sqlx::query("INSERT INTO node_metadata (node, label, value) VALUES ($1, $2, $3)")
            .bind(node)
            .bind(label)
            .bind(value)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Deletes a free node and its metadata.
pub async fn delete_free(w: &Writer, node: &str) -> Result<(), sqlx::Error> {
    let mut tx = w.begin().await?;
    sqlx::query("DELETE FROM node_metadata WHERE node = $1").bind(node).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM nodes WHERE name = $1 AND project IS NULL").bind(node).execute(&mut *tx).await?;
    tx.commit().await
}

/// The node's BMC configuration (JSON).
pub async fn obm(pool: &AnyPool, node: &str) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT obm FROM nodes WHERE name = $1").bind(node).fetch_one(pool).await
}

/// Replaces the node's BMC configuration (JSON).
pub async fn set_obm(w: &Writer, node: &str, obm: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE nodes SET obm = $1 WHERE name = $2").bind(obm).bind(node).execute(w.pool()).await.map(drop)
}

/// Within `tx`: gives a free node to `project`; returns whether it was free.
pub async fn take_free(tx: &mut Tx<'_>, node: &str, project: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE nodes SET project = $1 WHERE name = $2 AND project IS NULL")
        .bind(project)
        .bind(node)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Takes `node` out of `project` unless something still holds it there:
/// an attached network other than `keep` (the provisioning network), a pending networking action, a deployment in
/// flight, a live market offer or lease of the node (one statement, so the checks are atomic with the write).
/// Returns whether it left.
///
/// The node's row is locked first ([`lock`]): a networking action queued
/// for the node at the same time ([`super::actions::insert`], which locks it
/// too) either is seen by the checks or finds the node gone from the
/// project, never both missed (on PostgreSQL, one statement alone would
/// check against a snapshot taken before the other transaction committed).
pub async fn release(
    w: &Writer,
    backend: super::Backend,
    node: &str,
    project: &str,
    keep: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let mut tx = w.begin().await?;
    if lock(&mut tx, backend, node).await?.is_none() {
        return Ok(false);
    }
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE nodes SET project = NULL WHERE name = $1 AND project = $2 \
         AND NOT EXISTS (SELECT 1 FROM attachments WHERE node = $1 AND network <> $3) \
         AND NOT EXISTS (SELECT 1 FROM network_actions WHERE node = $1 AND status = 'PENDING') \
         AND NOT EXISTS (SELECT 1 FROM market_leases WHERE node = $1 AND live = 1) \
         AND NOT EXISTS (SELECT 1 FROM market_offer_nodes WHERE node = $1 AND live = 1) \
         AND NOT EXISTS ({})",
        super::deployments::IN_FLIGHT_SQL
    )))
    .bind(node)
    .bind(project)
    .bind(keep.unwrap_or(""))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(r.rows_affected() > 0)
}

/// Locks `node`'s row until the end of `tx` (PostgreSQL: `FOR UPDATE`;
/// SQLite: a no-op write, as [`super::projects::lock`]); returns its
/// project (`Some(None)`: free), or `None` when the node does not exist.
pub async fn lock(tx: &mut Tx<'_>, backend: super::Backend, node: &str) -> Result<Option<Option<String>>, sqlx::Error> {
    if backend == super::Backend::Sqlite {
        sqlx::query("UPDATE nodes SET project = project WHERE name = $1").bind(node).execute(&mut **tx).await?;
    }
    let sql = match backend {
        super::Backend::Postgres => "SELECT project FROM nodes WHERE name = $1 FOR UPDATE",
        super::Backend::Sqlite => "SELECT project FROM nodes WHERE name = $1",
    };
    sqlx::query_scalar(sql).bind(node).fetch_optional(&mut **tx).await
}

/// The node's metadata: (label, JSON text), sorted by label.
pub async fn metadata(pool: &AnyPool, node: &str) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT label, value FROM node_metadata WHERE node = $1 ORDER BY label")
        .bind(node)
        .fetch_all(pool)
        .await
}

/// Sets (inserts or replaces) one metadata value.
pub async fn set_metadata(w: &Writer, node: &str, label: &str, value: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO node_metadata (node, label, value) VALUES ($1, $2, $3) \
         ON CONFLICT (node, label) DO UPDATE SET value = excluded.value",
    )
    .bind(node)
    .bind(label)
    .bind(value)
    .execute(w.pool())
    .await
    .map(drop)
}

/// Deletes one metadata value; returns whether it existed.
pub async fn delete_metadata(w: &Writer, node: &str, label: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM node_metadata WHERE node = $1 AND label = $2")
        .bind(node)
        .bind(label)
        .execute(w.pool())
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Whether `node` belongs to `project` (inside `tx`).
pub async fn owned_by(tx: &mut Tx<'_>, node: &str, project: &str) -> Result<bool, sqlx::Error> {
    let r: Option<i64> = sqlx::query_scalar("SELECT 1 FROM nodes WHERE name = $1 AND project = $2")
        .bind(node)
        .bind(project)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(r.is_some())
}

/// Within `tx`: moves `node` from project `from` to project `to` (a market
/// lease granting or ending) unless something still holds it: an attached
/// network other than `keep`, a pending networking action, a deployment in
/// flight. Returns whether it moved; the node must be in `from` (positive
/// proof that it is where the lease says it is).
pub async fn hand_over(
    tx: &mut Tx<'_>,
    node: &str,
    from: &str,
    to: &str,
    keep: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE nodes SET project = $3 WHERE name = $1 AND project = $2 \
         AND NOT EXISTS (SELECT 1 FROM attachments WHERE node = $1 AND network <> $4) \
         AND NOT EXISTS (SELECT 1 FROM network_actions WHERE node = $1 AND status = 'PENDING') \
         AND NOT EXISTS ({})",
        super::deployments::IN_FLIGHT_SQL
    )))
    .bind(node)
    .bind(from)
    .bind(to)
    .bind(keep.unwrap_or(""))
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Within `tx`: takes `node` out of `project` into the admins' hands (no
/// project), whatever holds it; for a lease that could not be revoked
/// cleanly. Returns whether it was in `project`.
pub async fn quarantine(tx: &mut Tx<'_>, node: &str, project: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE nodes SET project = NULL WHERE name = $1 AND project = $2")
        .bind(node)
        .bind(project)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// A node as the node list shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OverviewRow {
    /// Node name.
    pub name: String,
    /// Its project, if any.
    pub project: Option<String>,
    /// The newest deployment that included it.
    pub last_deployment: Option<i64>,
    /// That deployment's project.
    pub last_project: Option<String>,
    /// The node's state in it ([`super::deployments::NodeState`] name).
    pub last_state: Option<String>,
    /// Whether a live replica is reclaiming it (1) or not (0).
    pub reclaiming: i64,
}

/// Every node with its newest deployment and whether it is being reclaimed, sorted by name.
pub async fn overview(pool: &AnyPool) -> Result<Vec<OverviewRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT n.name, n.project, dn.deployment AS last_deployment, d.project AS last_project, \
         dn.state AS last_state, \
         CASE WHEN EXISTS (SELECT 1 FROM node_reclaims r WHERE r.node = n.name \
              AND r.replica IN (SELECT id FROM replicas)) THEN 1 ELSE 0 END AS reclaiming \
         FROM nodes n \
         LEFT JOIN deployment_nodes dn ON dn.node = n.name \
           AND dn.deployment = (SELECT MAX(x.deployment) FROM deployment_nodes x WHERE x.node = n.name) \
         LEFT JOIN deployments d ON d.id = dn.deployment \
         ORDER BY n.name",
    )
    .fetch_all(pool)
    .await
}
