//! Deployments, their per-node progress rows, and the cloud-init data they carry.
//!
//! Deployment and node states are typed ([`DeploymentState`], [`NodeState`])
//! and stored as their lower-case names.

use super::Writer;
use super::deployment_events as events;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::AnyPool;
use utoipa::ToSchema;

use super::Tx;

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

/// The newest deployment after `id` that includes `node`, if any.
pub async fn newer_for_node(tx: &mut Tx<'_>, node: &str, id: i64) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT MAX(deployment) FROM deployment_nodes WHERE node = $1 AND deployment > $2")
        .bind(node)
        .bind(id)
        .fetch_one(&mut **tx)
        .await
}

/// Where a deployment as a whole stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentState {
    /// At least one node is in flight.
    Running,
    /// Every node ended well.
    Done,
    /// Every node ended, at least one failed.
    Failed,
}

/// Where one node of a deployment stands:
/// `waiting -> receiving -> verifying -> handover -> booting -> booted`
/// (`verified` for a deployment without hand-over), or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Instruction not picked up yet, or no data received yet.
    Waiting,
    /// Receiving the image.
    Receiving,
    /// Image received; checking it.
    Verifying,
    /// Verified; handing over (kexec or VM).
    Handover,
    /// kexec'd; waiting for the new system to show up.
    Booting,
    /// The new system is up (terminal).
    Booted,
    /// Written and verified, staying in the runtime (terminal).
    Verified,
    /// Failed, with the reason (terminal).
    Failed,
}

text_enum!(DeploymentState { Running = "running", Done = "done", Failed = "failed" });
text_enum!(NodeState {
    Waiting = "waiting",
    Receiving = "receiving",
    Verifying = "verifying",
    Handover = "handover",
    Booting = "booting",
    Booted = "booted",
    Verified = "verified",
    Failed = "failed",
});

impl NodeState {
    /// Whether this state ends the node's part in a deployment.
    pub fn is_terminal(self) -> bool {
        matches!(self, NodeState::Booted | NodeState::Verified | NodeState::Failed)
    }
}

/// A deployment row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeploymentRow {
    /// Id.
    pub id: i64,
    /// Project whose nodes are deployed.
    pub project: String,
    /// Image name.
    pub image: String,
    /// Hex root hash of the image when the deployment was created.
    pub root_hash: String,
    /// [`DeploymentState`] name.
    pub state: String,
    /// Multicast group:port of the latest session (or the parent's deployment).
    pub session_group: Option<String>,
    /// The latest sender summary, JSON.
    pub summary: Option<String>,
    /// What `retry` needs, JSON.
    pub params: String,
    /// Who created it.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, once no node is in flight.
    pub finished_at: Option<i64>,
}

/// A node's row in a deployment.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NodeRow {
    /// Node name.
    pub node: String,
    /// [`NodeState`] name.
    pub state: String,
    /// Why it failed, or the last detail reported.
    pub reason: String,
    /// Blocks written.
    pub blocks_done: i64,
    /// Blocks in the image.
    pub blocks_total: i64,
    /// Authentic packets received.
    pub received: i64,
    /// Packets rejected.
    pub rejected: i64,
    /// Milliseconds from the start of the attempt to its terminal state.
    pub elapsed_ms: Option<i64>,
    /// Attempts (1 + retries).
    pub attempts: i64,
    /// Unix milliseconds when the current attempt started.
    pub started_at: i64,
}

const COLUMNS: &str = "id, project, image, root_hash, state, session_group, summary, params, created_by, created_at, \
                       finished_at";
const NODE_COLUMNS: &str =
    "node, state, reason, blocks_done, blocks_total, received, rejected, elapsed_ms, attempts, started_at";

/// Deployment `id`.
pub async fn get(pool: &AnyPool, id: i64) -> Result<Option<DeploymentRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM deployments WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// The nodes of deployment `id`, by name.
pub async fn nodes(pool: &AnyPool, id: i64) -> Result<Vec<NodeRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {NODE_COLUMNS} FROM deployment_nodes WHERE deployment = $1 ORDER BY node"
    )))
    .bind(id)
    .fetch_all(pool)
    .await
}

/// Every deployment's (id, project), newest first.
pub async fn list(pool: &AnyPool) -> Result<Vec<(i64, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, project FROM deployments ORDER BY id DESC").fetch_all(pool).await
}

/// A deployment to store.
#[derive(Debug)]
pub struct NewDeployment<'a> {
    /// Project.
    pub project: &'a str,
    /// Image name.
    pub image: &'a str,
    /// Its root hash now.
    pub root_hash: &'a str,
    /// What `retry` needs, JSON.
    pub params: &'a str,
    /// Creating user.
    pub created_by: &'a str,
    /// cloud-init user-data (empty: none).
    pub user_data: &'a str,
    /// SSH public keys, one per line.
    pub ssh_keys: &'a str,
    /// The replica that runs it.
    pub owner: &'a str,
}

/// Stores a running deployment and a `waiting` row per node (each with its
/// metadata token) in `tx`; returns the new id.
pub async fn insert(
    tx: &mut Tx<'_>,
    backend: super::Backend,
    d: &NewDeployment<'_>,
    nodes: &[(String, String)],
    now: i64,
    now_ms: i64,
) -> Result<i64, sqlx::Error> {
    let id: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM deployments").fetch_one(&mut **tx).await?;
    sqlx::query(
        "INSERT INTO deployments (id, project, image, root_hash, state, params, created_by, created_at, owner) \
         VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(d.project)
    .bind(d.image)
    .bind(d.root_hash)
    .bind(d.params)
    .bind(d.created_by)
    .bind(now)
    .bind(d.owner)
    .execute(&mut **tx)
    .await?;
    for (node, token) in nodes {
        sqlx::query(
            "INSERT INTO deployment_nodes (deployment, node, state, started_at, metadata_token) \
             VALUES ($1, $2, 'waiting', $3, $4)",
        )
        .bind(id)
        .bind(node)
        .bind(now_ms)
        .bind(token)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query("INSERT INTO deployment_userdata (deployment, user_data, ssh_keys) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(d.user_data)
        .bind(d.ssh_keys)
        .execute(&mut **tx)
        .await?;
    let names: Vec<&str> = nodes.iter().map(|(n, _)| n.as_str()).collect();
    let data = json!({"project": d.project, "image": d.image, "nodes": names, "owner": d.owner});
    events::append(tx, backend, id, "created", &data).await?;
    Ok(id)
}

/// The cloud-init user-data of deployment `id` (empty or missing: none).
pub async fn user_data(pool: &AnyPool, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_data FROM deployment_userdata WHERE deployment = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Sets a failed deployment running again, run by replica `owner`; false if it is not failed.
pub async fn restart(tx: &mut Tx<'_>, backend: super::Backend, id: i64, owner: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE deployments SET state = 'running', finished_at = NULL, owner = $2 WHERE id = $1 AND state = 'failed'",
    )
    .bind(id)
    .bind(owner)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    events::append(tx, backend, id, "retry", &json!({"owner": owner})).await?;
    Ok(true)
}

/// Puts `node` of deployment `id` back to `waiting` for another attempt.
pub async fn retry_node(tx: &mut Tx<'_>, id: i64, node: &str, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deployment_nodes SET state = 'waiting', reason = '', blocks_done = 0, received = 0, \
         rejected = 0, elapsed_ms = NULL, started_at = $3, attempts = attempts + 1 \
         WHERE deployment = $1 AND node = $2",
    )
    .bind(id)
    .bind(node)
    .bind(now_ms)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Records the session (multicast group:port, or the parent's deployment) of deployment `id`;
/// false (nothing written) unless replica `owner` still owns it.
pub async fn set_session(w: &Writer, id: i64, owner: &str, session: &str) -> Result<bool, sqlx::Error> {
    let mut tx = w.begin().await?;
    let r = sqlx::query("UPDATE deployments SET session_group = $3 WHERE id = $1 AND owner = $2")
        .bind(id)
        .bind(owner)
        .bind(session)
        .execute(&mut *tx)
        .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    events::append(&mut tx, w.backend(), id, "session", &json!({"session": session, "owner": owner})).await?;
    tx.commit().await?;
    Ok(true)
}

/// Records the sender's summary (JSON) of deployment `id`; false unless `owner` owns it.
pub async fn set_summary(w: &Writer, id: i64, owner: &str, summary: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE deployments SET summary = $3 WHERE id = $1 AND owner = $2")
        .bind(id)
        .bind(owner)
        .bind(summary)
        .execute(w.pool())
        .await?;
    Ok(r.rows_affected() > 0)
}

/// The metadata token of every node of deployment `id`: (node, token).
pub async fn metadata_tokens(pool: &AnyPool, id: i64) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT node, metadata_token FROM deployment_nodes WHERE deployment = $1")
        .bind(id)
        .fetch_all(pool)
        .await
}

/// Stores a node's progress (everything but its attempt counters); false
/// (nothing written) unless replica `owner` still owns the deployment.
pub async fn update_node(w: &Writer, id: i64, owner: &str, n: &NodeRow) -> Result<bool, sqlx::Error> {
    let mut tx = w.begin().await?;
    match events::lock(&mut tx, w.backend(), id).await? {
        Some((_, Some(o))) if o == owner => {}
        _ => return Ok(false),
    }
    let before: Option<(String, String)> =
        sqlx::query_as("SELECT state, reason FROM deployment_nodes WHERE deployment = $1 AND node = $2")
            .bind(id)
            .bind(&n.node)
            .fetch_optional(&mut *tx)
            .await?;
    let r = sqlx::query(
        "UPDATE deployment_nodes SET state = $3, reason = $4, blocks_done = $5, blocks_total = $6, received = $7, \
         rejected = $8, elapsed_ms = $9 WHERE deployment = $1 AND node = $2",
    )
    .bind(id)
    .bind(&n.node)
    .bind(&n.state)
    .bind(&n.reason)
    .bind(n.blocks_done)
    .bind(n.blocks_total)
    .bind(n.received)
    .bind(n.rejected)
    .bind(n.elapsed_ms)
    .execute(&mut *tx)
    .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    if before.as_ref().is_none_or(|(s, why)| *s != n.state || *why != n.reason) {
        let data = json!({"node": n.node, "state": n.state, "reason": n.reason, "blocks_total": n.blocks_total});
        events::append(&mut tx, w.backend(), id, "node", &data).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Raises the blocks done of `node` in running deployment `id` to
/// `blocks_done` (never lowers it, so a late write cannot undo a newer one),
/// while `owner` owns it: the sender's progress, stored about once a
/// second so every replica shows it.
pub async fn raise_blocks_done(
    w: &Writer,
    id: i64,
    owner: &str,
    node: &str,
    blocks_done: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE deployment_nodes SET blocks_done = $3 WHERE deployment = $1 AND node = $2 AND blocks_done < $3 \
         AND EXISTS (SELECT 1 FROM deployments WHERE id = $1 AND owner = $4 AND state = 'running')",
    )
    .bind(id)
    .bind(node)
    .bind(blocks_done)
    .bind(owner)
    .execute(w.pool())
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Records the end of deployment `id`; false unless replica `owner` still owns it.
pub async fn finish(
    w: &Writer,
    id: i64,
    owner: &str,
    state: DeploymentState,
    finished_at: i64,
    summary: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let mut tx = w.begin().await?;
    let r =
        sqlx::query("UPDATE deployments SET state = $3, finished_at = $4, summary = $5 WHERE id = $1 AND owner = $2")
            .bind(id)
            .bind(owner)
            .bind(state.as_str())
            .bind(finished_at)
            .bind(summary)
            .execute(&mut *tx)
            .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    events::append(&mut tx, w.backend(), id, "end", &json!({"state": state.as_str()})).await?;
    tx.commit().await?;
    Ok(true)
}

/// Marks every node in flight in a running deployment whose owner is not a
/// registered replica (dead and removed, or rows from before replicas
/// existed) failed with `reason`, and those deployments failed and ownerless
/// (a former owner that wakes up writes nothing: every write of a running
/// deployment names its owner); returns how many nodes were failed.
/// A deployment whose session can still be resumed (taken over fewer than
/// `max_epoch` times) is left alone while a replica that can send lives: it
/// claims it at its next scan ([`claim_orphaned_sessions`]).
pub async fn fail_orphaned(w: &Writer, reason: &str, now: i64, max_epoch: i64) -> Result<u64, sqlx::Error> {
    // Running, its owner gone, and not left for a replica that can resume it. `$2`: max_epoch.
    let orphaned = "state = 'running' AND (owner IS NULL OR owner NOT IN (SELECT id FROM replicas)) \
         AND NOT (id IN (SELECT deployment FROM deployment_sessions WHERE epoch < $2) \
         AND EXISTS (SELECT 1 FROM replicas WHERE sender IS NOT NULL))";
    let mut tx = w.begin().await?;
    // The deployments first (their rows locked, so two replicas failing them at once fail each once).
    let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE deployments SET state = 'failed', finished_at = $1, owner = NULL WHERE {orphaned} RETURNING id"
    )))
    .bind(now)
    .bind(max_epoch)
    .fetch_all(&mut *tx)
    .await?;
    let mut failed = 0;
    for id in ids {
        let r = sqlx::query(
            "UPDATE deployment_nodes SET state = 'failed', reason = $2 \
             WHERE deployment = $1 AND state NOT IN ('booted', 'verified', 'failed')",
        )
        .bind(id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        failed += r.rows_affected();
        events::append(&mut tx, w.backend(), id, "end", &json!({"state": "failed", "reason": reason})).await?;
    }
    tx.commit().await?;
    // Ended sessions cannot be resumed: their keys go.
    sqlx::query(
        "DELETE FROM deployment_sessions WHERE deployment IN (SELECT id FROM deployments WHERE state <> 'running')",
    )
    .execute(w.pool())
    .await?;
    Ok(failed)
}

/// Fails deployment `id`, owned by replica `owner`, and its nodes in flight
/// with `reason` (a claimed deployment that cannot be resumed); its session goes.
pub async fn fail_owned(w: &Writer, id: i64, owner: &str, reason: &str, now: i64) -> Result<(), sqlx::Error> {
    let mut tx = w.begin().await?;
    let r = sqlx::query("UPDATE deployments SET state = 'failed', finished_at = $3 WHERE id = $1 AND owner = $2")
        .bind(id)
        .bind(owner)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    if r.rows_affected() > 0 {
        sqlx::query(
            "UPDATE deployment_nodes SET state = 'failed', reason = $2 \
             WHERE deployment = $1 AND state NOT IN ('booted', 'verified', 'failed')",
        )
        .bind(id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM deployment_sessions WHERE deployment = $1").bind(id).execute(&mut *tx).await?;
        events::append(&mut tx, w.backend(), id, "end", &json!({"state": "failed", "reason": reason})).await?;
    }
    tx.commit().await
}

/// A running deployment's resumable session (`deployment_sessions`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub deployment: i64,
    /// JSON `SessionSpec`, key included.
    pub spec: String,
    /// JSON members (node, MAC, address, boot id, instruction).
    pub members: String,
    pub epoch: i64,
    pub seq: i64,
    pub seq_at: i64,
    pub runtime_at: String,
}

/// Stores the session of deployment `id` as it starts (epoch 0, or replaces
/// a retry's); false unless replica `owner` owns the deployment.
pub async fn save_session(w: &Writer, owner: &str, s: &SessionRow) -> Result<bool, sqlx::Error> {
    let mut tx = w.begin().await?;
    let owned: Option<i64> = sqlx::query_scalar("SELECT id FROM deployments WHERE id = $1 AND owner = $2")
        .bind(s.deployment)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
    if owned.is_none() {
        return Ok(false);
    }
    sqlx::query("DELETE FROM deployment_sessions WHERE deployment = $1").bind(s.deployment).execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO deployment_sessions (deployment, spec, members, epoch, seq, seq_at, runtime_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(s.deployment)
    .bind(&s.spec)
    .bind(&s.members)
    .bind(s.epoch)
    .bind(s.seq)
    .bind(s.seq_at)
    .bind(&s.runtime_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// The running sender's next sequence number, stamped with the database
/// clock ([`super::clock_sql`]); false (nothing
/// written) unless replica `owner` still owns the deployment: the sender
/// must stop.
pub async fn checkpoint(
    w: &Writer,
    backend: super::Backend,
    id: i64,
    owner: &str,
    seq: i64,
) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "UPDATE deployment_sessions SET seq = $3, seq_at = ({}) WHERE deployment = $1 \
         AND EXISTS (SELECT 1 FROM deployments WHERE id = $1 AND owner = $2 AND state = 'running')",
        super::clock_sql(backend)
    );
    // The only text spliced in is the fixed clock expression of the backend.
    let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(owner).bind(seq).execute(w.pool()).await?;
    Ok(r.rows_affected() > 0)
}

/// Claims for replica `me` (one that can send) every running deployment
/// whose owner is gone (not a registered replica) and whose session can be
/// resumed: it was taken over fewer than `max_epoch` times. Raises each one's epoch; returns the sessions claimed. One
/// transaction: a deployment is claimed by one replica (the `owner`
/// compare-and-set), and the others fail what is left.
pub async fn claim_orphaned_sessions(w: &Writer, me: &str, max_epoch: i64) -> Result<Vec<SessionRow>, sqlx::Error> {
    let mut tx = w.begin().await?;
    let ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE deployments SET owner = $1 WHERE state = 'running' \
         AND (owner IS NULL OR owner NOT IN (SELECT id FROM replicas)) \
         AND id IN (SELECT deployment FROM deployment_sessions WHERE epoch < $2) \
         RETURNING id",
    )
    .bind(me)
    .bind(max_epoch)
    .fetch_all(&mut *tx)
    .await?;
    let mut out = Vec::new();
    for id in ids {
        let row: SessionRow = sqlx::query_as(
            "UPDATE deployment_sessions SET epoch = epoch + 1 WHERE deployment = $1 \
             RETURNING deployment, spec, members, epoch, seq, seq_at, runtime_at",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        events::append(&mut tx, w.backend(), id, "takeover", &json!({"owner": me, "epoch": row.epoch})).await?;
        out.push(row);
    }
    tx.commit().await?;
    Ok(out)
}

/// Forgets the session of deployment `id` (its key with it): at its end.
pub async fn drop_session(w: &Writer, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM deployment_sessions WHERE deployment = $1").bind(id).execute(w.pool()).await.map(drop)
}

/// How many deployments are in each state (states with none are left out).
pub async fn count_by_state(pool: &AnyPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT state, COUNT(*) FROM deployments GROUP BY state").fetch_all(pool).await
}
