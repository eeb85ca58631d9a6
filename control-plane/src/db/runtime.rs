//! The node runtimes' side (migrations 0013 and 0019): instruction id
//! blocks, and the check-ins, instructions and phase reports every replica
//! shares (`runtime_nodes`, `runtime_instructions`, `runtime_reports`).
//! Bodies are the runtime API's wire types as JSON; `app::runtime` decodes them.

use sqlx::AnyPool;

use super::{Backend, Writer, clock_sql};

/// Takes the next block number (1, 2, ...): one statement, so two processes
/// starting at once on one PostgreSQL never take the same block.
pub async fn take_id_block(w: &Writer) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("UPDATE runtime_id_blocks SET last_block = last_block + 1 WHERE id = 1 RETURNING last_block")
        .fetch_one(w.pool())
        .await
}

/// A node as its check-ins left it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NodeRow {
    /// Normalized MAC.
    pub mac: String,
    /// Check-ins so far (across every replica and restart).
    pub checkins: i64,
    /// The latest check-in, JSON.
    pub last_checkin: String,
    /// When it arrived (database clock, s).
    pub checkin_at: i64,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InstructionRow {
    /// Its id.
    pub id: i64,
    /// The node's MAC.
    pub mac: String,
    /// The action, JSON.
    pub action: String,
    /// The multicast session of a deploy or seed instruction.
    pub session: Option<i64>,
    /// The replica whose work it is.
    pub queued_by: String,
    /// When it was handed to the node (database clock, s); `None` while queued.
    pub delivered_at: Option<i64>,
}

const INSTRUCTION: &str = "SELECT id, mac, action, session, queued_by, delivered_at FROM runtime_instructions";

/// Records a check-in of `mac` (`body`: the check-in as JSON).
pub async fn checkin(w: &Writer, backend: Backend, mac: &str, body: &str) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO runtime_nodes (mac, checkins, last_checkin, checkin_at) VALUES ($1, 1, $2, ({})) \
         ON CONFLICT (mac) DO UPDATE SET checkins = runtime_nodes.checkins + 1, \
         last_checkin = excluded.last_checkin, checkin_at = excluded.checkin_at",
        clock_sql(backend)
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(mac).bind(body).execute(w.pool()).await?;
    Ok(())
}

/// A runtime's check-in count and the age of its last check-in.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CheckinAgeRow {
    /// Normalized MAC.
    pub mac: String,
    /// Check-ins so far.
    pub checkins: i64,
    /// Seconds since the last one (database clock).
    pub age: i64,
}

/// Every runtime that ever checked in, with the age of its last check-in.
pub async fn checkin_ages(pool: &AnyPool, backend: Backend) -> Result<Vec<CheckinAgeRow>, sqlx::Error> {
    let sql =
        format!("SELECT mac, checkins, ({}) - checkin_at AS age FROM runtime_nodes ORDER BY mac", clock_sql(backend));
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await
}

/// `mac`'s check-ins, if it ever checked in.
pub async fn node(pool: &AnyPool, mac: &str) -> Result<Option<NodeRow>, sqlx::Error> {
    sqlx::query_as("SELECT mac, checkins, last_checkin, checkin_at FROM runtime_nodes WHERE mac = $1")
        .bind(mac)
        .fetch_optional(pool)
        .await
}

/// [`node`], inside a transaction.
pub async fn node_tx(tx: &mut super::Tx<'_>, mac: &str) -> Result<Option<NodeRow>, sqlx::Error> {
    sqlx::query_as("SELECT mac, checkins, last_checkin, checkin_at FROM runtime_nodes WHERE mac = $1")
        .bind(mac)
        .fetch_optional(&mut **tx)
        .await
}

/// Queues instruction `id` for `mac`, as work of replica `by`; with
/// `deployment`, only while that deployment is running and `by`'s (one
/// statement: the check and the insert are one). False: not queued.
#[allow(clippy::too_many_arguments)]
pub async fn queue(
    w: &Writer,
    backend: Backend,
    id: i64,
    mac: &str,
    action: &str,
    session: Option<i64>,
    by: &str,
    deployment: Option<i64>,
) -> Result<bool, sqlx::Error> {
    let fence = if deployment.is_some() {
        " WHERE EXISTS (SELECT 1 FROM deployments WHERE id = $6 AND owner = $5 AND state = 'running')"
    } else {
        ""
    };
    let sql = format!(
        "INSERT INTO runtime_instructions (id, mac, action, session, queued_by, queued_at) \
         SELECT $1, $2, $3, $4, $5, ({}){fence}",
        clock_sql(backend)
    );
    let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(mac).bind(action).bind(session).bind(by);
    let q = match deployment {
        Some(d) => q.bind(d),
        None => q,
    };
    Ok(q.execute(w.pool()).await?.rows_affected() == 1)
}

/// Takes `mac`'s oldest deliverable instruction for replica `me` and marks
/// it delivered: queued by `me` or by a registered (live) replica. The mark
/// is a compare-and-set on `delivered_at IS NULL`, so of two replicas
/// answering the node's polls at once exactly one delivers it; the loser
/// looks again.
pub async fn take(w: &Writer, backend: Backend, mac: &str, me: &str) -> Result<Option<InstructionRow>, sqlx::Error> {
    let pick = format!(
        "{INSTRUCTION} WHERE mac = $1 AND delivered_at IS NULL \
         AND (queued_by = $2 OR queued_by IN (SELECT id FROM replicas)) ORDER BY id LIMIT 1"
    );
    let mark = format!(
        "UPDATE runtime_instructions SET delivered_at = ({}), delivered_by = $1 WHERE id = $2 AND delivered_at IS NULL",
        clock_sql(backend)
    );
    // Each lost race means another replica delivered one: bounded by the queue's length.
    for _ in 0..64 {
        let found: Option<InstructionRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(pick.clone())).bind(mac).bind(me).fetch_optional(w.pool()).await?;
        let Some(mut row) = found else { return Ok(None) };
        let r = sqlx::query(sqlx::AssertSqlSafe(mark.clone())).bind(me).bind(row.id).execute(w.pool()).await?;
        if r.rows_affected() == 1 {
            row.delivered_at = Some(0);
            return Ok(Some(row));
        }
    }
    Err(sqlx::Error::Protocol(format!("could not take an instruction of {mac}: 64 lost races")))
}

/// Instruction `id`, if it exists.
pub async fn instruction(pool: &AnyPool, id: i64) -> Result<Option<InstructionRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{INSTRUCTION} WHERE id = $1"))).bind(id).fetch_optional(pool).await
}

/// Whether `mac` holds an instruction that was delivered to it.
pub async fn has_delivered(pool: &AnyPool, mac: &str) -> Result<bool, sqlx::Error> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM runtime_instructions WHERE mac = $1 AND delivered_at IS NOT NULL")
            .bind(mac)
            .fetch_one(pool)
            .await?;
    Ok(n > 0)
}

/// Makes instructions `ids` replica `me`'s work (it took their deployment
/// over): the queued ones among them are delivered again while `me` lives.
pub async fn take_over(w: &Writer, ids: &[i64], me: &str) -> Result<u64, sqlx::Error> {
    let mut n = 0;
    for id in ids {
        let r = sqlx::query("UPDATE runtime_instructions SET queued_by = $1 WHERE id = $2")
            .bind(me)
            .bind(id)
            .execute(w.pool())
            .await?;
        n += r.rows_affected();
    }
    Ok(n)
}

/// Appends `body` (a report, JSON) to instruction `instruction`'s reports.
pub async fn add_report(
    w: &Writer,
    backend: Backend,
    instruction: i64,
    mac: &str,
    body: &str,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO runtime_reports (instruction, n, mac, body, at) \
         SELECT $1, COALESCE(MAX(n), 0) + 1, $2, $3, ({}) FROM runtime_reports WHERE instruction = $1",
        clock_sql(backend)
    );
    // Two reports of one instruction at once (a node reports one at a time,
    // but a retried one may cross its successor) can pick the same n on
    // PostgreSQL: the primary key refuses one, which then takes the next.
    let mut last = None;
    for _ in 0..8 {
        match sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(instruction)
            .bind(mac)
            .bind(body)
            .execute(w.pool())
            .await
        {
            Ok(_) => return Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => last = Some(sqlx::Error::Database(e)),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| sqlx::Error::Protocol("report not stored".into())))
}

/// Instruction `instruction`'s reports (JSON), in the order they arrived.
pub async fn reports(pool: &AnyPool, instruction: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT body FROM runtime_reports WHERE instruction = $1 ORDER BY n")
        .bind(instruction)
        .fetch_all(pool)
        .await
}

/// The newest report `mac` sent (JSON), of any instruction.
pub async fn last_report(pool: &AnyPool, mac: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT body FROM runtime_reports WHERE mac = $1 ORDER BY at DESC, instruction DESC, n DESC LIMIT 1",
    )
    .bind(mac)
    .fetch_optional(pool)
    .await
}

/// Deletes delivered instructions, their reports, and never-delivered ones
/// of dead replicas, older than `secs` (database clock); returns how many
/// rows went.
pub async fn prune(w: &Writer, backend: Backend, secs: i64) -> Result<u64, sqlx::Error> {
    let clock = clock_sql(backend);
    let reports = format!("DELETE FROM runtime_reports WHERE at < ({clock}) - $1");
    let instructions = format!(
        "DELETE FROM runtime_instructions WHERE queued_at < ({clock}) - $1 \
         AND (delivered_at IS NOT NULL OR queued_by NOT IN (SELECT id FROM replicas))"
    );
    let a = sqlx::query(sqlx::AssertSqlSafe(reports)).bind(secs).execute(w.pool()).await?.rows_affected();
    let b = sqlx::query(sqlx::AssertSqlSafe(instructions)).bind(secs).execute(w.pool()).await?.rows_affected();
    Ok(a + b)
}
