//! Recursive HaaS (issue 8) end to end: three real `serve` instances on
//! 127.0.0.1 talking HTTP, each with its own database: the root (real QMP
//! BMC on a QEMU that runs nothing, real `linux-vlan-bridges` switch in a
//! fabric namespace) -> tenant A's metalcast (`--upstream` root as project
//! A) -> tenant A1's metalcast (`--upstream` A's instance as project A1).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use metalcast_fabric::Fabric;
use serde_json::{Value, json};
use sqlx::Row;

use crate::app::upstream::{Upstream, UpstreamConfig};
use crate::app::{AppState, VlanPool};

/// `query-status` over our own QMP connection (independent of the driver).
fn qemu_running(sock: &Path) -> bool {
    use std::io::{BufRead, BufReader, Write};
    let s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    for cmd in [json!({"execute": "qmp_capabilities"}), json!({"execute": "query-status"})] {
        writeln!(w, "{cmd}").unwrap();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            if v.get("event").is_some() {
                continue;
            }
            if let Some(running) = v["return"]["running"].as_bool() {
                return running;
            }
            break;
        }
    }
    panic!("no query-status answer");
}

/// One running control plane.
struct Level {
    url: String,
    st: AppState,
    admin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    sync: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
    /// (server URL, database) of a per-test PostgreSQL database to drop.
    pg: Option<(String, String)>,
}

impl Level {
    /// Start a level on SQLite, or on a fresh PostgreSQL database when `pg`
    /// is `Some(METALCAST_TEST_PG_URL)`.
    async fn start(upstream: Option<UpstreamConfig>, pg: Option<&str>, signer: &metalcast_image::PublicKey) -> Level {
        let dir = tempfile::tempdir().unwrap();
        let (url, pg) = match pg {
            None => (format!("sqlite://{}?mode=rwc", dir.path().join("level.db").display()), None),
            Some(base) => {
                sqlx::any::install_default_drivers();
                let admin = sqlx::AnyPool::connect(base).await.expect("connect METALCAST_TEST_PG_URL");
                let name = format!("mc_rec_{}", crate::auth::random_hex(6));
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
                admin.close().await;
                let (prefix, _) = base.rsplit_once('/').expect("database URL with /dbname");
                (format!("{prefix}/{name}"), Some((base.to_string(), name)))
            }
        };
        let db = crate::db::connect(&url).await.unwrap();
        let registry = crate::registry::Registry::new(dir.path().join("data"), vec![*signer]);
        registry.ensure_dirs().unwrap();
        let mut st = AppState::new(db, VlanPool { first: 100, last: 199 }).with_registry(registry);
        if upstream.is_none() {
            // The root has the provisioning network (no runtime ever checks in from this test's nodes).
            st = st.with_provision(crate::app::deployments::Provision {
                addr: Some(std::net::Ipv4Addr::LOCALHOST),
                ..Default::default()
            });
        }
        if let Some(cfg) = upstream {
            st = st.with_upstream(Upstream::new(cfg).unwrap());
        }
        st = st.with_market(crate::app::market::MarketConfig {
            tick: Duration::from_millis(200),
            cleaning_gap_secs: 2,
            attempts: 3,
            revoke_timeout: Duration::from_secs(10),
            ..Default::default()
        });
        let admin =
            crate::app::tokens::bootstrap_admin(&st, "admin", Some("adminpw".into())).await.unwrap().token.token;
        crate::app::replicas::join(&st).await.unwrap();
        let _ = crate::tests::renew(&st);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn({
            let st = st.clone();
            async move {
                crate::serve(listener, st, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            }
        });
        let sync = crate::app::upstream::spawn_sync(&st);
        Level { url: format!("http://{addr}"), st, admin, stop: Some(tx), server: Some(server), sync, _dir: dir, pg }
    }

    /// Stop and drop a PostgreSQL database.
    async fn finish(mut self) {
        self.stop().await;
        self.st.db.pool.close().await;
        if let Some((base, name)) = self.pg.take() {
            let admin = sqlx::AnyPool::connect(&base).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
        }
    }

    /// Stop serving (the database stays).
    async fn stop(&mut self) {
        if let Some(s) = self.sync.take() {
            s.abort();
        }
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(mut server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut server).await;
            server.abort();
        }
    }

    fn upstream_for(&self, project: &str, token: &str) -> UpstreamConfig {
        UpstreamConfig {
            url: self.url.clone(),
            project: project.into(),
            token: token.into(),
            sync_interval: Duration::from_millis(300),
        }
    }

    /// A user in `project` and an API token for them.
    async fn tenant(&self, user: &str, project: &str) -> String {
        self.ok("PUT", &format!("/v0/auth/basic/user/{user}"), json!({"password": "pw"})).await;
        self.ok("POST", &format!("/v0/auth/basic/user/{user}/add_project"), json!({"project": project})).await;
        let (s, v) = http(&self.url, "POST", "/v1/tokens", Auth::Basic(user), Some(json!({"description": "t"}))).await;
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        http(&self.url, method, path, Auth::Bearer(&self.admin), body).await
    }

    async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let body = if body.is_null() { None } else { Some(body) };
        let (s, v) = self.call(method, path, body).await;
        assert!((200..300).contains(&s), "{method} {} {path} -> {s} {v}", self.url);
        v
    }

    async fn nodes(&self) -> Vec<String> {
        serde_json::from_value(self.ok("GET", "/v0/nodes/all", Value::Null).await).unwrap()
    }

    /// Wait (bounded) until the node list is `want`.
    async fn wait_nodes(&self, want: &[&str]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let have = self.nodes().await;
            if have == want {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{}: nodes {have:?}, want {want:?}", self.url);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Connect/detach and wait for the action; returns its final status.
    async fn nic_action(&self, auth: Auth<'_>, node: &str, verb: &str, network: &str) -> String {
        let path = format!("/v0/node/{node}/nic/eth0/{verb}");
        let (s, v) = http(&self.url, "POST", &path, auth, Some(json!({"network": network}))).await;
        assert_eq!(s, 202, "{verb} at {}: {v}", self.url);
        let id = v["status_id"].as_str().unwrap().to_string();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.ok("GET", &format!("/v0/networking_action/{id}"), Value::Null).await;
            let status = v["status"].as_str().unwrap();
            if status != "PENDING" {
                return status.to_string();
            }
            assert!(tokio::time::Instant::now() < deadline, "action {id} still pending");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Rows of the tables a failed delegated call must leave alone.
    async fn snapshot(&self) -> Vec<String> {
        let mut out = Vec::new();
        for q in [
            "SELECT name || ':' || COALESCE(project, '-') FROM nodes ORDER BY 1",
            "SELECT name || ':' || CAST(vlan AS TEXT) FROM networks ORDER BY 1",
            "SELECT node || ':' || nic || ':' || network || ':' || channel FROM attachments ORDER BY 1",
        ] {
            for r in sqlx::query(q).fetch_all(&self.st.db.pool).await.unwrap() {
                out.push(r.try_get::<String, _>(0).unwrap());
            }
        }
        out
    }
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Bearer(&'a str),
    /// User with password "pw".
    Basic(&'a str),
}

/// A request to `base` with `auth`.
fn request(base: &str, method: &str, path: &str, auth: Auth<'_>) -> reqwest::RequestBuilder {
    crate::install_tls_provider();
    let rb = reqwest::Client::new().request(method.parse().unwrap(), format!("{base}{path}"));
    match auth {
        Auth::Bearer(t) => rb.bearer_auth(t),
        Auth::Basic(u) => rb.basic_auth(u, Some("pw")),
    }
}

async fn http(base: &str, method: &str, path: &str, auth: Auth<'_>, body: Option<Value>) -> (u16, Value) {
    let mut rb = request(base, method, path, auth);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    answer(rb).await
}

/// Sends `rb`: the status and the body (JSON, or the text as a string).
async fn answer(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Like [`http`], with an `Idempotency-Key` (market and ledger calls).
async fn keyed(base: &str, method: &str, path: &str, auth: Auth<'_>, body: Value) -> (u16, Value) {
    answer(request(base, method, path, auth).header("idempotency-key", crate::auth::random_hex(8)).json(&body)).await
}

/// Waits (bounded) until lease `id` at `base` is in `state`; returns it.
async fn wait_lease(base: &str, auth: Auth<'_>, id: i64, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (s, v) = http(base, "GET", &format!("/v1/market/leases/{id}"), auth, None).await;
        assert_eq!(s, 200, "{v}");
        if v["state"] == state {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "lease {id} at {base} is not {state}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Like [`http`] with a raw body (image uploads).
async fn http_bytes(base: &str, method: &str, path: &str, auth: Auth<'_>, body: Vec<u8>) -> (u16, Value) {
    answer(request(base, method, path, auth).body(body)).await
}

/// The VLAN id of `network` at `level` (from its `vlan/<id>` channel).
async fn vlan_of(level: &Level, network: &str) -> u16 {
    let v = level.ok("GET", &format!("/v0/network/{network}"), Value::Null).await;
    v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str()?.strip_prefix("vlan/")?.parse().ok())
        .next()
        .expect("a vlan/<id> channel")
}

/// Master (bridge) of interface `dev` in namespace `ns`.
fn master(ns: &str, dev: &str) -> Option<String> {
    let out = Command::new("ip").args(["-n", ns, "-j", "link", "show", "dev", dev]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["master"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_levels_sqlite() {
    three_levels_delegate_isolate_and_reclaim(None).await;
}

/// The same with the root and tenant A's instance on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_levels_postgres() {
    let Ok(base) = std::env::var("METALCAST_TEST_PG_URL") else {
        super::skip("METALCAST_TEST_PG_URL is not set; PostgreSQL variant not run");
        return;
    };
    three_levels_delegate_isolate_and_reclaim(Some(&base)).await;
}

async fn three_levels_delegate_isolate_and_reclaim(pg: Option<&str>) {
    metalcast_fabric::skip_unless_root!();
    let dir = tempfile::tempdir().unwrap();
    let qmp = dir.path().join("n1.qmp");
    let _qemu = match metalcast_fabric::qemu::QmpOnly::start(&qmp) {
        Ok(q) => q,
        Err(reason) => {
            super::skip(&format!("{reason}; recursion test not run"));
            return;
        }
    };
    let fabric = Fabric::builder()
        .receivers(0)
        .host("h1")
        .snooping(false)
        .nic_segmentation(false)
        .build()
        .expect("build fabric");
    let sw = fabric.switch().netns().name().to_string();
    let h1 = fabric.host("h1");

    // --- root: real BMC and switch; project A holds n1, n2, n3, n4 -----------
    let signer = metalcast_image::SecretKey::generate();
    let root = Level::start(None, pg, &signer.public()).await;
    root.ok("PUT", "/v0/switch/fab", json!({"type": "linux-vlan-bridges", "netns": sw})).await;
    root.ok("PUT", &format!("/v0/switch/fab/port/{}", h1.switch_port()), Value::Null).await;
    root.ok("PUT", "/v0/project/A", Value::Null).await;
    root.ok("PUT", "/v0/project/B", Value::Null).await;
    for (i, node) in ["n1", "n2", "n3", "n4", "nb"].iter().enumerate() {
        // n1 is the QEMU; the others are never driven (their requests are
        // refused before any driver runs, or fail upstream first).
        let sock = if i == 0 { qmp.clone() } else { dir.path().join(format!("{node}.qmp")) };
        root.ok(
            "PUT",
            &format!("/v0/node/{node}"),
            json!({"obm": {"type": "qmp", "socket": sock}, "metadata": {"rack": i}}),
        )
        .await;
        let mac = if i == 0 { h1.mac_string() } else { format!("52:54:00:00:00:0{i}") };
        root.ok("PUT", &format!("/v0/node/{node}/nic/eth0"), json!({"macaddr": mac})).await;
        let project = if *node == "nb" { "B" } else { "A" };
        root.ok("POST", &format!("/v0/project/{project}/connect_node"), json!({"node": node})).await;
    }
    root.ok(
        "POST",
        &format!("/v0/switch/fab/port/{}/connect_nic", h1.switch_port()),
        json!({"node": "n1", "nic": "eth0"}),
    )
    .await;
    let a_token = root.tenant("alice", "A").await;

    // --- tenant A's metalcast: sees exactly A's nodes ------------------------
    let mut a = Level::start(Some(root.upstream_for("A", &a_token)), pg, &signer.public()).await;
    a.wait_nodes(&["n1", "n2", "n3", "n4"]).await;
    let n1 = a.ok("GET", "/v0/node/n1", Value::Null).await;
    assert_eq!(n1["nics"][0]["macaddr"], json!(h1.mac_string()), "{n1}");
    assert_eq!(n1["metadata"]["rack"], json!("0"), "{n1}");
    a.ok("PUT", "/v0/project/A1", Value::Null).await;
    a.ok("PUT", "/v0/project/A2", Value::Null).await;
    for (node, p) in [("n1", "A1"), ("n4", "A1"), ("n3", "A2")] {
        a.ok("POST", &format!("/v0/project/{p}/connect_node"), json!({"node": node})).await;
    }
    let a1_token = a.tenant("bob", "A1").await;
    let a2_token = a.tenant("dave", "A2").await;

    // --- tenant A1's metalcast: sees exactly what A granted to A1 ------------
    let a1 = Level::start(Some(a.upstream_for("A1", &a1_token)), None, &signer.public()).await;
    a1.wait_nodes(&["n1", "n4"]).await;
    a1.ok("PUT", "/v0/project/t1", Value::Null).await;
    a1.tenant("carol", "t1").await;
    let carol = Auth::Basic("carol");
    let (s, v) = http(&a1.url, "POST", "/v0/project/t1/connect_node", carol, Some(json!({"node": "n1"}))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = http(&a1.url, "POST", "/v0/project/t1/connect_node", carol, Some(json!({"node": "n4"}))).await;
    assert_eq!(s, 200, "{v}");

    // Network: created at every level above as an operation of the parent project.
    let (s, v) =
        http(&a1.url, "PUT", "/v0/network/net1", carol, Some(json!({"owner": "t1", "access": "t1", "net_id": ""})))
            .await;
    assert_eq!(s, 200, "{v}");
    let v1 = vlan_of(&a1, "net1").await;
    let at_a = metalcast_operator_api::carrier::network("A1", v1);
    let net_a = a.ok("GET", &format!("/v0/network/{at_a}"), Value::Null).await;
    assert_eq!(net_a["owner"], json!("A1"), "{net_a}");
    let va = vlan_of(&a, &at_a).await;
    let at_root = metalcast_operator_api::carrier::network("A", va);
    let net_root = root.ok("GET", &format!("/v0/network/{at_root}"), Value::Null).await;
    assert_eq!(net_root["owner"], json!("A"), "{net_root}");
    let vroot = vlan_of(&root, &at_root).await;

    // Connect: DONE at A1 only after it is DONE at A and at the root, where
    // the real switch put the port on the root network's bridge.
    assert_ne!(master(&sw, h1.switch_port()), Some(format!("mcvlan{vroot}")));
    assert_eq!(a1.nic_action(carol, "n1", "connect_network", "net1").await, "DONE");
    let show = |lvl: &Level| {
        let url = lvl.url.clone();
        let admin = lvl.admin.clone();
        async move { http(&url, "GET", "/v0/node/n1", Auth::Bearer(&admin), None).await.1 }
    };
    assert_eq!(show(&a1).await["nics"][0]["networks"]["vlan/native"], json!("net1"));
    assert_eq!(show(&a).await["nics"][0]["networks"]["vlan/native"], json!(at_a));
    assert_eq!(show(&root).await["nics"][0]["networks"]["vlan/native"], json!(at_root));
    assert_eq!(master(&sw, h1.switch_port()), Some(format!("mcvlan{vroot}")));
    // Tagged channels are not translated between levels: ERROR, nothing recorded.
    let (s, v) =
        http(&a1.url, "PUT", "/v0/network/net2", carol, Some(json!({"owner": "t1", "access": "t1", "net_id": ""})))
            .await;
    assert_eq!(s, 200, "{v}");
    let path = "/v0/node/n1/nic/eth0/connect_network";
    let v2 = vlan_of(&a1, "net2").await;
    let (s, v) =
        http(&a1.url, "POST", path, carol, Some(json!({"network": "net2", "channel": format!("vlan/{v2}")}))).await;
    assert_eq!(s, 202, "{v}");

    // Power: the root's QEMU really stops and runs again.
    let (s, v) = http(&a1.url, "POST", "/v0/node/n1/power_off", carol, None).await;
    assert_eq!(s, 200, "{v}");
    assert!(!qemu_running(&qmp));
    let (s, v) = http(&a1.url, "GET", "/v0/node/n1/power_status", carol, None).await;
    assert_eq!((s, v), (200, json!({"power_status": "off"})));
    let (s, v) = http(&a1.url, "POST", "/v0/node/n1/power_cycle", carol, Some(json!({}))).await;
    assert_eq!(s, 200, "{v}");
    assert!(qemu_running(&qmp));
    let (s, v) = http(&a1.url, "PUT", "/v0/node/n1/boot_device", carol, Some(json!({"bootdev": "pxe"}))).await;
    // QEMU `-machine none` has no boot devices and the root's qmp obm names none: the
    // root's 501 arrives at A1 as a refused upstream call.
    assert_eq!(s, 502, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("upstream refused the request (502)"), "{v}");

    // The tagged connect has finished by now (each level polls its parent).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let att = show(&a1).await["nics"][0]["networks"].clone();
        let pending = sqlx::query("SELECT COUNT(*) FROM network_actions WHERE status = 'PENDING'")
            .fetch_one(&a1.st.db.pool)
            .await
            .unwrap()
            .try_get::<i64, _>(0)
            .unwrap();
        if pending == 0 {
            assert_eq!(att, json!({"vlan/native": "net1"}), "tagged connect must not be recorded");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Detach from A1 goes down to the root's switch too.
    assert_eq!(a1.nic_action(carol, "n1", "detach_network", "net1").await, "DONE");
    assert_eq!(master(&sw, h1.switch_port()), None);
    assert_eq!(show(&a).await["nics"][0]["networks"], json!({}));
    assert_eq!(show(&root).await["nics"][0]["networks"], json!({}));
    // The root's admin detaching behind A's back: A1's later detach is
    // confirmed by the root's "not attached" answer.
    assert_eq!(a1.nic_action(carol, "n1", "connect_network", "net1").await, "DONE");
    assert_eq!(root.nic_action(Auth::Bearer(&root.admin), "n1", "detach_network", &at_root).await, "DONE");
    assert_eq!(a1.nic_action(carol, "n1", "detach_network", "net1").await, "DONE");
    assert_eq!(show(&a1).await["nics"][0]["networks"], json!({}));
    assert_eq!(a1.nic_action(carol, "n1", "connect_network", "net1").await, "DONE");
    assert_eq!(master(&sw, h1.switch_port()), Some(format!("mcvlan{vroot}")));

    // Isolation: A1 cannot see or touch what A kept (n2) or A2 holds (n3),
    // neither through its own instance nor at A with its upstream token.
    for node in ["n2", "n3", "nb"] {
        let (s, _) = http(&a1.url, "GET", &format!("/v0/node/{node}"), Auth::Bearer(&a1.admin), None).await;
        assert_eq!(s, 404, "{node} at A1");
        let (s, _) =
            http(&a1.url, "POST", &format!("/v0/node/{node}/power_cycle"), Auth::Bearer(&a1.admin), None).await;
        assert_eq!(s, 404, "{node} at A1");
        let (s, _) = http(&a.url, "POST", &format!("/v0/node/{node}/power_cycle"), Auth::Bearer(&a1_token), None).await;
        assert!(s == 403 || s == 404, "{node} at A with A1's token: {s}");
    }
    let (s, _) = http(&a.url, "GET", "/v0/project/A2/nodes", Auth::Bearer(&a1_token), None).await;
    assert_eq!(s, 403);
    assert_eq!(a.nodes().await, ["n1", "n2", "n3", "n4"], "A never sees B's node");

    // Deploy from the bottom: A1's instance uploads the image to A (private to A1), A's to the
    // root (private to A), and the root runs the deployment as an operation of project A. No
    // runtime ever checks in from this test's nodes, so the root fails n1 with that reason,
    // and the reason travels back up to A1.
    let bundle = super::registry::bundle(Some(&signer), 11);
    let (s, v) = http_bytes(&a1.url, "PUT", "/v1/images/img?project=t1", carol, bundle).await;
    assert_eq!(s, 201, "{v}");
    let (s, d) = http(
        &a1.url,
        "POST",
        "/v1/deployments",
        carol,
        Some(json!({"image": "img", "nodes": ["n1"], "timeout_secs": 10, "user_data": "#cloud-config\n"})),
    )
    .await;
    assert_eq!(s, 202, "{d}");
    let id = d["id"].as_i64().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let d = loop {
        let (s, d) = http(&a1.url, "GET", &format!("/v1/deployments/{id}"), carol, None).await;
        assert_eq!(s, 200, "{d}");
        if d["state"] != "running" {
            break d;
        }
        assert!(tokio::time::Instant::now() < deadline, "A1's deployment did not end: {d}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(d["state"], "failed", "{d}");
    let reason = d["nodes"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("no runtime checked in"), "the root's reason reaches A1: {d}");
    assert!(d["session"].as_str().unwrap().starts_with("parent deployment"), "{d}");
    let deps_a = a.ok("GET", "/v1/deployments", Value::Null).await;
    assert_eq!(
        (deps_a[0]["project"].as_str(), deps_a[0]["nodes"][0]["node"].as_str()),
        (Some("A1"), Some("n1")),
        "{deps_a}"
    );
    let deps_root = root.ok("GET", "/v1/deployments", Value::Null).await;
    assert_eq!(deps_root.as_array().unwrap().len(), 1, "{deps_root}");
    assert_eq!(deps_root[0]["project"], json!("A"), "the root sees project A's operation: {deps_root}");
    let imgs = root.ok("GET", "/v1/images", Value::Null).await;
    assert!(imgs.as_array().unwrap().iter().any(|i| i["owner"] == "A" && i["visibility"] == "private"), "{imgs}");
    // A2's member cannot see A1's deployment at A.
    let (s, _) =
        http(&a.url, "GET", &format!("/v1/deployments/{}", deps_a[0]["id"]), Auth::Bearer(&a2_token), None).await;
    assert_eq!(s, 404);

    // The root takes n1 back (detach its network, remove it from A): every
    // level below loses it, and the tenant at the bottom can read why.
    assert_eq!(root.nic_action(Auth::Bearer(&root.admin), "n1", "detach_network", &at_root).await, "DONE");
    assert_eq!(master(&sw, h1.switch_port()), None);
    root.ok("POST", "/v0/project/A/detach_node", json!({"node": "n1"})).await;
    a.wait_nodes(&["n2", "n3", "n4"]).await;
    a1.wait_nodes(&["n4"]).await;
    let (s, ev) = http(&a1.url, "GET", "/v1/events", carol, None).await;
    assert_eq!(s, 200, "{ev}");
    let ev = ev.as_array().unwrap();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!((ev[0]["node"].as_str(), ev[0]["project"].as_str()), (Some("n1"), Some("t1")));
    let reason = ev[0]["reason"].as_str().unwrap();
    assert!(reason.contains("no longer in project \"A\""), "the root-level cause reaches the bottom: {reason}");
    let (_, doc) = http(&a1.url, "GET", "/v1/openapi.json", Auth::Bearer(&a1.admin), None).await;
    assert!(doc["paths"].get("/v1/events").is_some(), "events are in the OpenAPI document");
    let (_, att) = http(&a1.url, "GET", "/v0/network/net1", carol, None).await;
    assert_eq!(att["connected-nodes"], json!({}), "{att}");
    // Another project's members do not see the event.
    let (s, ev) = http(&a.url, "GET", "/v1/events", Auth::Bearer(&a2_token), None).await;
    assert_eq!((s, ev), (200, json!([])), "A2's member sees no event of A1's node at A");
    let (s, ev) = http(&a.url, "GET", "/v1/events?node=n1", Auth::Bearer(&a1_token), None).await;
    assert_eq!(s, 200, "{ev}");
    assert_eq!(ev[0]["project"], json!("A1"), "{ev}");

    // Parent stopped: nested calls fail with the upstream error and change nothing.
    a.stop().await;
    let before = a1.snapshot().await;
    let (s, v) = http(&a1.url, "POST", "/v0/node/n4/power_cycle", carol, None).await;
    assert_eq!(s, 502, "{v}");
    assert_eq!(v["msg"], json!("driver error: upstream unreachable: cannot connect"), "{v}");
    let (s, v) =
        http(&a1.url, "PUT", "/v0/network/net3", carol, Some(json!({"owner": "t1", "access": "t1", "net_id": ""})))
            .await;
    assert_eq!(s, 502, "{v}");
    let (s, v) = http(&a1.url, "DELETE", "/v0/network/net1", carol, None).await;
    assert_eq!(s, 502, "{v}");
    assert_eq!(a1.nic_action(carol, "n4", "connect_network", "net1").await, "ERROR");
    // The sync keeps retrying without dropping anything.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(a1.snapshot().await, before);
    for level in [a1, a, root] {
        level.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn carrier_names_cannot_be_squatted_sqlite() {
    carrier_names_cannot_be_squatted(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn carrier_names_cannot_be_squatted_postgres() {
    let Ok(base) = std::env::var("METALCAST_TEST_PG_URL") else {
        super::skip("METALCAST_TEST_PG_URL is not set; PostgreSQL variant not run");
        return;
    };
    carrier_names_cannot_be_squatted(Some(&base)).await;
}

/// A sibling tenant at the parent cannot take the names a nested instance
/// will need (its first carrier network, its carrier image), nor can a
/// long project name make them invalid; a nested deployment the parent
/// refuses tells the nested tenant the parent's reason.
async fn carrier_names_cannot_be_squatted(pg: Option<&str>) {
    use metalcast_operator_api::carrier;

    let signer = metalcast_image::SecretKey::generate();
    // The root trusts another key: the nested deployment's image is refused there.
    let root = Level::start(None, pg, &metalcast_image::SecretKey::generate().public()).await;
    let long = format!("A{}", "x".repeat(59));
    for p in ["A", "B", long.as_str()] {
        root.ok("PUT", &format!("/v0/project/{p}"), Value::Null).await;
    }
    let a_token = root.tenant("alice", "A").await;
    root.tenant("bob", "B").await;
    let long_token = root.tenant("lena", &long).await;
    let bob = Auth::Basic("bob");

    // Bob squats what A's nested instance will name its first network and
    // an image: both refused, naming the reservation.
    let first = carrier::network("A", 100);
    let (s, v) = http(
        &root.url,
        "PUT",
        &format!("/v0/network/{first}"),
        bob,
        Some(json!({"owner": "B", "access": "B", "net_id": ""})),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("reserved"), "{v}");
    let img = carrier::image("A", &"ab".repeat(32));
    let path = format!("/v1/images/{img}?project=B");
    let (s, v) = http_bytes(&root.url, "PUT", &path, bob, super::registry::bundle(Some(&signer), 1)).await;
    assert_eq!(s, 403, "{v}");
    // The root's admin cannot make a carrier name public or admin-owned either.
    let (s, v) = root
        .call("PUT", &format!("/v0/network/{first}"), Some(json!({"owner": "admin", "access": "", "net_id": ""})))
        .await;
    assert_eq!(s, 403, "{v}");
    // The old, predictable name is an ordinary name now: Bob may have it.
    let (s, v) =
        http(&root.url, "PUT", "/v0/network/A-v100", bob, Some(json!({"owner": "B", "access": "B", "net_id": ""})))
            .await;
    assert_eq!(s, 200, "{v}");

    // A's nested instance creates its networks regardless.
    let a = Level::start(Some(root.upstream_for("A", &a_token)), None, &signer.public()).await;
    a.ok("PUT", "/v0/project/t1", Value::Null).await;
    a.tenant("carol", "t1").await;
    let carol = Auth::Basic("carol");
    let (s, v) =
        http(&a.url, "PUT", "/v0/network/net1", carol, Some(json!({"owner": "t1", "access": "t1", "net_id": ""})))
            .await;
    assert_eq!(s, 200, "{v}");
    let carried = carrier::network("A", vlan_of(&a, "net1").await);
    let at_root = root.ok("GET", &format!("/v0/network/{carried}"), Value::Null).await;
    assert_eq!(at_root["owner"], json!("A"), "{at_root}");

    // A 60-character project's nested instance too (its carrier names fit).
    let l = Level::start(Some(root.upstream_for(&long, &long_token)), None, &signer.public()).await;
    l.ok("PUT", "/v0/project/t2", Value::Null).await;
    l.ok("PUT", "/v0/network/net2", json!({"owner": "t2", "access": "t2", "net_id": ""})).await;
    let carried = carrier::network(&long, vlan_of(&l, "net2").await);
    assert!(carried.len() <= 64, "{carried}");
    let at_root = root.ok("GET", &format!("/v0/network/{carried}"), Value::Null).await;
    assert_eq!(at_root["owner"], json!(long), "{at_root}");

    // A nested deployment the parent refuses carries the parent's reason.
    root.ok("PUT", "/v0/node/n1", json!({"obm": {"type": "none"}})).await;
    root.ok("PUT", "/v0/node/n1/nic/eth0", json!({"macaddr": "52:54:00:00:31:01"})).await;
    root.ok("POST", "/v0/project/A/connect_node", json!({"node": "n1"})).await;
    a.wait_nodes(&["n1"]).await;
    a.ok("POST", "/v0/project/t1/connect_node", json!({"node": "n1"})).await;
    let (s, v) =
        http_bytes(&a.url, "PUT", "/v1/images/img?project=t1", carol, super::registry::bundle(Some(&signer), 2)).await;
    assert_eq!(s, 201, "{v}");
    let (s, d) = http(&a.url, "POST", "/v1/deployments", carol, Some(json!({"image": "img", "nodes": ["n1"]}))).await;
    assert_eq!(s, 202, "{d}");
    let path = format!("/v1/deployments/{}", d["id"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let d = loop {
        let (s, d) = http(&a.url, "GET", &path, carol, None).await;
        assert_eq!(s, 200, "{d}");
        if d["state"] != json!("running") {
            break d;
        }
        assert!(tokio::time::Instant::now() < deadline, "deployment still running: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reason = d["nodes"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("upstream refused the request"), "the parent's refusal is hidden: {d}");

    l.finish().await;
    a.finish().await;
    root.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sub_lease_ends_with_the_parent_lease_sqlite() {
    sub_lease_ends_with_the_parent_lease().await;
}

/// The marketplace across recursion: B leases A's node at the root; B's
/// nested instance offers it to its own tenants only inside that lease (a
/// cleaning gap before its end, without a wipe), with the inventory the
/// runtime reported to the root; when the root lease ends early (A recalls
/// it), the sub-lease below ends at once, paid for the time it had, and
/// both levels say why.
async fn sub_lease_ends_with_the_parent_lease() {
    let signer = metalcast_image::SecretKey::generate();
    let root = Level::start(None, None, &signer.public()).await;
    for p in ["A", "B"] {
        root.ok("PUT", &format!("/v0/project/{p}"), Value::Null).await;
    }
    root.tenant("alice", "A").await;
    let b_token = root.tenant("bob", "B").await;
    let (alice, bob) = (Auth::Basic("alice"), Auth::Basic("bob"));
    root.ok("PUT", "/v0/node/n1", json!({"obm": {"type": "none"}})).await;
    root.ok("PUT", "/v0/node/n1/nic/eth0", json!({"macaddr": "52:54:00:00:41:01"})).await;
    root.ok("POST", "/v0/project/A/connect_node", json!({"node": "n1"})).await;
    let checkin = json!({"node": "52:54:00:00:41:01", "role": "runtime", "boot_id": "b1", "version": "0",
        "address": "10.0.0.9", "uptime_secs": 5.0, "network_secs": 0.1,
        "inventory": {"nics": [], "cpus": 8, "memory_bytes": 17_179_869_184u64, "disks": [], "kernel": "6.1"}});
    let (s, v) = http(&root.url, "POST", "/v1/runtime/checkin", Auth::Bearer(""), Some(checkin)).await;
    assert_eq!(s, 200, "{v}");
    let admin = Auth::Bearer(&root.admin);
    let (s, v) =
        keyed(&root.url, "POST", "/v1/ledger/mint", admin, json!({"project": "B", "amount": 10_000_000, "memo": "t"}))
            .await;
    assert_eq!(s, 201, "{v}");

    // A offers n1 at the root (interruptible, no notice); B buys it for a minute.
    let t = crate::db::market::now_pool(&root.st.db.pool, root.st.db.backend).await.unwrap();
    let offer = json!({"project": "A", "nodes": ["n1"], "start": t, "end": t + 60, "reserve_mph": 3600,
        "buy_now_mph": 3600, "interruptible": true});
    let (s, o) = keyed(&root.url, "POST", "/v1/market/offers", alice, offer).await;
    assert_eq!(s, 201, "{o}");
    let (s, l) =
        keyed(&root.url, "POST", &format!("/v1/market/offers/{}/buy", o["id"]), bob, json!({"project": "B"})).await;
    assert_eq!(s, 201, "{l}");
    let root_lease = l[0]["id"].as_i64().unwrap();
    let parent_end = l[0]["end"].as_i64().unwrap();
    wait_lease(&root.url, bob, root_lease, "active").await;

    // B's nested instance sees n1 and puts it on its own market, inside the root lease.
    let nb = Level::start(Some(root.upstream_for("B", &b_token)), None, &signer.public()).await;
    nb.wait_nodes(&["n1"]).await;
    for p in ["t1", "t2"] {
        nb.ok("PUT", &format!("/v0/project/{p}"), Value::Null).await;
    }
    nb.tenant("carol", "t1").await;
    nb.tenant("dave", "t2").await;
    let (carol, dave) = (Auth::Basic("carol"), Auth::Basic("dave"));
    nb.ok("POST", "/v0/project/t1/connect_node", json!({"node": "n1"})).await;
    let nadmin = Auth::Bearer(&nb.admin);
    let (s, v) =
        keyed(&nb.url, "POST", "/v1/ledger/mint", nadmin, json!({"project": "t2", "amount": 10_000_000, "memo": "t"}))
            .await;
    assert_eq!(s, 201, "{v}");
    let sub = |end: i64, wipe: &str| json!({"project": "t1", "nodes": ["n1"], "start": t, "end": end, "reserve_mph": 3600, "buy_now_mph": 7200, "wipe": wipe});
    let (s, v) = keyed(&nb.url, "POST", "/v1/market/offers", carol, sub(parent_end + 10, "none")).await;
    assert_eq!(s, 409, "a sub-lease beyond the parent lease: {v}");
    assert!(v["msg"].as_str().unwrap().contains("parent's lease"), "{v}");
    let (s, v) = keyed(&nb.url, "POST", "/v1/market/offers", carol, sub(parent_end - 5, "zero")).await;
    assert_eq!(s, 400, "a nested wipe: {v}");
    let (s, so) = keyed(&nb.url, "POST", "/v1/market/offers", carol, sub(parent_end - 5, "none")).await;
    assert_eq!(s, 201, "{so}");
    assert_eq!(so["resources"]["cpus"], 8, "the inventory the runtime reported to the root: {so}");
    let (s, sl) =
        keyed(&nb.url, "POST", &format!("/v1/market/offers/{}/buy", so["id"]), dave, json!({"project": "t2"})).await;
    assert_eq!(s, 201, "{sl}");
    let sub_lease = sl[0]["id"].as_i64().unwrap();
    wait_lease(&nb.url, dave, sub_lease, "active").await;
    assert_eq!(nb.ok("GET", "/v0/node/n1", Value::Null).await["project"], "t2");

    // A recalls the root lease: the root takes n1 back from B, and the sub-lease below ends with the reason.
    let (s, v) = keyed(&root.url, "POST", &format!("/v1/market/leases/{root_lease}/recall"), alice, json!({})).await;
    assert_eq!(s, 200, "{v}");
    let done = wait_lease(&root.url, alice, root_lease, "recalled").await;
    assert_eq!(root.ok("GET", "/v0/node/n1", Value::Null).await["project"], "A", "{done}");
    let ended = wait_lease(&nb.url, dave, sub_lease, "ended").await;
    assert!(ended["reason"].as_str().unwrap().contains("parent"), "{ended}");
    let (_, events) = http(&nb.url, "GET", "/v1/events", dave, None).await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "lease-ended" && e["reason"].as_str().unwrap().contains("parent")),
        "t2 is told why: {events}"
    );
    // Paid only for the time it had, and the nested ledger still balances.
    let used = ended["end"].as_i64().unwrap() - ended["start"].as_i64().unwrap();
    let (_, acc) = http(&nb.url, "GET", "/v1/ledger/accounts?project=t2", dave, None).await;
    let avail = acc.as_array().unwrap().iter().find(|a| a["kind"] == "available").unwrap()["balance"].as_i64().unwrap();
    assert_eq!(avail, 10_000_000 - 2 * used, "7200 per node-hour is 2 a second");
    let (_, audit) = http(&nb.url, "GET", "/v1/ledger/audit", nadmin, None).await;
    assert_eq!(audit, json!({"sum": 0, "drifted_accounts": 0, "escrow_mismatches": 0, "negative_balances": 0}));
    nb.finish().await;
    root.finish().await;
}
