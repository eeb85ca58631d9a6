//! Offers and the nodes they contain.

use sqlx::AnyPool;

use crate::db::Tx;

/// An offer row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OfferRow {
    /// Id.
    pub id: i64,
    /// Owning project.
    pub owner: String,
    /// Window start (unix seconds, inclusive).
    pub start_at: i64,
    /// Window end (exclusive).
    pub end_at: i64,
    /// Reserve price, milli-credits per node-hour.
    pub reserve_mph: i64,
    /// Buy-now price, if any.
    pub buy_now_mph: Option<i64>,
    /// Sealed bids close then; `None`: buy-now only.
    pub closes_at: Option<i64>,
    /// JSON array of projects that may buy ([] = all).
    pub audience: String,
    /// 0/1.
    pub interruptible: i64,
    /// Notice before an owner recall takes effect.
    pub notice_secs: i64,
    /// none | discard | zero.
    pub wipe: String,
    /// JSON resources of one unit.
    pub resources: String,
    /// open | settled | withdrawn.
    pub state: String,
    /// Creator.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

const COLS: &str = "id, owner, start_at, end_at, reserve_mph, buy_now_mph, closes_at, audience, interruptible, \
                    notice_secs, wipe, resources, state, created_by, created_at";

/// Inserts an offer (its id taken by the caller) and its nodes.
pub async fn insert(tx: &mut Tx<'_>, o: &OfferRow, nodes: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO market_offers ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    )))
    .bind(o.id)
    .bind(&o.owner)
    .bind(o.start_at)
    .bind(o.end_at)
    .bind(o.reserve_mph)
    .bind(o.buy_now_mph)
    .bind(o.closes_at)
    .bind(&o.audience)
    .bind(o.interruptible)
    .bind(o.notice_secs)
    .bind(&o.wipe)
    .bind(&o.resources)
    .bind(&o.state)
    .bind(&o.created_by)
    .bind(o.created_at)
    .execute(&mut **tx)
    .await?;
    for n in nodes {
        sqlx::query("INSERT INTO market_offer_nodes (offer, node, start_at, end_at, live) VALUES ($1, $2, $3, $4, 1)")
            .bind(o.id)
            .bind(n)
            .bind(o.start_at)
            .bind(o.end_at)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The first node of `nodes` already in another live offer overlapping `[start, end)`.
pub async fn overlapping(
    tx: &mut Tx<'_>,
    nodes: &[String],
    start: i64,
    end: i64,
) -> Result<Option<String>, sqlx::Error> {
    for n in nodes {
        let hit: Option<i64> = sqlx::query_scalar(
            "SELECT offer FROM market_offer_nodes WHERE node = $1 AND live = 1 AND start_at < $3 AND $2 < end_at",
        )
        .bind(n)
        .bind(start)
        .bind(end)
        .fetch_optional(&mut **tx)
        .await?;
        if hit.is_some() {
            return Ok(Some(n.clone()));
        }
    }
    Ok(None)
}

/// One offer.
pub async fn get(pool: &AnyPool, id: i64) -> Result<Option<OfferRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM market_offers WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// One offer, inside `tx`.
pub async fn get_tx(tx: &mut Tx<'_>, id: i64) -> Result<Option<OfferRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM market_offers WHERE id = $1")))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

/// Offers in `state` (empty: all), newest first.
pub async fn list(pool: &AnyPool, state: &str) -> Result<Vec<OfferRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM market_offers WHERE ($1 = '' OR state = $1) ORDER BY id DESC"
    )))
    .bind(state)
    .fetch_all(pool)
    .await
}

/// The nodes of an offer, by name.
pub async fn nodes<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    exec: E,
    offer: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT node FROM market_offer_nodes WHERE offer = $1 ORDER BY node")
        .bind(offer)
        .fetch_all(exec)
        .await
}

/// The nodes of an offer with no live lease overlapping `[start, busy_until)`, by name (inside `tx`).
pub async fn free_nodes(tx: &mut Tx<'_>, offer: i64, start: i64, busy_until: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT o.node FROM market_offer_nodes o WHERE o.offer = $1 AND NOT EXISTS \
         (SELECT 1 FROM market_leases l WHERE l.node = o.node AND l.live = 1 AND l.start_at < $3 AND $2 < l.busy_until) \
         ORDER BY o.node",
    )
    .bind(offer)
    .bind(start)
    .bind(busy_until)
    .fetch_all(&mut **tx)
    .await
}

/// Takes the offer's row lock (PostgreSQL; SQLite's one writer is the
/// lock) and returns it if it is `state`.
pub async fn lock(tx: &mut Tx<'_>, id: i64, state: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE market_offers SET state = state WHERE id = $1 AND state = $2")
        .bind(id)
        .bind(state)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Moves the offer from `from` to `to`; false when it was not in `from`.
/// Leaving `open` ends its nodes' offer windows (sold time is guarded by
/// the leases; unsold time may be offered again).
pub async fn set_state(tx: &mut Tx<'_>, id: i64, from: &str, to: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE market_offers SET state = $3 WHERE id = $1 AND state = $2")
        .bind(id)
        .bind(from)
        .bind(to)
        .execute(&mut **tx)
        .await?;
    if r.rows_affected() != 1 {
        return Ok(false);
    }
    if to != "open" {
        sqlx::query("UPDATE market_offer_nodes SET live = 0 WHERE offer = $1").bind(id).execute(&mut **tx).await?;
    }
    Ok(true)
}

/// Open auctions whose close time has come.
pub async fn closing(pool: &AnyPool, now: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM market_offers WHERE state = 'open' AND closes_at IS NOT NULL AND closes_at <= $1",
    )
    .bind(now)
    .fetch_all(pool)
    .await
}

/// Ends the offer windows whose end has passed (live = 0), so the
/// nodes may be offered again; returns how many.
pub async fn expire(tx: &mut Tx<'_>, now: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("UPDATE market_offer_nodes SET live = 0 WHERE live = 1 AND end_at <= $1")
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected())
}

/// How many nodes of an offer have no live lease overlapping `[start, busy_until)`.
pub async fn free_count(pool: &AnyPool, offer: i64, start: i64, busy_until: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM market_offer_nodes o WHERE o.offer = $1 AND NOT EXISTS \
         (SELECT 1 FROM market_leases l WHERE l.node = o.node AND l.live = 1 AND l.start_at < $3 AND $2 < l.busy_until)",
    )
    .bind(offer)
    .bind(start)
    .bind(busy_until)
    .fetch_one(pool)
    .await
}

/// Open offers that contain `node`, inside `tx`.
pub async fn open_with_node(tx: &mut Tx<'_>, node: &str) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT o.id FROM market_offers o JOIN market_offer_nodes n ON n.offer = o.id \
         WHERE n.node = $1 AND o.state = 'open' ORDER BY o.id",
    )
    .bind(node)
    .fetch_all(&mut **tx)
    .await
}
