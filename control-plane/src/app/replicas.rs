//! Replicas: several `metalcast serve` processes on one database (issue 26,
//! first step; docs/scale-out.md).
//!
//! Each process registers itself at start ([`join`]) under a random id,
//! renews a heartbeat from the database clock ([`spawn_heartbeat`]), and
//! removes its row on a clean stop ([`leave`]). Long work it starts
//! (deployments, networking actions) records it as the owner. A replica is
//! **dead** when its heartbeat is older than the dead timeout (default 30 s),
//! or, proven at once, when it ran on this very host (same kernel boot id)
//! and its process (pid and start time) is gone. Every replica's heartbeat
//! tick removes dead replicas and fails the work they owned with a reason
//! (their senders died with them); work of live replicas is never touched,
//! so starting another replica does not disturb running deployments.
//!
//! SQLite is for one process: [`join`] refuses a second live replica on it.
//!
//! A dead replica's running deployments are taken over (resumed) by the
//! replica that reaps it where they can be, failed with a reason where not;
//! its PENDING networking actions are recovered. Every write of a running
//! deployment names its owner, and every side effect goes through
//! [`super::fencing`], so a replica declared dead that wakes up changes
//! nothing.

use std::time::Duration;

use super::AppState;
use super::error::{Error, Result};
use crate::db::replicas::ReplicaRow;
use crate::db::{self, Backend};

/// Default: a replica without a heartbeat for this long is dead.
pub const DEFAULT_DEAD_AFTER: Duration = Duration::from_secs(30);

/// This process as a replica.
#[derive(Debug, Clone)]
pub struct Replica {
    /// Random id, new for every process; owner of the work it starts.
    pub id: String,
    /// No heartbeat for this long: dead. Heartbeats every sixth of it.
    pub dead_after: Duration,
}

impl Default for Replica {
    fn default() -> Self {
        Replica { id: format!("r-{}", crate::auth::random_hex(8)), dead_after: DEFAULT_DEAD_AFTER }
    }
}

impl Replica {
    /// Time between heartbeats (and dead-replica scans).
    pub fn interval(&self) -> Duration {
        (self.dead_after / 6).max(Duration::from_millis(200))
    }
}

/// This host's kernel boot id, host name, and this process's start time.
struct Me {
    host: String,
    boot_id: String,
    pid: u32,
    pid_start: u64,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks after boot), read
/// after the last `)` since the command name may hold spaces and parentheses.
fn pid_start(pid: u32) -> Option<u64> {
    parse_start(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_start(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid` is stopped (`SIGSTOP`, or stopped by a tracer):
/// field 3 of `/proc/PID/stat` is `T` or `t`.
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|s| parse_stopped(&s))
}

fn parse_stopped(stat: &str) -> bool {
    stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next()).is_some_and(|s| s == "T" || s == "t")
}

fn me() -> Me {
    let pid = std::process::id();
    Me {
        host: read_trim("/proc/sys/kernel/hostname"),
        boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
        pid,
        pid_start: pid_start(pid).unwrap_or(0),
    }
}

/// Why `r` is dead, or `None` while it may be alive: positive proof from this
/// host (same boot, that process is gone), or a heartbeat older than the bound.
fn dead_reason(r: &ReplicaRow, here: &Me, now: i64, dead_after: Duration) -> Option<String> {
    if !here.boot_id.is_empty() && r.boot_id == here.boot_id && r.pid_start > 0 {
        let gone = u32::try_from(r.pid).ok().and_then(pid_start).is_none_or(|s| s != r.pid_start as u64);
        if gone {
            return Some(format!("replica {} (pid {} on {}) is no longer running", r.id, r.pid, r.host));
        }
        // Running on this host: alive whatever its heartbeat says (it may be busy), unless it is
        // stopped (SIGSTOP): then its heartbeat decides, as for a replica elsewhere.
        if !u32::try_from(r.pid).is_ok_and(stopped) {
            return None;
        }
    }
    let silent = now - r.heartbeat_at;
    (silent > dead_after.as_secs() as i64)
        .then(|| format!("replica {} on {} sent no heartbeat for {silent} s", r.id, r.host))
}

/// Removes the rows of dead replicas (other than this one); returns why each
/// was dead, and the other replicas still registered.
async fn remove_dead(st: &AppState) -> Result<(Vec<String>, Vec<ReplicaRow>)> {
    let now = db::now_pool(&st.db.pool, st.db.backend).await?;
    let here = me();
    let (mut reaped, mut alive) = (Vec::new(), Vec::new());
    for r in db::replicas::list(&st.db.pool).await? {
        if r.id == st.replica.id {
            continue;
        }
        match dead_reason(&r, &here, now, st.replica.dead_after) {
            Some(why) => {
                if db::replicas::remove(&st.db.writer, &r.id).await? {
                    tracing::warn!(replica = %r.id, host = %r.host, "{why}: its work is taken over or failed");
                    reaped.push(why);
                }
            }
            None => alive.push(r),
        }
    }
    Ok((reaped, alive))
}

/// Removes dead replicas (other than this one) and fails the work they
/// owned, with the reason; returns the reasons of the replicas removed.
pub async fn reap(st: &AppState) -> Result<Vec<String>> {
    let (reaped, _) = remove_dead(st).await?;
    // Also work that lost its owner earlier (a reaper that stopped between the two steps).
    let reason = match reaped.as_slice() {
        [] => "its control-plane replica stopped during the deployment (retry or reclaim the node)".to_string(),
        [one] => format!("{one} during the deployment (retry or reclaim the node)"),
        _ => format!("{} during the deployment (retry or reclaim the node)", reaped.join("; ")),
    };
    let resumed = super::deployments::resume_orphaned(st).await?;
    if resumed > 0 {
        tracing::warn!(resumed, "took over the deployments of replicas that are gone");
    }
    let nodes = super::deployments::fail_orphaned(st, &reason).await?;
    let actions = super::actions::recover(st).await?;
    if nodes > 0 || actions > 0 {
        tracing::warn!(nodes, actions, "failed the work of replicas that are gone");
    }
    Ok(reaped)
}

/// Registers this process. On SQLite, refuses when another replica is
/// alive (SQLite is for one process). Dead ones are removed first; the work
/// they left is failed by the caller's recovery (`serve`: "restarted").
pub async fn join(st: &AppState) -> Result<()> {
    let (_, others) = remove_dead(st).await?;
    if st.db.backend == Backend::Sqlite
        && let Some(o) = others.first()
    {
        return Err(Error::Conflict(format!(
            "another metalcast serve (replica {}, pid {} on {}, started at {}) uses this SQLite database; SQLite \
             supports one control-plane process: stop it, or run several replicas on PostgreSQL \
             (docs/scale-out.md). If it crashed on another host, it counts as dead {} s after its last heartbeat.",
            o.id,
            o.pid,
            o.host,
            o.started_at,
            st.replica.dead_after.as_secs()
        )));
    }
    let m = me();
    let row = ReplicaRow {
        id: st.replica.id.clone(),
        host: m.host,
        boot_id: m.boot_id,
        pid: m.pid.into(),
        pid_start: m.pid_start as i64,
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: 0,
        heartbeat_at: 0,
        sender: st.provision.addr.filter(|_| st.upstream.is_none()).map(|a| a.to_string()),
    };
    db::replicas::insert(&st.db.writer, st.db.backend, &row).await?;
    tracing::info!(replica = %row.id, others = others.len(), "joined as a control-plane replica");
    Ok(())
}

/// Removes this process's row (a clean stop: its work is finished or failed).
pub async fn leave(st: &AppState) -> Result<()> {
    db::replicas::remove(&st.db.writer, &st.replica.id).await?;
    Ok(())
}

/// Every [`Replica::interval`] until shutdown: renew this replica's
/// heartbeat, then [`reap`] dead replicas.
pub fn spawn_heartbeat(st: &AppState) {
    let (st2, token) = (st.clone(), st.tasks.token());
    st.tasks.spawn(async move {
        let mut tick = tokio::time::interval(st2.replica.interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pruned = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = tick.tick() => {}
            }
            match db::replicas::heartbeat(&st2.db.writer, st2.db.backend, &st2.replica.id).await {
                Ok(true) => {}
                Ok(false) => {
                    // Declared dead while alive (paused or cut off past the timeout): its work was
                    // failed by another replica. Come back as a live replica for new work.
                    tracing::error!(replica = %st2.replica.id, "this replica was declared dead by another; registering again");
                    if let Err(e) = join(&st2).await {
                        tracing::error!(error = %e, "cannot register this replica again");
                    }
                }
                Err(e) => tracing::error!(error = %e, "replica heartbeat failed"),
            }
            if let Err(e) = reap(&st2).await {
                tracing::error!(error = %e, "cannot reap dead replicas");
            }
            // Hourly: the runtime's week-old instructions and reports (every replica; the deletes repeat safely).
            if pruned.elapsed() >= std::time::Duration::from_secs(3600) {
                pruned = std::time::Instant::now();
                if let Err(e) = super::runtime::prune(&st2).await {
                    tracing::error!(error = %e, "cannot prune old runtime instructions and reports");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(boot_id: &str, pid: u32, pid_start: u64, heartbeat_at: i64) -> ReplicaRow {
        ReplicaRow {
            id: "r-x".into(),
            host: "h".into(),
            boot_id: boot_id.into(),
            pid: pid.into(),
            pid_start: pid_start as i64,
            version: "0".into(),
            started_at: 0,
            heartbeat_at,
            sender: None,
        }
    }

    #[test]
    fn this_process_is_alive_and_a_gone_one_is_dead() {
        let here = me();
        assert!(here.pid_start > 0, "reads /proc/self/stat");
        let dead_after = Duration::from_secs(30);
        // This very process, even with an ancient heartbeat: alive (running on this host).
        assert_eq!(dead_reason(&row(&here.boot_id, here.pid, here.pid_start, 0), &here, 1000, dead_after), None);
        // Same pid, another start time (pid reused): dead at once, whatever the heartbeat.
        let r = dead_reason(&row(&here.boot_id, here.pid, here.pid_start + 1, 1000), &here, 1000, dead_after);
        assert!(r.unwrap().contains("no longer running"));
        // Another host: only the heartbeat counts.
        assert_eq!(dead_reason(&row("other-boot", 1, 5, 980), &here, 1000, dead_after), None);
        let r = dead_reason(&row("other-boot", 1, 5, 960), &here, 1000, dead_after).unwrap();
        assert!(r.contains("no heartbeat for 40 s"), "{r}");
    }

    #[test]
    fn a_stopped_process_is_told_from_a_running_one() {
        assert!(parse_stopped("4242 (a b) (c) T 1 4242"));
        assert!(parse_stopped("4242 (x) t 1 4242"));
        assert!(!parse_stopped("4242 (T) S 1 4242"), "the command name is not the state");
        assert!(!parse_stopped("4242 (x) R 1"));
        assert!(!parse_stopped("garbage"));
        assert!(!stopped(std::process::id()), "this test runs");
    }

    #[test]
    fn stat_parsing_skips_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (a b) (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000 50";
        assert_eq!(parse_start(stat), Some(987_654));
        assert_eq!(parse_start("4242 (x) S 1"), None, "too short");
        assert!(pid_start(u32::MAX).is_none(), "no such process");
    }
}
