//! The node runtimes' side shared through the database (`app::runtime`):
//! a node checks in with one replica, is given an instruction another
//! queued (once, whoever answers its polls), and reports to either; the
//! reports are seen by both. On SQLite (one process) both roles are one state.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::Harness;
use crate::app::AppState;
use crate::db::Backend;

async fn call(st: &AppState, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    super::deploy::runtime_call(&st.runtime.router(), method, path, body).await
}

fn checkin(mac: &str, boot: &str) -> Value {
    json!({"node": mac, "role": "runtime", "boot_id": boot, "version": "0", "address": "10.0.0.7",
        "uptime_secs": 5.0, "network_secs": 0.1,
        "inventory": {"nics": [], "cpus": 2, "memory_bytes": 1, "kernel": "6.1", "disks": []}})
}

fn report(instruction: &Value, session: Option<u64>) -> Value {
    json!({"instruction": instruction, "boot_id": "b1", "phase": "seed", "status": "ok", "secs": 0.5,
        "exit_code": 0, "session": session})
}

async fn replicas_share_the_runtime_side(h: &Harness) {
    use metalcast_runtime_api::{Action, Seed};
    let a = &h.st;
    let other = if a.db.backend == Backend::Postgres { Some(super::replicas::another(h).await) } else { None };
    let b = other.as_ref().unwrap_or(a);
    crate::app::replicas::join(a).await.unwrap();
    if let Some(b) = &other {
        crate::app::replicas::join(b).await.unwrap();
    }
    let mac = "52:54:00:00:40:01";
    let polls = format!("/v1/runtime/nodes/{mac}/instruction");

    // Unknown everywhere until it checks in (with A).
    assert_eq!(call(b, "GET", &format!("{polls}?wait=0"), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(a, "POST", "/v1/runtime/checkin", Some(checkin(mac, "b1"))).await.0, StatusCode::OK);
    let seen = crate::app::runtime::node(b, mac).await.unwrap().expect("B sees A's check-in");
    assert_eq!((seen.checkins, seen.last.boot_id.as_str()), (1, "b1"));
    assert_eq!(call(b, "GET", &format!("{polls}?wait=0"), None).await.0, StatusCode::NO_CONTENT);

    // B queues a seed instruction; the node polls A and B at once: exactly one delivers it.
    let spec = metalcast_transport::SessionSpec::new(
        &"ab".repeat(32),
        "239.1.2.3:5000".parse().unwrap(),
        "10.0.0.7:6000".parse().unwrap(),
        1500,
    )
    .unwrap();
    let session = u64::from(spec.session_id);
    let seed = Action::Seed(Seed { session: spec, rate_bytes_per_sec: 1, expected_receivers: 1, join_timeout_secs: 1 });
    let (pa, pb) = (a.clone(), b.clone());
    let (p1, p2) = (polls.clone(), polls.clone());
    let at_a = tokio::spawn(async move { call(&pa, "GET", &format!("{p1}?wait=3"), None).await });
    let at_b = tokio::spawn(async move { call(&pb, "GET", &format!("{p2}?wait=3"), None).await });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let id = crate::app::runtime::push(b, mac, seed).await.unwrap();
    let (ra, rb) = (at_a.await.unwrap(), at_b.await.unwrap());
    let got: Vec<&(StatusCode, Value)> = [&ra, &rb].into_iter().filter(|r| r.0 == StatusCode::OK).collect();
    assert_eq!(got.len(), 1, "delivered once: {ra:?} {rb:?}");
    assert_eq!(got[0].1["id"], json!(id));
    assert!([&ra, &rb].iter().any(|r| r.0 == StatusCode::NO_CONTENT), "{ra:?} {rb:?}");
    assert!(crate::app::runtime::delivered(a, id).await.unwrap());

    // Reports: to A, seen by B; another session's or an undelivered instruction's refused (409, counted).
    let reports = format!("/v1/runtime/nodes/{mac}/reports");
    let stale = a.runtime.stale_reports();
    let (s, v) = call(a, "POST", &reports, Some(report(&json!(id), Some(session + 1)))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let (s, v) = call(a, "POST", &reports, Some(report(&json!(id + 1), None))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(a.runtime.stale_reports(), stale + 2);
    let (s, v) = call(a, "POST", &reports, Some(report(&json!(id), Some(session)))).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let (s, v) = call(b, "POST", &reports, Some(report(&json!(id), Some(session)))).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let got = crate::app::runtime::reports(b, id).await.unwrap();
    assert_eq!(got.len(), 2, "both reports, in order: {got:?}");
    assert!(got.iter().all(|r| r.instruction == id && r.session == Some(session)));
    // A node nobody knows is told to check in first.
    let (s, _) = call(b, "POST", "/v1/runtime/nodes/52:54:00:00:40:99/reports", Some(report(&json!(id), None))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A check-in with B counts on: both see the second one.
    assert_eq!(call(b, "POST", "/v1/runtime/checkin", Some(checkin(mac, "b2"))).await.0, StatusCode::OK);
    let seen = crate::app::runtime::node(a, mac).await.unwrap().unwrap();
    assert_eq!((seen.checkins, seen.last.boot_id.as_str()), (2, "b2"));

    // A week on, the delivered seed instruction and its reports are pruned; newer rows stay.
    let count = |table: &'static str| async move {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&a.db.pool)
            .await
            .unwrap();
        n
    };
    crate::app::runtime::push(a, mac, Action::CheckIn).await.unwrap();
    assert_eq!((count("runtime_instructions").await, count("runtime_reports").await), (2, 2));
    assert_eq!(crate::app::runtime::prune(a).await.unwrap(), 0, "nothing is a week old");
    let old = "UPDATE runtime_instructions SET queued_at = queued_at - 700000 WHERE id = $1";
    sqlx::query(old).bind(id as i64).execute(&a.db.pool).await.unwrap();
    sqlx::query("UPDATE runtime_reports SET at = at - 700000").execute(&a.db.pool).await.unwrap();
    assert_eq!(crate::app::runtime::prune(a).await.unwrap(), 3);
    assert_eq!((count("runtime_instructions").await, count("runtime_reports").await), (1, 0));
    let (s, v) = call(a, "GET", &format!("{polls}?wait=0"), None).await;
    assert_eq!((s, v["action"].clone()), (StatusCode::OK, json!("check-in")), "the queued one stays");

    // An instruction queued by a replica that is gone is not delivered; once taken over, it is.
    if let Some(b) = &other {
        crate::app::replicas::leave(b).await.unwrap();
        let id = crate::app::runtime::push(b, mac, Action::PowerOff).await.unwrap();
        assert_eq!(call(a, "GET", &format!("{polls}?wait=0"), None).await.0, StatusCode::NO_CONTENT, "B is gone");
        crate::app::runtime::take_over(a, &[id]).await.unwrap();
        let (s, v) = call(a, "GET", &format!("{polls}?wait=0"), None).await;
        assert_eq!((s, v["id"].clone()), (StatusCode::OK, json!(id)));
        b.db.pool.close().await;
    }
}
crate::both_backends!(replicas_share_the_runtime_side);
