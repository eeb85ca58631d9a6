//! Switches and their ports.

use super::Writer;
use sqlx::AnyPool;

/// Every switch's name, sorted.
pub async fn list(pool: &AnyPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM switches ORDER BY name").fetch_all(pool).await
}

/// A switch's configuration (driver JSON), if it exists.
pub async fn config(pool: &AnyPool, name: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT config FROM switches WHERE name = $1").bind(name).fetch_optional(pool).await
}

/// Registers a switch (a unique violation if it exists).
pub async fn insert(w: &Writer, name: &str, config: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO switches (name, config) VALUES ($1, $2)")
        .bind(name)
        .bind(config)
        .execute(w.pool())
        .await
        .map(drop)
}

/// Deletes a switch that has no ports; returns whether it did.
pub async fn delete_if_no_ports(w: &Writer, name: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM switches WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM ports WHERE switch = $1)")
        .bind(name)
        .execute(w.pool())
        .await?;
    Ok(r.rows_affected() > 0)
}

/// The switch's port names, sorted.
pub async fn ports(pool: &AnyPool, switch: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM ports WHERE switch = $1 ORDER BY name").bind(switch).fetch_all(pool).await
}

/// Whether the switch has `port`.
pub async fn port_exists(pool: &AnyPool, switch: &str, port: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ports WHERE switch = $1 AND name = $2")
        .bind(switch)
        .bind(port)
        .fetch_one(pool)
        .await?;
    Ok(n > 0)
}

/// Registers a port (a unique violation if it exists).
pub async fn insert_port(w: &Writer, switch: &str, port: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO ports (switch, name) VALUES ($1, $2)")
        .bind(switch)
        .bind(port)
        .execute(w.pool())
        .await
        .map(drop)
}

/// Deletes a port no NIC is connected to; returns whether it did.
pub async fn delete_port_if_free(w: &Writer, switch: &str, port: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "DELETE FROM ports WHERE switch = $1 AND name = $2 AND NOT EXISTS \
         (SELECT 1 FROM nics WHERE port_switch = $1 AND port_name = $2)",
    )
    .bind(switch)
    .bind(port)
    .execute(w.pool())
    .await?;
    Ok(r.rows_affected() > 0)
}
