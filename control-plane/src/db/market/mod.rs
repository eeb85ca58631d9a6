//! The marketplace's tables (`migrations/0014_market.sql`): the ledger
//! ([`ledger`]), offers ([`offers`]), bids ([`bids`]), leases ([`leases`]),
//! autobuy rules ([`autobuy`]) and idempotency keys ([`idempotency`]).
//!
//! Every market change runs in one transaction of [`crate::db::Writer`],
//! reads its time from the database inside it ([`now`]), and takes its ids
//! from a counter row ([`next_id`]). On PostgreSQL the overlap rules are
//! also exclusion constraints ([`install_postgres`]); on SQLite the same
//! checks run inside the one writer transaction, which no other writer
//! interleaves with.

pub mod autobuy;
pub mod bids;
pub mod idempotency;
pub mod leases;
pub mod ledger;
pub mod offers;

use sqlx::AnyPool;

use super::Tx;
// Every market time comes from the database's clock.
pub use super::{now, now_pool};

/// The kinds of market ids.
pub const ID_KINDS: [&str; 6] = ["offer", "bid", "lease", "transfer", "hold", "autobuy"];

/// The next id of `kind` (one of [`ID_KINDS`]), inside the transaction that
/// inserts it. On SQLite, a counter row (its one writer serializes them
/// anyway); on PostgreSQL a sequence per kind ([`install_postgres`]), so
/// concurrent transactions do not queue on one counter row until commit
/// (ids may then skip a number when a transaction rolls back).
pub async fn next_id(tx: &mut Tx<'_>, kind: &str) -> Result<i64, sqlx::Error> {
    if !ID_KINDS.contains(&kind) {
        return Err(sqlx::Error::Protocol(format!("unknown id kind {kind:?}")));
    }
    if tx.backend_name() == "PostgreSQL" {
        return sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT nextval('market_{kind}_seq')")))
            .fetch_one(&mut **tx)
            .await;
    }
    sqlx::query_scalar("UPDATE market_counters SET next = next + 1 WHERE name = $1 RETURNING next")
        .bind(kind)
        .fetch_one(&mut **tx)
        .await
}

/// PostgreSQL only, after the migrations (idempotent): one id sequence per
/// kind ([`next_id`]), and the exclusion constraints that make the database itself refuse overlapping live
/// leases of one node (over `[start_at, busy_until)`, the cleaning gap
/// included) and overlapping live offers of one node. Needs `btree_gist`,
/// a trusted extension that the database's owner may create.
pub async fn install_postgres(pool: &AnyPool) -> Result<(), sqlx::Error> {
    for kind in ID_KINDS {
        // A new sequence starts after the counter (0 on a fresh database).
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_class WHERE relkind = 'S' AND relname = 'market_{kind}_seq') THEN
                 CREATE SEQUENCE market_{kind}_seq;
                 PERFORM setval('market_{kind}_seq', (SELECT next FROM market_counters WHERE name = '{kind}') + 1, false);
               END IF;
             END $$;"
        )))
        .execute(pool)
        .await?;
    }
    sqlx::raw_sql(
        "CREATE EXTENSION IF NOT EXISTS btree_gist;
         DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'market_leases_no_overlap') THEN
             ALTER TABLE market_leases ADD CONSTRAINT market_leases_no_overlap
               EXCLUDE USING gist (node WITH =, int8range(start_at, busy_until) WITH &&) WHERE (live = 1);
           END IF;
           IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'market_offer_nodes_no_overlap') THEN
             ALTER TABLE market_offer_nodes ADD CONSTRAINT market_offer_nodes_no_overlap
               EXCLUDE USING gist (node WITH =, int8range(start_at, end_at) WITH &&) WHERE (live = 1);
           END IF;
         END $$;",
    )
    .execute(pool)
    .await
    .map(drop)
}

/// Whether `e` is an exclusion-constraint violation (PostgreSQL `23P01`).
pub fn is_exclusion(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "23P01")
}
