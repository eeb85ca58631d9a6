//! Sealed bids on auctioned offers.

use sqlx::AnyPool;

use crate::db::Tx;

/// A bid row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BidRow {
    /// Id.
    pub id: i64,
    /// The auctioned offer.
    pub offer: i64,
    /// Bidding project.
    pub project: String,
    /// Nodes wanted.
    pub quantity: i64,
    /// Highest price, milli-credits per node-hour.
    pub max_mph: i64,
    /// 0/1: all of `quantity` or nothing.
    pub all_or_nothing: i64,
    /// The escrow hold.
    pub hold: i64,
    /// open | won | lost | withdrawn.
    pub state: String,
    /// Nodes won.
    pub won: i64,
    /// Clearing price paid (winners).
    pub price_mph: Option<i64>,
    /// Creator.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

const COLS: &str =
    "id, offer, project, quantity, max_mph, all_or_nothing, hold, state, won, price_mph, created_by, created_at";

/// Inserts a bid.
pub async fn insert(tx: &mut Tx<'_>, b: &BidRow) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO market_bids ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    )))
    .bind(b.id)
    .bind(b.offer)
    .bind(&b.project)
    .bind(b.quantity)
    .bind(b.max_mph)
    .bind(b.all_or_nothing)
    .bind(b.hold)
    .bind(&b.state)
    .bind(b.won)
    .bind(b.price_mph)
    .bind(&b.created_by)
    .bind(b.created_at)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// One bid.
pub async fn get(pool: &AnyPool, id: i64) -> Result<Option<BidRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM market_bids WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// One bid, inside `tx`.
pub async fn get_tx(tx: &mut Tx<'_>, id: i64) -> Result<Option<BidRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM market_bids WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

/// The open bids of an offer, inside `tx`, by id.
pub async fn open_of_offer(tx: &mut Tx<'_>, offer: i64) -> Result<Vec<BidRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM market_bids WHERE offer = $1 AND state = 'open' ORDER BY id"
    )))
    .bind(offer)
    .fetch_all(&mut **tx)
    .await
}

/// Bids of `project` (empty: all) or of `offer` (0: all), newest first.
pub async fn list(pool: &AnyPool, project: &str, offer: i64) -> Result<Vec<BidRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM market_bids WHERE ($1 = '' OR project = $1) AND ($2 = 0 OR offer = $2) ORDER BY id DESC"
    )))
    .bind(project)
    .bind(offer)
    .fetch_all(pool)
    .await
}

/// Records a bid's outcome; false unless it was open (a bid ends exactly once).
pub async fn finish(tx: &mut Tx<'_>, id: i64, state: &str, won: i64, price: Option<i64>) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE market_bids SET state = $2, won = $3, price_mph = $4 WHERE id = $1 AND state = 'open'")
        .bind(id)
        .bind(state)
        .bind(won)
        .bind(price)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}
