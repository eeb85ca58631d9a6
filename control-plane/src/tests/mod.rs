//! API tests: `app(state)` driven with tower `oneshot` against a fresh
//! database per test. Every scenario runs on SQLite and, when
//! `METALCAST_TEST_PG_URL` is set, on a fresh PostgreSQL database.

mod api;
mod bridge;
mod deploy;
mod golden;
mod hil_conformance;
mod ipmi;
mod isolation;
mod market;
mod metrics;
mod netboot;
mod obmd;
mod qmp;
mod recursion;
mod redfish;
mod registry;
mod replicas;
mod runtime;
mod schemathesis;
mod shutdown;
mod ui;
mod vlan_isolation;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use serde_json::Value;
use sqlx::Row;
use tower::ServiceExt;

use crate::app::{AppState, VlanPool};

/// Report that a test cannot run: prints `SKIP: <reason>` and returns, or
/// panics when CI demands every prerequisite (`METALCAST_REQUIRE_PRIVILEGED=1`).
pub fn skip(reason: &str) {
    if std::env::var("METALCAST_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1") {
        panic!("{reason}, but METALCAST_REQUIRE_PRIVILEGED=1 requires this test to run");
    }
    eprintln!("SKIP: {reason}");
}

/// Credentials used in requests.
#[derive(Debug, Clone)]
pub enum Who {
    Anon,
    Bearer(String),
    Basic(String, String),
}

impl Who {
    /// `rb` with this caller's `Authorization` header.
    fn authorize(&self, rb: axum::http::request::Builder) -> axum::http::request::Builder {
        match self {
            Who::Anon => rb,
            Who::Bearer(t) => rb.header("authorization", format!("Bearer {t}")),
            Who::Basic(u, p) => {
                let enc = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                rb.header("authorization", format!("Basic {enc}"))
            }
        }
    }
}

pub struct Harness {
    pub app: Router,
    pub st: AppState,
    pub admin: Who,
    /// Signs bundles the test registry trusts.
    pub signer: metalcast_image::SecretKey,
    /// The image registry's directory.
    pub registry_dir: tempfile::TempDir,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
    /// The task renewing `st`'s replica heartbeat ([`renew`]).
    pub renewal: tokio::task::AbortHandle,
}

impl Harness {
    pub async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        Self::with_url(&url, Some(dir), None).await
    }

    /// A fresh PostgreSQL database, or `None` (with a SKIP line) when
    /// `METALCAST_TEST_PG_URL` is unset.
    pub async fn postgres() -> Option<Harness> {
        let Ok(base) = std::env::var("METALCAST_TEST_PG_URL") else {
            skip("METALCAST_TEST_PG_URL is not set; PostgreSQL variant not run");
            return None;
        };
        sqlx::any::install_default_drivers();
        let admin = sqlx::AnyPool::connect(&base).await.expect("connect METALCAST_TEST_PG_URL");
        let name = format!("mc_t_{}", crate::auth::random_hex(6));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("CREATE DATABASE (role needs CREATEDB)");
        admin.close().await;
        let (prefix, _) = base.rsplit_once('/').expect("database URL with /dbname");
        let url = format!("{prefix}/{name}");
        Some(Self::with_url(&url, None, Some((base, name))).await)
    }

    async fn with_url(url: &str, dir: Option<tempfile::TempDir>, pg: Option<(String, String)>) -> Harness {
        let db = crate::db::connect(url).await.expect("connect test database");
        let signer = metalcast_image::SecretKey::generate();
        let registry_dir = tempfile::tempdir().unwrap();
        let st = AppState::new(db, VlanPool { first: 100, last: 109 })
            .with_registry(crate::registry::Registry::new(registry_dir.path(), vec![signer.public()]))
            .with_provision(crate::app::deployments::Provision {
                addr: Some(std::net::Ipv4Addr::LOCALHOST),
                public_url: Some("http://127.0.0.1:9".into()),
                ..Default::default()
            })
            .with_drivers(std::sync::Arc::new(crate::drivers::mock::Mock))
            .with_market(crate::app::market::MarketConfig {
                tick: std::time::Duration::from_millis(100),
                cleaning_gap_secs: 1,
                fee_bps: 100,
                attempts: 3,
                revoke_timeout: std::time::Duration::from_secs(5),
            });
        let b = crate::app::tokens::bootstrap_admin(&st, "root", Some("rootpw".into())).await.unwrap();
        // Registered as `serve` does: side effects (BMC, switch) are made only by a live replica.
        crate::app::replicas::join(&st).await.unwrap();
        let renewal = renew(&st);
        Harness {
            renewal,
            app: crate::app(st.clone()),
            st,
            admin: Who::Bearer(b.token.token),
            signer,
            registry_dir,
            _dir: dir,
            pg,
        }
    }

    /// The same harness with its provisioning configuration changed by `f`
    /// (before any request ran).
    pub fn with_provision(
        self,
        f: impl FnOnce(crate::app::deployments::Provision) -> crate::app::deployments::Provision,
    ) -> Harness {
        let Harness { app, st, admin, signer, registry_dir, _dir, pg, renewal } = self;
        drop(app);
        let provision = f(st.provision.clone());
        let st = st.with_provision(provision);
        Harness { app: crate::app(st.clone()), st, admin, signer, registry_dir, _dir, pg, renewal }
    }

    /// The same harness with built-in netboot on (`config`), its token key loaded.
    pub async fn with_netboot(self, config: crate::app::netboot::NetbootConfig) -> Harness {
        let Harness { app, st, admin, signer, registry_dir, _dir, pg, renewal } = self;
        drop(app);
        let st = st.with_netboot(config);
        crate::app::netboot::prepare(&st).await.unwrap();
        Harness { app: crate::app(st.clone()), st, admin, signer, registry_dir, _dir, pg, renewal }
    }

    /// Drop the per-test PostgreSQL database.
    /// The database URL (another connection to the same database: a second replica).
    pub fn url(&self) -> String {
        match (&self.pg, &self._dir) {
            (Some((base, name)), _) => format!("{}/{name}", base.rsplit_once('/').expect("URL with /dbname").0),
            (None, Some(dir)) => format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()),
            (None, None) => unreachable!("a harness has a SQLite directory or a PostgreSQL database"),
        }
    }

    pub async fn finish(self) {
        self.st.db.pool.close().await;
        if let Some((base, name)) = self.pg {
            let admin = sqlx::AnyPool::connect(&base).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
        }
    }

    pub async fn raw(&self, method: &str, path: &str, who: &Who, body: Vec<u8>) -> (StatusCode, Value) {
        let (status, bytes) = self.raw_bytes(method, path, who, body).await;
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, v)
    }

    /// Like [`Harness::raw`], returning the response body as bytes.
    pub async fn raw_bytes(&self, method: &str, path: &str, who: &Who, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        Self::raw_on(&self.app, method, path, who, body).await
    }

    /// A call to router `app` (another replica's).
    pub async fn call_on(
        app: &Router,
        method: &str,
        path: &str,
        who: &Who,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let (status, bytes) = Self::raw_on(app, method, path, who, body).await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A GET to router `app` with extra headers; the whole body as text
    /// (within 30 s: an event stream must end by then).
    pub async fn get_text(app: &Router, path: &str, who: &Who, headers: &[(&str, &str)]) -> (StatusCode, String) {
        let mut rb = who.authorize(Request::builder().method("GET").uri(path));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let resp = app.clone().oneshot(rb.body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let body =
            tokio::time::timeout(std::time::Duration::from_secs(30), axum::body::to_bytes(resp.into_body(), 1 << 20))
                .await
                .expect("the response body ended within 30 s")
                .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn raw_on(app: &Router, method: &str, path: &str, who: &Who, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let rb = who.authorize(Request::builder().method(method).uri(path));
        let resp = app.clone().oneshot(rb.body(Body::from(body)).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, bytes.to_vec())
    }

    /// A call with an `Idempotency-Key`; also returns whether the answer was a replay.
    pub async fn keyed(
        &self,
        method: &str,
        path: &str,
        who: &Who,
        key: &str,
        body: Value,
    ) -> (StatusCode, Value, bool) {
        let rb = who.authorize(Request::builder().method(method).uri(path).header("idempotency-key", key));
        let resp = self.app.clone().oneshot(rb.body(Body::from(body.to_string())).unwrap()).await.unwrap();
        let status = resp.status();
        let replayed = resp.headers().get("idempotent-replayed").is_some();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), replayed)
    }

    pub async fn call(&self, method: &str, path: &str, who: &Who, body: Option<Value>) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.raw(method, path, who, body).await
    }

    /// Call as admin and require success.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, &self.admin.clone(), body).await;
        assert!(s.is_success(), "{method} {path} -> {s} {v}");
        v
    }

    /// Create a user in the given projects; returns Basic credentials.
    pub async fn user(&self, name: &str, projects: &[&str]) -> Who {
        self.ok(
            "PUT",
            &format!("/v0/auth/basic/user/{name}"),
            Some(serde_json::json!({"password": format!("{name}-pw")})),
        )
        .await;
        for p in projects {
            self.ok(
                "POST",
                &format!("/v0/auth/basic/user/{name}/add_project"),
                Some(serde_json::json!({"project": p})),
            )
            .await;
        }
        Who::Basic(name.into(), format!("{name}-pw"))
    }

    /// Every row of every table, as text, to prove a request changed nothing.
    pub async fn snapshot(&self) -> Vec<String> {
        let queries = [
            "SELECT name FROM projects ORDER BY 1",
            "SELECT name || ':' || CAST(is_admin AS TEXT) FROM users ORDER BY 1",
            "SELECT user_name || ':' || project FROM user_projects ORDER BY 1",
            "SELECT id || ':' || user_name FROM api_tokens ORDER BY 1",
            "SELECT name || ':' || COALESCE(project, '-') || ':' || obm FROM nodes ORDER BY 1",
            "SELECT node || ':' || label || ':' || value FROM node_metadata ORDER BY 1",
            "SELECT name || ':' || config FROM switches ORDER BY 1",
            "SELECT switch || ':' || name FROM ports ORDER BY 1",
            "SELECT node || ':' || name || ':' || macaddr || ':' || COALESCE(port_switch, '-') || ':' || COALESCE(port_name, '-') FROM nics ORDER BY 1",
            "SELECT name || ':' || COALESCE(owner, '-') || ':' || CAST(vlan AS TEXT) FROM networks ORDER BY 1",
            "SELECT network || ':' || project FROM network_access ORDER BY 1",
            "SELECT node || ':' || nic || ':' || network || ':' || channel FROM attachments ORDER BY 1",
            "SELECT id || ':' || status FROM network_actions ORDER BY 1",
            "SELECT name || ':' || COALESCE(owner, '-') || ':' || visibility FROM images ORDER BY 1",
            "SELECT image || ':' || project FROM image_members ORDER BY 1",
            "SELECT project || ':' || COALESCE(CAST(max_nodes AS TEXT), '-') || ':' || COALESCE(CAST(max_images AS TEXT), '-') FROM quotas ORDER BY 1",
            "SELECT owner_user || ':' || name || ':' || COALESCE(project, '-') FROM keypairs ORDER BY 1",
            "SELECT CAST(id AS TEXT) || ':' || project || ':' || image || ':' || state FROM deployments ORDER BY 1",
            "SELECT CAST(deployment AS TEXT) || ':' || node || ':' || state FROM deployment_nodes ORDER BY 1",
        ];
        let mut out = Vec::new();
        for q in queries {
            for r in sqlx::query(q).fetch_all(&self.st.db.pool).await.unwrap() {
                out.push(format!("{q}: {}", r.try_get::<String, _>(0).unwrap()));
            }
        }
        out
    }

    /// Wait (bounded) until networking action `id` is no longer PENDING;
    /// returns its final status.
    pub async fn wait_action(&self, id: &str) -> String {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let notified = self.st.action_done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (s, v) = self.call("GET", &format!("/v0/networking_action/{id}"), &self.admin.clone(), None).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let status = v["status"].as_str().unwrap().to_string();
            if status != "PENDING" {
                return status;
            }
            tokio::time::timeout_at(deadline, notified).await.expect("networking action did not finish in time");
        }
    }
}

/// Define `mod $name { sqlite, postgres }` tests running scenario `$name`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let h = $crate::tests::Harness::sqlite().await;
                super::$name(&h).await;
                h.finish().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if let Some(h) = $crate::tests::Harness::postgres().await {
                    super::$name(&h).await;
                    h.finish().await;
                }
            }
        }
    };
}

/// Renews `st`'s replica heartbeat every second while the test runs (as
/// `serve`'s heartbeat does, without its reaping, which tests drive
/// themselves), so its lease does not run out in a long test.
pub(crate) fn renew(st: &AppState) -> tokio::task::AbortHandle {
    // The database handle and the id only: the state itself stays unshared until the test shares it.
    let (db, id) = (st.db.clone(), st.replica.id.clone());
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            match crate::db::replicas::heartbeat(&db.writer, db.backend, &id).await {
                Ok(_) => {}
                Err(_) => break, // the test's database is gone
            }
        }
    });
    task.abort_handle()
}
