//! The control-plane side of the runtime API: an axum [`Router`] over an
//! in-memory node table.
//!
//! The control plane (or a test) owns a [`RuntimeApi`], mounts
//! [`RuntimeApi::router`], queues instructions with [`RuntimeApi::push`] and
//! reads check-ins and reports back. Instructions are delivered at most once:
//! a node that dies mid-way shows up as a missing report, and the caller
//! decides whether to queue the instruction again. The table is in memory: a
//! restarted server knows no node until it checks in again, which the agent
//! does whenever a poll answers 404.
//!
//! Instruction ids are unique across server processes, not only within one.
//! The control plane gives each process its own block of ids, persisted in
//! its database ([`RuntimeApi::use_id_block`]); without one (tests, a bare
//! runtime API) a process counts up from its start time in microseconds, so
//! an id a previous process gave out is not given again unless the wall
//! clock steps back. A report is accepted only for an instruction this
//! process delivered to that node and, for a deploy or seed instruction,
//! only if it names that instruction's multicast session; a late or retried
//! report of an earlier process's instruction, or of another session, is
//! refused (409) and counted ([`RuntimeApi::stale_reports`]), so it can
//! never land on a newer instruction.
//!
//! Where the state lives: by default in this process's memory, as above. A
//! control plane with several processes on one database gives the API a
//! [`Store`] ([`RuntimeApi::set_store`]) instead: check-ins, instructions and
//! reports then live in the database, so a node can check in with one
//! process, be given an instruction another one queued, and report to a
//! third; each instruction is still delivered at most once (the store takes
//! it with a compare-and-set), and a report is still accepted only for an
//! instruction delivered to that node, in its session. Offers (attended
//! mode) stay in the memory of the process the console talks to.
//!
//! Stopping: [`RuntimeApi::stop_polls`] answers every waiting and every new
//! long-poll at once with 503 and `Retry-After` ("come back"), so a server
//! that shuts down does not wait out the nodes' long-polls.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::{
    Action, CheckIn, CheckInReply, Chosen, Instruction, MAX_WAIT_SECS, OfferEntry, Offers, Report, normalize_mac,
};

/// Decides whether a check-in is taken, before it is recorded
/// ([`RuntimeApi::set_checkin_gate`]): `Err(reason)` refuses it with 403.
pub type CheckInGate = Arc<dyn Fn(CheckIn) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A boxed future, for the [`Store`] trait's methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a [`Store`] did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The node is not known: it never checked in, and holds no instruction.
    #[error("unknown node: check in first")]
    UnknownNode,
    /// The report names an instruction not delivered to this node.
    #[error("instruction {0} was not given to this node")]
    NotDelivered(u64),
    /// The report names another multicast session than its instruction's.
    #[error("instruction {0} belongs to another multicast session")]
    OtherSession(u64),
    /// The store itself failed (e.g. the database is unreachable).
    #[error("{0}")]
    Failed(String),
}

/// Where check-ins, instructions and reports live when not in this
/// process's memory (module docs): the control plane's database, shared by
/// its replicas. Every method is one short transaction.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Records a check-in that the gate let through.
    fn checkin<'a>(&'a self, c: &'a CheckIn) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Queues `action` for `node` (normalized MAC); returns the instruction id.
    fn push<'a>(&'a self, node: &'a str, action: &'a Action) -> BoxFuture<'a, Result<u64, StoreError>>;
    /// Takes `node`'s oldest queued instruction and marks it delivered, so
    /// no other process delivers it too; `Ok(None)` when none is queued,
    /// [`StoreError::UnknownNode`] when the node never checked in.
    fn take<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Option<Instruction>, StoreError>>;
    /// Records `report` if it names an instruction delivered to `node` and,
    /// for a deploy or seed instruction, that instruction's session.
    fn report<'a>(&'a self, node: &'a str, report: &'a Report) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The notifier of changes to `node` the store learns of (its own
    /// writes, another process's announced ones): a long-poll waits on its
    /// own node's, so one node's change does not wake every poll. `None`:
    /// polls wake on any change of this API, and every recheck.
    fn watch(&self, _node: &str) -> Option<Arc<Notify>> {
        None
    }
}

/// A check-in as recorded by the server.
#[derive(Debug, Clone, Serialize)]
pub struct SeenCheckIn {
    /// Unix time it arrived, seconds.
    pub at_unix: f64,
    /// What the node sent.
    pub checkin: CheckIn,
}

/// What the server knows about one node.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeRecord {
    /// Every check-in since this server started, oldest first.
    pub checkins: Vec<SeenCheckIn>,
    /// Every phase report, oldest first.
    pub reports: Vec<Report>,
    /// Instructions not yet picked up.
    pub queued: VecDeque<Instruction>,
    /// Instructions handed out, in order.
    pub delivered: Vec<u64>,
    /// Images offered for attended mode: (name, action, default).
    pub offers: Vec<(String, Action, bool)>,
    /// Offers chosen at the console: (offer index, instruction queued).
    pub chosen: Vec<(usize, u64)>,
}

impl NodeRecord {
    /// The latest check-in.
    pub fn last_checkin(&self) -> Option<&CheckIn> {
        self.checkins.last().map(|c| &c.checkin)
    }
}

#[derive(Debug, Default)]
struct Table {
    nodes: HashMap<String, NodeRecord>,
    next_id: u64,
    /// The last id of this process's block ([`RuntimeApi::use_id_block`]).
    last_id: u64,
    /// The multicast session of every delivered deploy or seed instruction, by instruction id.
    sessions: HashMap<u64, u64>,
}

impl Table {
    /// The next instruction id (module docs: unique across processes).
    fn take_id(&mut self) -> Result<u64, crate::ApiError> {
        if self.next_id >= self.last_id {
            return Err(crate::ApiError::Invalid(
                "this server process gave out every instruction id of its block".into(),
            ));
        }
        self.next_id += 1;
        Ok(self.next_id)
    }
}

/// How many instruction ids one server process may give out from a
/// persisted block ([`RuntimeApi::use_id_block`]).
pub const ID_BLOCK: u64 = 1 << 32;

struct Inner {
    table: Mutex<Table>,
    changed: Notify,
    epoch: u64,
    default_wait: u64,
    /// Set by [`RuntimeApi::stop_polls`].
    stopping: AtomicBool,
    /// Woken by [`RuntimeApi::stop_polls`] (long-polls on a store's node watch wait on it too).
    stop: Notify,
    /// Reports refused because they named no instruction delivered to the node.
    stale_reports: AtomicU64,
    /// Check-ins the gate refused.
    refused_checkins: AtomicU64,
    /// The control plane's check-in policy ([`RuntimeApi::set_checkin_gate`]).
    gate: OnceLock<CheckInGate>,
    /// Where the state lives when not in `table` ([`RuntimeApi::set_store`]),
    /// and how often a long-poll looks at it again without being woken.
    store: OnceLock<(Arc<dyn Store>, Duration)>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("epoch", &self.epoch).field("gated", &self.gate.get().is_some()).finish()
    }
}

/// The runtime API's server state; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct RuntimeApi {
    inner: Arc<Inner>,
}

impl Default for RuntimeApi {
    fn default() -> Self {
        Self::new()
    }
}

/// Errors answered to the node.
#[derive(Debug)]
enum HttpError {
    BadRequest(String),
    Forbidden(String),
    UnknownNode,
    StaleReport(u64),
    Stopping,
    /// The store failed: the node retries after its back-off.
    Unavailable(String),
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (code, msg) = match self {
            HttpError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            HttpError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            HttpError::UnknownNode => (StatusCode::NOT_FOUND, "unknown node: check in first".to_owned()),
            HttpError::StaleReport(id) => (
                StatusCode::CONFLICT,
                format!("instruction {id} was not given to this node by this server, or in another session"),
            ),
            HttpError::Unavailable(why) => {
                let body = Json(serde_json::json!({ "error": format!("the control plane's store failed: {why}") }));
                return (StatusCode::SERVICE_UNAVAILABLE, [(axum::http::header::RETRY_AFTER, "2")], body)
                    .into_response();
            }
            HttpError::Stopping => {
                let body = Json(serde_json::json!({ "error": "the control plane is stopping: come back" }));
                return (StatusCode::SERVICE_UNAVAILABLE, [(axum::http::header::RETRY_AFTER, "5")], body)
                    .into_response();
            }
        };
        (code, Json(serde_json::json!({ "error": msg }))).into_response()
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownNode => HttpError::UnknownNode,
            StoreError::NotDelivered(id) | StoreError::OtherSession(id) => HttpError::StaleReport(id),
            StoreError::Failed(why) => {
                tracing::error!(error = %why, "the runtime store failed");
                HttpError::Unavailable(why)
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    wait: Option<u64>,
}

fn now_unix() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

impl RuntimeApi {
    /// An empty node table with a fresh random epoch; suggests 25 s long-polls.
    pub fn new() -> Self {
        // The epoch only has to differ between server processes: the start time in nanoseconds does.
        let epoch = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        // Ids count up from the start time in microseconds: unique across processes (module docs).
        let first = epoch / 1000;
        let table = Table { next_id: first, last_id: u64::MAX, ..Default::default() };
        RuntimeApi {
            inner: Arc::new(Inner {
                table: Mutex::new(table),
                changed: Notify::new(),
                epoch,
                default_wait: 25,
                stopping: AtomicBool::new(false),
                stop: Notify::new(),
                stale_reports: AtomicU64::new(0),
                refused_checkins: AtomicU64::new(0),
                gate: OnceLock::new(),
                store: OnceLock::new(),
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The routes under [`crate::PREFIX`], ready to merge into the control plane's router.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/runtime/checkin", post(checkin))
            .route("/v1/runtime/nodes/{node}/instruction", get(instruction))
            .route("/v1/runtime/nodes/{node}/reports", post(report))
            .route("/v1/runtime/nodes/{node}/offers", get(offers))
            .route("/v1/runtime/nodes/{node}/offers/{index}", post(choose))
            .with_state(self.clone())
    }

    /// Queues `action` for `node` (a MAC); returns the instruction id. The node
    /// need not have checked in yet.
    pub fn push(&self, node: &str, action: Action) -> Result<u64, crate::ApiError> {
        let node = normalize_mac(node)?;
        if self.inner.store.get().is_some() {
            return Err(crate::ApiError::Invalid(
                "this runtime API keeps its instructions in a store: queue there".into(),
            ));
        }
        let id = {
            let mut t = self.table();
            let id = t.take_id()?;
            t.nodes.entry(node).or_default().queued.push_back(Instruction { id, action });
            id
        };
        self.inner.changed.notify_waiters();
        Ok(id)
    }

    /// Gives out instruction ids from the persisted block number `block`
    /// from now on: ids `block * ID_BLOCK + 1 ..= (block + 1) * ID_BLOCK - 1`.
    /// The control plane takes a new block from its database at every start,
    /// so no two processes on one database ever give out the same id. Call it
    /// before serving; ids given out before stay valid.
    pub fn use_id_block(&self, block: u64) {
        let mut t = self.table();
        t.next_id = block.saturating_mul(ID_BLOCK);
        t.last_id = t.next_id.saturating_add(ID_BLOCK - 1);
    }

    /// Offers `action` under `name` to `node` for attended mode (the console
    /// menu); `default` is taken when the countdown runs out.
    pub fn offer(&self, node: &str, name: &str, action: Action, default: bool) -> Result<(), crate::ApiError> {
        let node = normalize_mac(node)?;
        self.table().nodes.entry(node).or_default().offers.push((name.to_owned(), action, default));
        Ok(())
    }

    /// A snapshot of one node's record.
    pub fn node(&self, node: &str) -> Option<NodeRecord> {
        let node = normalize_mac(node).ok()?;
        self.table().nodes.get(&node).cloned()
    }

    /// Ids of every node that checked in, sorted.
    pub fn nodes(&self) -> Vec<String> {
        let t = self.table();
        let mut v: Vec<String> =
            t.nodes.iter().filter(|(_, r)| !r.checkins.is_empty()).map(|(k, _)| k.clone()).collect();
        v.sort();
        v
    }

    /// Waits until `pred` holds for `node`'s record, or `timeout` passes;
    /// returns the record that satisfied it.
    pub async fn wait_for(
        &self,
        node: &str,
        timeout: Duration,
        mut pred: impl FnMut(&NodeRecord) -> bool,
    ) -> Option<NodeRecord> {
        let deadline = Instant::now() + timeout;
        let node = normalize_mac(node).ok()?;
        loop {
            let notified = self.inner.changed.notified();
            if let Some(r) = self.table().nodes.get(&node).filter(|r| pred(r)) {
                return Some(r.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let _ = tokio::time::timeout(left, notified).await;
        }
    }

    /// Waits until `node` has checked in more than `seen` times; returns the new check-in.
    pub async fn wait_checkin(&self, node: &str, seen: usize, timeout: Duration) -> Option<CheckIn> {
        self.wait_for(node, timeout, |r| r.checkins.len() > seen).await.and_then(|r| r.last_checkin().cloned())
    }

    /// Ends every long-poll now and every later one at once with 503 and
    /// `Retry-After` (the agent checks in again after its back-off); check-ins
    /// and reports are still taken. For a server that is stopping.
    pub fn stop_polls(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.changed.notify_waiters();
        self.inner.stop.notify_waiters();
    }

    /// Reports refused since start because they named an instruction this
    /// server never delivered to that node (e.g. retried by an agent across
    /// a server restart).
    pub fn stale_reports(&self) -> u64 {
        self.inner.stale_reports.load(Ordering::Relaxed)
    }

    /// Check-ins refused by the gate since start.
    pub fn refused_checkins(&self) -> u64 {
        self.inner.refused_checkins.load(Ordering::Relaxed)
    }

    /// Runs `gate` on every check-in before it is recorded; a refusal is
    /// answered 403 with its reason and counted ([`RuntimeApi::refused_checkins`]).
    /// The control plane checks the netboot token and records enrollments
    /// there. Set once; a second call returns `false` and changes nothing.
    pub fn set_checkin_gate(&self, gate: CheckInGate) -> bool {
        self.inner.gate.set(gate).is_ok()
    }

    /// Keeps check-ins, instructions and reports in `store` from now on
    /// instead of this process's memory (module docs). Long-polls are woken
    /// by [`RuntimeApi::notify`] and look at the store again every `recheck`
    /// anyway (for changes made by other processes that nobody announced).
    /// Set once, before serving; a second call returns `false` and changes
    /// nothing. The in-memory methods ([`RuntimeApi::push`],
    /// [`RuntimeApi::node`], ...) then see only what this process keeps
    /// itself (offers); ask the store instead.
    pub fn set_store(&self, store: Arc<dyn Store>, recheck: Duration) -> bool {
        self.inner.store.set((store, recheck.max(Duration::from_millis(10)))).is_ok()
    }

    /// Wakes every long-poll and [`RuntimeApi::wait_for`] to look again:
    /// for an owner of a [`Store`] that learned of a change (its own push,
    /// or another process's announced one).
    pub fn notify(&self) {
        self.inner.changed.notify_waiters();
    }

    /// Counts a refused report (for a [`Store`] owner that refuses one itself).
    fn count_stale(&self) {
        self.inner.stale_reports.fetch_add(1, Ordering::Relaxed);
    }

    /// Serves the router on `listener` until `shutdown` resolves.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await
    }
}

async fn checkin(
    State(api): State<RuntimeApi>,
    body: Result<Json<CheckIn>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<CheckInReply>, HttpError> {
    let Json(mut c) = body.map_err(|e| HttpError::BadRequest(e.body_text()))?;
    c.node = normalize_mac(&c.node).map_err(|e| HttpError::BadRequest(e.to_string()))?;
    if let Some(gate) = api.inner.gate.get()
        && let Err(why) = gate(c.clone()).await
    {
        api.inner.refused_checkins.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(node = %c.node, reason = %why, "refused a check-in");
        return Err(HttpError::Forbidden(why));
    }
    tracing::info!(node = %c.node, role = ?c.role, boot = %c.boot_id, "runtime check-in");
    let node = c.node.clone();
    if let Some((store, _)) = api.inner.store.get() {
        store.checkin(&c).await.map_err(HttpError::from)?;
    } else {
        api.table()
            .nodes
            .entry(node.clone())
            .or_default()
            .checkins
            .push(SeenCheckIn { at_unix: now_unix(), checkin: c });
    }
    api.inner.changed.notify_waiters();
    Ok(Json(CheckInReply { node, server_epoch: api.inner.epoch, wait_secs: api.inner.default_wait }))
}

async fn instruction(
    State(api): State<RuntimeApi>,
    Path(node): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Response, HttpError> {
    let node = normalize_mac(&node).map_err(|e| HttpError::BadRequest(e.to_string()))?;
    let wait = Duration::from_secs(q.wait.unwrap_or(api.inner.default_wait).min(MAX_WAIT_SECS));
    let deadline = Instant::now() + wait;
    loop {
        let notified = api.inner.changed.notified();
        if api.inner.stopping.load(Ordering::SeqCst) {
            return Err(HttpError::Stopping);
        }
        if let Some((store, recheck)) = api.inner.store.get() {
            // Woken by this node's changes only (or a stop), not by every node's.
            let watch = store.watch(&node);
            let mine = watch.as_ref().map(|w| w.notified());
            let stop = api.inner.stop.notified();
            if api.inner.stopping.load(Ordering::SeqCst) {
                return Err(HttpError::Stopping);
            }
            if let Some(i) = store.take(&node).await.map_err(HttpError::from)? {
                api.inner.changed.notify_waiters();
                return Ok(Json(i).into_response());
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Ok(StatusCode::NO_CONTENT.into_response());
            };
            let woken = async {
                match mine {
                    Some(m) => m.await,
                    None => notified.await,
                }
            };
            tokio::select! {
                _ = woken => {}
                _ = stop => {}
                _ = tokio::time::sleep(left.min(*recheck)) => {}
            }
            continue;
        }
        {
            let mut t = api.table();
            let rec = t.nodes.get_mut(&node).filter(|r| !r.checkins.is_empty()).ok_or(HttpError::UnknownNode)?;
            if let Some(i) = rec.queued.pop_front() {
                rec.delivered.push(i.id);
                if let Some(session) = i.action.session_id() {
                    t.sessions.insert(i.id, session);
                }
                drop(t);
                api.inner.changed.notify_waiters();
                return Ok(Json(i).into_response());
            }
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Ok(StatusCode::NO_CONTENT.into_response());
        };
        let _ = tokio::time::timeout(left, notified).await;
    }
}

async fn offers(State(api): State<RuntimeApi>, Path(node): Path<String>) -> Result<Json<Offers>, HttpError> {
    let node = normalize_mac(&node).map_err(|e| HttpError::BadRequest(e.to_string()))?;
    let t = api.table();
    let with_store = api.inner.store.get().is_some();
    let rec = t.nodes.get(&node).filter(|r| with_store || !r.checkins.is_empty()).ok_or(HttpError::UnknownNode)?;
    let offers = rec
        .offers
        .iter()
        .enumerate()
        .map(|(index, (name, _, default))| OfferEntry { index, name: name.clone(), default: *default })
        .collect();
    Ok(Json(Offers { offers }))
}

async fn choose(
    State(api): State<RuntimeApi>,
    Path((node, index)): Path<(String, usize)>,
) -> Result<Json<Chosen>, HttpError> {
    let node = normalize_mac(&node).map_err(|e| HttpError::BadRequest(e.to_string()))?;
    if let Some((store, _)) = api.inner.store.get() {
        let action = {
            let t = api.table();
            let rec = t.nodes.get(&node).ok_or(HttpError::UnknownNode)?;
            rec.offers.get(index).ok_or_else(|| HttpError::BadRequest(format!("no offer {index}")))?.1.clone()
        };
        let id = store.push(&node, &action).await.map_err(HttpError::from)?;
        if let Some(rec) = api.table().nodes.get_mut(&node) {
            rec.chosen.push((index, id));
        }
        api.inner.changed.notify_waiters();
        return Ok(Json(Chosen { instruction: id }));
    }
    let id = {
        let mut t = api.table();
        let id = t.take_id().map_err(|e| HttpError::BadRequest(e.to_string()))?;
        let rec = t.nodes.get_mut(&node).filter(|r| !r.checkins.is_empty()).ok_or(HttpError::UnknownNode)?;
        let (_, action, _) =
            rec.offers.get(index).ok_or_else(|| HttpError::BadRequest(format!("no offer {index}")))?.clone();
        rec.queued.push_back(Instruction { id, action });
        rec.chosen.push((index, id));
        id
    };
    api.inner.changed.notify_waiters();
    Ok(Json(Chosen { instruction: id }))
}

async fn report(
    State(api): State<RuntimeApi>,
    Path(node): Path<String>,
    body: Result<Json<Report>, axum::extract::rejection::JsonRejection>,
) -> Result<StatusCode, HttpError> {
    let node = normalize_mac(&node).map_err(|e| HttpError::BadRequest(e.to_string()))?;
    let Json(r) = body.map_err(|e| HttpError::BadRequest(e.body_text()))?;
    tracing::info!(%node, instruction = r.instruction, phase = ?r.phase, status = ?r.status, secs = r.secs, "runtime report");
    if let Some((store, _)) = api.inner.store.get() {
        return match store.report(&node, &r).await {
            Ok(()) => {
                api.inner.changed.notify_waiters();
                Ok(StatusCode::NO_CONTENT)
            }
            Err(e @ (StoreError::NotDelivered(_) | StoreError::OtherSession(_))) => {
                api.count_stale();
                tracing::warn!(%node, instruction = r.instruction, session = ?r.session, "refused a report: {e}");
                Err(HttpError::StaleReport(r.instruction))
            }
            Err(e) => Err(HttpError::from(e)),
        };
    }
    {
        let mut t = api.table();
        let session = t.sessions.get(&r.instruction).copied();
        let rec = t.nodes.get_mut(&node).filter(|r| !r.checkins.is_empty()).ok_or(HttpError::UnknownNode)?;
        let delivered = rec.delivered.contains(&r.instruction);
        if !delivered || session.is_some_and(|s| r.session != Some(s)) {
            drop(t);
            api.inner.stale_reports.fetch_add(1, Ordering::Relaxed);
            let why =
                if delivered { "names another session" } else { "names an instruction not delivered to this node" };
            tracing::warn!(%node, instruction = r.instruction, session = ?r.session, "refused a report: it {why}");
            return Err(HttpError::StaleReport(r.instruction));
        }
        rec.reports.push(r);
    }
    api.inner.changed.notify_waiters();
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Inventory, Role};
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn checkin_body(mac: &str) -> CheckIn {
        CheckIn {
            node: mac.into(),
            role: Role::Runtime,
            boot_id: "b1".into(),
            version: "0".into(),
            address: "10.0.0.5".into(),
            uptime_secs: 1.0,
            network_secs: 0.1,
            inventory: Inventory { nics: vec![], cpus: 1, memory_bytes: 1 << 30, disks: vec![], kernel: "6.1".into() },
            token: None,
        }
    }

    #[tokio::test]
    async fn gate_refuses_before_recording() {
        let api = RuntimeApi::new();
        let gate: CheckInGate = Arc::new(|c: CheckIn| {
            Box::pin(async move {
                match c.token.as_deref() {
                    Some("good") => Ok(()),
                    _ => Err(format!("no valid token for {}", c.node)),
                }
            })
        });
        assert!(api.set_checkin_gate(gate.clone()));
        assert!(!api.set_checkin_gate(gate), "the gate is set once");
        let mac = "52:54:00:00:00:07";
        let (s, b) =
            call(&api, "POST", "/v1/runtime/checkin", Some(serde_json::to_value(checkin_body(mac)).unwrap())).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(String::from_utf8_lossy(&b).contains("no valid token for 52:54:00:00:00:07"));
        assert!(api.node(mac).is_none(), "a refused check-in is not recorded");
        assert_eq!(api.refused_checkins(), 1);
        let body = CheckIn { token: Some("good".into()), ..checkin_body(mac) };
        let (s, _) = call(&api, "POST", "/v1/runtime/checkin", Some(serde_json::to_value(body).unwrap())).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(api.node(mac).unwrap().last_checkin().unwrap().token.as_deref(), Some("good"));
        assert_eq!(api.refused_checkins(), 1);
    }

    async fn call(api: &RuntimeApi, method: &str, uri: &str, body: Option<serde_json::Value>) -> (StatusCode, Vec<u8>) {
        let req = Request::builder().method(method).uri(uri).header("content-type", "application/json");
        let req = req.body(body.map_or(Body::empty(), |b| Body::from(b.to_string()))).unwrap();
        let resp = api.router().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, bytes.to_vec())
    }

    #[tokio::test]
    async fn checkin_poll_report() {
        let api = RuntimeApi::new();
        let mac = "52:54:00:00:00:01";
        let (s, _) = call(&api, "GET", &format!("/v1/runtime/nodes/{mac}/instruction?wait=0"), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "unknown node must check in first");
        let (s, b) = call(
            &api,
            "POST",
            "/v1/runtime/checkin",
            Some(serde_json::to_value(checkin_body("52:54:00:00:00:01")).unwrap()),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let reply: CheckInReply = serde_json::from_slice(&b).unwrap();
        assert_eq!(reply.node, mac);
        let (s, _) = call(&api, "GET", &format!("/v1/runtime/nodes/{mac}/instruction?wait=0"), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);

        // A long poll is woken by a push.
        let api2 = api.clone();
        let poll = tokio::spawn(async move {
            call(&api2, "GET", "/v1/runtime/nodes/52:54:00:00:00:01/instruction?wait=30", None).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let id = api.push(mac, Action::PowerOff).unwrap();
        let (s, b) = poll.await.unwrap();
        assert_eq!(s, StatusCode::OK);
        let i: Instruction = serde_json::from_slice(&b).unwrap();
        assert_eq!((i.id, i.action), (id, Action::PowerOff));
        // Delivered once only.
        let (s, _) = call(&api, "GET", &format!("/v1/runtime/nodes/{mac}/instruction?wait=0"), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);

        let rep = serde_json::json!({"instruction": id, "boot_id": "b1", "phase": "handover", "status": "ok", "secs": 1.5, "exit_code": 0});
        let (s, _) = call(&api, "POST", &format!("/v1/runtime/nodes/{mac}/reports"), Some(rep)).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        assert_eq!(api.node(mac).unwrap().reports.len(), 1);
    }

    /// Checks `mac` in and hands it instruction `action`; returns its id.
    async fn deliver(api: &RuntimeApi, mac: &str, action: Action) -> u64 {
        let (s, _) =
            call(api, "POST", "/v1/runtime/checkin", Some(serde_json::to_value(checkin_body(mac)).unwrap())).await;
        assert_eq!(s, StatusCode::OK);
        let id = api.push(mac, action).unwrap();
        let (s, b) = call(api, "GET", &format!("/v1/runtime/nodes/{mac}/instruction?wait=0"), None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(serde_json::from_slice::<Instruction>(&b).unwrap().id, id);
        id
    }

    /// The stale-report sequence of a server restart: the old process gave
    /// out an instruction, the node's agent keeps retrying its failure
    /// report, and the new process (a new table) has handed the node an
    /// instruction of its own. The old report must not land on the new one.
    #[tokio::test]
    async fn reports_of_an_earlier_server_process_are_refused_and_counted() {
        let mac = "52:54:00:00:00:07";
        let old = RuntimeApi::new();
        let old_id = deliver(&old, mac, Action::PowerOff).await;
        tokio::time::sleep(Duration::from_millis(2)).await; // the restart takes longer than this
        let new = RuntimeApi::new();
        let new_id = deliver(&new, mac, Action::PowerOff).await;
        assert_ne!(old_id, new_id, "instruction ids repeat across server processes");
        assert!(new_id > old_id);
        let stale = serde_json::json!({"instruction": old_id, "boot_id": "b1", "phase": "receive", "status": "failed",
                                       "secs": 1.0, "exit_code": 3, "detail": "receive failed"});
        let (s, b) = call(&new, "POST", &format!("/v1/runtime/nodes/{mac}/reports"), Some(stale)).await;
        assert_eq!(s, StatusCode::CONFLICT, "{}", String::from_utf8_lossy(&b));
        assert_eq!(new.stale_reports(), 1);
        assert!(new.node(mac).unwrap().reports.is_empty(), "a stale report was recorded");
        // A report of an instruction queued but not yet delivered is refused too.
        let queued = new.push(mac, Action::PowerOff).unwrap();
        let early = serde_json::json!({"instruction": queued, "boot_id": "b1", "phase": "handover", "status": "ok",
                                       "secs": 1.0, "exit_code": 0});
        let (s, _) = call(&new, "POST", &format!("/v1/runtime/nodes/{mac}/reports"), Some(early)).await;
        assert_eq!(s, StatusCode::CONFLICT);
        // The node's own report of the new instruction is taken.
        let ok = serde_json::json!({"instruction": new_id, "boot_id": "b1", "phase": "handover", "status": "ok",
                                    "secs": 1.0, "exit_code": 0});
        let (s, _) = call(&new, "POST", &format!("/v1/runtime/nodes/{mac}/reports"), Some(ok)).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        assert_eq!(new.node(mac).unwrap().reports.len(), 1);
        assert_eq!(new.stale_reports(), 2);
    }

    /// Ids from persisted blocks: a later process's ids are all above an
    /// earlier one's whatever the clock says, and an exhausted block is an
    /// error, not a repeat.
    #[tokio::test]
    async fn ids_come_from_the_persisted_block() {
        let mac = "52:54:00:00:00:08";
        let old = RuntimeApi::new();
        old.use_id_block(5);
        let old_id = deliver(&old, mac, Action::PowerOff).await;
        assert_eq!(old_id, 5 * ID_BLOCK + 1);
        let new = RuntimeApi::new();
        new.use_id_block(6);
        let new_id = deliver(&new, mac, Action::PowerOff).await;
        assert_eq!(new_id, 6 * ID_BLOCK + 1);
        let stale = serde_json::json!({"instruction": old_id, "boot_id": "b1", "phase": "receive", "status": "failed",
                                       "secs": 1.0, "exit_code": 3});
        let (s, _) = call(&new, "POST", &format!("/v1/runtime/nodes/{mac}/reports"), Some(stale)).await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert_eq!(new.stale_reports(), 1);
        // The last block a u64 can hold: one id short of its end, then refused.
        let full = RuntimeApi::new();
        full.use_id_block(u64::MAX / ID_BLOCK - 1);
        {
            let mut t = full.table();
            t.next_id = t.last_id - 1;
        }
        assert!(full.push(mac, Action::PowerOff).is_ok());
        assert!(full.push(mac, Action::PowerOff).is_err(), "an id beyond the block was given out");
    }

    /// A report of a deploy or seed instruction must name that instruction's
    /// session: one naming another session (or none) is refused and counted.
    #[tokio::test]
    async fn a_report_naming_another_session_is_refused() {
        let mac = "52:54:00:00:00:09";
        let api = RuntimeApi::new();
        let spec =
            crate::SessionSpec::new("ab", "239.1.1.1:5000".parse().unwrap(), "10.0.0.1:5001".parse().unwrap(), 1500)
                .unwrap();
        let want = u64::from(spec.session_id);
        let action = Action::Seed(serde_json::from_value(serde_json::json!({"session": spec})).unwrap());
        let id = deliver(&api, mac, action).await;
        let report = |session: Option<u64>| {
            let mut r = serde_json::json!({"instruction": id, "boot_id": "b1", "phase": "seed", "status": "ok",
                                           "secs": 1.0, "exit_code": 0});
            if let Some(s) = session {
                r["session"] = s.into();
            }
            r
        };
        for wrong in [Some(want ^ 1), None] {
            let (s, b) = call(&api, "POST", &format!("/v1/runtime/nodes/{mac}/reports"), Some(report(wrong))).await;
            assert_eq!(s, StatusCode::CONFLICT, "{}", String::from_utf8_lossy(&b));
        }
        assert_eq!(api.stale_reports(), 2);
        assert!(api.node(mac).unwrap().reports.is_empty());
        let (s, _) = call(&api, "POST", &format!("/v1/runtime/nodes/{mac}/reports"), Some(report(Some(want)))).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        assert_eq!(api.node(mac).unwrap().reports[0].session, Some(want));
    }

    /// A stopping server ends long-polls at once with a "come back" answer.
    #[tokio::test]
    async fn stop_polls_ends_waiting_and_new_polls_at_once() {
        let api = RuntimeApi::new();
        let mac = "52:54:00:00:00:08";
        let (s, _) =
            call(&api, "POST", "/v1/runtime/checkin", Some(serde_json::to_value(checkin_body(mac)).unwrap())).await;
        assert_eq!(s, StatusCode::OK);
        let api2 = api.clone();
        let poll = tokio::spawn(async move {
            call(&api2, "GET", &format!("/v1/runtime/nodes/{mac}/instruction?wait=60"), None).await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        api.stop_polls();
        // Bounded: the poll asked for 60 s.
        let (s, _) =
            tokio::time::timeout(Duration::from_secs(10), poll).await.expect("the poll was not ended").unwrap();
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        let (s, _) = call(&api, "GET", &format!("/v1/runtime/nodes/{mac}/instruction?wait=60"), None).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn bad_bodies_are_rejected_and_change_nothing() {
        let api = RuntimeApi::new();
        let mut c = serde_json::to_value(checkin_body("52:54:00:00:00:02")).unwrap();
        c["node"] = "../etc/passwd".into();
        let (s, b) = call(&api, "POST", "/v1/runtime/checkin", Some(c)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&b));
        let mut c = serde_json::to_value(checkin_body("52:54:00:00:00:02")).unwrap();
        c["surprise"] = 1.into();
        let (s, _) = call(&api, "POST", "/v1/runtime/checkin", Some(c)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _) =
            call(&api, "POST", "/v1/runtime/nodes/52:54:00:00:00:02/reports", Some(serde_json::json!({"phase": 1})))
                .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(api.nodes().is_empty());
    }
}
