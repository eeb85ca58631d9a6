//! Deployments (the queries other resources need; the rest is still in `deploy.rs`).

/// The running deployment a node is in flight in: one that is running and
/// whose node row is not terminal yet. Also used inside other statements
/// (`NOT EXISTS (...)`) where the check must be atomic with a write; `$1` is the node.
pub const IN_FLIGHT_SQL: &str = "SELECT d.id FROM deployment_nodes dn JOIN deployments d ON d.id = dn.deployment \
     WHERE dn.node = $1 AND d.state = 'running' AND dn.state NOT IN ('booted', 'verified', 'failed')";

/// The id of the running deployment `node` is in flight in, if any.
pub async fn in_flight<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    exec: E,
    node: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(IN_FLIGHT_SQL).bind(node).fetch_optional(exec).await
}
