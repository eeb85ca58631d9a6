//! Networking actions (HIL's `NetworkingAction`): one row per queued switch
//! change, at most one PENDING per NIC (a unique index).

use super::Writer;
use sqlx::AnyPool;

/// The state of an action, stored as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionStatus {
    /// Queued or running.
    Pending,
    /// Carried out.
    Done,
    /// Failed, or interrupted by a restart.
    Error,
}

impl ActionStatus {
    /// The stored (and HIL API) form.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Pending => "PENDING",
            ActionStatus::Done => "DONE",
            ActionStatus::Error => "ERROR",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<ActionStatus> {
        [ActionStatus::Pending, ActionStatus::Done, ActionStatus::Error].into_iter().find(|x| x.as_str() == s)
    }
}

/// What an action does, stored as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// Attach a network (`network` set) or detach the one on `channel`.
    ModifyPort,
    /// Detach every network from the port.
    RevertPort,
}

impl ActionKind {
    /// The stored (and HIL API) form.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::ModifyPort => "modify_port",
            ActionKind::RevertPort => "revert_port",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<ActionKind> {
        [ActionKind::ModifyPort, ActionKind::RevertPort].into_iter().find(|x| x.as_str() == s)
    }
}

/// A new action.
#[derive(Debug, Clone)]
pub struct NewAction<'a> {
    /// Random id (the API's `status_id`).
    pub id: &'a str,
    /// Node.
    pub node: &'a str,
    /// NIC.
    pub nic: &'a str,
    /// What it does.
    pub kind: ActionKind,
    /// Network to attach (None: detach).
    pub network: Option<&'a str>,
    /// Channel (`vlan/native`, `vlan/<id>`; empty for a revert).
    pub channel: &'a str,
    /// Unix seconds.
    pub created_at: i64,
    /// The replica that runs it.
    pub owner: &'a str,
}

/// Why an action was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotQueued {
    /// The node is no longer in the project the request was made for.
    LeftProject,
    /// An attach: the network is attached to the NIC already, or the channel is in use.
    Attached,
    /// A detach: the network is no longer attached on that channel.
    NotAttached,
}

/// Queues `a` as PENDING (a unique violation if the NIC has a pending
/// action). Under the node's row lock ([`super::nodes::lock`]), which the
/// recording of an action's outcome and a node leaving its project
/// ([`super::nodes::release`]) take too, so nothing changes in between: a
/// modify-port is queued only if it still applies (an attach: the network
/// not attached and the channel free; a detach: the network attached on the
/// channel), and with `project` only while the node is in that project.
pub async fn insert(
    w: &Writer,
    backend: super::Backend,
    a: &NewAction<'_>,
    project: Option<&str>,
) -> Result<Result<(), NotQueued>, sqlx::Error> {
    let mut tx = w.begin().await?;
    let held = super::nodes::lock(&mut tx, backend, a.node).await?.flatten();
    if project.is_some() && held.as_deref() != project {
        return Ok(Err(NotQueued::LeftProject));
    }
    if a.kind == ActionKind::ModifyPort {
        let same: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM attachments WHERE node = $1 AND nic = $2 AND (channel = $3 OR network = $4)",
        )
        .bind(a.node)
        .bind(a.nic)
        .bind(a.channel)
        .bind(a.network.unwrap_or(""))
        .fetch_one(&mut *tx)
        .await?;
        match (a.network, same) {
            (Some(_), 1..) => return Ok(Err(NotQueued::Attached)),
            (None, 0) => return Ok(Err(NotQueued::NotAttached)),
            _ => {}
        }
    }
    sqlx::query(
        "INSERT INTO network_actions (id, node, nic, kind, network, channel, status, created_at, owner) \
         VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', $7, $8)",
    )
    .bind(a.id)
    .bind(a.node)
    .bind(a.nic)
    .bind(a.kind.as_str())
    .bind(a.network)
    .bind(a.channel)
    .bind(a.created_at)
    .bind(a.owner)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(()))
}

/// An action as the API shows it, with its node's project.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActionRow {
    /// Stored status.
    pub status: String,
    /// Node.
    pub node: String,
    /// NIC.
    pub nic: String,
    /// Stored kind.
    pub kind: String,
    /// Channel.
    pub channel: String,
    /// Network attached (None: a detach).
    pub network: Option<String>,
    /// The node's project.
    pub project: Option<String>,
}

/// Action `id`, if it exists.
pub async fn load(pool: &AnyPool, id: &str) -> Result<Option<ActionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.status, a.node, a.nic, a.kind, a.channel, a.network, n.project \
         FROM network_actions a JOIN nodes n ON n.name = a.node WHERE a.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// The stored status of action `id`.
pub async fn status(pool: &AnyPool, id: &str) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT status FROM network_actions WHERE id = $1").bind(id).fetch_one(pool).await
}

/// What the worker needs to carry out an action: the action and the switch port of its NIC.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkRow {
    /// Node.
    pub node: String,
    /// NIC.
    pub nic: String,
    /// Stored kind.
    pub kind: String,
    /// Network to attach.
    pub network: Option<String>,
    /// Channel.
    pub channel: String,
    /// The NIC's switch port (None: not connected).
    pub port_name: Option<String>,
    /// The port's switch configuration (JSON).
    pub config: Option<String>,
}

/// Action `id` with its NIC's port and switch.
pub async fn work(pool: &AnyPool, id: &str) -> Result<WorkRow, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.node, a.nic, a.kind, a.network, a.channel, n.port_name, s.config \
         FROM network_actions a \
         JOIN nics n ON n.node = a.node AND n.name = a.nic \
         LEFT JOIN switches s ON s.name = n.port_switch WHERE a.id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
}

/// Marks action `id` on `node` DONE if it is still PENDING and `owner`'s;
/// false otherwise (failed by another replica that found `owner` dead).
/// Takes the node's row lock first (see [`insert`]).
async fn done(
    tx: &mut super::Tx<'_>,
    backend: super::Backend,
    id: &str,
    node: &str,
    owner: &str,
) -> Result<bool, sqlx::Error> {
    super::nodes::lock(tx, backend, node).await?;
    let r =
        sqlx::query("UPDATE network_actions SET status = 'DONE' WHERE id = $1 AND owner = $2 AND status = 'PENDING'")
            .bind(id)
            .bind(owner)
            .execute(&mut **tx)
            .await?;
    Ok(r.rows_affected() == 1)
}

/// Records an attach by `owner`: the action DONE and the attachment, in
/// one transaction; false (nothing written) when the action is no longer
/// `owner`'s PENDING action.
#[allow(clippy::too_many_arguments)]
pub async fn attach_done(
    w: &Writer,
    backend: super::Backend,
    id: &str,
    owner: &str,
    node: &str,
    nic: &str,
    network: &str,
    channel: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = w.begin().await?;
    if !done(&mut tx, backend, id, node, owner).await? {
        return Ok(false);
    }
    sqlx::query("INSERT INTO attachments (node, nic, network, channel) VALUES ($1, $2, $3, $4)")
        .bind(node)
        .bind(nic)
        .bind(network)
        .bind(channel)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Records a detach by `owner`: the action DONE and the attachments on
/// `channels` gone, in one transaction; false (nothing written) when the
/// action is no longer `owner`'s PENDING action.
pub async fn detach_done(
    w: &Writer,
    backend: super::Backend,
    id: &str,
    owner: &str,
    node: &str,
    nic: &str,
    channels: &[String],
) -> Result<bool, sqlx::Error> {
    let mut tx = w.begin().await?;
    if !done(&mut tx, backend, id, node, owner).await? {
        return Ok(false);
    }
    for ch in channels {
        sqlx::query("DELETE FROM attachments WHERE node = $1 AND nic = $2 AND channel = $3")
            .bind(node)
            .bind(nic)
            .bind(ch)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Sets the status of `owner`'s PENDING action `id`; false when it is no
/// longer that (0 rows).
pub async fn finish_pending(w: &Writer, id: &str, owner: &str, status: ActionStatus) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE network_actions SET status = $3 WHERE id = $1 AND owner = $2 AND status = 'PENDING'")
        .bind(id)
        .bind(owner)
        .bind(status.as_str())
        .execute(w.pool())
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Marks PENDING actions whose owner is not a registered replica (dead and
/// removed, or rows from before replicas existed) ERROR; returns how many.
pub async fn fail_orphaned(w: &Writer) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE network_actions SET status = 'ERROR' WHERE status = 'PENDING' \
         AND (owner IS NULL OR owner NOT IN (SELECT id FROM replicas))",
    )
    .execute(w.pool())
    .await?;
    Ok(r.rows_affected())
}
