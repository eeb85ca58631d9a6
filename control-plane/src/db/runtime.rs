//! The node runtimes' instruction id blocks (`runtime_id_blocks`).

use super::Writer;

/// Takes the next block number (1, 2, ...): one statement, so two processes
/// starting at once on one PostgreSQL never take the same block.
pub async fn take_id_block(w: &Writer) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("UPDATE runtime_id_blocks SET last_block = last_block + 1 WHERE id = 1 RETURNING last_block")
        .fetch_one(w.pool())
        .await
}
