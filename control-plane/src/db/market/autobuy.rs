//! Autobuy rules.

use sqlx::AnyPool;

use crate::db::Tx;

/// An autobuy rule row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AutobuyRow {
    /// Id.
    pub id: i64,
    /// Buying project.
    pub project: String,
    /// JSON filter (`app::market::filter`).
    pub filter: String,
    /// Nodes to keep leased.
    pub target: i64,
    /// Highest buy-now price, milli-credits per node-hour.
    pub max_mph: i64,
    /// Most spent per day (UTC), milli-credits.
    pub daily_budget: i64,
    /// Lease length to buy, hours.
    pub hours: i64,
    /// The current day's budget hold.
    pub hold: Option<i64>,
    /// Day number (unix seconds / 86400) of that hold.
    pub budget_day: i64,
    /// 0/1.
    pub enabled: i64,
    /// Why it is paused, or what it last did.
    pub reason: String,
    /// Creator.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

const COLS: &str = "id, project, filter, target, max_mph, daily_budget, hours, hold, budget_day, enabled, reason, created_by, created_at";

/// Inserts a rule.
pub async fn insert(tx: &mut Tx<'_>, r: &AutobuyRow) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO market_autobuy ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    )))
    .bind(r.id)
    .bind(&r.project)
    .bind(&r.filter)
    .bind(r.target)
    .bind(r.max_mph)
    .bind(r.daily_budget)
    .bind(r.hours)
    .bind(r.hold)
    .bind(r.budget_day)
    .bind(r.enabled)
    .bind(&r.reason)
    .bind(&r.created_by)
    .bind(r.created_at)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Rules of `project` (empty: all), by id.
pub async fn list(pool: &AnyPool, project: &str) -> Result<Vec<AutobuyRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM market_autobuy WHERE ($1 = '' OR project = $1) ORDER BY id"
    )))
    .bind(project)
    .fetch_all(pool)
    .await
}

/// One rule, inside `tx`.
pub async fn get_tx(tx: &mut Tx<'_>, id: i64) -> Result<Option<AutobuyRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM market_autobuy WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

/// Records the rule's budget hold for `day`.
pub async fn set_budget(tx: &mut Tx<'_>, id: i64, hold: Option<i64>, day: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE market_autobuy SET hold = $2, budget_day = $3 WHERE id = $1")
        .bind(id)
        .bind(hold)
        .bind(day)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// Sets the rule's status text (and enabled flag).
pub async fn set_status(tx: &mut Tx<'_>, id: i64, enabled: bool, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE market_autobuy SET enabled = $2, reason = $3 WHERE id = $1")
        .bind(id)
        .bind(i64::from(enabled))
        .bind(reason)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// Deletes a rule; false when it did not exist.
pub async fn delete(tx: &mut Tx<'_>, id: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM market_autobuy WHERE id = $1").bind(id).execute(&mut **tx).await?;
    Ok(r.rows_affected() == 1)
}
