//! The control plane's background work and its shutdown, in the style of
//! mini-redis' `Shutdown`: one cancellation token every long-running task
//! listens to, and a tracker that `serve` waits on, with a bound, before the
//! process exits.
//!
//! Background work (networking actions, deployments, the upstream sync) is
//! spawned with [`Tasks::spawn`]. When `serve`'s shutdown signal fires,
//! [`Tasks::begin_shutdown`] cancels the token: each task finishes or stops at
//! its next safe point and records where it stopped; [`Tasks::drain`] then
//! waits for all of them, at most the drain time.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long `serve` waits for background work after its shutdown signal, by default.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

/// The shutdown token and the tracker of every background task.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Tasks {
    /// Runs `fut` in the background, tracked: [`Tasks::drain`] waits for it.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(fut)
    }

    /// Completes once shutdown has begun (at once if it has).
    pub async fn shutting_down(&self) {
        self.token.cancelled().await;
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Tells every task to stop (idempotent).
    pub fn begin_shutdown(&self) {
        self.token.cancel();
    }

    /// Begins shutdown and waits up to `bound` for every task to end; returns
    /// how many were still running when the bound passed.
    pub async fn drain(&self, bound: Duration) -> usize {
        self.begin_shutdown();
        self.tracker.close();
        match tokio::time::timeout(bound, self.tracker.wait()).await {
            Ok(()) => 0,
            Err(_) => self.tracker.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_tasks_that_listen_and_is_bounded() {
        let tasks = Tasks::default();
        let t = tasks.clone();
        let polite = tasks.spawn(async move {
            t.shutting_down().await;
            42
        });
        assert!(!tasks.is_shutting_down());
        assert_eq!(tasks.drain(Duration::from_secs(5)).await, 0);
        assert_eq!(polite.await.unwrap(), 42);

        let tasks = Tasks::default();
        let _deaf = tasks.spawn(tokio::time::sleep(Duration::from_secs(3600)));
        assert_eq!(tasks.drain(Duration::from_millis(50)).await, 1, "a task that ignores the token is counted");
    }
}
