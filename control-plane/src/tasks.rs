//! The control plane's background work and its shutdown, in the style of
//! mini-redis' `Shutdown`: one cancellation token every long-running task
//! listens to, and a tracker that `serve` waits on, with a bound, before the
//! process exits.
//!
//! Background work (networking actions, deployments, the upstream sync) is
//! spawned with [`Tasks::spawn`]. Shutdown has two steps. When `serve`'s
//! shutdown signal fires, [`Tasks::begin_drain`]: no new long-running work is
//! accepted, while the work that runs (a rollout) may finish, for at most
//! the drain time ([`Tasks::drain_time`], `serve --drain-secs`). Then
//! [`Tasks::begin_shutdown`] cancels the token: each task stops at its next
//! safe point and records where it stopped; [`Tasks::drain`] waits for all
//! of them, at most [`DEFAULT_DRAIN`].

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long `serve` waits for background tasks to record where they
/// stopped, once told to stop.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(30);

/// How long running deployments may go on after the shutdown signal, by default.
pub const DEFAULT_DRAIN_TIME: Duration = Duration::from_secs(120);

/// The shutdown token and the tracker of every background task.
#[derive(Debug, Clone)]
pub struct Tasks {
    token: CancellationToken,
    draining: CancellationToken,
    tracker: TaskTracker,
    drain_time: Duration,
}

impl Default for Tasks {
    fn default() -> Self {
        Tasks::new(DEFAULT_DRAIN_TIME)
    }
}

impl Tasks {
    /// A task set whose running work may go on for `drain_time` after the shutdown signal.
    pub fn new(drain_time: Duration) -> Tasks {
        Tasks {
            token: CancellationToken::new(),
            draining: CancellationToken::new(),
            tracker: TaskTracker::new(),
            drain_time,
        }
    }

    /// How long running work may go on after the shutdown signal.
    pub fn drain_time(&self) -> Duration {
        self.drain_time
    }

    /// Stops accepting new long-running work (idempotent); what runs goes on.
    pub fn begin_drain(&self) {
        self.draining.cancel();
    }

    /// Whether new long-running work is refused (draining or shut down).
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled() || self.token.is_cancelled()
    }

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

    /// The shutdown token itself, for work that takes one (the netboot servers).
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Tells every task to stop (idempotent).
    pub fn begin_shutdown(&self) {
        self.draining.cancel();
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
