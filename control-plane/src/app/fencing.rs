//! Fencing: a replica makes a side effect (a BMC or switch call, a runtime
//! instruction) for a piece of work only while it still owns that work and
//! its own lease has time left, by the database clock (issue 26;
//! docs/scale-out.md "Fencing"). Kept apart from [`super::replicas`] (which
//! registers replicas and reaps dead ones, calling into actions and
//! deployments) so that the use cases that make side effects depend on this
//! file only.

use std::time::Duration;

use super::AppState;
use super::error::{Error, Result};
use crate::db;

/// The market's driver: one replica at a time runs it ([`holds`]).
pub const MARKET_DRIVER: &str = "market-driver";

/// Whether this replica holds periodic job `name` now (taking it if it is
/// free or its holder is gone). A job is run only by its holder, so two
/// replicas never both run it; it moves to another replica once its holder
/// is reaped.
pub async fn holds(st: &AppState, name: &str) -> Result<bool> {
    Ok(db::replicas::hold_job(&st.db.writer, st.db.backend, name, &st.replica.id).await?)
}

pub use crate::db::replicas::Work;

/// Checks, just before a side effect for `work` (a BMC or switch call, a
/// runtime instruction), that this replica still owns `work` and that its
/// own lease has at least a third of the dead timeout left, by the database
/// clock; returns the time left, which bounds the side effect. Otherwise
/// [`Error::Fenced`] (counted): another replica may have declared this one
/// dead and taken the work over, so nothing is done.
///
/// Why a third: another replica can declare this one dead only once its
/// heartbeat is older than the dead timeout, so a side effect that starts
/// with time left on the lease and is bounded by it lands before anyone
/// else may act on the same work. (The one window left: the process stopped
/// between this check and the call itself; docs/scale-out.md.)
pub async fn fence(st: &AppState, work: Work<'_>, what: &str) -> Result<Duration> {
    let dead = st.replica.dead_after.as_secs() as i64;
    let left = db::replicas::lease_left(&st.db.pool, st.db.backend, &st.replica.id, dead, work).await?;
    match left {
        Some(left) if left >= (dead / 3).max(1) => Ok(Duration::from_secs(left as u64)),
        _ => {
            st.metrics.fenced(work.kind());
            let why = match left {
                None => match work {
                    Work::Request => "this replica is no longer registered (declared dead by another)".to_string(),
                    Work::Action(id) => format!("networking action {id} is no longer this replica's"),
                    Work::Job(name) => format!("periodic job {name} is no longer held by this replica"),
                    Work::Deployment(id) => format!("deployment {id} is no longer this replica's"),
                },
                Some(left) => format!("this replica's lease has {left} s left (heartbeat late)"),
            };
            tracing::warn!(replica = %st.replica.id, ?work, "{what} not made: {why}");
            Err(Error::Fenced(format!("{what} not made: {why}; try again (another replica may hold the work)")))
        }
    }
}

/// Makes side effect `call` for `work` only after [`fence`] allows it
/// (nothing of `call` runs before: it is a closure), bounded by the lease
/// time left.
pub async fn fenced<T, E, F>(st: &AppState, work: Work<'_>, what: &str, call: impl FnOnce() -> F) -> Result<T>
where
    F: std::future::Future<Output = std::result::Result<T, E>>,
    Error: From<E>,
{
    let left = fence(st, work, what).await?;
    match tokio::time::timeout(left, call()).await {
        Ok(r) => Ok(r?),
        Err(_) => {
            Err(Error::Fenced(format!("{what} did not finish within this replica's lease ({} s)", left.as_secs())))
        }
    }
}
