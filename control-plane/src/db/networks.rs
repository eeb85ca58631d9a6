//! Networks, who may use them, and what is attached to them.

use super::Writer;
use sqlx::AnyPool;

use super::Tx;

/// A network's row: owning project (None: the admins) and VLAN id.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NetworkRow {
    /// Owning project.
    pub owner: Option<String>,
    /// VLAN id.
    pub vlan: i64,
}

/// Network `name`, if it exists.
pub async fn load(pool: &AnyPool, name: &str) -> Result<Option<NetworkRow>, sqlx::Error> {
    sqlx::query_as("SELECT owner, vlan FROM networks WHERE name = $1").bind(name).fetch_optional(pool).await
}

/// The projects with access to `name`, sorted.
pub async fn access(pool: &AnyPool, name: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT project FROM network_access WHERE network = $1 ORDER BY project")
        .bind(name)
        .fetch_all(pool)
        .await
}

/// Every network: (name, VLAN id), sorted by name.
pub async fn list(pool: &AnyPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT name, vlan FROM networks ORDER BY name").fetch_all(pool).await
}

/// Every access grant: (network, project), sorted by project.
pub async fn all_access(pool: &AnyPool) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT network, project FROM network_access ORDER BY project").fetch_all(pool).await
}

/// The networks `project` can access, sorted.
pub async fn accessible_by(pool: &AnyPool, project: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT network FROM network_access WHERE project = $1 ORDER BY network")
        .bind(project)
        .fetch_all(pool)
        .await
}

/// Whether `name` exists.
pub async fn exists(pool: &AnyPool, name: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM networks WHERE name = $1").bind(name).fetch_one(pool).await?;
    Ok(n > 0)
}

/// The VLAN ids in use within `first..=last`.
pub async fn vlans_in(tx: &mut Tx<'_>, first: u16, last: u16) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT vlan FROM networks WHERE vlan >= $1 AND vlan <= $2 ORDER BY vlan")
        .bind(i64::from(first))
        .bind(i64::from(last))
        .fetch_all(&mut **tx)
        .await
}

/// Within `tx`: creates a network (a unique violation if the name or the VLAN is taken).
pub async fn insert(
    tx: &mut Tx<'_>,
    name: &str,
    owner: Option<&str>,
    vlan: u16,
    allocated: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO networks (name, owner, vlan, allocated) VALUES ($1, $2, $3, $4)")
        .bind(name)
        .bind(owner)
        .bind(i64::from(vlan))
        .bind(i64::from(allocated))
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// Grants `project` access to `network` (a unique violation if it has it).
pub async fn grant<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    exec: E,
    network: &str,
    project: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO network_access (network, project) VALUES ($1, $2)")
        .bind(network)
        .bind(project)
        .execute(exec)
        .await
        .map(drop)
}

/// Revokes `project`'s access; returns whether it had it.
pub async fn revoke(w: &Writer, network: &str, project: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM network_access WHERE network = $1 AND project = $2")
        .bind(network)
        .bind(project)
        .execute(w.pool())
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Within `tx`: deletes a network nothing is attached to and with no pending action; returns whether it did.
pub async fn delete_if_unused(tx: &mut Tx<'_>, name: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "DELETE FROM networks WHERE name = $1 \
         AND NOT EXISTS (SELECT 1 FROM attachments WHERE network = $1) \
         AND NOT EXISTS (SELECT 1 FROM network_actions WHERE network = $1 AND status = 'PENDING')",
    )
    .bind(name)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// An attachment of a network to a NIC, with the node's project.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttachmentRow {
    /// Node.
    pub node: String,
    /// NIC.
    pub nic: String,
    /// Channel.
    pub channel: String,
    /// Network.
    pub network: String,
    /// The node's project.
    pub project: Option<String>,
}

/// The attachments of `network`, sorted by node and NIC.
pub async fn attachments(pool: &AnyPool, network: &str) -> Result<Vec<AttachmentRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.node, a.nic, a.channel, a.network, n.project FROM attachments a \
         JOIN nodes n ON n.name = a.node WHERE a.network = $1 ORDER BY a.node, a.nic",
    )
    .bind(network)
    .fetch_all(pool)
    .await
}

/// The attachments on `node`'s NICs, sorted by NIC and network.
pub async fn attachments_of_node(pool: &AnyPool, node: &str) -> Result<Vec<AttachmentRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.node, a.nic, a.channel, a.network, n.project FROM attachments a \
         JOIN nodes n ON n.name = a.node WHERE a.node = $1 ORDER BY a.nic, a.network",
    )
    .bind(node)
    .fetch_all(pool)
    .await
}

/// The attachments on one NIC: (channel, VLAN id).
pub async fn nic_vlans(pool: &AnyPool, node: &str, nic: &str) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.channel, w.vlan FROM attachments a JOIN networks w ON w.name = a.network \
         WHERE a.node = $1 AND a.nic = $2",
    )
    .bind(node)
    .bind(nic)
    .fetch_all(pool)
    .await
}

/// The channel on which `network` is attached to the NIC, if it is.
pub async fn channel_of(pool: &AnyPool, node: &str, nic: &str, network: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT channel FROM attachments WHERE node = $1 AND nic = $2 AND network = $3")
        .bind(node)
        .bind(nic)
        .bind(network)
        .fetch_optional(pool)
        .await
}

/// Whether the NIC has an attachment on `channel`.
pub async fn channel_in_use(pool: &AnyPool, node: &str, nic: &str, channel: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attachments WHERE node = $1 AND nic = $2 AND channel = $3")
        .bind(node)
        .bind(nic)
        .bind(channel)
        .fetch_one(pool)
        .await?;
    Ok(n > 0)
}

/// Whether nodes of `project` are attached to `network`.
pub async fn project_attached(pool: &AnyPool, network: &str, project: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM attachments a JOIN nodes n ON n.name = a.node \
         WHERE a.network = $1 AND n.project = $2",
    )
    .bind(network)
    .bind(project)
    .fetch_one(pool)
    .await?;
    Ok(n > 0)
}
