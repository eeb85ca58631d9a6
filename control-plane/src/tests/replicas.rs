//! Replicas on one database: a new replica leaves the work of live ones
//! alone, a dead one's work is failed with the reason, and SQLite refuses
//! a second live process.

use serde_json::json;

use super::Harness;
use crate::app::AppState;
use crate::app::replicas;
use crate::db::Backend;

pub(super) async fn another(h: &Harness) -> AppState {
    let db = crate::db::connect(&h.url()).await.expect("second connection");
    AppState::new(db, crate::VlanPool { first: 100, last: 109 })
}

async fn running(st: &AppState, id: i64, node: &str, owner: Option<&str>) {
    sqlx::query(
        "INSERT INTO deployments (id, project, image, root_hash, state, params, created_by, created_at, owner) \
         VALUES ($1, 'p', 'img', 'h', 'running', '{}', 'root', 0, $2)",
    )
    .bind(id)
    .bind(owner)
    .execute(&st.db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO deployment_nodes (deployment, node, state, started_at, metadata_token) \
         VALUES ($1, $2, 'receiving', 0, $3)",
    )
    .bind(id)
    .bind(node)
    .bind(format!("tok-{id}"))
    .execute(&st.db.pool)
    .await
    .unwrap();
}

async fn state_of(st: &AppState, id: i64) -> (String, String) {
    let d: String = sqlx::query_scalar("SELECT state FROM deployments WHERE id = $1")
        .bind(id)
        .fetch_one(&st.db.pool)
        .await
        .unwrap();
    let reason: String = sqlx::query_scalar("SELECT reason FROM deployment_nodes WHERE deployment = $1")
        .bind(id)
        .fetch_one(&st.db.pool)
        .await
        .unwrap();
    (d, reason)
}

async fn action_status(st: &AppState) -> String {
    sqlx::query_scalar("SELECT status FROM network_actions WHERE id = 'act-a'").fetch_one(&st.db.pool).await.unwrap()
}

async fn replicas_own_their_work(h: &Harness) {
    let a = &h.st;
    replicas::join(a).await.unwrap();
    h.ok("PUT", "/v0/node/n1", Some(json!({"obm": {"type": "none"}}))).await;
    h.ok("PUT", "/v0/node/n1/nic/eth0", Some(json!({"macaddr": "52:54:00:00:77:01"}))).await;
    running(a, 1, "n1", Some(&a.replica.id)).await;
    running(a, 2, "n2", None).await;
    sqlx::query(
        "INSERT INTO network_actions (id, node, nic, kind, network, channel, status, created_at, owner) \
         VALUES ('act-a', 'n1', 'eth0', 'attach', NULL, 'vlan/native', 'PENDING', 0, $1)",
    )
    .bind(&a.replica.id)
    .execute(&a.db.pool)
    .await
    .unwrap();

    let b = another(h).await;
    if h.st.db.backend == Backend::Sqlite {
        // SQLite: one process. A second one is refused while A runs, with what to do about it.
        let e = replicas::join(&b).await.unwrap_err().public_message();
        assert!(e.contains("SQLite") && e.contains(&a.replica.id) && e.contains("PostgreSQL"), "{e}");
        assert_eq!(state_of(a, 1).await.0, "running", "a refused replica touches nothing");
        // A crashed process on this host (its pid gone) is dead at once: the next start is let in.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        sqlx::query(
            "INSERT INTO replicas (id, host, boot_id, pid, pid_start, version, started_at, heartbeat_at) \
             VALUES ('r-crashed', 'h', $1, $2, 1, '0', 0, 9999999999)",
        )
        .bind(boot.trim())
        .bind(i64::from(gone))
        .execute(&a.db.pool)
        .await
        .unwrap();
        running(a, 3, "n3", Some("r-crashed")).await;
        // After a clean stop of A, B starts (the crashed one removed) and recovers as `serve` does.
        replicas::leave(a).await.unwrap();
        replicas::join(&b).await.unwrap();
        let ids: Vec<String> = crate::db::replicas::list(&b.db.pool).await.unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, std::slice::from_ref(&b.replica.id));
        assert!(crate::app::deployments::recover(&b).await.unwrap() >= 1);
        let (s, why) = state_of(a, 3).await;
        assert_eq!(s, "failed");
        assert!(why.contains("restarted"), "{why}");
        b.db.pool.close().await;
        return;
    }

    // PostgreSQL: B joins beside A and recovers at start as `serve` does: A's work is A's.
    replicas::join(&b).await.unwrap();
    assert_eq!(crate::app::deployments::recover(&b).await.unwrap(), 1, "only the ownerless deployment");
    crate::app::actions::recover(&b).await.unwrap();
    assert_eq!(state_of(a, 1).await.0, "running");
    assert_eq!(action_status(a).await, "PENDING");
    let (s, why) = state_of(a, 2).await;
    assert_eq!(s, "failed");
    assert!(why.contains("restarted"), "{why}");

    // A's heartbeat goes stale, but A runs on this host: positive proof it is alive wins.
    sqlx::query("UPDATE replicas SET heartbeat_at = heartbeat_at - 3600 WHERE id = $1")
        .bind(&a.replica.id)
        .execute(&a.db.pool)
        .await
        .unwrap();
    assert!(replicas::reap(&b).await.unwrap().is_empty());
    assert_eq!(state_of(a, 1).await.0, "running");
    // On another host (another boot id), only the heartbeat tells: A is dead, its work failed.
    sqlx::query("UPDATE replicas SET boot_id = 'another-host' WHERE id = $1")
        .bind(&a.replica.id)
        .execute(&a.db.pool)
        .await
        .unwrap();
    let reaped = replicas::reap(&b).await.unwrap();
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    let (s, why) = state_of(a, 1).await;
    assert_eq!(s, "failed");
    assert!(why.contains(&a.replica.id) && why.contains("no heartbeat for"), "{why}");
    assert_eq!(action_status(a).await, "ERROR");
    // A, woken up, still runs deployment 1 in its memory: every write it makes is fenced off.
    let mut row = crate::db::deployments::nodes(&a.db.pool, 1).await.unwrap().remove(0);
    row.state = "verified".into();
    row.reason = "done (from a replica declared dead)".into();
    let w = &a.db.writer;
    assert!(!crate::db::deployments::update_node(w, 1, &a.replica.id, &row).await.unwrap());
    assert!(!crate::db::deployments::set_summary(w, 1, &a.replica.id, "{}").await.unwrap());
    let done = crate::db::deployments::DeploymentState::Done;
    assert!(!crate::db::deployments::finish(w, 1, &a.replica.id, done, 0, None).await.unwrap());
    assert_eq!(state_of(a, 1).await, (s, why), "nothing changed");
    // A retry makes the deployment B's: B's writes land.
    let mut tx = b.db.writer.begin().await.unwrap();
    assert!(crate::db::deployments::restart(&mut tx, b.db.backend, 1, &b.replica.id).await.unwrap());
    tx.commit().await.unwrap();
    assert!(crate::db::deployments::update_node(&b.db.writer, 1, &b.replica.id, &row).await.unwrap());
    assert!(!crate::db::deployments::update_node(w, 1, &a.replica.id, &row).await.unwrap());
    // A, woken up, finds its row gone.
    assert!(!crate::db::replicas::heartbeat(&a.db.writer, a.db.backend, &a.replica.id).await.unwrap());
    let left: Vec<String> = crate::db::replicas::list(&a.db.pool).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(left, std::slice::from_ref(&b.replica.id));
    b.db.pool.close().await;
}
crate::both_backends!(replicas_own_their_work);

async fn session(st: &AppState, id: i64, runtime_at: &str, epoch: i64) {
    sqlx::query(
        "INSERT INTO deployment_sessions (deployment, spec, members, epoch, seq, seq_at, runtime_at) \
         VALUES ($1, '{}', '[]', $2, 1000, 0, $3)",
    )
    .bind(id)
    .bind(epoch)
    .bind(runtime_at)
    .execute(&st.db.pool)
    .await
    .unwrap();
}

async fn owner_of(st: &AppState, id: i64) -> Option<String> {
    sqlx::query_scalar("SELECT owner FROM deployments WHERE id = $1").bind(id).fetch_one(&st.db.pool).await.unwrap()
}

/// A dead replica's running deployments: one with a resumable session is
/// claimed (owner, epoch raised) exactly once, even by two replicas at once,
/// wherever its sender ran (the nodes' runtimes reach every replica through
/// the database); one without a session, or taken over too often, is not,
/// and the recovery fails it and forgets its session key. A resumable one
/// is left for a replica that can send while one lives, and failed once none
/// does. The claimer's checkpoints land, anyone else's do not.
async fn orphaned_sessions_are_claimed_once(h: &Harness) {
    let b = &h.st;
    replicas::join(b).await.unwrap();
    for (id, node, at, epoch) in [
        (10, "n10", Some("http://10.9.9.9:7000 10.9.9.9"), 0),
        (11, "n11", None, 0),
        (12, "n12", Some("http://10.0.0.1:7000 10.0.0.1"), 15),
    ] {
        running(b, id, node, Some("r-gone")).await;
        if let Some(at) = at {
            session(b, id, at, epoch).await;
        }
    }
    let w = &b.db.writer;
    let claim = |st: AppState| async move {
        crate::db::deployments::claim_orphaned_sessions(&st.db.writer, &st.replica.id, 15).await.unwrap()
    };
    let claimed = if b.db.backend == Backend::Postgres {
        // Two replicas claim at once: one gets it.
        let c = another(h).await;
        replicas::join(&c).await.unwrap();
        let (x, y) = tokio::join!(claim(b.clone()), claim(c.clone()));
        assert_eq!(x.len() + y.len(), 1, "claimed twice: {x:?} {y:?}");
        let (winner, rows) = if x.is_empty() { (c.replica.id.clone(), y) } else { (b.replica.id.clone(), x) };
        assert_eq!(owner_of(b, 10).await.as_deref(), Some(winner.as_str()));
        replicas::leave(&c).await.unwrap();
        c.db.pool.close().await;
        if winner != b.replica.id {
            // The winner left: B claims it now (epoch 2).
            let again = claim(b.clone()).await;
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].epoch, 2);
        }
        rows
    } else {
        claim(b.clone()).await
    };
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!((claimed[0].deployment, claimed[0].epoch, claimed[0].seq), (10, 1, 1000));
    assert_eq!(owner_of(b, 10).await.as_deref(), Some(b.replica.id.as_str()));
    assert!(claim(b.clone()).await.is_empty(), "a live owner's deployment is not claimed again");
    // Orphaned after the claim, resumable: left for a sender replica (B is one) to claim at its next scan.
    running(b, 13, "n13", Some("r-gone")).await;
    session(b, 13, "http://10.9.9.9:7000 10.9.9.9", 3).await;
    // The rest is failed, and the session keys of what ended are gone.
    crate::app::deployments::fail_orphaned(b, "gone").await.unwrap();
    assert_eq!(state_of(b, 10).await.0, "running");
    assert_eq!(state_of(b, 11).await.0, "failed");
    assert_eq!(state_of(b, 12).await.0, "failed");
    assert_eq!(state_of(b, 13).await.0, "running", "left for a replica that can resume it");
    let sessions = || async {
        let v: Vec<i64> = sqlx::query_scalar("SELECT deployment FROM deployment_sessions ORDER BY deployment")
            .fetch_all(&b.db.pool)
            .await
            .unwrap();
        v
    };
    assert_eq!(sessions().await, vec![10, 13]);
    // With no replica able to send, nobody can resume it: failed.
    sqlx::query("UPDATE replicas SET sender = NULL").execute(&b.db.pool).await.unwrap();
    crate::app::deployments::fail_orphaned(b, "gone").await.unwrap();
    assert_eq!(state_of(b, 13).await.0, "failed");
    assert_eq!(sessions().await, vec![10]);
    // Checkpoints: the owner's land, a former owner's change nothing.
    assert!(crate::db::deployments::checkpoint(w, b.db.backend, 10, &b.replica.id, 5000).await.unwrap());
    assert!(!crate::db::deployments::checkpoint(w, b.db.backend, 10, "r-gone", 9000).await.unwrap());
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM deployment_sessions WHERE deployment = 10")
        .fetch_one(&b.db.pool)
        .await
        .unwrap();
    assert_eq!(seq, 5000);
    // A claimed deployment that cannot run is ended, not left running and owned.
    crate::db::deployments::fail_owned(w, 10, &b.replica.id, "cannot resume", 0).await.unwrap();
    assert_eq!(state_of(b, 10).await, ("failed".to_string(), "cannot resume".to_string()));
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deployment_sessions").fetch_one(&b.db.pool).await.unwrap();
    assert_eq!(n, 0);
}
crate::both_backends!(orphaned_sessions_are_claimed_once);

/// The market's driver runs in one replica at a time: the first to ask
/// holds it, another does not while the holder lives, and takes it once the
/// holder's row is gone (dead and reaped).
async fn one_replica_runs_the_market_driver(h: &Harness) {
    use crate::app::fencing::{MARKET_DRIVER, holds};
    let a = &h.st;
    replicas::join(a).await.unwrap();
    assert!(holds(a, MARKET_DRIVER).await.unwrap());
    assert!(holds(a, MARKET_DRIVER).await.unwrap(), "renewed by its holder");
    if a.db.backend == Backend::Sqlite {
        return; // one process on SQLite
    }
    let b = another(h).await;
    replicas::join(&b).await.unwrap();
    assert!(!holds(&b, MARKET_DRIVER).await.unwrap(), "held by a live replica");
    let (x, y) = tokio::join!(holds(a, MARKET_DRIVER), holds(&b, MARKET_DRIVER));
    assert!(x.unwrap() && !y.unwrap());
    crate::db::replicas::remove(&a.db.writer, &a.replica.id).await.unwrap();
    assert!(holds(&b, MARKET_DRIVER).await.unwrap(), "taken over from a replica that is gone");
    assert_eq!(
        crate::db::replicas::job_owner(&b.db.pool, MARKET_DRIVER).await.unwrap().as_deref(),
        Some(b.replica.id.as_str())
    );
    assert!(!holds(a, MARKET_DRIVER).await.unwrap(), "the former holder does not get it back");
    b.db.pool.close().await;
}
crate::both_backends!(one_replica_runs_the_market_driver);

/// A watcher on a replica that does not run the deployment follows what
/// the owner stores: progress as it is raised, then the end, then the
/// stream's end. (On SQLite both are one state, with the same stored rows.)
async fn a_deployment_run_elsewhere_is_followed_from_the_database(h: &Harness) {
    use crate::app::deployments::Deployment;
    let a = &h.st;
    running(a, 20, "n20", Some("r-owner-elsewhere")).await;
    sqlx::query("UPDATE deployment_nodes SET blocks_total = 10 WHERE deployment = 20")
        .execute(&a.db.pool)
        .await
        .unwrap();
    let admin = crate::authz::Caller { user: Some("root".into()), admin: true, ..Default::default() };
    let (first, rx) = crate::app::deployments::watch(a, &admin, 20).await.unwrap();
    assert_eq!(first.nodes[0].blocks_done, 0);
    let mut rx = rx.expect("a running deployment run elsewhere is followed");
    // The owner raises the node's progress (fenced by its id), then ends the deployment.
    assert!(crate::db::deployments::raise_blocks_done(&a.db.writer, 20, "r-owner-elsewhere", "n20", 4).await.unwrap());
    assert!(!crate::db::deployments::raise_blocks_done(&a.db.writer, 20, "r-owner-elsewhere", "n20", 3).await.unwrap());
    assert!(!crate::db::deployments::raise_blocks_done(&a.db.writer, 20, "r-other", "n20", 9).await.unwrap());
    async fn seen(rx: &mut tokio::sync::watch::Receiver<crate::app::deployments::Deployment>) -> Deployment {
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed()).await.expect("an update").ok();
        rx.borrow_and_update().clone()
    }
    let d = seen(&mut rx).await;
    assert_eq!((d.nodes[0].blocks_done, d.is_finished()), (4, false), "{d:?}");
    sqlx::query("UPDATE deployments SET state = 'done', finished_at = 1 WHERE id = 20")
        .execute(&a.db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE deployment_nodes SET state = 'verified', blocks_done = 10 WHERE deployment = 20")
        .execute(&a.db.pool)
        .await
        .unwrap();
    let d = seen(&mut rx).await;
    assert!(d.is_finished(), "{d:?}");
    assert_eq!(d.nodes[0].blocks_done, 10);
    // Then the feed ends (the SSE stream sends `end`).
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed()).await.expect("bounded");
    assert!(ended.is_err(), "the feed ends with the deployment");
}
crate::both_backends!(a_deployment_run_elsewhere_is_followed_from_the_database);

async fn pending(st: &AppState, id: &str, owner: &str) {
    sqlx::query(
        "INSERT INTO network_actions (id, node, nic, kind, network, channel, status, created_at, owner) \
         VALUES ($1, 'n1', 'eth0', 'modify_port', NULL, 'vlan/native', 'PENDING', 0, $2)",
    )
    .bind(id)
    .bind(owner)
    .execute(&st.db.pool)
    .await
    .unwrap();
}

async fn status_of(st: &AppState, id: &str) -> String {
    crate::db::actions::status(&st.db.pool, id).await.unwrap()
}

/// Fencing of side effects: a replica makes a switch call, a BMC call or
/// sends a runtime instruction only while it still owns the work and its
/// own lease has time left (database clock); otherwise it makes none,
/// writes nothing, and counts it.
async fn a_replica_that_lost_its_work_makes_no_side_effect(h: &Harness) {
    use crate::app::fencing::{MARKET_DRIVER, Work, fence, holds};
    h.renewal.abort(); // this test moves the heartbeat itself
    let a = &h.st;
    let key = format!("fence-{}", crate::auth::random_hex(4));
    let alice = super::api::setup_wired_node(h, &key, false, false).await;
    // While it holds the work: the switch is driven and the outcome recorded.
    let (_, v) = h.call("POST", "/v0/node/n1/nic/eth0/connect_network", &alice, Some(json!({"network": "net1"}))).await;
    assert_eq!(h.wait_action(v["status_id"].as_str().unwrap()).await, "DONE");
    assert_eq!(crate::drivers::mock::log(&key), vec!["add p1 100 native=true"]);
    let attached = || async { crate::db::networks::attachments_of_node(&a.db.pool, "n1").await.unwrap().len() };
    assert_eq!(attached().await, 1);

    // Its heartbeat is late (a third of the dead timeout left, or less): no switch call; the action
    // fails, since it is still this replica's.
    sqlx::query("UPDATE replicas SET heartbeat_at = heartbeat_at - 25 WHERE id = $1")
        .bind(&a.replica.id)
        .execute(&a.db.pool)
        .await
        .unwrap();
    pending(a, "act-late", &a.replica.id).await;
    assert_eq!(crate::app::actions::carry_out(a, "act-late").await, crate::db::actions::ActionStatus::Error);
    assert_eq!(status_of(a, "act-late").await, "ERROR");
    assert_eq!(crate::drivers::mock::log(&key).len(), 1, "no switch call on a late lease");
    assert_eq!(attached().await, 1);
    assert!(crate::db::replicas::heartbeat(&a.db.writer, a.db.backend, &a.replica.id).await.unwrap());

    // Declared dead by another replica, which failed its pending action: waking up, it carries the
    // action on and changes nothing, on the switch or in the database.
    pending(a, "act-old", &a.replica.id).await;
    sqlx::query("UPDATE network_actions SET status = 'ERROR' WHERE id = 'act-old'").execute(&a.db.pool).await.unwrap();
    crate::app::actions::carry_out(a, "act-old").await;
    assert_eq!(status_of(a, "act-old").await, "ERROR");
    assert_eq!(crate::drivers::mock::log(&key).len(), 1, "no switch call for an action no longer its own");
    assert_eq!(attached().await, 1, "the attachment stays");
    // Another replica's pending action: not this one's to carry out either.
    sqlx::query("UPDATE network_actions SET status = 'DONE' WHERE id = 'act-old'").execute(&a.db.pool).await.unwrap();
    pending(a, "act-other", "r-someone-else").await;
    crate::app::actions::carry_out(a, "act-other").await;
    assert_eq!(status_of(a, "act-other").await, "PENDING", "left to its owner");
    assert_eq!(crate::drivers::mock::log(&key).len(), 1);
    sqlx::query("DELETE FROM network_actions WHERE id = 'act-other'").execute(&a.db.pool).await.unwrap();

    // BMC calls of the market driver: only while this replica holds the driver's job.
    assert!(holds(a, MARKET_DRIVER).await.unwrap());
    fence(a, Work::Job(MARKET_DRIVER), "test").await.unwrap();
    sqlx::query("UPDATE singleton_jobs SET owner = 'r-next-holder' WHERE name = $1")
        .bind(MARKET_DRIVER)
        .execute(&a.db.pool)
        .await
        .unwrap();
    let zero = std::time::Duration::ZERO;
    let work = Work::Job(MARKET_DRIVER);
    let e = crate::app::reclaim::back_to_runtime(a, work, "market", "pa", "n1", zero).await.unwrap_err();
    assert!(matches!(e, crate::app::Error::Fenced(_)), "{e:?}");
    assert!(e.public_message().contains("market-driver"), "{}", e.public_message());
    assert!(crate::drivers::mock::log(&key).len() == 1, "no BMC call");
    // The same for a request while the replica is alive: the BMC is driven (then no runtime checks in).
    let e = crate::app::reclaim::back_to_runtime(a, Work::Request, "root", "pa", "n1", zero).await.unwrap_err();
    assert!(e.public_message().contains("did not check in"), "{}", e.public_message());
    assert_eq!(crate::drivers::mock::log(&key)[1..], ["bootdev pxe".to_string(), "power Cycle".to_string()]);

    // A runtime instruction for a deployment: only while it runs and is this replica's (one statement).
    running(a, 40, "n1", Some("r-someone-else")).await;
    let action = metalcast_runtime_api::Action::Wipe(metalcast_runtime_api::Wipe {
        mode: metalcast_runtime_api::WipeMode::Discard,
        devices: vec!["/dev/vdz".into()],
    });
    let mac = "52:54:00:00:00:01";
    let e = crate::app::runtime::push_for_deployment(a, mac, action.clone(), 40).await.unwrap_err();
    assert!(matches!(e, crate::app::Error::Fenced(_)), "{e:?}");
    let queued = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM runtime_instructions").fetch_one(&a.db.pool).await.unwrap()
    };
    assert_eq!(queued().await, 0, "nothing queued");
    sqlx::query("UPDATE deployments SET owner = $1 WHERE id = 40")
        .bind(&a.replica.id)
        .execute(&a.db.pool)
        .await
        .unwrap();
    crate::app::runtime::push_for_deployment(a, mac, action, 40).await.unwrap();
    assert_eq!(queued().await, 1);

    // Gone from the registry altogether: not even a request's BMC call.
    crate::db::replicas::remove(&a.db.writer, &a.replica.id).await.unwrap();
    let admin = crate::authz::Caller { user: Some("root".into()), admin: true, ..Default::default() };
    let e = crate::app::nodes::power(a, &admin, "n1", crate::drivers::PowerOp::Off).await.unwrap_err();
    assert!(e.public_message().contains("no longer registered"), "{}", e.public_message());
    assert_eq!(crate::drivers::mock::log(&key).len(), 3, "no BMC call: {:?}", crate::drivers::mock::log(&key));
    let metrics = a.metrics.render();
    for work in ["action", "job", "deployment", "request"] {
        assert!(metrics.contains(&format!("metalcast_fenced_total{{work=\"{work}\"}}")), "{work}: {metrics}");
    }
}
crate::both_backends!(a_replica_that_lost_its_work_makes_no_side_effect);

/// What must hold in the database after any run of several replicas (and
/// at any instant during one); returns the violations, one line each.
pub(super) async fn invariants(st: &AppState) -> Vec<String> {
    let checks: [(&str, &str); 6] = [
        (
            "two pending networking actions on one NIC",
            "SELECT node || '/' || nic FROM network_actions WHERE status = 'PENDING' GROUP BY node, nic \
             HAVING COUNT(*) > 1",
        ),
        (
            "a network attached to a node of no project",
            "SELECT a.node || '/' || a.nic || ' ' || a.network FROM attachments a JOIN nodes n ON n.name = a.node \
             WHERE n.project IS NULL",
        ),
        (
            "a network attached to a node whose project may not use it",
            "SELECT a.node || ' ' || a.network FROM attachments a JOIN nodes n ON n.name = a.node \
             JOIN networks w ON w.name = a.network \
             WHERE w.owner IS NOT NULL AND w.owner <> n.project \
             AND NOT EXISTS (SELECT 1 FROM network_access x WHERE x.network = a.network AND x.project = n.project)",
        ),
        (
            "two attachments on one channel of a NIC",
            "SELECT node || '/' || nic || ' ' || channel FROM attachments GROUP BY node, nic, channel \
             HAVING COUNT(*) > 1",
        ),
        (
            "a session epoch outside 0..=15",
            "SELECT CAST(deployment AS TEXT) FROM deployment_sessions WHERE epoch < 0 OR epoch > 15",
        ),
        (
            "a running deployment with no owner",
            "SELECT CAST(id AS TEXT) FROM deployments WHERE state = 'running' AND owner IS NULL",
        ),
    ];
    let mut bad = Vec::new();
    for (what, sql) in checks {
        let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(&st.db.pool).await.unwrap();
        bad.extend(rows.into_iter().map(|r| format!("{what}: {r}")));
    }
    bad
}

/// Work whose owner is not a registered replica (checked after a reap:
/// nothing may stay unowned past one heartbeat tick).
async fn unowned_work(st: &AppState) -> Vec<String> {
    let sql = "SELECT 'action ' || id FROM network_actions WHERE status = 'PENDING' \
               AND (owner IS NULL OR owner NOT IN (SELECT id FROM replicas)) \
               UNION ALL SELECT 'deployment ' || CAST(id AS TEXT) FROM deployments WHERE state = 'running' \
               AND (owner IS NULL OR owner NOT IN (SELECT id FROM replicas))";
    sqlx::query_scalar(sql).fetch_all(&st.db.pool).await.unwrap()
}

/// Two rounds of 200 concurrent reserve/release (`connect_node`, `detach_node`) and
/// connect/detach (`connect_network`, `detach_network`) calls by two
/// projects, spread over three replicas on one PostgreSQL: no node is given
/// twice, no NIC ever has two pending actions, every attachment matches the
/// actions that were carried out, and the invariants hold throughout
/// (sampled while the calls run) and after.
async fn two_hundred_calls_over_three_replicas(h: &Harness) {
    if h.st.db.backend == Backend::Sqlite {
        return; // one process on SQLite
    }
    let mut replicas = vec![h.st.clone()];
    let mut routers = vec![h.app.clone()];
    for _ in 0..2 {
        let r = another(h).await.with_drivers(std::sync::Arc::new(crate::drivers::mock::Mock));
        replicas::join(&r).await.unwrap();
        let _ = super::renew(&r);
        routers.push(crate::app(r.clone()));
        replicas.push(r);
    }
    let key = format!("c200-{}", crate::auth::random_hex(4));
    h.ok("PUT", "/v0/project/pa", None).await;
    h.ok("PUT", "/v0/project/pb", None).await;
    let users = [h.user("alice", &["pa"]).await, h.user("bob", &["pb"]).await];
    h.ok("PUT", "/v0/switch/sw", Some(crate::drivers::mock::switch(&key, false, false))).await;
    const NODES: usize = 6;
    for i in 0..NODES {
        h.ok("PUT", &format!("/v0/node/c{i}"), Some(json!({ "obm": crate::drivers::mock::obm(&key) }))).await;
        h.ok("PUT", &format!("/v0/node/c{i}/nic/eth0"), Some(json!({"macaddr": format!("52:54:00:00:20:{i:02x}")})))
            .await;
        h.ok("PUT", &format!("/v0/switch/sw/port/p{i}"), None).await;
        h.ok(
            "POST",
            &format!("/v0/switch/sw/port/p{i}/connect_nic"),
            Some(json!({"node": format!("c{i}"), "nic": "eth0"})),
        )
        .await;
    }
    h.ok("PUT", "/v0/network/na", Some(json!({"owner": "pa", "access": "pa", "net_id": ""}))).await;
    h.ok("PUT", "/v0/network/nb", Some(json!({"owner": "pb", "access": "pb", "net_id": ""}))).await;

    // A sampler checks the invariants while the calls run.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (st, stop) = (h.st.clone(), stop.clone());
        async move {
            let (mut seen, mut samples) = (Vec::new(), 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seen.extend(invariants(&st).await);
                samples += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            (seen, samples)
        }
    });

    // Rounds of 200 concurrent calls (a later round finds networks attached to detach), a
    // fixed pseudo-random mix (so a failure can be replayed). Which calls succeed depends on
    // how they interleave (a network connect needs its node reserved first), so there are at
    // least two rounds and more, up to six, until every kind of call has succeeded once.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut results: Vec<(usize, usize, u64, usize, axum::http::StatusCode, serde_json::Value)> = Vec::new();
    for round in 0..6 {
        let succeeded = |op: u64| results.iter().any(|r| r.2 == op && r.4.is_success());
        if round >= 2 && (0..4).all(succeeded) {
            break;
        }
        let mut calls = Vec::new();
        for n in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (node, who, op, on) = ((x % NODES as u64) as usize, ((x >> 8) % 2) as usize, (x >> 16) % 4, n % 3);
            let (project, network) = (["pa", "pb"][who], ["na", "nb"][who]);
            let (path, body) = match op {
                0 => (format!("/v0/project/{project}/connect_node"), json!({"node": format!("c{node}")})),
                1 => (format!("/v0/project/{project}/detach_node"), json!({"node": format!("c{node}")})),
                2 => (format!("/v0/node/c{node}/nic/eth0/connect_network"), json!({"network": network})),
                _ => (format!("/v0/node/c{node}/nic/eth0/detach_network"), json!({"network": network})),
            };
            let (app, who_) = (routers[on].clone(), users[who].clone());
            calls.push(async move {
                let (s, v) = Harness::call_on(&app, "POST", &path, &who_, Some(body)).await;
                (node, who, op, on, s, v)
            });
        }
        results.extend(super::api::futures_join_all(calls).await);
        // Every accepted action ends (each replica carries out its own), within a bound.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM network_actions WHERE status = 'PENDING'")
            .fetch_one(&h.st.db.pool)
            .await
            .unwrap()
            > 0
        {
            assert!(tokio::time::Instant::now() < deadline, "networking actions still pending after 30 s");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (seen, samples) = sampler.await.unwrap();
    assert!(seen.is_empty(), "invariants broken during the run ({samples} samples): {seen:?}");
    assert!(samples > 3, "the sampler ran during the calls ({samples})");
    let after = invariants(&h.st).await;
    assert!(after.is_empty(), "{after:?}");
    for r in &replicas {
        replicas::reap(r).await.unwrap();
    }
    assert_eq!(unowned_work(&h.st).await, Vec::<String>::new());

    // Answers: a decision each (no server error), and something of each kind happened.
    let mut ok = [0u32; 4];
    for (node, who, op, on, s, v) in &results {
        assert!(!s.is_server_error(), "c{node} by {who} op {op} on replica {on}: {s} {v}");
        if s.is_success() {
            ok[*op as usize] += 1;
        }
    }
    assert!(ok.iter().all(|&n| n > 0), "every kind of call succeeded at least once: {ok:?}");
    // No node given twice: per node, reserves minus releases is what it holds now (0 or 1).
    for i in 0..NODES {
        let (mut reserved, mut released) = (0i64, 0i64);
        for (node, _, op, _, s, _) in &results {
            if *node == i && s.is_success() {
                match op {
                    0 => reserved += 1,
                    1 => released += 1,
                    _ => {}
                }
            }
        }
        let held = h.ok("GET", &format!("/v0/node/c{i}"), None).await["project"].is_string();
        assert_eq!(reserved - released, i64::from(held), "c{i}: {reserved} reserves, {released} releases, held {held}");
    }
    // Every attachment is what the carried-out actions left: per NIC, attaches DONE minus detaches DONE.
    let actions: Vec<(String, Option<String>, String)> =
        sqlx::query_as("SELECT node, network, status FROM network_actions").fetch_all(&h.st.db.pool).await.unwrap();
    for i in 0..NODES {
        let node = format!("c{i}");
        let done = |attach: bool| {
            actions.iter().filter(|(n, net, s)| *n == node && net.is_some() == attach && s == "DONE").count() as i64
        };
        let attached: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attachments WHERE node = $1")
            .bind(&node)
            .fetch_one(&h.st.db.pool)
            .await
            .unwrap();
        assert_eq!(done(true) - done(false), attached, "{node}: {actions:?}");
    }
    for r in replicas.into_iter().skip(1) {
        r.db.pool.close().await;
    }
}
crate::both_backends!(two_hundred_calls_over_three_replicas);

/// The (id, event) pairs of a server-sent event stream's text.
fn sse_events(text: &str) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut id, mut event) = (None, None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                event = Some(v.trim().to_string());
            }
        }
        if let (Some(id), Some(event)) = (id, event) {
            out.push((id, event));
        }
    }
    out
}

/// Every change of a deployment reaches a stream on a replica that does
/// not run it, once each and in order (written by the owner in the same
/// transaction as the change; on PostgreSQL announced by NOTIFY); a client
/// that reconnects with `Last-Event-ID` gets exactly the changes after it.
async fn every_change_reaches_every_replica_in_order(h: &Harness) {
    use crate::db::deployments as dd;
    let a = &h.st;
    // The watcher's replica: another one with its LISTEN connection on PostgreSQL.
    let (b, b_app) = if a.db.backend == Backend::Postgres {
        let b = another(h).await;
        replicas::join(&b).await.unwrap();
        let _ = super::renew(&b);
        crate::app::deployments::changes::spawn_listener(&b);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !b.deploys.changes.listening() {
            assert!(tokio::time::Instant::now() < deadline, "the LISTEN connection is up within 10 s");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let app = crate::app(b.clone());
        (b, app)
    } else {
        (a.clone(), h.app.clone()) // one process on SQLite
    };
    let new = dd::NewDeployment {
        project: "p",
        image: "img",
        root_hash: "h",
        params: "{}",
        created_by: "root",
        user_data: "",
        ssh_keys: "",
        owner: &a.replica.id,
    };
    let nodes = [("n1".to_string(), "tok-c1".to_string()), ("n2".to_string(), "tok-c2".to_string())];
    let mut tx = a.db.writer.begin().await.unwrap();
    let id = dd::insert(&mut tx, a.db.backend, &new, &nodes, 0, 0).await.unwrap();
    tx.commit().await.unwrap();

    // A watcher on B follows while A makes the changes.
    let path = format!("/v1/deployments/{id}/changes");
    let watcher = tokio::spawn({
        let (app, who, path) = (b_app.clone(), h.admin.clone(), path.clone());
        async move { Harness::get_text(&app, &path, &who, &[]).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (w, me) = (&a.db.writer, a.replica.id.as_str());
    let mut n1 = dd::nodes(&a.db.pool, id).await.unwrap().remove(0);
    assert!(dd::set_session(w, id, me, "239.1.2.3:5000").await.unwrap());
    n1.state = "receiving".into();
    assert!(dd::update_node(w, id, me, &n1).await.unwrap());
    n1.blocks_done = 7; // progress only: no change event
    assert!(dd::update_node(w, id, me, &n1).await.unwrap());
    assert!(!dd::update_node(w, id, "r-not-the-owner", &n1).await.unwrap(), "fenced: no write, no event");
    let mut n2 = dd::nodes(&a.db.pool, id).await.unwrap().remove(1);
    n2.state = "failed".into();
    n2.reason = "no check-in".into();
    assert!(dd::update_node(w, id, me, &n2).await.unwrap());
    n1.state = "verified".into();
    assert!(dd::update_node(w, id, me, &n1).await.unwrap());
    assert!(dd::finish(w, id, me, dd::DeploymentState::Failed, 1, None).await.unwrap());

    let (s, text) = watcher.await.unwrap();
    assert_eq!(s, axum::http::StatusCode::OK, "{text}");
    let kinds = ["created", "session", "node", "node", "node", "end"];
    let want: Vec<(i64, String)> = kinds.iter().enumerate().map(|(i, k)| (i as i64 + 1, k.to_string())).collect();
    assert_eq!(sse_events(&text), want, "{text}");
    assert!(text.contains(r#""reason":"no check-in""#), "{text}");
    if a.db.backend == Backend::Postgres {
        assert!(b.deploys.changes.notified() >= 5, "woken by NOTIFY: {}", b.deploys.changes.notified());
    }

    // A reconnect after change 3 gets 4, 5, 6 and nothing else; `?after=` the same.
    let (s, text) = Harness::get_text(&b_app, &path, &h.admin, &[("last-event-id", "3")]).await;
    assert_eq!(s, axum::http::StatusCode::OK);
    assert_eq!(sse_events(&text), want[3..].to_vec(), "{text}");
    let (_, text) = Harness::get_text(&b_app, &format!("{path}?after=5"), &h.admin, &[]).await;
    assert_eq!(sse_events(&text), want[5..].to_vec(), "{text}");
    let (s, _) = Harness::get_text(&b_app, &path, &h.admin, &[("last-event-id", "three")]).await;
    assert_eq!(s, axum::http::StatusCode::BAD_REQUEST);
    // Someone outside the project sees nothing of it.
    h.ok("PUT", "/v0/project/other", None).await;
    let eve = h.user("eve", &["other"]).await;
    let (s, _) = Harness::get_text(&b_app, &path, &eve, &[]).await;
    assert_eq!(s, axum::http::StatusCode::NOT_FOUND);
    // A retry continues the numbering after the end.
    let mut tx = b.db.writer.begin().await.unwrap();
    assert!(dd::restart(&mut tx, b.db.backend, id, &b.replica.id).await.unwrap());
    tx.commit().await.unwrap();
    let rows = crate::db::deployment_events::after(&b.db.pool, id, 6, 10).await.unwrap();
    assert_eq!(rows.iter().map(|r| (r.seq, r.kind.as_str())).collect::<Vec<_>>(), [(7, "retry")]);
    if a.db.backend == Backend::Postgres {
        // Its LISTEN connection closes at shutdown.
        b.tasks.begin_shutdown();
        assert_eq!(b.tasks.drain(std::time::Duration::from_secs(10)).await, 0, "the listener stopped");
        b.db.pool.close().await;
    }
}
crate::both_backends!(every_change_reaches_every_replica_in_order);
