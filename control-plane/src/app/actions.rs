//! Asynchronous networking actions (HIL's `NetworkingAction`).
//!
//! `connect_network`, `detach_network` and `revert` queue a PENDING row (the
//! database allows one pending row per NIC) and spawn a task that drives the
//! switch and then records DONE or ERROR.
//!
//! Fencing: the action belongs to the replica that queued it (`owner`).
//! Each switch call is made only after [`fencing::fence`] finds the action
//! still this replica's PENDING action with time left on its lease, and
//! the outcome is written only while it still is; a replica that was
//! declared dead (its actions failed by another) changes nothing.

use super::AppState;
use super::error::{Error, Result, check_name, conflict};
use super::fencing::{self, Work};
use crate::authz::Caller;
use crate::db;
use crate::db::actions::{ActionKind, ActionRow, ActionStatus, NewAction, NotQueued};
use crate::drivers::SwitchConfig;

/// Queues an action and starts it; 409 if the NIC already has a pending one,
/// or (with `project`, a tenant's request) if the node is no longer in that
/// project. Returns its id.
pub async fn queue(
    st: &AppState,
    node: &str,
    nic: &str,
    kind: ActionKind,
    network: Option<&str>,
    channel: &str,
    project: Option<&str>,
) -> Result<String> {
    let id = crate::auth::random_hex(16);
    let a = NewAction { id: &id, node, nic, kind, network, channel, created_at: crate::now(), owner: &st.replica.id };
    let queued = conflict(db::actions::insert(&st.db.writer, st.db.backend, &a, project).await, || {
        format!("nic {nic:?} of node {node:?} already has a pending network action")
    })?;
    match queued {
        Ok(()) => {}
        Err(NotQueued::LeftProject) => {
            return Err(Error::Conflict(format!(
                "node {node:?} left project {:?} meanwhile: no network action queued",
                project.unwrap_or_default()
            )));
        }
        Err(NotQueued::Attached) => {
            return Err(Error::Conflict("the network is already attached to the nic, or the channel is in use".into()));
        }
        Err(NotQueued::NotAttached) => {
            return Err(Error::Conflict("the network is not attached to the nic".into()));
        }
    }
    spawn(st.clone(), id.clone());
    Ok(id)
}

/// Action `id` (members of its node's project).
pub async fn show(st: &AppState, c: &Caller, id: &str) -> Result<ActionRow> {
    check_name("status_id", id)?;
    let a = db::actions::load(&st.db.pool, id).await?.ok_or_else(|| Error::NotFound("status_id not found".into()))?;
    c.require_project(a.project.as_deref())?;
    Ok(a)
}

/// The status of action `id`.
pub async fn status(st: &AppState, id: &str) -> Result<ActionStatus> {
    let s = db::actions::status(&st.db.pool, id).await?;
    ActionStatus::parse(&s).ok_or_else(|| Error::internal(format!("action {id}: unknown status {s:?}")))
}

/// Waits (at most `timeout`) for action `id` to finish; `what` names it in
/// the errors ("detaching a network").
pub async fn wait(st: &AppState, id: &str, timeout: std::time::Duration, what: &str) -> Result<()> {
    let t_end = tokio::time::Instant::now() + timeout;
    loop {
        let notified = st.action_done.notified();
        match status(st, id).await? {
            ActionStatus::Done => return Ok(()),
            ActionStatus::Error => return Err(Error::Unprocessable(format!("{what} failed (action {id})"))),
            ActionStatus::Pending => {}
        }
        let left = t_end.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(Error::Unprocessable(format!("{what} did not finish (action {id})")));
        }
        let _ = tokio::time::timeout(left.min(std::time::Duration::from_secs(1)), notified).await;
    }
}

/// Starts executing action `id` in the background.
fn spawn(st: AppState, id: String) {
    // Tracked, not cancelled: a switch change runs to its end (each driver call is bounded).
    st.tasks.clone().spawn(async move {
        carry_out(&st, &id).await;
    });
}

/// Carries action `id` out and records DONE or ERROR (as long as it is
/// still this replica's); returns what it came to here.
pub(crate) async fn carry_out(st: &AppState, id: &str) -> ActionStatus {
    let status = match execute(st, id).await {
        Ok(()) => ActionStatus::Done,
        Err(e) => {
            tracing::warn!(action = %id, error = %e, cause = ?e, "networking action failed");
            ActionStatus::Error
        }
    };
    if status == ActionStatus::Error {
        match db::actions::finish_pending(&st.db.writer, id, &st.replica.id, ActionStatus::Error).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(action = %id, "action no longer this replica's: its failure not recorded"),
            Err(e) => tracing::error!(action = %id, error = %e, "cannot record action failure"),
        }
    }
    st.metrics.action_finished(status.as_str());
    st.action_done.notify_waiters();
    status
}

fn vlan_of(v: i64) -> Result<u16> {
    u16::try_from(v).map_err(|_| Error::internal("vlan out of range"))
}

async fn execute(st: &AppState, id: &str) -> Result<()> {
    let pool = &st.db.pool;
    let a = db::actions::work(pool, id).await?;
    let (Some(port), Some(config)) = (a.port_name, a.config) else {
        return Err(Error::Conflict("nic is not connected to a switch port".into()));
    };
    let switch: SwitchConfig = serde_json::from_str(&config).map_err(Error::internal)?;
    let switch = st.switch(&switch);
    let work = Work::Action(id);
    let fenced_off = || Error::Fenced(format!("networking action {id} is no longer this replica's: nothing recorded"));
    let kind = ActionKind::parse(&a.kind).ok_or_else(|| Error::internal(format!("unknown action kind {}", a.kind)))?;
    match (kind, a.network) {
        (ActionKind::ModifyPort, Some(net)) => {
            let vlan = db::networks::load(pool, &net).await?.ok_or_else(|| Error::not_found("network", &net))?.vlan;
            let native = a.channel == "vlan/native";
            let vlan = vlan_of(vlan)?;
            fencing::fenced(st, work, "switch call", || switch.add_vlan(&port, vlan, native)).await?;
            let me = &st.replica.id;
            let (w, b) = (&st.db.writer, st.db.backend);
            if !db::actions::attach_done(w, b, id, me, &a.node, &a.nic, &net, &a.channel).await? {
                return Err(fenced_off());
            }
        }
        (ActionKind::ModifyPort, None) | (ActionKind::RevertPort, None) => {
            let mut removed = Vec::new();
            for (ch, vlan) in db::networks::nic_vlans(pool, &a.node, &a.nic).await? {
                if kind == ActionKind::RevertPort || ch == a.channel {
                    let native = ch == "vlan/native";
                    let vlan = vlan_of(vlan)?;
                    fencing::fenced(st, work, "switch call", || switch.del_vlan(&port, vlan, native)).await?;
                    removed.push(ch);
                }
            }
            let (w, b) = (&st.db.writer, st.db.backend);
            if !db::actions::detach_done(w, b, id, &st.replica.id, &a.node, &a.nic, &removed).await? {
                return Err(fenced_off());
            }
        }
        (ActionKind::RevertPort, Some(_)) => return Err(Error::internal("a revert names no network")),
    }
    tracing::info!(action = %id, node = %a.node, nic = %a.nic, kind = kind.as_str(), "networking action done");
    Ok(())
}

/// Marks actions left PENDING by a replica that is gone (a previous server
/// process, or a dead replica: their tasks died with it) as ERROR, so the
/// NICs are usable again. Actions of live replicas are theirs.
pub async fn recover(st: &AppState) -> Result<u64> {
    Ok(db::actions::fail_orphaned(&st.db.writer).await?)
}
