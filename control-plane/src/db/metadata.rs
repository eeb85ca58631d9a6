//! What the metadata service serves a node: resolved from its token.

use sqlx::AnyPool;

use super::{Backend, Writer, clock_sql};

/// What a metadata token resolves to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SeedRow {
    /// The deployment.
    pub deployment: i64,
    /// The node.
    pub node: String,
    /// cloud-init user-data, if given.
    pub user_data: Option<String>,
    /// SSH public keys, one per line.
    pub ssh_keys: Option<String>,
}

/// The (deployment, node) of a metadata token, while the node is still in
/// the deployment's project and no newer deployment replaced it.
pub async fn resolve(pool: &AnyPool, token: &str) -> Result<Option<SeedRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT dn.deployment, dn.node, u.user_data, u.ssh_keys FROM deployment_nodes dn \
         JOIN deployments d ON d.id = dn.deployment \
         JOIN nodes n ON n.name = dn.node AND n.project = d.project \
         LEFT JOIN deployment_userdata u ON u.deployment = dn.deployment \
         WHERE dn.metadata_token = $1 \
         AND NOT EXISTS (SELECT 1 FROM deployment_nodes newer WHERE newer.node = dn.node AND newer.deployment > dn.deployment)",
    )
    .bind(token)
    .fetch_optional(pool)
    .await
}

/// Records that the node of deployment `deployment` fetched its metadata
/// (the first fetch only; database clock).
pub async fn note_fetch(w: &Writer, backend: Backend, deployment: i64, node: &str) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE deployment_nodes SET metadata_fetched_at = ({}) \
         WHERE deployment = $1 AND node = $2 AND metadata_fetched_at IS NULL",
        clock_sql(backend)
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(deployment).bind(node).execute(w.pool()).await?;
    Ok(())
}

/// Whether the node of deployment `deployment` fetched its metadata.
pub async fn fetched(pool: &AnyPool, deployment: i64, node: &str) -> Result<bool, sqlx::Error> {
    let at: Option<Option<i64>> =
        sqlx::query_scalar("SELECT metadata_fetched_at FROM deployment_nodes WHERE deployment = $1 AND node = $2")
            .bind(deployment)
            .bind(node)
            .fetch_optional(pool)
            .await?;
    Ok(at.flatten().is_some())
}
