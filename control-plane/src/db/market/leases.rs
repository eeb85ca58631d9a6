//! Leases: one node, one lessee, one half-open window, one state machine
//! (`app::market::leases`).

use sqlx::AnyPool;

use crate::db::Tx;

/// A lease's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    /// Sold; waits for its start.
    Scheduled,
    /// Its start has come: the node is being moved to the lessee.
    Granting,
    /// The lessee holds the node.
    Active,
    /// The end is near (the notice period of an interruptible lease, or a recall).
    Notice,
    /// Its end has come: the node is being reclaimed and given back to the owner.
    Revoking,
    /// Ran its course; the node is back with the owner.
    Ended,
    /// Cancelled before it started; fully refunded.
    Cancelled,
    /// Recalled by the owner (interruptible leases); the unused time refunded.
    Recalled,
    /// Could not be granted or revoked after bounded retries (see `reason`).
    Failed,
}

impl LeaseState {
    /// Every state.
    pub const ALL: [LeaseState; 9] = [
        LeaseState::Scheduled,
        LeaseState::Granting,
        LeaseState::Active,
        LeaseState::Notice,
        LeaseState::Revoking,
        LeaseState::Ended,
        LeaseState::Cancelled,
        LeaseState::Recalled,
        LeaseState::Failed,
    ];

    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Scheduled => "scheduled",
            LeaseState::Granting => "granting",
            LeaseState::Active => "active",
            LeaseState::Notice => "notice",
            LeaseState::Revoking => "revoking",
            LeaseState::Ended => "ended",
            LeaseState::Cancelled => "cancelled",
            LeaseState::Recalled => "recalled",
            LeaseState::Failed => "failed",
        }
    }

    /// Parses the column value.
    pub fn parse(s: &str) -> Option<LeaseState> {
        LeaseState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Not terminal: the lease still claims its node's time.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            LeaseState::Scheduled
                | LeaseState::Granting
                | LeaseState::Active
                | LeaseState::Notice
                | LeaseState::Revoking
        )
    }
}

/// A lease row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LeaseRow {
    /// Id.
    pub id: i64,
    /// The offer it was sold from.
    pub offer: i64,
    /// The node.
    pub node: String,
    /// Owning project (gets the node back).
    pub owner: String,
    /// Lessee project.
    pub lessee: String,
    /// Window start (inclusive).
    pub start_at: i64,
    /// Window end (exclusive).
    pub end_at: i64,
    /// End plus the cleaning gap: the next lease starts no earlier.
    pub busy_until: i64,
    /// Price, milli-credits per node-hour.
    pub price_mph: i64,
    /// The escrow hold paying for it.
    pub hold: i64,
    /// 0/1.
    pub interruptible: i64,
    /// Notice before a recall takes effect.
    pub notice_secs: i64,
    /// none | discard | zero.
    pub wipe: String,
    /// State (column text; [`LeaseState::parse`]).
    pub state: String,
    /// Recalled by the owner.
    pub recalled: i64,
    /// Failed grant or revoke attempts.
    pub attempts: i64,
    /// Why it failed, or the last retry's cause.
    pub reason: String,
    /// The winning bid, if sold at auction.
    pub bid: Option<i64>,
    /// The autobuy rule that bought it.
    pub autobuy: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last state change.
    pub updated_at: i64,
}

const COLS: &str = "id, offer, node, owner, lessee, start_at, end_at, busy_until, price_mph, hold, interruptible, \
                    notice_secs, wipe, state, recalled, attempts, reason, bid, autobuy, created_at, updated_at";

/// Inserts a lease (state `scheduled`, live).
pub async fn insert(tx: &mut Tx<'_>, l: &LeaseRow) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO market_leases ({COLS}, live) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
         $15, $16, $17, $18, $19, $20, $21, 1)"
    )))
    .bind(l.id)
    .bind(l.offer)
    .bind(&l.node)
    .bind(&l.owner)
    .bind(&l.lessee)
    .bind(l.start_at)
    .bind(l.end_at)
    .bind(l.busy_until)
    .bind(l.price_mph)
    .bind(l.hold)
    .bind(l.interruptible)
    .bind(l.notice_secs)
    .bind(&l.wipe)
    .bind(&l.state)
    .bind(l.recalled)
    .bind(l.attempts)
    .bind(&l.reason)
    .bind(l.bid)
    .bind(l.autobuy)
    .bind(l.created_at)
    .bind(l.updated_at)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Whether a live lease of `node` overlaps `[start, busy_until)` (inside `tx`).
pub async fn overlaps(
    tx: &mut Tx<'_>,
    node: &str,
    start: i64,
    busy_until: i64,
    except: i64,
) -> Result<bool, sqlx::Error> {
    let r: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM market_leases WHERE node = $1 AND live = 1 AND id <> $4 AND start_at < $3 AND $2 < busy_until",
    )
    .bind(node)
    .bind(start)
    .bind(busy_until)
    .bind(except)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(r.is_some())
}

/// One lease.
pub async fn get(pool: &AnyPool, id: i64) -> Result<Option<LeaseRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM market_leases WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// One lease, inside `tx`.
pub async fn get_tx(tx: &mut Tx<'_>, id: i64) -> Result<Option<LeaseRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM market_leases WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

/// Leases where `project` is owner or lessee (empty: all), newest first.
pub async fn list(pool: &AnyPool, project: &str) -> Result<Vec<LeaseRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM market_leases WHERE ($1 = '' OR owner = $1 OR lessee = $1) ORDER BY id DESC"
    )))
    .bind(project)
    .fetch_all(pool)
    .await
}

/// Every lease in `state`, oldest first.
pub async fn in_state(pool: &AnyPool, state: LeaseState) -> Result<Vec<LeaseRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM market_leases WHERE state = $1 ORDER BY id")))
        .bind(state.as_str())
        .fetch_all(pool)
        .await
}

/// Moves a lease from `from` to `to` (compare-and-set); false when it was
/// not in `from`. `reason` replaces the lease's reason when given.
pub async fn transition(
    tx: &mut Tx<'_>,
    id: i64,
    from: LeaseState,
    to: LeaseState,
    now: i64,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE market_leases SET state = $3, live = $4, updated_at = $5, reason = COALESCE($6, reason) \
         WHERE id = $1 AND state = $2",
    )
    .bind(id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(i64::from(to.is_live()))
    .bind(now)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Counts a failed attempt with its reason; returns the new count.
pub async fn attempt_failed(tx: &mut Tx<'_>, id: i64, reason: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("UPDATE market_leases SET attempts = attempts + 1, reason = $2 WHERE id = $1 RETURNING attempts")
        .bind(id)
        .bind(reason)
        .fetch_one(&mut **tx)
        .await
}

/// Resets the attempt count (a step succeeded).
pub async fn attempts_reset(tx: &mut Tx<'_>, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE market_leases SET attempts = 0 WHERE id = $1").bind(id).execute(&mut **tx).await.map(drop)
}

/// Moves the end of a live lease (extension, or a recall's notice); the
/// cleaning gap moves with it.
pub async fn set_end(tx: &mut Tx<'_>, id: i64, end: i64, gap: i64, recalled: bool) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE market_leases SET end_at = $2, busy_until = $3, recalled = CASE WHEN $4 = 1 THEN 1 ELSE recalled END \
         WHERE id = $1 AND live = 1",
    )
    .bind(id)
    .bind(end)
    .bind(end + gap)
    .bind(i64::from(recalled))
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The lessee of the lease that holds `node` now (granting, active, notice
/// or revoking), with the owner: (lease id, owner, lessee).
pub async fn holding(pool: &AnyPool, node: &str) -> Result<Option<(i64, String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, owner, lessee FROM market_leases WHERE node = $1 \
         AND state IN ('granting', 'active', 'notice', 'revoking')",
    )
    .bind(node)
    .fetch_optional(pool)
    .await
}

/// Count of leases of `autobuy` rule that are live.
pub async fn live_of_autobuy(pool: &AnyPool, rule: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM market_leases WHERE autobuy = $1 AND live = 1")
        .bind(rule)
        .fetch_one(pool)
        .await
}

/// What the market holds of `node`: a live lease or a live offer window, in words; `None`: nothing.
pub async fn claim_on(pool: &AnyPool, node: &str) -> Result<Option<String>, sqlx::Error> {
    let lease: Option<(i64, String)> =
        sqlx::query_as("SELECT id, state FROM market_leases WHERE node = $1 AND live = 1 ORDER BY start_at LIMIT 1")
            .bind(node)
            .fetch_optional(pool)
            .await?;
    if let Some((id, state)) = lease {
        return Ok(Some(format!("lease {id} ({state})")));
    }
    let offer: Option<i64> =
        sqlx::query_scalar("SELECT offer FROM market_offer_nodes WHERE node = $1 AND live = 1 LIMIT 1")
            .bind(node)
            .fetch_optional(pool)
            .await?;
    Ok(offer.map(|o| format!("offer {o}")))
}

/// The live leases of `node`, inside `tx`, by id.
pub async fn live_of_node(tx: &mut Tx<'_>, node: &str) -> Result<Vec<LeaseRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM market_leases WHERE node = $1 AND live = 1 ORDER BY id"
    )))
    .bind(node)
    .fetch_all(&mut **tx)
    .await
}
