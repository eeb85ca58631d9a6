//! The marketplace and credits ledger against a real server (in process,
//! SQLite, bound to 127.0.0.1:0): the typed client (answers that encode
//! back to exactly the server's JSON, idempotency keys and replays) and
//! the `metalcast market|credits` commands of the real binary.

mod common;

use std::process::Output;

use metalcast_control_plane::{AppState, VlanPool, db};
use metalcast_operator_api::market::{
    AutobuyCreate, BidCreate, BuyRequest, LeaseState, Mint, OfferCreate, OfferState, TransferCreate,
};
use metalcast_operator_api::v0::{NodeRegister, UserCreate};
use metalcast_operator_api::v1::WipeSpec;
use metalcast_operator_api::{Auth, Client};
use serde_json::{Value, json};

use common::metalcast;

/// A running server and its admin's token.
struct Server {
    url: String,
    admin: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("market.db").display());
    let st = AppState::new(db::connect(&db_url).await.unwrap(), VlanPool { first: 100, last: 199 });
    let admin = metalcast_control_plane::app::tokens::bootstrap_admin(&st, "admin", None).await.unwrap().token.token;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(metalcast_control_plane::serve(listener, st, async {
        let _ = rx.await;
    }));
    Server { url, admin, stop, task, _dir: dir }
}

impl Server {
    async fn shutdown(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// A typed answer encodes to the JSON the server sends for `path`.
async fn same_as_raw<T: serde::Serialize>(c: &Client, typed: &T, path: &str) {
    let raw = c.get_value(path).await.expect(path);
    assert_eq!(serde_json::to_value(typed).unwrap(), raw, "{path}");
}

/// Projects `pa` (member alice) and `pb` (member bob); node `n1` (IPMI
/// BMC, NIC `mac`) in `pa`, its runtime checked in with 16 CPUs, 64 GiB,
/// one 1 GiB disk. Returns alice's and bob's API tokens.
async fn market_setup(s: &Server, mac: &str) -> (String, String) {
    let admin = Client::new(&s.url, Auth::Bearer(s.admin.clone())).unwrap();
    let mut tokens = Vec::new();
    for (user, project) in [("alice", "pa"), ("bob", "pb")] {
        admin.project_create(project).await.unwrap();
        admin.user_create(user, &UserCreate { password: "pw".into(), is_admin: false }).await.unwrap();
        admin.user_add_project(user, project).await.unwrap();
        let basic = Client::new(&s.url, Auth::Basic { user: user.into(), password: Some("pw".into()) }).unwrap();
        tokens.push(basic.token_create("market").await.unwrap().token);
    }
    let obm = json!({"type": "ipmi", "host": "127.0.0.1", "user": "u", "password": "p"});
    admin.node_register("n1", &NodeRegister { obm, metadata: Default::default() }).await.unwrap();
    admin.nic_register("n1", "eth0", mac).await.unwrap();
    admin.project_connect_node("pa", "n1").await.unwrap();
    // The node's runtime checks in with its inventory (what an offer describes).
    let checkin = json!({"node": mac, "role": "runtime", "boot_id": "b1", "version": "0", "address": "10.0.0.9",
        "uptime_secs": 5.0, "network_secs": 0.1,
        "inventory": {"nics": [], "cpus": 16, "memory_bytes": 68_719_476_736u64,
                      "disks": [{"name": "vda", "size_bytes": 1_073_741_824u64}], "kernel": "6.1"}});
    // (Client::new above installed the TLS provider reqwest needs to build.)
    let r = metalcast_operator_api::reqwest::Client::new()
        .post(format!("{}/v1/runtime/checkin", s.url))
        .json(&checkin)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "checkin: {}", r.status());
    let bob = tokens.pop().unwrap();
    (tokens.pop().unwrap(), bob)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_market_client_against_server() {
    let s = start().await;
    let (alice, bob) = market_setup(&s, "52:54:00:00:31:01").await;
    let admin = Client::new(&s.url, Auth::Bearer(s.admin.clone())).unwrap();
    let alice = Client::new(&s.url, Auth::Bearer(alice)).unwrap();
    let bob = Client::new(&s.url, Auth::Bearer(bob)).unwrap();

    // Mint: a repeat with the same key is the first answer, replayed; another body is a 409.
    let mint = Mint { project: "pb".into(), amount: 5_000_000, memo: "test credits".into() };
    let m1 = admin.mint(&mint, "mint-1").await.unwrap();
    assert!(!m1.replayed);
    assert_eq!((m1.answer.kind.as_str(), m1.answer.to_project.as_str(), m1.answer.amount), ("mint", "pb", 5_000_000));
    let m2 = admin.mint(&mint, "mint-1").await.unwrap();
    assert!(m2.replayed, "the same key again is a replay");
    assert_eq!(m2.answer, m1.answer);
    let e = admin.mint(&Mint { amount: 7, ..mint.clone() }, "mint-1").await.unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    let e = admin.mint(&mint, "bad key").await.unwrap_err();
    assert_eq!(e.status(), Some(400), "the server refuses a key with a space: {e}");
    let e = bob.mint(&mint, "mint-bob").await.unwrap_err();
    assert_eq!(e.status(), Some(403), "only admins mint: {e}");

    // An offer an hour from now, for an hour, buy-now 1200 credits per node-hour.
    let t = now();
    let req = OfferCreate {
        project: "pa".into(),
        nodes: vec!["n1".into()],
        start: t + 3600,
        end: t + 7200,
        reserve_mph: 1_000_000,
        buy_now_mph: Some(1_200_000),
        closes_at: None,
        audience: vec![],
        interruptible: false,
        notice_secs: 0,
        wipe: WipeSpec::None,
    };
    let offer = alice.offer_create(&req, "offer-1").await.unwrap().answer;
    assert_eq!((offer.owner.as_str(), offer.state.as_str(), offer.available), ("pa", "open", 1));
    assert_eq!(
        (offer.resources.cpus, offer.resources.memory_gib, offer.resources.class()),
        (16, 64, "16c-64g-1d".into())
    );
    same_as_raw(&bob, &bob.offer(offer.id).await.unwrap(), &format!("/v1/market/offers/{}", offer.id)).await;
    // The filter's operators and commas are encoded in the query.
    let seen = bob.offers(Some(OfferState::Open), Some("cpus>=16,memory_gib>=64")).await.unwrap();
    assert_eq!(seen.iter().map(|o| o.id).collect::<Vec<_>>(), [offer.id]);
    same_as_raw(&bob, &seen, "/v1/market/offers?state=open&filter=cpus%3E%3D16%2Cmemory_gib%3E%3D64").await;
    assert!(bob.offers(None, Some("cpus>=32")).await.unwrap().is_empty());
    assert!(bob.offers(Some(OfferState::Withdrawn), None).await.unwrap().is_empty());
    let e = bob.offers(None, Some("gpus>1")).await.unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");

    // Buy-now: one lease, its cost held in pb's escrow; a replay charges nothing more.
    let buy = BuyRequest { project: "pb".into(), quantity: 1, start: None, end: None };
    let leases = bob.offer_buy(offer.id, &buy, "buy-1").await.unwrap();
    assert!(!leases.replayed);
    let lease = &leases.answer[0];
    assert_eq!((lease.node.as_str(), lease.lessee.as_str(), lease.state), ("n1", "pb", LeaseState::Scheduled));
    assert_eq!((lease.price_mph, lease.cost), (1_200_000, 1_200_000), "one hour at the buy-now price");
    let again = bob.offer_buy(offer.id, &buy, "buy-1").await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.answer, leases.answer);
    let e = bob.offer_buy(offer.id, &buy, "buy-2").await.unwrap_err();
    assert_eq!(e.status(), Some(409), "nothing left to buy: {e}");
    let balances = bob.accounts(Some("pb")).await.unwrap();
    let bal = |kind: &str| balances.iter().find(|a| a.kind == kind).map_or(0, |a| a.balance);
    assert_eq!((bal("available"), bal("escrow")), (3_800_000, 1_200_000));
    same_as_raw(&bob, &balances, "/v1/ledger/accounts?project=pb").await;
    let listed = bob.leases(Some("pb")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].secs_left > 3600, "{listed:?}");
    same_as_raw(&bob, &listed, "/v1/market/leases?project=pb").await;
    same_as_raw(&alice, &alice.lease(lease.id).await.unwrap(), &format!("/v1/market/leases/{}", lease.id)).await;
    let history = bob.transfers(Some("pb"), Some(10)).await.unwrap();
    assert!(history.iter().any(|x| x.kind == "hold" && x.amount == 1_200_000), "{history:?}");
    same_as_raw(&bob, &history, "/v1/ledger/transfers?project=pb&limit=10").await;

    // An auction on a later window: a bid holds its maximum; withdrawn, the hold is released.
    let auction = OfferCreate {
        start: t + 3 * 3600,
        end: t + 4 * 3600,
        buy_now_mph: None,
        closes_at: Some(t + 2 * 3600),
        ..req.clone()
    };
    let auction = alice.offer_create(&auction, "offer-2").await.unwrap().answer;
    let bid = BidCreate { project: "pb".into(), quantity: 1, max_mph: 1_500_000, all_or_nothing: false };
    let b = bob.bid_create(auction.id, &bid, "bid-1").await.unwrap().answer;
    assert_eq!((b.state.as_str(), b.held), ("open", 1_500_000));
    same_as_raw(&bob, &bob.bids().await.unwrap(), "/v1/market/bids").await;
    same_as_raw(&bob, &bob.offer_bids(auction.id).await.unwrap(), &format!("/v1/market/offers/{}/bids", auction.id))
        .await;
    let e = alice.offer_settle(auction.id, "settle-1").await.unwrap_err();
    assert_eq!(e.status(), Some(409), "the auction has not closed: {e}");
    let w = bob.bid_withdraw(b.id, "bid-w").await.unwrap().answer;
    assert_eq!((w.state.as_str(), w.held), ("withdrawn", 0));
    let gone = alice.offer_withdraw(auction.id, "offer-2-w").await.unwrap().answer;
    assert_eq!(gone.state, "withdrawn");

    // Autobuy (a filter nothing matches, so it buys nothing), transfers, stats, audit.
    let rule = AutobuyCreate {
        project: "pb".into(),
        filter: "cpus>=999".into(),
        target: 1,
        max_mph: 1_000_000,
        daily_budget: 100_000,
        hours: 1,
    };
    let r = bob.autobuy_create(&rule, "auto-1").await.unwrap().answer;
    assert_eq!((r.target, r.filter.as_str()), (1, "cpus>=999"));
    same_as_raw(&bob, &bob.autobuys(Some("pb")).await.unwrap(), "/v1/market/autobuy?project=pb").await;
    assert_eq!(bob.autobuy_delete(r.id, "auto-1-d").await.unwrap().answer.deleted, r.id);
    assert!(bob.autobuys(None).await.unwrap().is_empty());
    let tr = TransferCreate {
        from_project: "pb".into(),
        from_account: "available".into(),
        to_project: "pa".into(),
        amount: 1000,
        memo: "thanks".into(),
    };
    let x = bob.transfer_create(&tr, "tr-1").await.unwrap().answer;
    assert_eq!((x.kind.as_str(), x.amount), ("transfer", 1000));
    let rev = admin.transfer_reverse(x.id, "rev-1").await.unwrap().answer;
    assert_eq!((rev.kind.as_str(), rev.from_project.as_str(), rev.to_project.as_str()), ("reversal", "pa", "pb"));
    same_as_raw(&admin, &admin.market_stats().await.unwrap(), "/v1/market/stats").await;

    // Cancelling the scheduled lease refunds it in full.
    let c = bob.lease_cancel(lease.id, "cancel-1").await.unwrap().answer;
    assert_eq!(c.state, LeaseState::Cancelled);
    let balances = bob.accounts(Some("pb")).await.unwrap();
    let bal = |kind: &str| balances.iter().find(|a| a.kind == kind).map_or(0, |a| a.balance);
    assert_eq!((bal("available"), bal("escrow")), (5_000_000, 0));
    let audit = admin.ledger_audit().await.unwrap();
    assert_eq!((audit.sum, audit.drifted_accounts, audit.escrow_mismatches, audit.negative_balances), (0, 0, 0, 0));
    same_as_raw(&admin, &audit, "/v1/ledger/audit").await;
    s.shutdown().await;
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {o:?}"))
}

/// The balance of `kind` in `credits balance PROJECT -o json`.
fn balance(accounts: &Value, kind: &str) -> i64 {
    accounts.as_array().unwrap().iter().find(|a| a["kind"] == kind).map_or(0, |a| a["balance"].as_i64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn market_commands_against_server() {
    let s = start().await;
    let (alice, bob) = market_setup(&s, "52:54:00:00:32:01").await;
    let (url, admin) = (s.url.clone(), s.admin.clone());
    tokio::task::spawn_blocking(move || {
        let as_admin = |args: &[&str]| metalcast(&url, &admin, args);
        let as_alice = |args: &[&str]| metalcast(&url, &alice, args);
        let as_bob = |args: &[&str]| metalcast(&url, &bob, args);

        // The runtime's check-in, for humans: sizes in GiB, the inventory summed up.
        let o = as_alice(&["node", "runtime", "n1"]);
        let text = stdout(&o);
        for want in ["52:54:00:00:32:01", "10.0.0.9", "64.0 GiB", "vda 1.0 GiB", "s ago"] {
            assert!(text.contains(want), "{want:?} in {text}");
        }
        assert!(!text.contains("memory_bytes"), "no raw JSON cell: {text}");
        let o = as_alice(&["node", "runtime", "n1", "-o", "json"]);
        assert_eq!(json_of(&o)["inventory"]["cpus"], 16, "{o:?}");

        // The admin mints 5000 credits to pb.
        let o = as_admin(&["credits", "mint", "pb", "5000", "--memo", "welcome"]);
        let line = stdout(&o);
        assert!(
            line.starts_with("transfer ") && line.contains("5000.000 credits from @system/mint to pb/available"),
            "{line}"
        );
        let e = as_bob(&["credits", "mint", "pb", "5000", "--memo", "mine"]);
        assert_eq!(e.status.code(), Some(4), "only admins mint: {e:?}");
        assert_eq!(as_admin(&["credits", "mint", "pb", "1.2345", "--memo", "x"]).status.code(), Some(2));

        // alice offers n1 an hour from now for two hours, buy-now 1200 credits per node-hour.
        let o = as_alice(&[
            "market",
            "offer",
            "create",
            "n1",
            "--project",
            "pa",
            "--start",
            "+1h",
            "--end",
            "+3h",
            "--reserve",
            "1000",
            "--buy-now",
            "1200",
        ]);
        let line = stdout(&o);
        assert!(line.starts_with("offer 1 created: 1 node(s) of 16c-64g-1d, ["), "{line}");
        assert!(line.contains("buy-now 1200.000 credits/node-hour"), "{line}");
        assert!(line.trim_end().ends_with("buy it with `metalcast market buy 1 --project P`"), "{line}");
        let list = stdout(&as_bob(&["market", "offer", "list", "--filter", "cpus>=16,memory_gib>=64"]));
        let mut lines = list.lines();
        assert!(lines.next().unwrap().starts_with("ID  OWNER"), "{list}");
        let row = lines.next().expect("one offer");
        assert!(row.contains("pa") && row.contains("1200.000") && row.contains("open"), "{list}");
        assert!(stdout(&as_bob(&["market", "offer", "list", "--filter", "cpus>=32"])).lines().nth(1).is_none());
        let o = as_bob(&["market", "offer", "list", "--filter", "gpus>1"]);
        assert_eq!(o.status.code(), Some(7), "a bad filter is a 400: {o:?}");

        // bob buys it, with a key, twice: one lease, charged once.
        let buy = ["market", "buy", "1", "--project", "pb", "--idempotency-key", "buy-n1-once"];
        let first = as_bob(&buy);
        let line = stdout(&first);
        assert!(line.starts_with("bought 1 node(s) of offer 1 for pb"), "{line}");
        assert!(line.contains("lease 1 (n1)") && line.contains("2400.000 credits held in escrow"), "{line}");
        let again = as_bob(&buy);
        assert_eq!(stdout(&again), line, "a retry prints the first answer");
        assert!(String::from_utf8_lossy(&again.stderr).contains("replayed"), "{again:?}");
        // The same key with other arguments is a conflict (exit 6); a new key finds nothing left.
        let o =
            as_bob(&["market", "buy", "1", "--project", "pb", "--quantity", "2", "--idempotency-key", "buy-n1-once"]);
        assert_eq!(o.status.code(), Some(6), "{o:?}");
        let o = as_bob(&["market", "buy", "1", "--project", "pb"]);
        assert_eq!(o.status.code(), Some(6), "sold out: {o:?}");
        assert_eq!(
            as_bob(&["market", "buy", "1", "--project", "pb", "--idempotency-key", "a b"]).status.code(),
            Some(2)
        );

        let accounts = json_of(&as_bob(&["credits", "balance", "pb", "-o", "json"]));
        assert_eq!((balance(&accounts, "available"), balance(&accounts, "escrow")), (2_600_000, 2_400_000));
        let table = stdout(&as_bob(&["credits", "balance", "pb"]));
        assert!(
            table.lines().any(|l| l.starts_with("pb") && l.contains("escrow") && l.ends_with("2400.000")),
            "{table}"
        );
        assert!(table.lines().any(|l| l.contains("available") && l.ends_with("2600.000")), "{table}");

        let leases = stdout(&as_bob(&["market", "lease", "list", "--project", "pb"]));
        let mut lines = leases.lines();
        let head = lines.next().unwrap();
        assert!(head.starts_with("ID") && head.contains("LEFT"), "{leases}");
        let row = lines.next().expect("one lease");
        assert!(row.contains("n1") && row.contains("scheduled") && row.contains("2400.000"), "{leases}");
        assert!(row.contains("  2h59m  ") || row.contains("  3h0m  "), "time left: {leases}");
        let lease = &json_of(&as_alice(&["market", "lease", "list", "-o", "json"]))[0];
        assert_eq!(
            (lease["owner"].as_str(), lease["lessee"].as_str(), lease["cost"].as_i64()),
            (Some("pa"), Some("pb"), Some(2_400_000))
        );
        assert_eq!(json_of(&as_bob(&["market", "lease", "show", "1", "-o", "json"]))["state"], "scheduled");
        let history = json_of(&as_bob(&["credits", "history", "pb", "--limit", "5", "-o", "json"]));
        let holds = history.as_array().unwrap().iter().filter(|x| x["kind"] == "hold").count();
        assert_eq!(holds, 1, "the retried buy held nothing more: {history}");

        // Stats, with the price table and the bar chart.
        let stats = stdout(&as_admin(&["market", "stats"]));
        assert!(stats.contains("16c-64g-1d") && stats.contains("1200.000"), "{stats}");
        assert!(stats.contains("mean price per class") && stats.contains('#'), "{stats}");
        assert!(json_of(&as_admin(&["market", "stats", "-o", "json"]))["live_leases"].as_i64() == Some(1));

        // Autobuy and bids: list empty, create, delete.
        let o = as_bob(&[
            "market",
            "autobuy",
            "create",
            "--project",
            "pb",
            "--filter",
            "cpus>=999",
            "--target",
            "1",
            "--max",
            "1",
            "--daily-budget",
            "10",
            "--hours",
            "1",
        ]);
        assert!(stdout(&o).starts_with("autobuy rule 1 created"), "{o:?}");
        assert!(stdout(&as_bob(&["market", "autobuy", "list"])).contains("cpus>=999"));
        assert!(stdout(&as_bob(&["market", "autobuy", "delete", "1"])).contains("deleted"));
        assert_eq!(json_of(&as_bob(&["market", "bid", "list", "-o", "json"])), json!([]));

        // Cancel refunds in full; the ledger stays sound.
        let o = as_bob(&["market", "lease", "cancel", "1"]);
        assert!(stdout(&o).starts_with("lease 1 cancelled"), "{o:?}");
        let accounts = json_of(&as_bob(&["credits", "balance", "pb", "-o", "json"]));
        assert_eq!((balance(&accounts, "available"), balance(&accounts, "escrow")), (5_000_000, 0));
        let audit = stdout(&as_admin(&["credits", "audit"]));
        assert!(audit.contains("the ledger is sound"), "{audit}");
        let o = as_alice(&["market", "offer", "withdraw", "1"]);
        assert_eq!(stdout(&o).trim(), "offer 1 withdrawn");
    })
    .await
    .unwrap();
    s.shutdown().await;
}
