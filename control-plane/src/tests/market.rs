//! The marketplace's invariants, on SQLite and PostgreSQL: leases that
//! really grant and revoke nodes, the ledger, idempotency, races.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Harness, Who};
use crate::both_backends;

/// Registers `node` (mock BMC, one NIC) in `project` and checks its runtime
/// in with an inventory (what offers snapshot).
pub(super) async fn node_in(h: &Harness, node: &str, project: &str, mac: &str) {
    h.ok("PUT", &format!("/v0/node/{node}"), Some(json!({ "obm": crate::drivers::mock::obm(node) }))).await;
    h.ok("PUT", &format!("/v0/node/{node}/nic/eth0"), Some(json!({ "macaddr": mac }))).await;
    h.ok("POST", &format!("/v0/project/{project}/connect_node"), Some(json!({ "node": node }))).await;
    let checkin = json!({"node": mac, "role": "runtime", "boot_id": format!("b-{node}"), "version": "0",
        "address": "10.0.0.9", "uptime_secs": 5.0, "network_secs": 0.1,
        "inventory": {"nics": [], "cpus": 16, "memory_bytes": 68_719_476_736u64,
                      "disks": [{"name": "vda", "size_bytes": 1_073_741_824u64}], "kernel": "6.1"}});
    let req = axum::http::Request::post("/v1/runtime/checkin")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(checkin.to_string()))
        .unwrap();
    let s = tower::ServiceExt::oneshot(h.app.clone(), req).await.unwrap().status();
    assert_eq!(s, StatusCode::OK);
}

pub(super) async fn now(h: &Harness) -> i64 {
    crate::db::market::now_pool(&h.st.db.pool, h.st.db.backend).await.unwrap()
}

pub(super) async fn mint(h: &Harness, project: &str, amount: i64) {
    let key = format!("mint-{project}-{}", crate::auth::random_hex(4));
    let (s, v, _) = h
        .keyed(
            "POST",
            "/v1/ledger/mint",
            &h.admin.clone(),
            &key,
            json!({"project": project, "amount": amount, "memo": "test"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

pub(super) async fn balance(h: &Harness, project: &str, kind: &str) -> i64 {
    let v = h.ok("GET", &format!("/v1/ledger/accounts?project={project}"), None).await;
    v.as_array().unwrap().iter().find(|a| a["kind"] == kind).map_or(0, |a| a["balance"].as_i64().unwrap())
}

/// The ledger's four checks are all zero.
pub(super) async fn audit_clean(h: &Harness) {
    let a = h.ok("GET", "/v1/ledger/audit", None).await;
    assert_eq!(
        a,
        json!({"sum": 0, "drifted_accounts": 0, "escrow_mismatches": 0, "negative_balances": 0}),
        "ledger audit"
    );
}

async fn lease_state(h: &Harness, id: i64) -> String {
    h.ok("GET", &format!("/v1/market/leases/{id}"), None).await["state"].as_str().unwrap().to_string()
}

async fn drive_until(h: &Harness, id: i64, want: &str, secs: u64) {
    let ok = crate::app::market::driver::run_until(&h.st, std::time::Duration::from_secs(secs), async || {
        lease_state(h, id).await == want
    })
    .await;
    assert!(
        ok,
        "lease {id} did not reach {want} in {secs}s: {}",
        h.ok("GET", &format!("/v1/market/leases/{id}"), None).await
    );
}

/// A buys nothing, B buys A's node now: the node moves to B at the start
/// (B can power-cycle it, A cannot), and at the end it is reclaimed, goes
/// back to A, B loses it (403) and A is paid, minus the fee.
async fn buy_now_grants_and_revokes(h: &Harness) {
    h.ok("PUT", "/v0/project/pa", None).await;
    h.ok("PUT", "/v0/project/pb", None).await;
    let alice = h.user("alice", &["pa"]).await;
    let bob = h.user("bob", &["pb"]).await;
    node_in(h, "n1", "pa", "52:54:00:00:01:01").await;
    mint(h, "pb", 1_000_000).await;
    let t = now(h).await;
    let offer = json!({"project": "pa", "nodes": ["n1"], "start": t, "end": t + 4, "reserve_mph": 1_800_000,
                       "buy_now_mph": 3_600_000, "wipe": "none"});
    let (s, o, _) = h.keyed("POST", "/v1/market/offers", &alice, "o1", offer).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(o["resources"], json!({"cpus": 16, "memory_gib": 64, "disks": 1, "disk_gib": 1, "nics": 0}));
    let id = o["id"].as_i64().unwrap();
    // The owner cannot buy its own offer; a filter that excludes it hides it.
    let (s, v, _) =
        h.keyed("POST", &format!("/v1/market/offers/{id}/buy"), &alice, "b0", json!({"project": "pa"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let listed = h.call("GET", "/v1/market/offers?filter=cpus%3E%3D32", &bob, None).await.1;
    assert_eq!(listed, json!([]));
    let listed = h.call("GET", "/v1/market/offers?filter=cpus%3E%3D16,memory_gib%3E%3D64", &bob, None).await.1;
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let (s, leases, _) =
        h.keyed("POST", &format!("/v1/market/offers/{id}/buy"), &bob, "b1", json!({"project": "pb"})).await;
    assert_eq!(s, StatusCode::CREATED, "{leases}");
    let lease = leases[0]["id"].as_i64().unwrap();
    let cost = leases[0]["cost"].as_i64().unwrap();
    let secs = leases[0]["end"].as_i64().unwrap() - leases[0]["start"].as_i64().unwrap();
    assert_eq!(cost, 1000 * secs, "3,600,000 per node-hour is 1,000 a second");
    assert_eq!(balance(h, "pb", "escrow").await, cost);
    // The owner may not free or reclaim a node under a lease.
    let (s, v) = h.call("POST", "/v0/project/pa/detach_node", &alice, Some(json!({"node": "n1"}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(v["msg"].as_str().unwrap().contains("in the market (lease"), "{v}");

    drive_until(h, lease, "active", 10).await;
    assert_eq!(h.ok("GET", "/v0/node/n1", None).await["project"], "pb");
    assert_eq!(h.call("POST", "/v0/node/n1/power_cycle", &bob, Some(json!({}))).await.0, StatusCode::OK);
    assert_eq!(h.call("POST", "/v0/node/n1/power_cycle", &alice, Some(json!({}))).await.0, StatusCode::FORBIDDEN);
    // The lessee's own reclaim is refused: the node goes back to its owner at the end.
    assert_eq!(h.call("POST", "/v1/nodes/n1/reclaim", &bob, Some(json!({}))).await.0, StatusCode::CONFLICT);

    drive_until(h, lease, "ended", 15).await;
    assert_eq!(h.ok("GET", "/v0/node/n1", None).await["project"], "pa");
    assert_eq!(h.call("POST", "/v0/node/n1/power_cycle", &bob, Some(json!({}))).await.0, StatusCode::FORBIDDEN);
    assert_eq!(h.call("POST", "/v0/node/n1/power_cycle", &alice, Some(json!({}))).await.0, StatusCode::OK);
    let fee = cost / 100;
    assert_eq!(balance(h, "pa", "revenue").await, cost - fee);
    assert_eq!(balance(h, "pb", "available").await, 1_000_000 - cost);
    assert_eq!(balance(h, "pb", "escrow").await, 0);
    let events = h.call("GET", "/v1/events?node=n1", &bob, None).await.1;
    let kinds: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in ["lease-granting", "lease-started", "lease-ending", "lease-ended"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    audit_clean(h).await;
}
both_backends!(buy_now_grants_and_revokes);

/// 16 concurrent buy-now requests for one node give exactly one lease.
async fn buy_now_race(h: &Harness) {
    h.ok("PUT", "/v0/project/pa", None).await;
    node_in(h, "n1", "pa", "52:54:00:00:02:01").await;
    let mut buyers = Vec::new();
    for i in 0..16 {
        let p = format!("b{i}");
        h.ok("PUT", &format!("/v0/project/{p}"), None).await;
        mint(h, &p, 10_000_000).await;
        buyers.push((p.clone(), h.user(&format!("u{i}"), &[&p]).await));
    }
    let t = now(h).await;
    let offer = json!({"project": "pa", "nodes": ["n1"], "start": t + 60, "end": t + 3660, "reserve_mph": 1000, "buy_now_mph": 2000});
    let (s, o, _) = h.keyed("POST", "/v1/market/offers", &h.admin.clone(), "o", offer).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let path = format!("/v1/market/offers/{}/buy", o["id"]);
    let futs: Vec<_> = buyers
        .iter()
        .map(|(p, who)| {
            let path = path.clone();
            async move { h.keyed("POST", &path, who, &format!("k-{p}"), json!({"project": p})).await.0 }
        })
        .collect();
    let got = super::api::futures_join_all(futs).await;
    assert_eq!(got.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{got:?}");
    assert!(got.iter().all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT), "{got:?}");
    assert_eq!(h.ok("GET", "/v1/market/leases", None).await.as_array().unwrap().len(), 1);
    audit_clean(h).await;
}
both_backends!(buy_now_race);

/// 50 concurrent bids from 10 projects that can each afford two: exactly two
/// per project are held, no balance goes negative; the auction settles once,
/// winners pay the clearing price and losers get everything back.
async fn bids_never_overdraw_and_settle_once(h: &Harness) {
    h.ok("PUT", "/v0/project/pa", None).await;
    for (i, n) in ["n1", "n2", "n3"].iter().enumerate() {
        node_in(h, n, "pa", &format!("52:54:00:00:03:0{i}")).await;
    }
    let t = now(h).await;
    // One hour; the auction closes in 15 s (50 bids with password checks take a while on two cores).
    let offer = json!({"project": "pa", "nodes": ["n1", "n2", "n3"], "start": t + 16, "end": t + 3616,
                       "reserve_mph": 100_000, "closes_at": t + 15});
    let (s, o, _) = h.keyed("POST", "/v1/market/offers", &h.admin.clone(), "o", offer).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let id = o["id"].as_i64().unwrap();
    let mut who = Vec::new();
    for i in 0..10 {
        let p = format!("q{i}");
        h.ok("PUT", &format!("/v0/project/{p}"), None).await;
        // Each bid of at most 200,000 + i for one hour holds that much: two fit, not three.
        mint(h, &p, 2 * (200_000 + i) + 150_000).await;
        who.push((p.clone(), h.user(&format!("v{i}"), &[&p]).await, 200_000 + i));
    }
    let path = format!("/v1/market/offers/{id}/bids");
    let futs: Vec<_> = (0..50)
        .map(|k| {
            let (p, u, max) = who[k % 10].clone();
            let path = path.clone();
            async move {
                (
                    p.clone(),
                    h.keyed("POST", &path, &u, &format!("bid-{k}"), json!({"project": p, "max_mph": max})).await,
                )
            }
        })
        .collect();
    let got = super::api::futures_join_all(futs).await;
    for (p, _, _) in &who {
        let ok = got.iter().filter(|(q, r)| q == p && r.0 == StatusCode::CREATED).count();
        assert_eq!(
            ok,
            2,
            "project {p}: {:?}",
            got.iter().filter(|(q, _)| q == p).map(|(_, r)| (r.0, r.1.clone())).collect::<Vec<_>>()
        );
        assert!(balance(h, p, "available").await >= 0);
    }
    audit_clean(h).await;
    // Settling early is refused; at the close the driver settles, exactly once.
    let (s, _, _) = h.keyed("POST", &format!("/v1/market/offers/{id}/settle"), &h.admin.clone(), "s0", json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let settled = crate::app::market::driver::run_until(&h.st, std::time::Duration::from_secs(30), async || {
        h.ok("GET", &format!("/v1/market/offers/{id}"), None).await["state"] == "settled"
    })
    .await;
    assert!(settled);
    let (s, _, _) = h.keyed("POST", &format!("/v1/market/offers/{id}/settle"), &h.admin.clone(), "s1", json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT, "an auction settles at most once");
    // Bids of 200,009 (two), 200,008 (two): the top three units are 200,009 x2 and the first 200,008;
    // the clearing price is the highest losing bid, 200,008.
    let bids = h.ok("GET", &format!("/v1/market/offers/{id}/bids"), None).await;
    let winners: Vec<&Value> = bids.as_array().unwrap().iter().filter(|b| b["state"] == "won").collect();
    assert_eq!(winners.iter().map(|b| b["won"].as_i64().unwrap()).sum::<i64>(), 3);
    for w in &winners {
        assert_eq!(w["price_mph"], 200_008);
        assert!(w["max_mph"].as_i64().unwrap() >= 200_008);
    }
    let leases = h.ok("GET", "/v1/market/leases", None).await;
    assert_eq!(leases.as_array().unwrap().len(), 3);
    for l in leases.as_array().unwrap() {
        assert_eq!(l["price_mph"], 200_008);
    }
    // Losers hold nothing; winners hold exactly their leases' cost.
    for (p, _, max) in &who {
        let won: i64 =
            leases.as_array().unwrap().iter().filter(|l| l["lessee"] == *p).map(|l| l["cost"].as_i64().unwrap()).sum();
        assert_eq!(balance(h, p, "escrow").await, won, "{p}");
        assert_eq!(balance(h, p, "available").await, 2 * max + 150_000 - won, "{p}");
    }
    audit_clean(h).await;
}
both_backends!(bids_never_overdraw_and_settle_once);

/// A key takes effect once: a repeat returns the first answer, a different
/// request with the same key is a 409, and eight concurrent repeats move
/// credits once.
async fn idempotency_keys(h: &Harness) {
    h.ok("PUT", "/v0/project/pa", None).await;
    h.ok("PUT", "/v0/project/pb", None).await;
    let alice = h.user("alice", &["pa"]).await;
    let admin = h.admin.clone();
    let body = json!({"project": "pa", "amount": 5000, "memo": "grant"});
    let (s1, v1, r1) = h.keyed("POST", "/v1/ledger/mint", &admin, "m1", body.clone()).await;
    let (s2, v2, r2) = h.keyed("POST", "/v1/ledger/mint", &admin, "m1", body).await;
    assert_eq!((s1, s2, r1, r2), (StatusCode::CREATED, StatusCode::CREATED, false, true));
    assert_eq!(v1, v2);
    assert_eq!(balance(h, "pa", "available").await, 5000);
    let (s, v, _) =
        h.keyed("POST", "/v1/ledger/mint", &admin, "m1", json!({"project": "pa", "amount": 6000, "memo": "x"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("different request"));
    // Missing key: 400, nothing done.
    let (s, _) =
        h.call("POST", "/v1/ledger/mint", &admin, Some(json!({"project": "pa", "amount": 1, "memo": "m"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let t = json!({"from_project": "pa", "to_project": "pb", "amount": 700, "memo": "rent"});
    let futs: Vec<_> = (0..8).map(|_| h.keyed("POST", "/v1/ledger/transfers", &alice, "t1", t.clone())).collect();
    let got = super::api::futures_join_all(futs).await;
    assert!(got.iter().all(|(s, _, _)| *s == StatusCode::CREATED), "{got:?}");
    assert_eq!(got.iter().filter(|(_, _, replayed)| !replayed).count(), 1);
    assert_eq!(balance(h, "pa", "available").await, 4300);
    assert_eq!(balance(h, "pb", "available").await, 700);
    // A transfer beyond the balance changes nothing; a reversal undoes once.
    let (s, _, _) = h
        .keyed(
            "POST",
            "/v1/ledger/transfers",
            &alice,
            "t2",
            json!({"from_project": "pa", "to_project": "pb", "amount": 999_999}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let tid = got[0].1["id"].as_i64().unwrap();
    let (s, _, _) = h.keyed("POST", &format!("/v1/ledger/transfers/{tid}/reverse"), &admin, "r1", json!({})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _, _) = h.keyed("POST", &format!("/v1/ledger/transfers/{tid}/reverse"), &admin, "r2", json!({})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(balance(h, "pa", "available").await, 5000);
    audit_clean(h).await;
}
both_backends!(idempotency_keys);

/// Bad input gets a clear 4xx and changes nothing.
async fn bad_input(h: &Harness) {
    h.ok("PUT", "/v0/project/pa", None).await;
    h.ok("PUT", "/v0/project/pb", None).await;
    let alice = h.user("alice", &["pa"]).await;
    let bob = h.user("bob", &["pb"]).await;
    node_in(h, "n1", "pa", "52:54:00:00:04:01").await;
    h.ok("PUT", "/v0/node/free1", Some(json!({ "obm": crate::drivers::mock::obm("free1") }))).await;
    mint(h, "pb", 1000).await;
    let t = now(h).await;
    let good = json!({"project": "pa", "nodes": ["n1"], "start": t + 10, "end": t + 3610, "reserve_mph": 1000, "buy_now_mph": 2000});
    let (s, o, _) = h.keyed("POST", "/v1/market/offers", &alice, "good", good.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let id = o["id"].as_i64().unwrap();
    let before = market_rows(h).await;
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let cases: Vec<(&Who, String, Value, StatusCode, &str)> = vec![
        (&alice, "/v1/market/offers".into(), with("end", json!(t + 5)), StatusCode::BAD_REQUEST, "reversed"),
        (&alice, "/v1/market/offers".into(), with("end", json!(t - 100)).clone(), StatusCode::BAD_REQUEST, "reversed"),
        (&alice, "/v1/market/offers".into(), with("reserve_mph", json!(0)), StatusCode::BAD_REQUEST, "between 1 and"),
        (
            &alice,
            "/v1/market/offers".into(),
            with("reserve_mph", json!(i64::MAX)),
            StatusCode::BAD_REQUEST,
            "between 1 and",
        ),
        (&alice, "/v1/market/offers".into(), with("nodes", json!(["nope"])), StatusCode::CONFLICT, "not held"),
        (&alice, "/v1/market/offers".into(), with("nodes", json!(["free1"])), StatusCode::CONFLICT, "not held"),
        (&alice, "/v1/market/offers".into(), good.clone(), StatusCode::CONFLICT, "already offered"),
        (&bob, "/v1/market/offers".into(), with("project", json!("pb")), StatusCode::CONFLICT, "not held"),
        (&bob, "/v1/market/offers".into(), good.clone(), StatusCode::FORBIDDEN, "owner"),
        (
            &bob,
            format!("/v1/market/offers/{id}/buy"),
            json!({"project": "pb", "quantity": 2}),
            StatusCode::CONFLICT,
            "only 1",
        ),
        (
            &bob,
            format!("/v1/market/offers/{id}/buy"),
            json!({"project": "pb", "quantity": 0}),
            StatusCode::BAD_REQUEST,
            "quantity",
        ),
        (
            &bob,
            format!("/v1/market/offers/{id}/buy"),
            json!({"project": "pb"}),
            StatusCode::CONFLICT,
            "not enough available",
        ),
        (&bob, format!("/v1/market/offers/{id}/buy"), json!({"project": "pa"}), StatusCode::FORBIDDEN, "member"),
        (
            &bob,
            format!("/v1/market/offers/{id}/buy"),
            json!({"project": "pb", "end": t + 99_999}),
            StatusCode::BAD_REQUEST,
            "after its offer",
        ),
        (
            &bob,
            format!("/v1/market/offers/{id}/bids"),
            json!({"project": "pb", "max_mph": 5000}),
            StatusCode::CONFLICT,
            "not an auction",
        ),
        (&bob, "/v1/market/offers/999/buy".into(), json!({"project": "pb"}), StatusCode::NOT_FOUND, "does not exist"),
        (
            &bob,
            "/v1/market/autobuy".into(),
            json!({"project": "pb", "filter": "gpus>1", "target": 1, "max_mph": 1, "daily_budget": 1, "hours": 1}),
            StatusCode::BAD_REQUEST,
            "unknown filter field",
        ),
        (
            &bob,
            "/v1/ledger/mint".into(),
            json!({"project": "pb", "amount": 5, "memo": "me"}),
            StatusCode::FORBIDDEN,
            "admin",
        ),
        (
            &bob,
            "/v1/ledger/transfers".into(),
            json!({"from_project": "pb", "to_project": "pa", "amount": -5}),
            StatusCode::BAD_REQUEST,
            "amount",
        ),
        (
            &bob,
            "/v1/ledger/transfers".into(),
            json!({"from_project": "pa", "to_project": "pb", "amount": 5}),
            StatusCode::FORBIDDEN,
            "project",
        ),
    ];
    for (i, (who, path, body, want, needle)) in cases.into_iter().enumerate() {
        let (s, v, _) = h.keyed("POST", &path, who, &format!("bad-{i}"), body.clone()).await;
        assert_eq!(s, want, "case {i} {path} {body}: {v}");
        let msg = v["msg"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "case {i}: {msg:?} lacks {needle:?}");
    }
    let (s, v) = h.call("GET", "/v1/market/offers?filter=cpus~3", &bob, None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(market_rows(h).await, before, "bad input changed the market");
    audit_clean(h).await;
}
both_backends!(bad_input);

async fn market_rows(h: &Harness) -> Vec<i64> {
    let mut out = Vec::new();
    for t in [
        "market_offers",
        "market_offer_nodes",
        "market_bids",
        "market_leases",
        "ledger_transfers",
        "ledger_holds",
        "market_autobuy",
    ] {
        let q = format!("SELECT COUNT(*) FROM {t}");
        out.push(sqlx::query_scalar(sqlx::AssertSqlSafe(q)).fetch_one(&h.st.db.pool).await.unwrap());
    }
    out
}

/// Cancel refunds in full; an owner's recall of an interruptible lease ends
/// it after the notice and the lessee pays only for the time it had.
async fn cancel_and_recall(h: &Harness) {
    h.ok("PUT", "/v0/project/pa", None).await;
    h.ok("PUT", "/v0/project/pb", None).await;
    let alice = h.user("alice", &["pa"]).await;
    let bob = h.user("bob", &["pb"]).await;
    node_in(h, "n1", "pa", "52:54:00:00:05:01").await;
    mint(h, "pb", 100_000_000).await;
    let t = now(h).await;
    let offer = json!({"project": "pa", "nodes": ["n1"], "start": t, "end": t + 7200, "reserve_mph": 3_600_000,
                       "buy_now_mph": 3_600_000, "interruptible": true, "notice_secs": 1});
    let (_, o, _) = h.keyed("POST", "/v1/market/offers", &alice, "o", offer).await;
    let buy = format!("/v1/market/offers/{}/buy", o["id"]);
    // A later slot, cancelled before it starts: full refund.
    let (s, l, _) = h.keyed("POST", &buy, &bob, "late", json!({"project": "pb", "start": t + 3600})).await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    let late = l[0]["id"].as_i64().unwrap();
    let (s, v, _) = h.keyed("DELETE", &format!("/v1/market/leases/{late}"), &bob, "c", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "cancelled");
    assert_eq!(balance(h, "pb", "available").await, 100_000_000);
    // Now, for an hour; recalled by the owner after it started.
    let (s, l, _) = h.keyed("POST", &buy, &bob, "now", json!({"project": "pb", "end": t + 3600})).await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    let id = l[0]["id"].as_i64().unwrap();
    drive_until(h, id, "active", 10).await;
    assert_eq!(
        h.keyed("POST", &format!("/v1/market/leases/{id}/recall"), &bob, "r0", json!({})).await.0,
        StatusCode::FORBIDDEN
    );
    let (s, v, _) = h.keyed("POST", &format!("/v1/market/leases/{id}/recall"), &alice, "r", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["recalled"], true);
    drive_until(h, id, "recalled", 15).await;
    let l = h.ok("GET", &format!("/v1/market/leases/{id}"), None).await;
    let used = l["end"].as_i64().unwrap() - l["start"].as_i64().unwrap();
    assert!(used < 60, "the lease was cut short: {l}");
    assert_eq!(balance(h, "pb", "available").await, 100_000_000 - 1000 * used, "pro-rata: only {used} s paid");
    assert_eq!(h.ok("GET", "/v0/node/n1", None).await["project"], "pa");
    audit_clean(h).await;
}
both_backends!(cancel_and_recall);

/// PostgreSQL itself refuses two overlapping live leases of one node, even
/// from a writer that skipped the check (another replica, a bug).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_exclusion_constraint_refuses_overlap() {
    let Some(h) = Harness::postgres().await else { return };
    let pool = &h.st.db.pool;
    sqlx::query("INSERT INTO market_offers (id, owner, start_at, end_at, reserve_mph, audience, interruptible, notice_secs, wipe, resources, state, created_by, created_at) VALUES (1, 'pa', 0, 100, 1, '[]', 0, 0, 'none', '{}', 'open', 'u', 0)")
        .execute(pool).await.unwrap();
    sqlx::query("INSERT INTO ledger_holds (id, project, amount, reference, status, created_at) VALUES (1, 'pb', 0, 'x', 'open', 0)")
        .execute(pool).await.unwrap();
    let ins = |id: i64, start: i64, end: i64| {
        sqlx::query("INSERT INTO market_leases (id, offer, node, owner, lessee, start_at, end_at, busy_until, price_mph, hold, interruptible, notice_secs, wipe, state, live, created_at, updated_at) VALUES ($1, 1, 'n1', 'pa', 'pb', $2, $3, $3, 1, 1, 0, 0, 'none', 'scheduled', 1, 0, 0)")
            .bind(id).bind(start).bind(end).execute(pool)
    };
    ins(1, 0, 50).await.unwrap();
    ins(2, 50, 100).await.expect("half-open windows that touch do not overlap");
    let e = ins(3, 49, 51).await.unwrap_err();
    assert!(crate::db::market::is_exclusion(&e), "{e}");
    h.finish().await;
}

/// Autobuy buys the cheapest matching offers up to its target, and its daily
/// budget is a hold: when what is left of it cannot pay, it stops (nothing
/// reads a balance to decide).
async fn autobuy_within_budget(h: &Harness) {
    h.ok("PUT", "/v0/project/pa", None).await;
    h.ok("PUT", "/v0/project/pb", None).await;
    let alice = h.user("alice", &["pa"]).await;
    let bob = h.user("bob", &["pb"]).await;
    node_in(h, "n1", "pa", "52:54:00:00:06:01").await;
    node_in(h, "n2", "pa", "52:54:00:00:06:02").await;
    mint(h, "pb", 100_000).await;
    let t = now(h).await;
    for (n, price) in [("n1", 3600), ("n2", 3000)] {
        let offer = json!({"project": "pa", "nodes": [n], "start": t + 30, "end": t + 7200, "reserve_mph": price, "buy_now_mph": price});
        assert_eq!(h.keyed("POST", "/v1/market/offers", &alice, n, offer).await.0, StatusCode::CREATED);
    }
    // A filter nothing matches buys nothing.
    let rule = |filter: &str| json!({"project": "pb", "filter": filter, "target": 2, "max_mph": 5000, "daily_budget": 5000, "hours": 1});
    let (s, none, _) = h.keyed("POST", "/v1/market/autobuy", &bob, "r0", rule("cpus>=32")).await;
    assert_eq!(s, StatusCode::CREATED, "{none}");
    crate::app::market::driver::tick_once(&h.st).await.unwrap();
    assert_eq!(h.ok("GET", "/v1/market/leases", None).await, json!([]));
    let (s, _, _) = h.keyed("DELETE", &format!("/v1/market/autobuy/{}", none["id"]), &bob, "d0", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    // Target 2, budget 5000: the cheaper node (3000 an hour) first; the other (3600) no longer fits.
    let (s, r, _) = h.keyed("POST", "/v1/market/autobuy", &bob, "r1", rule("cpus>=16")).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    for _ in 0..3 {
        crate::app::market::driver::tick_once(&h.st).await.unwrap();
    }
    let leases = h.ok("GET", "/v1/market/leases", None).await;
    let leases = leases.as_array().unwrap();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!((leases[0]["node"].as_str(), leases[0]["price_mph"].as_i64()), (Some("n2"), Some(3000)));
    assert_eq!(leases[0]["autobuy"], r["id"]);
    let rules = h.call("GET", "/v1/market/autobuy", &bob, None).await.1;
    assert_eq!(rules[0]["leased"], 1);
    assert_eq!(rules[0]["budget_left"], 2000);
    assert!(rules[0]["status"].as_str().unwrap().contains("budget is spent"), "{rules}");
    assert_eq!(balance(h, "pb", "available").await, 95_000, "the day's budget is held, no more");
    assert_eq!(balance(h, "pb", "escrow").await, 5000);
    audit_clean(h).await;
    // Deleting the rule releases what is left of the budget; the lease stays.
    let (s, _, _) = h.keyed("DELETE", &format!("/v1/market/autobuy/{}", r["id"]), &bob, "d1", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(balance(h, "pb", "available").await, 97_000);
    assert_eq!(balance(h, "pb", "escrow").await, 3000);
    let stats = h.call("GET", "/v1/market/stats", &alice, None).await.1;
    assert_eq!(stats["live_leases"], 1, "{stats}");
    assert_eq!(stats["prices"][0]["class"], "16c-64g-1d", "{stats}");
    audit_clean(h).await;
}
both_backends!(autobuy_within_budget);

/// A lessee extends an active lease only into free time and never beyond
/// its offer; the extra time is held at once.
async fn extend_into_free_time(h: &Harness) {
    h.ok("PUT", "/v0/project/pa", None).await;
    h.ok("PUT", "/v0/project/pb", None).await;
    h.ok("PUT", "/v0/project/pc", None).await;
    let alice = h.user("alice", &["pa"]).await;
    let bob = h.user("bob", &["pb"]).await;
    let carol = h.user("carol", &["pc"]).await;
    node_in(h, "n1", "pa", "52:54:00:00:07:01").await;
    mint(h, "pb", 100_000).await;
    mint(h, "pc", 100_000).await;
    let t = now(h).await;
    let offer = json!({"project": "pa", "nodes": ["n1"], "start": t, "end": t + 7200, "reserve_mph": 3600, "buy_now_mph": 3600});
    let (_, o, _) = h.keyed("POST", "/v1/market/offers", &alice, "o", offer).await;
    let buy = format!("/v1/market/offers/{}/buy", o["id"]);
    let (s, l, _) = h.keyed("POST", &buy, &bob, "b", json!({"project": "pb", "end": t + 1800})).await;
    assert_eq!(s, StatusCode::CREATED, "{l}");
    let id = l[0]["id"].as_i64().unwrap();
    let (s, v, _) =
        h.keyed("POST", &buy, &carol, "c", json!({"project": "pc", "start": t + 3600, "end": t + 5400})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    drive_until(h, id, "active", 10).await;
    let held = balance(h, "pb", "escrow").await;
    let extend = |end: i64| json!({"end": end});
    let path = format!("/v1/market/leases/{id}/extend");
    assert_eq!(
        h.keyed("POST", &path, &alice, "e0", extend(t + 3000)).await.0,
        StatusCode::FORBIDDEN,
        "the owner does not extend"
    );
    let (s, v, _) = h.keyed("POST", &path, &bob, "e1", extend(t + 3600)).await;
    assert_eq!(s, StatusCode::CONFLICT, "into carol's lease (and its cleaning gap): {v}");
    let (s, v, _) = h.keyed("POST", &path, &bob, "e2", extend(t + 9000)).await;
    assert_eq!(s, StatusCode::CONFLICT, "beyond the offer: {v}");
    assert!(v["msg"].as_str().unwrap().contains("never outlives its offer"), "{v}");
    let (s, v, _) = h.keyed("POST", &path, &bob, "e3", extend(t + 3000)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["end"], t + 3000);
    assert_eq!(balance(h, "pb", "escrow").await, held + 1200, "1200 s more at 1 milli-credit a second, held");
    audit_clean(h).await;
}
both_backends!(extend_into_free_time);
