//! The node runtimes' side of the control plane, shared by every replica
//! through the database (`docs/scale-out.md`): check-ins, instructions and
//! phase reports live in `runtime_nodes`, `runtime_instructions` and
//! `runtime_reports` ([`DbStore`], the runtime API's [`Store`]), so a node
//! may check in with one replica, be given an instruction another queued,
//! and report to a third; a replica that takes a deployment over finds the
//! nodes' reports wherever they arrived.
//!
//! Waiting: a change this process makes wakes its own waiters at once, per
//! node ([`watch`]); a change another replica made is seen within
//! [`recheck`] (1 s on PostgreSQL; SQLite has one process).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metalcast_runtime_api::server::{BoxFuture, ID_BLOCK, Store, StoreError};
use metalcast_runtime_api::{Action, CheckIn, Instruction, Report};
use tokio::sync::Notify;

use super::AppState;
use super::error::Error;
use crate::db::{self, Backend, Db};

/// How long delivered instructions and reports are kept (7 days).
pub const KEEP_SECS: i64 = 7 * 24 * 3600;

/// The runtime API's state in the database, for replica `me`.
#[derive(Debug)]
pub struct DbStore {
    db: Db,
    me: String,
    ids: Mutex<Ids>,
    watches: Mutex<HashMap<String, Arc<Notify>>>,
}

/// This process's instruction ids: `next + 1 ..= last`.
#[derive(Debug)]
struct Ids {
    next: u64,
    last: u64,
}

/// A node as its check-ins left it.
#[derive(Debug, Clone)]
pub struct RuntimeNode {
    /// Check-ins so far (every replica, every restart).
    pub checkins: u64,
    /// The latest.
    pub last: CheckIn,
    /// When it arrived (database clock, s).
    pub at: i64,
}

impl DbStore {
    /// A store for replica `me`. Until [`DbStore::use_id_block`], ids count
    /// up from the start time in microseconds (as the in-memory API does).
    pub fn new(db: Db, me: String) -> Self {
        let first = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64);
        DbStore { db, me, ids: Mutex::new(Ids { next: first, last: u64::MAX }), watches: Mutex::new(HashMap::new()) }
    }

    /// Gives out ids `block * ID_BLOCK + 1 ..` from now on (`runtime_id_blocks`).
    pub fn use_id_block(&self, block: u64) {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids.next = block.saturating_mul(ID_BLOCK);
        ids.last = ids.next.saturating_add(ID_BLOCK - 1);
    }

    fn take_id(&self) -> Result<u64, StoreError> {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.next >= ids.last {
            return Err(StoreError::Failed("this process gave out every instruction id of its block".into()));
        }
        ids.next += 1;
        Ok(ids.next)
    }

    /// The notifier of `mac`'s changes made by this process.
    pub fn watch(&self, mac: &str) -> Arc<Notify> {
        self.watches.lock().unwrap_or_else(|p| p.into_inner()).entry(mac.to_owned()).or_default().clone()
    }

    fn ping(&self, mac: &str) {
        if let Some(n) = self.watches.lock().unwrap_or_else(|p| p.into_inner()).get(mac) {
            n.notify_waiters();
        }
    }

    async fn do_checkin(&self, c: &CheckIn) -> Result<(), StoreError> {
        let body = serde_json::to_string(c).map_err(failed)?;
        db::runtime::checkin(&self.db.writer, self.db.backend, &c.node, &body).await.map_err(failed)?;
        self.ping(&c.node);
        Ok(())
    }

    async fn do_push(&self, mac: &str, action: &Action) -> Result<u64, StoreError> {
        self.push_for(mac, action, None)
            .await?
            .ok_or_else(|| StoreError::Failed("an instruction without a deployment was not queued".into()))
    }

    /// Queues `action` for `mac`; with `deployment`, only while it is running
    /// and this replica's (`None`: not queued).
    async fn push_for(&self, mac: &str, action: &Action, deployment: Option<i64>) -> Result<Option<u64>, StoreError> {
        let id = self.take_id()?;
        let body = serde_json::to_string(action).map_err(failed)?;
        let session = action.session_id().map(|s| s as i64);
        let sql_id = i64::try_from(id).map_err(failed)?;
        let (w, backend) = (&self.db.writer, self.db.backend);
        if !db::runtime::queue(w, backend, sql_id, mac, &body, session, &self.me, deployment).await.map_err(failed)? {
            return Ok(None);
        }
        self.ping(mac);
        Ok(Some(id))
    }

    async fn do_take(&self, mac: &str) -> Result<Option<Instruction>, StoreError> {
        if db::runtime::node(&self.db.pool, mac).await.map_err(failed)?.is_none() {
            return Err(StoreError::UnknownNode);
        }
        let Some(row) = db::runtime::take(&self.db.writer, self.db.backend, mac, &self.me).await.map_err(failed)?
        else {
            return Ok(None);
        };
        self.ping(mac);
        let action: Action = serde_json::from_str(&row.action)
            .map_err(|e| StoreError::Failed(format!("instruction {} holds no action: {e}", row.id)))?;
        Ok(Some(Instruction { id: row.id as u64, action }))
    }

    async fn do_report(&self, mac: &str, r: &Report) -> Result<(), StoreError> {
        let id = i64::try_from(r.instruction).map_err(|_| StoreError::NotDelivered(r.instruction))?;
        let row = db::runtime::instruction(&self.db.pool, id).await.map_err(failed)?;
        let Some(row) = row.filter(|row| row.mac == mac && row.delivered_at.is_some()) else {
            let known = db::runtime::node(&self.db.pool, mac).await.map_err(failed)?.is_some()
                || db::runtime::has_delivered(&self.db.pool, mac).await.map_err(failed)?;
            return Err(if known { StoreError::NotDelivered(r.instruction) } else { StoreError::UnknownNode });
        };
        if row.session.is_some_and(|s| r.session != Some(s as u64)) {
            return Err(StoreError::OtherSession(r.instruction));
        }
        let body = serde_json::to_string(r).map_err(failed)?;
        db::runtime::add_report(&self.db.writer, self.db.backend, id, mac, &body).await.map_err(failed)?;
        self.ping(mac);
        Ok(())
    }
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(e.to_string())
}

impl Store for DbStore {
    fn checkin<'a>(&'a self, c: &'a CheckIn) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.do_checkin(c))
    }

    fn push<'a>(&'a self, node: &'a str, action: &'a Action) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(self.do_push(node, action))
    }

    fn take<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Option<Instruction>, StoreError>> {
        Box::pin(self.do_take(node))
    }

    fn report<'a>(&'a self, node: &'a str, report: &'a Report) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.do_report(node, report))
    }

    fn watch(&self, node: &str) -> Option<Arc<Notify>> {
        Some(DbStore::watch(self, node))
    }
}

/// How soon a change made by another replica is seen without being
/// announced: 1 s on PostgreSQL; on SQLite only this process writes.
pub fn recheck(backend: Backend) -> Duration {
    match backend {
        Backend::Postgres => Duration::from_secs(1),
        Backend::Sqlite => Duration::from_secs(30),
    }
}

/// Takes this process's block of instruction ids from the database and
/// gives out ids from it; returns the block number.
pub async fn take_id_block(st: &AppState) -> Result<u64, Error> {
    let block = db::runtime::take_id_block(&st.db.writer).await?;
    let block = u64::try_from(block).map_err(|_| Error::internal(format!("negative id block {block}")))?;
    st.runtime_store.use_id_block(block);
    Ok(block)
}

fn mac_of(mac: &str) -> Result<String, Error> {
    metalcast_runtime_api::normalize_mac(mac).map_err(|e| Error::BadRequest(e.to_string()))
}

fn store_error(e: StoreError) -> Error {
    Error::internal(e.to_string())
}

/// Queues `action` for the node with MAC `mac`; returns the instruction id.
/// Its long-poll, on whichever replica, gets it (at once here, within
/// [`recheck`] elsewhere).
pub async fn push(st: &AppState, mac: &str, action: Action) -> Result<u64, Error> {
    let mac = mac_of(mac)?;
    let id = st.runtime_store.do_push(&mac, &action).await.map_err(store_error)?;
    st.runtime.notify();
    Ok(id)
}

/// [`push`] for deployment `deployment`: queued only while the deployment
/// is running and this replica's, in the same statement ([`Error::Fenced`]
/// and counted otherwise: the replica lost it to another).
pub async fn push_for_deployment(st: &AppState, mac: &str, action: Action, deployment: i64) -> Result<u64, Error> {
    let mac = mac_of(mac)?;
    match st.runtime_store.push_for(&mac, &action, Some(deployment)).await.map_err(store_error)? {
        Some(id) => {
            st.runtime.notify();
            Ok(id)
        }
        None => {
            st.metrics.fenced("deployment");
            Err(Error::Fenced(format!(
                "deployment {deployment} is no longer this replica's: no instruction sent to {mac}"
            )))
        }
    }
}

/// What `mac`'s check-ins left, if it ever checked in.
pub async fn node(st: &AppState, mac: &str) -> Result<Option<RuntimeNode>, Error> {
    let mac = mac_of(mac)?;
    let Some(row) = db::runtime::node(&st.db.pool, &mac).await? else { return Ok(None) };
    let last: CheckIn = serde_json::from_str(&row.last_checkin)
        .map_err(|e| Error::internal(format!("the stored check-in of {mac} does not decode: {e}")))?;
    Ok(Some(RuntimeNode { checkins: u64::try_from(row.checkins).unwrap_or(0), last, at: row.checkin_at }))
}

/// The latest check-in of `mac`.
/// A runtime's check-ins, named by the registered node that has its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckinAge {
    /// The node with a NIC of this MAC (empty: none).
    pub node: String,
    /// Normalized MAC.
    pub mac: String,
    /// Check-ins so far.
    pub checkins: i64,
    /// Seconds since the last one (database clock).
    pub age: i64,
}

/// Every runtime that ever checked in, with the node its MAC belongs to.
pub async fn checkin_ages(st: &AppState) -> Result<Vec<CheckinAge>, Error> {
    let node_of: HashMap<String, String> = db::nics::all_macs(&st.db.pool)
        .await?
        .into_iter()
        .filter_map(|(node, mac)| super::netboot::normalize_mac(&mac).ok().map(|mac| (mac, node)))
        .collect();
    let rows = db::runtime::checkin_ages(&st.db.pool, st.db.backend).await?;
    Ok(rows
        .into_iter()
        .map(|r| CheckinAge {
            node: node_of.get(&r.mac).cloned().unwrap_or_default(),
            mac: r.mac,
            checkins: r.checkins,
            age: r.age,
        })
        .collect())
}

/// The latest check-in of `mac`, decoded.
pub async fn last_checkin(st: &AppState, mac: &str) -> Result<Option<CheckIn>, Error> {
    Ok(node(st, mac).await?.map(|n| n.last))
}

/// How often `mac` checked in.
pub async fn checkins(st: &AppState, mac: &str) -> Result<u64, Error> {
    Ok(node(st, mac).await?.map_or(0, |n| n.checkins))
}

/// Instruction `instruction`'s phase reports, in order.
pub async fn reports(st: &AppState, instruction: u64) -> Result<Vec<Report>, Error> {
    let Ok(id) = i64::try_from(instruction) else { return Ok(Vec::new()) };
    db::runtime::reports(&st.db.pool, id)
        .await?
        .iter()
        .map(|b| serde_json::from_str(b).map_err(|e| Error::internal(format!("a stored report does not decode: {e}"))))
        .collect()
}

/// The newest report of `mac`, of any instruction.
pub async fn last_report(st: &AppState, mac: &str) -> Result<Option<Report>, Error> {
    let mac = mac_of(mac)?;
    let Some(b) = db::runtime::last_report(&st.db.pool, &mac).await? else { return Ok(None) };
    Ok(Some(serde_json::from_str(&b).map_err(|e| Error::internal(format!("a stored report does not decode: {e}")))?))
}

/// Whether instruction `instruction` was handed to its node.
pub async fn delivered(st: &AppState, instruction: u64) -> Result<bool, Error> {
    let Ok(id) = i64::try_from(instruction) else { return Ok(false) };
    Ok(db::runtime::instruction(&st.db.pool, id).await?.is_some_and(|r| r.delivered_at.is_some()))
}

/// The notifier of changes to `mac` (check-ins, deliveries, reports) made
/// through this process. Take `notified()` of it *before* reading, then
/// [`wait`] on that, so a change between the two is not missed.
pub fn watch(st: &AppState, mac: &str) -> Arc<Notify> {
    st.runtime_store.watch(&mac_of(mac).unwrap_or_else(|_| mac.to_owned()))
}

/// Waits until `notified` fires or `timeout` (at most [`recheck`]) passes.
pub async fn wait(st: &AppState, notified: tokio::sync::futures::Notified<'_>, timeout: Duration) {
    let _ = tokio::time::timeout(timeout.min(recheck(st.db.backend)), notified).await;
}

/// Makes instructions `ids` this replica's work (it took their deployment over).
pub async fn take_over(st: &AppState, ids: &[u64]) -> Result<(), Error> {
    let ids: Vec<i64> = ids.iter().filter_map(|i| i64::try_from(*i).ok()).collect();
    db::runtime::take_over(&st.db.writer, &ids, &st.replica.id).await?;
    Ok(())
}

/// Deletes what is older than [`KEEP_SECS`]; returns how many rows went.
pub async fn prune(st: &AppState) -> Result<u64, Error> {
    Ok(db::runtime::prune(&st.db.writer, st.db.backend, KEEP_SECS).await?)
}
