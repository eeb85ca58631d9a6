//! The nested instance's inventory sync: nodes imported from the parent
//! (node, its own switch, NICs wired to ports, metadata) and removed again.

use sqlx::AnyPool;

use super::Tx;

/// Every node's (name, BMC configuration JSON).
pub async fn nodes_with_obm(pool: &AnyPool) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT name, obm FROM nodes").fetch_all(pool).await
}

/// A node to import, as the parent describes it.
#[derive(Debug)]
pub struct Import<'a> {
    /// Node name.
    pub node: &'a str,
    /// BMC configuration JSON (the `upstream` driver).
    pub obm: &'a str,
    /// The node's own switch configuration JSON (the `upstream` driver).
    pub switch: &'a str,
    /// (NIC label, MAC): each NIC is wired to a port of the same name.
    pub nics: Vec<(&'a str, &'a str)>,
    /// (label, value as JSON text).
    pub metadata: Vec<(&'a str, String)>,
}

/// Inserts a free node with its switch, ports, NICs and metadata in `tx`.
/// `Ok(false)`, with nothing written, when a node of that name exists.
pub async fn import(tx: &mut Tx<'_>, n: &Import<'_>) -> Result<bool, sqlx::Error> {
    let res = sqlx::query("INSERT INTO nodes (name, project, obm) VALUES ($1, NULL, $2)")
        .bind(n.node)
        .bind(n.obm)
        .execute(&mut **tx)
        .await;
    if let Err(e) = res {
        tracing::warn!(node = %n.node, error = %e, "cannot import upstream node");
        return Ok(false);
    }
    sqlx::query("INSERT INTO switches (name, config) VALUES ($1, $2)")
        .bind(n.node)
        .bind(n.switch)
        .execute(&mut **tx)
        .await?;
    for (label, mac) in &n.nics {
        sqlx::query("INSERT INTO ports (switch, name) VALUES ($1, $2)")
            .bind(n.node)
            .bind(label)
            .execute(&mut **tx)
            .await?;
        sqlx::query("INSERT INTO nics (node, name, macaddr, port_switch, port_name) VALUES ($1, $2, $3, $1, $2)")
            .bind(n.node)
            .bind(label)
            .bind(mac)
            .execute(&mut **tx)
            .await?;
    }
    for (label, value) in &n.metadata {
        sqlx::query("INSERT INTO node_metadata (node, label, value) VALUES ($1, $2, $3)")
            .bind(n.node)
            .bind(label)
            .bind(value)
            .execute(&mut **tx)
            .await?;
    }
    Ok(true)
}

/// Deletes `node` with everything hanging off it (attachments, pending
/// actions, NICs, its own switch and ports, metadata) in `tx`; returns the
/// project it was in, or `None` when there is no such node.
pub async fn remove(tx: &mut Tx<'_>, node: &str) -> Result<Option<Option<String>>, sqlx::Error> {
    let project: Option<Option<String>> =
        sqlx::query_scalar("SELECT project FROM nodes WHERE name = $1").bind(node).fetch_optional(&mut **tx).await?;
    if project.is_none() {
        return Ok(None);
    }
    for sql in [
        "DELETE FROM attachments WHERE node = $1",
        "DELETE FROM network_actions WHERE node = $1",
        "UPDATE nics SET port_switch = NULL, port_name = NULL WHERE node = $1",
        "DELETE FROM nics WHERE node = $1",
        "DELETE FROM ports WHERE switch = $1",
        "DELETE FROM switches WHERE name = $1",
        "DELETE FROM node_metadata WHERE node = $1",
        "DELETE FROM nodes WHERE name = $1",
    ] {
        sqlx::query(sql).bind(node).execute(&mut **tx).await?;
    }
    Ok(project)
}
