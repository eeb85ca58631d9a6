//! The node runtimes' side of a server process: the instruction id block
//! it gives out ids from (`runtime_api::server` module docs).

use super::AppState;
use super::error::Error;
use crate::db;

/// Takes this process's block of instruction ids from the database and
/// makes the runtime API give out ids from it; returns the block number.
pub async fn take_id_block(st: &AppState) -> Result<u64, Error> {
    let block = db::runtime::take_id_block(&st.db.writer).await?;
    let block = u64::try_from(block).map_err(|_| Error::internal(format!("negative id block {block}")))?;
    st.runtime.use_id_block(block);
    Ok(block)
}
