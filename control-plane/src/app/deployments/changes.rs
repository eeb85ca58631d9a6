//! Every change of a deployment, in order, on any replica: the event outbox
//! (`db::deployment_events`) as a stream.
//!
//! The replica making a change appends it to the outbox in the same
//! transaction, numbered 1, 2, 3 ... per deployment. A stream here reads
//! the outbox after the last number it gave out, so it sees every event
//! once and in order whichever replica wrote it, and a client that
//! reconnects with the last number it saw (`Last-Event-ID`) misses nothing.
//!
//! Waking: on PostgreSQL each replica keeps one `LISTEN` connection
//! ([`spawn_listener`]); the append's `NOTIFY` wakes the streams of that
//! deployment at once on every replica. A stream also looks again on its
//! own every [`recheck`] (the listener may be reconnecting), and on SQLite
//! (one process) every 0.25 s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use serde::Serialize;
use tokio::sync::Notify;
use utoipa::ToSchema;

use super::super::AppState;
use super::super::error::{Error, Result};
use crate::authz::Caller;
use crate::db::{self, Backend};

/// One change of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Change {
    /// 1, 2, 3 ... per deployment (the SSE event id).
    pub seq: i64,
    /// `created`, `session`, `node`, `takeover`, `retry` or `end`.
    pub kind: String,
    /// Database clock, Unix seconds.
    pub at: i64,
    /// What changed (`node`: node, state, reason; `session`: session, owner;
    /// `takeover`: owner, epoch; `end`: state, reason).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// The wake-ups of this process's change streams.
#[derive(Debug, Default)]
pub struct Changes {
    waiting: Mutex<HashMap<i64, Arc<Notify>>>,
    /// Whether the `LISTEN` connection is up.
    listening: AtomicBool,
    /// Notifications received (each one wakes one deployment's streams).
    notified: AtomicU64,
}

impl Changes {
    fn watch(&self, id: i64) -> Arc<Notify> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).entry(id).or_default().clone()
    }

    fn wake(&self, id: i64) {
        if let Some(n) = self.waiting.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            n.notify_waiters();
        }
    }

    fn wake_all(&self) {
        for n in self.waiting.lock().unwrap_or_else(|p| p.into_inner()).values() {
            n.notify_waiters();
        }
    }

    /// Forgets `id`'s notifier once no stream holds it.
    fn release(&self, id: i64, n: Arc<Notify>) {
        let mut map = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        drop(n);
        if map.get(&id).is_some_and(|n| Arc::strong_count(n) == 1) {
            map.remove(&id);
        }
    }

    /// Whether the `LISTEN` connection is up.
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Notifications received by the `LISTEN` connection so far.
    pub fn notified(&self) -> u64 {
        self.notified.load(Ordering::Relaxed)
    }
}

/// How long a stream waits before it looks again without being woken.
fn recheck(st: &AppState) -> Duration {
    match st.db.backend {
        Backend::Sqlite => Duration::from_millis(250),
        Backend::Postgres if st.deploys.changes.listening.load(Ordering::Relaxed) => Duration::from_secs(5),
        Backend::Postgres => Duration::from_secs(1),
    }
}

/// The longest one stream follows a deployment (a client reconnects with `Last-Event-ID`).
const STREAM_FOR: Duration = Duration::from_secs(6 * 3600);
/// Events read per query.
const PAGE: i64 = 256;

/// Deployment `id`'s changes after number `after` (0: from the start), as
/// the caller may see it: every stored one, then each new one as it is
/// stored, ending after an `end` event (a `retry` later starts a new run:
/// reconnect with the last number to follow it), at shutdown, or after
/// [`STREAM_FOR`].
pub async fn stream(st: &AppState, c: &Caller, id: i64, after: i64) -> Result<impl Stream<Item = Change> + use<>> {
    super::visible(st, c, id).await?;
    if after < 0 {
        return Err(Error::BadRequest("Last-Event-ID must be a change number (0 or more)".into()));
    }
    struct S {
        st: AppState,
        id: i64,
        last: i64,
        page: std::collections::VecDeque<Change>,
        notify: Option<Arc<Notify>>,
        until: tokio::time::Instant,
        done: bool,
    }
    let s = S {
        notify: Some(st.deploys.changes.watch(id)),
        st: st.clone(),
        id,
        last: after,
        page: Default::default(),
        until: tokio::time::Instant::now() + STREAM_FOR,
        done: false,
    };
    let token = st.tasks.token();
    Ok(futures_util::stream::unfold(s, move |mut s| {
        let token = token.clone();
        async move {
            loop {
                if s.done {
                    if let Some(n) = s.notify.take() {
                        s.st.deploys.changes.release(s.id, n);
                    }
                    return None;
                }
                if let Some(c) = s.page.pop_front() {
                    s.last = c.seq;
                    s.done = c.kind == "end";
                    return Some((c, s));
                }
                let notify = s.notify.clone().expect("held until the stream is done");
                let woken = notify.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                match db::deployment_events::after(&s.st.db.pool, s.id, s.last, PAGE).await {
                    Ok(rows) if !rows.is_empty() => {
                        s.page.extend(rows.into_iter().map(|r| Change {
                            seq: r.seq,
                            kind: r.kind,
                            at: r.at,
                            data: serde_json::from_str(&r.data).unwrap_or(serde_json::Value::Null),
                        }));
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(id = s.id, error = %e, "cannot read a deployment's changes"),
                }
                let left = s.until.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    s.done = true;
                    continue;
                }
                tokio::select! {
                    _ = token.cancelled() => s.done = true,
                    _ = woken => {}
                    _ = tokio::time::sleep(recheck(&s.st).min(left)) => {}
                }
            }
        }
    }))
}

/// On PostgreSQL: keeps one `LISTEN` connection on the outbox's channel
/// until shutdown, waking the streams of each deployment named in a
/// notification; reconnects with a growing pause (1 s to 30 s) when it
/// drops, waking every stream (notifications may have been missed).
pub fn spawn_listener(st: &AppState) {
    if st.db.backend != Backend::Postgres {
        return;
    }
    let (st2, token) = (st.clone(), st.tasks.token());
    st.tasks.spawn(async move {
        let changes = &st2.deploys.changes;
        let mut pause = Duration::from_secs(1);
        loop {
            let run = async {
                let mut l = sqlx::postgres::PgListener::connect(&st2.db.url.0).await?;
                l.listen(db::deployment_events::CHANNEL).await?;
                changes.listening.store(true, Ordering::Relaxed);
                changes.wake_all();
                tracing::info!("listening for deployment changes");
                loop {
                    let n = tokio::select! {
                        _ = token.cancelled() => return Ok::<_, sqlx::Error>(()),
                        n = l.try_recv() => n?,
                    };
                    let Some(n) = n else {
                        // The connection dropped (it reconnects on the next call): look again.
                        changes.wake_all();
                        continue;
                    };
                    changes.notified.fetch_add(1, Ordering::Relaxed);
                    match n.payload().parse::<i64>() {
                        Ok(id) => changes.wake(id),
                        Err(_) => tracing::warn!(payload = n.payload(), "a deployment change names no deployment"),
                    }
                }
            };
            let r = run.await;
            changes.listening.store(false, Ordering::Relaxed);
            changes.wake_all();
            match r {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, pause_s = pause.as_secs(), "deployment change listener failed"),
            }
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(30));
        }
    });
}
