//! NICs and their switch ports.

use super::Writer;
use sqlx::AnyPool;

/// A NIC as the node view shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NicRow {
    /// Label (`eth0`).
    pub name: String,
    /// MAC address, lower case.
    pub macaddr: String,
    /// Switch of the connected port.
    pub port_switch: Option<String>,
    /// Connected port.
    pub port_name: Option<String>,
}

/// The node's NICs, sorted by label.
pub async fn of_node(pool: &AnyPool, node: &str) -> Result<Vec<NicRow>, sqlx::Error> {
    sqlx::query_as("SELECT name, macaddr, port_switch, port_name FROM nics WHERE node = $1 ORDER BY name")
        .bind(node)
        .fetch_all(pool)
        .await
}

/// The MAC addresses of the node's NICs, sorted by label.
pub async fn macs(pool: &AnyPool, node: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT macaddr FROM nics WHERE node = $1 ORDER BY name").bind(node).fetch_all(pool).await
}

/// [`macs`], inside `tx`.
pub async fn macs_tx(tx: &mut crate::db::Tx<'_>, node: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT macaddr FROM nics WHERE node = $1 ORDER BY name").bind(node).fetch_all(&mut **tx).await
}

/// How many NICs the node has.
pub async fn count(pool: &AnyPool, node: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM nics WHERE node = $1").bind(node).fetch_one(pool).await
}

/// Whether the node has `nic`.
pub async fn exists(pool: &AnyPool, node: &str, nic: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nics WHERE node = $1 AND name = $2")
        .bind(node)
        .bind(nic)
        .fetch_one(pool)
        .await?;
    Ok(n > 0)
}

/// Registers a NIC (a unique violation if the node has one of that label).
pub async fn insert(w: &Writer, node: &str, nic: &str, mac: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO nics (node, name, macaddr) VALUES ($1, $2, $3)")
        .bind(node)
        .bind(nic)
        .bind(mac)
        .execute(w.pool())
        .await
        .map(drop)
}

/// Deletes a NIC that is on no port, no network and has no pending action; returns whether it did.
pub async fn delete_if_unused(w: &Writer, node: &str, nic: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "DELETE FROM nics WHERE node = $1 AND name = $2 AND port_switch IS NULL \
         AND NOT EXISTS (SELECT 1 FROM attachments WHERE node = $1 AND nic = $2) \
         AND NOT EXISTS (SELECT 1 FROM network_actions WHERE node = $1 AND nic = $2 AND status = 'PENDING')",
    )
    .bind(node)
    .bind(nic)
    .execute(w.pool())
    .await?;
    Ok(r.rows_affected() > 0)
}

/// The (switch, port) the NIC is connected to.
pub async fn port(pool: &AnyPool, node: &str, nic: &str) -> Result<Option<(String, String)>, sqlx::Error> {
    let (sw, port): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT port_switch, port_name FROM nics WHERE node = $1 AND name = $2")
            .bind(node)
            .bind(nic)
            .fetch_one(pool)
            .await?;
    Ok(sw.zip(port))
}

/// The (node, nic) connected to a port.
pub async fn on_port(pool: &AnyPool, switch: &str, port: &str) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT node, name FROM nics WHERE port_switch = $1 AND port_name = $2")
        .bind(switch)
        .bind(port)
        .fetch_optional(pool)
        .await
}

/// Connects a NIC that is on no port to a port; returns whether it was
/// free (a unique violation if the port is taken).
pub async fn connect_port(w: &Writer, switch: &str, port: &str, node: &str, nic: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE nics SET port_switch = $1, port_name = $2 \
         WHERE node = $3 AND name = $4 AND port_switch IS NULL",
    )
    .bind(switch)
    .bind(port)
    .bind(node)
    .bind(nic)
    .execute(w.pool())
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Disconnects the NIC on a port if its node (`node`) is free; returns whether it did.
pub async fn detach_port_of_free_node(w: &Writer, switch: &str, port: &str, node: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE nics SET port_switch = NULL, port_name = NULL \
         WHERE port_switch = $1 AND port_name = $2 \
         AND EXISTS (SELECT 1 FROM nodes WHERE name = $3 AND project IS NULL)",
    )
    .bind(switch)
    .bind(port)
    .bind(node)
    .execute(w.pool())
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Every NIC's node and MAC address (as registered).
pub async fn all_macs(pool: &AnyPool) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT node, macaddr FROM nics ORDER BY node, name").fetch_all(pool).await
}
