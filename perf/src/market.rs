//! `metalcast-bench market`: the marketplace under load (issue 24).
//!
//! One process runs a real `serve` on 127.0.0.1 over SQLite (a fresh file)
//! or PostgreSQL (`--database-url`, an empty database) and drives it over
//! HTTP like any client:
//!
//! 1. **Settlement**: `--nodes` identical nodes (registered, checked in
//!    with one inventory) in one pool offer; `--bids` sealed bids from 100
//!    projects (quantity 1-3, prices between the reserve and ten times it,
//!    one in five all-or-nothing), placed by `--clients` concurrent
//!    clients; at the close, the time of `POST .../settle` (one
//!    transaction: the rule, the ledger, the leases), next to the rule alone
//!    (`settle::settle` on the same bids, in memory).
//! 2. **Buy-now**: one single-node buy-now offer per node (a later window),
//!    bought by `--clients` concurrent clients, each its own offers: the
//!    latency of each `POST .../buy` (p50, p99) and purchases per second;
//!    then one client alone, for the uncontended latency.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use metalcast_control_plane::app::market::settle::{SealedBid, settle};
use metalcast_control_plane::{AppState, VlanPool, db};
use serde_json::{Value, json};

/// Benchmark parameters.
#[derive(Debug, Clone)]
pub struct Config {
    /// Database URL (`None`: a fresh SQLite file).
    pub database_url: Option<String>,
    /// Nodes (units of the auction, and buy-now offers).
    pub nodes: usize,
    /// Sealed bids.
    pub bids: usize,
    /// Concurrent clients.
    pub clients: usize,
}

/// What was measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// Nodes.
    pub nodes: usize,
    /// Bids placed.
    pub bids: usize,
    /// Bids placed per second (concurrent clients).
    pub bids_per_sec: f64,
    /// Seconds of `POST /v1/market/offers/{id}/settle`.
    pub settle_secs: f64,
    /// Seconds of the settlement rule alone, in memory (median of 5).
    pub rule_secs: f64,
    /// Leases the settlement made.
    pub leases: usize,
    /// Buy-now purchases per second with `clients` concurrent clients.
    pub buys_per_sec: f64,
    /// Buy-now latency p50 / p99, seconds, concurrent.
    pub buy_p50: f64,
    /// p99.
    pub buy_p99: f64,
    /// Buy-now latency p50, one client alone.
    pub buy_alone_p50: f64,
}

struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, key: Option<&str>, body: Value) -> anyhow::Result<Value> {
        let mut rb =
            self.http.request(method.clone(), format!("{}{path}", self.url)).bearer_auth(&self.token).json(&body);
        if let Some(k) = key {
            rb = rb.header("idempotency-key", k);
        }
        let resp = rb.send().await.with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        ensure!(status.is_success(), "{method} {path}: {status} {v}");
        Ok(v)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A deterministic generator (xorshift), so every run bids the same.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs the benchmark.
pub async fn run(cfg: &Config) -> anyhow::Result<Report> {
    metalcast_control_plane::install_tls_provider();
    let dir = tempfile::tempdir()?;
    let url = match &cfg.database_url {
        Some(u) => u.clone(),
        None => format!("sqlite://{}?mode=rwc", dir.path().join("market.db").display()),
    };
    let database = db::connect(&url).await.context("database")?;
    let backend = if database.backend == db::Backend::Postgres { "postgres" } else { "sqlite" };
    let st =
        AppState::new(database, VlanPool::default()).with_market(metalcast_control_plane::app::market::MarketConfig {
            // The driver stays out of the way: the bench settles by hand.
            tick: Duration::from_secs(3600),
            cleaning_gap_secs: 60,
            ..Default::default()
        });
    let token = metalcast_control_plane::app::tokens::bootstrap_admin(&st, "bench", Some("benchpw".into()))
        .await
        .context("bootstrap")?
        .token
        .token;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(metalcast_control_plane::serve(listener, st.clone(), async {
        let _ = stopped.await;
    }));
    let api = std::sync::Arc::new(Api { http: reqwest::Client::builder().build()?, url: base, token });
    use reqwest::Method;

    // Nodes, all in project `owner`, checked in with one inventory.
    api.call(Method::PUT, "/v0/project/owner", None, json!({})).await?;
    let obm = json!({"obm": {"type": "ipmi", "host": "127.0.0.1", "user": "u", "password": "p"}});
    for i in 0..cfg.nodes {
        let n = format!("m{i}");
        let mac = format!("52:54:{:02x}:{:02x}:{:02x}:01", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
        api.call(Method::PUT, &format!("/v0/node/{n}"), None, obm.clone()).await?;
        api.call(Method::PUT, &format!("/v0/node/{n}/nic/eth0"), None, json!({"macaddr": mac})).await?;
        api.call(Method::POST, "/v0/project/owner/connect_node", None, json!({"node": n})).await?;
        let checkin = json!({"node": mac, "role": "runtime", "boot_id": "b", "version": "0", "address": "10.0.0.9",
            "uptime_secs": 5.0, "network_secs": 0.1,
            "inventory": {"nics": [], "cpus": 32, "memory_bytes": 137_438_953_472u64, "disks": [], "kernel": "6.1"}});
        api.call(Method::POST, "/v1/runtime/checkin", None, checkin).await?;
    }
    // Bidders: 100 projects with plenty of credits.
    let projects: Vec<String> = (0..100).map(|i| format!("bidder{i}")).collect();
    for p in &projects {
        api.call(Method::PUT, &format!("/v0/project/{p}"), None, json!({})).await?;
        let mint = json!({"project": p, "amount": 1_000_000_000_000i64, "memo": "bench"});
        api.call(Method::POST, "/v1/ledger/mint", Some(&format!("mint-{p}")), mint).await?;
    }
    let now = db::market::now_pool(&st.db.pool, st.db.backend).await?;
    // Enough time to place every bid: a generous 20 ms a bid at the pace of one client.
    let close_in = 30 + (cfg.bids as i64 * 20 / 1000) / cfg.clients.max(1) as i64 * 2;
    let nodes: Vec<String> = (0..cfg.nodes).map(|i| format!("m{i}")).collect();
    let reserve = 100_000i64;
    let offer = json!({"project": "owner", "nodes": nodes, "start": now + close_in + 5, "end": now + close_in + 5 + 3600,
        "reserve_mph": reserve, "closes_at": now + close_in});
    let o = api.call(Method::POST, "/v1/market/offers", Some("auction"), offer).await?;
    let auction = o["id"].as_i64().context("offer id")?;

    // The bids.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut sealed = Vec::new();
    let mut bodies = Vec::new();
    for i in 0..cfg.bids {
        let q = 1 + (rng.next() % 3) as i64;
        let max = reserve + (rng.next() % (9 * reserve as u64)) as i64;
        let aon = rng.next().is_multiple_of(5);
        bodies.push((
            i,
            json!({"project": projects[i % projects.len()], "quantity": q, "max_mph": max, "all_or_nothing": aon}),
        ));
        sealed.push(SealedBid { id: i as i64, quantity: q, max, all_or_nothing: aon, at: 0 });
    }
    let t = Instant::now();
    let chunks: Vec<Vec<(usize, Value)>> =
        (0..cfg.clients).map(|c| bodies.iter().filter(|(i, _)| i % cfg.clients == c).cloned().collect()).collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for (i, b) in chunk {
                api.call(Method::POST, &format!("/v1/market/offers/{auction}/bids"), Some(&format!("bid-{i}")), b)
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let bid_secs = t.elapsed().as_secs_f64();
    let left = now + close_in - db::market::now_pool(&st.db.pool, st.db.backend).await?;
    if left < 0 {
        bail!("the bids took longer than the auction was open ({bid_secs:.1} s); use fewer bids or more clients");
    }
    tokio::time::sleep(Duration::from_secs(left as u64 + 1)).await;
    let t = Instant::now();
    let s = api.call(Method::POST, &format!("/v1/market/offers/{auction}/settle"), Some("settle"), json!({})).await?;
    let settle_secs = t.elapsed().as_secs_f64();
    let leases = s["leases"].as_array().map_or(0, Vec::len);
    let mut rule = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let o = settle(cfg.nodes as i64, reserve, &sealed);
        rule.push(t.elapsed().as_secs_f64());
        ensure!(o.awards.iter().map(|(_, n)| n).sum::<i64>() as usize == leases, "the rule and the server disagree");
    }
    rule.sort_by(f64::total_cmp);

    // Buy-now: one offer per node, in a later window.
    let start = now + close_in + 5 + 3600 + 120;
    let mut offers = Vec::new();
    for n in &nodes {
        let body = json!({"project": "owner", "nodes": [n], "start": start, "end": start + 3600,
            "reserve_mph": reserve, "buy_now_mph": 2 * reserve});
        offers.push(
            api.call(Method::POST, "/v1/market/offers", Some(&format!("bn-{n}")), body).await?["id"]
                .as_i64()
                .context("id")?,
        );
    }
    let (alone, rest) = offers.split_at(offers.len().min(50));
    let mut lat_alone = Vec::new();
    for (k, id) in alone.iter().enumerate() {
        let t = Instant::now();
        api.call(
            Method::POST,
            &format!("/v1/market/offers/{id}/buy"),
            Some(&format!("alone-{k}")),
            json!({"project": projects[k % 100]}),
        )
        .await?;
        lat_alone.push(t.elapsed().as_secs_f64());
    }
    lat_alone.sort_by(f64::total_cmp);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..cfg.clients {
        let api = api.clone();
        let mine: Vec<i64> = rest.iter().enumerate().filter(|(i, _)| i % cfg.clients == c).map(|(_, id)| *id).collect();
        let project = projects[c % 100].clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for id in mine {
                let t = Instant::now();
                api.call(
                    Method::POST,
                    &format!("/v1/market/offers/{id}/buy"),
                    Some(&format!("buy-{id}")),
                    json!({"project": project}),
                )
                .await?;
                lat.push(t.elapsed().as_secs_f64());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let buy_secs = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let audit = api.call(Method::GET, "/v1/ledger/audit", None, Value::Null).await?;
    ensure!(
        audit == json!({"sum": 0, "drifted_accounts": 0, "escrow_mismatches": 0, "negative_balances": 0}),
        "ledger audit: {audit}"
    );
    let _ = stop.send(());
    let _ = server.await;
    Ok(Report {
        backend: backend.into(),
        nodes: cfg.nodes,
        bids: cfg.bids,
        bids_per_sec: cfg.bids as f64 / bid_secs,
        settle_secs,
        rule_secs: rule[rule.len() / 2],
        leases,
        buys_per_sec: lat.len() as f64 / buy_secs,
        buy_p50: percentile(&lat, 0.5),
        buy_p99: percentile(&lat, 0.99),
        buy_alone_p50: percentile(&lat_alone, 0.5),
    })
}
