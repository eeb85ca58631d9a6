//! The market's background task: every tick (`MarketConfig::tick`) it
//! settles the auctions whose close has come, moves leases along their
//! state machine (`leases::advance`), runs the grants and revokes that are
//! due, runs the autobuy rules, ends past offer windows and forgets
//! idempotency keys older than a day. It stops at the shutdown signal; a
//! revoke in flight stops with it and is resumed at the next start (every
//! step of a revoke is safe to repeat), so after a crash the leases in
//! `granting` and `revoking` are finished by the next process: that is
//! the reconciler. With several replicas on one database the driver is a
//! singleton: only the replica holding its row in `singleton_jobs` ticks,
//! so one replica at a time grants, revokes and settles; when it dies and
//! is reaped, another takes the row and finishes what it left.

use std::time::Duration;

use super::leases;
use crate::app::AppState;
use crate::app::error::Result;
use crate::db;
use crate::db::market::leases::LeaseState;

/// How long idempotency keys are kept.
pub const KEY_TTL_SECS: i64 = 86_400;

/// Starts the driver (once per process, from `serve`). With several
/// replicas, only the one holding the driver's job row ticks
/// (`fencing::holds`); the others take it over once that one is reaped.
pub fn spawn(st: &AppState) {
    let st2 = st.clone();
    st.tasks.spawn(async move {
        let tick = st2.market.config.tick;
        let mut held = false;
        loop {
            match crate::app::fencing::holds(&st2, crate::app::fencing::MARKET_DRIVER).await {
                Ok(now) => {
                    if now != held {
                        tracing::info!(replica = %st2.replica.id, running = now, "market driver held by this replica: {now}");
                    }
                    held = now;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check who runs the market driver; skipping this tick");
                    held = false;
                }
            }
            if held && let Err(e) = tick_once(&st2).await {
                tracing::warn!(error = %e, "market driver tick failed");
            }
            tokio::select! {
                () = st2.tasks.shutting_down() => break,
                () = tokio::time::sleep(tick) => {}
            }
        }
    });
}

/// One pass of the driver. Grants run inline (short); each revoke runs as
/// its own tracked task, never two for one lease in this process.
pub async fn tick_once(st: &AppState) -> Result<()> {
    let now = db::market::now_pool(&st.db.pool, st.db.backend).await?;
    {
        let mut tx = st.db.writer.begin().await?;
        db::market::offers::expire(&mut tx, now).await?;
        db::market::idempotency::prune(&mut tx, now - KEY_TTL_SECS).await?;
        tx.commit().await?;
    }
    for id in db::market::offers::closing(&st.db.pool, now).await? {
        let mut tx = st.db.writer.begin().await?;
        let now = db::market::now(&mut tx, st.db.backend).await?;
        match super::trade::settle_auction(st, &mut tx, now, id).await {
            Ok(_) => tx.commit().await?,
            Err(e) => tracing::warn!(offer = id, error = %e, "auction settlement failed"),
        }
    }
    leases::advance(st, now).await?;
    for l in db::market::leases::in_state(&st.db.pool, LeaseState::Granting).await? {
        if st.tasks.is_shutting_down() {
            return Ok(());
        }
        leases::grant(st, &l).await?;
    }
    for l in db::market::leases::in_state(&st.db.pool, LeaseState::Revoking).await? {
        if !st.market.revoking.lock().unwrap_or_else(|e| e.into_inner()).insert(l.id) {
            continue;
        }
        let st2 = st.clone();
        st.tasks.spawn(async move {
            let id = l.id;
            tokio::select! {
                r = leases::revoke(&st2, &l) => {
                    if let Err(e) = r {
                        tracing::warn!(lease = id, error = %e, "lease revoke failed");
                    }
                }
                () = st2.tasks.shutting_down() => {
                    tracing::info!(lease = id, "shutdown: the revoke resumes at the next start");
                }
            }
            st2.market.revoking.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        });
    }
    super::autobuy::run(st).await?;
    Ok(())
}

/// Runs ticks until `done` holds or `bound` passes (tests and tools); returns whether `done` held.
pub async fn run_until(st: &AppState, bound: Duration, mut done: impl AsyncFnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + bound;
    loop {
        if let Err(e) = tick_once(st).await {
            tracing::warn!(error = %e, "market driver tick failed");
        }
        if done().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
