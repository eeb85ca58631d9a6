//! The `replicas` table: control-plane processes on this database, their
//! heartbeats (database clock), and the orphaned work of dead ones.

use sqlx::AnyPool;

use super::{Backend, Writer, clock_sql};

/// One registered replica.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReplicaRow {
    /// Random id, new for every process.
    pub id: String,
    /// Host name.
    pub host: String,
    /// The host kernel's boot id (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
    /// Process id on that host.
    pub pid: i64,
    /// The process's start time in clock ticks after boot (`/proc/PID/stat` field 22).
    pub pid_start: i64,
    /// Server version.
    pub version: String,
    /// Unix seconds, database clock.
    pub started_at: i64,
    /// Unix seconds, database clock.
    pub heartbeat_at: i64,
    /// The provisioning address it sends multicast from; `None`: it cannot take sessions over.
    pub sender: Option<String>,
}

/// Registers `r` (its `started_at` and `heartbeat_at` are taken from the
/// database clock); registering again (the same id) renews the row.
pub async fn insert(w: &Writer, backend: Backend, r: &ReplicaRow) -> Result<(), sqlx::Error> {
    let clock = clock_sql(backend);
    let sql = format!(
        "INSERT INTO replicas (id, host, boot_id, pid, pid_start, version, started_at, heartbeat_at, sender) \
         VALUES ($1, $2, $3, $4, $5, $6, ({clock}), ({clock}), $7) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, sender = excluded.sender"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&r.id)
        .bind(&r.host)
        .bind(&r.boot_id)
        .bind(r.pid)
        .bind(r.pid_start)
        .bind(&r.version)
        .bind(&r.sender)
        .execute(w.pool())
        .await?;
    Ok(())
}

/// Renews `id`'s heartbeat from the database clock; false when its row is
/// gone (another replica declared it dead).
pub async fn heartbeat(w: &Writer, backend: Backend, id: &str) -> Result<bool, sqlx::Error> {
    let sql = format!("UPDATE replicas SET heartbeat_at = ({}) WHERE id = $1", clock_sql(backend));
    let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).execute(w.pool()).await?;
    Ok(r.rows_affected() == 1)
}

/// Every registered replica.
pub async fn list(pool: &AnyPool) -> Result<Vec<ReplicaRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, host, boot_id, pid, pid_start, version, started_at, heartbeat_at, sender FROM replicas \
         ORDER BY started_at, id",
    )
    .fetch_all(pool)
    .await
}

/// Removes `id`'s row (a clean stop, or a replica found dead).
pub async fn remove(w: &Writer, id: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM replicas WHERE id = $1").bind(id).execute(w.pool()).await?;
    Ok(r.rows_affected() == 1)
}

/// Takes or renews periodic job `name` for replica `me`, stamped with the
/// database clock: true when `me` holds it now. One statement, so two
/// replicas never both hold it: the row is free, `me`'s already, or its
/// owner is no longer a registered replica.
pub async fn hold_job(w: &Writer, backend: Backend, name: &str, me: &str) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "UPDATE singleton_jobs SET owner = $2, held_at = ({}) WHERE name = $1 \
         AND (owner IS NULL OR owner = $2 OR owner NOT IN (SELECT id FROM replicas))",
        clock_sql(backend)
    );
    let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).bind(me).execute(w.pool()).await?;
    Ok(r.rows_affected() == 1)
}

/// The work a side effect (a BMC or switch call, a runtime instruction)
/// is made for, checked just before it ([`lease_left`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work<'a> {
    /// An API request (its caller was authorized when it began): only the
    /// replica's own lease is checked.
    Request,
    /// A PENDING networking action the replica owns.
    Action(&'a str),
    /// A periodic job the replica holds (`singleton_jobs`).
    Job(&'a str),
    /// A running deployment the replica owns.
    Deployment(i64),
}

impl Work<'_> {
    /// Its kind, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Work::Request => "request",
            Work::Action(_) => "action",
            Work::Job(_) => "job",
            Work::Deployment(_) => "deployment",
        }
    }
}

/// Seconds left on `me`'s lease (its last heartbeat plus `dead_secs`,
/// against the database clock), if `me` is still registered and still owns
/// `work`; `None` otherwise. One statement, so the lease and the ownership
/// are read at one instant.
pub async fn lease_left(
    pool: &AnyPool,
    backend: Backend,
    me: &str,
    dead_secs: i64,
    work: Work<'_>,
) -> Result<Option<i64>, sqlx::Error> {
    let owns = match work {
        Work::Request => "",
        Work::Action(_) => {
            " AND EXISTS (SELECT 1 FROM network_actions WHERE id = $3 AND owner = $1 AND status = 'PENDING')"
        }
        Work::Job(_) => " AND EXISTS (SELECT 1 FROM singleton_jobs WHERE name = $3 AND owner = $1)",
        Work::Deployment(_) => {
            " AND EXISTS (SELECT 1 FROM deployments WHERE id = $3 AND owner = $1 AND state = 'running')"
        }
    };
    let sql = format!("SELECT heartbeat_at + $2 - ({}) FROM replicas WHERE id = $1{owns}", clock_sql(backend));
    let q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(me).bind(dead_secs);
    let q = match work {
        Work::Request => q,
        Work::Action(id) | Work::Job(id) => q.bind(id),
        Work::Deployment(id) => q.bind(id),
    };
    q.fetch_optional(pool).await
}

/// The replica holding periodic job `name`, if any.
pub async fn job_owner(pool: &AnyPool, name: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT owner FROM singleton_jobs WHERE name = $1").bind(name).fetch_one(pool).await
}
