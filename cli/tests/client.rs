//! The typed client of `metalcast-operator-api` against a real server (in
//! process, SQLite, bound to 127.0.0.1:0): credentials, typed answers that
//! encode back to exactly what the server sent, and the error mapping.

use metalcast_control_plane::{AppState, VlanPool, db};
use metalcast_operator_api::v0::{NetworkCreate, NodeFilter, NodeRegister, UserCreate};
use metalcast_operator_api::v1::Quota;
use metalcast_operator_api::{Auth, Client, Error};
use serde_json::{Value, json};

/// A typed answer encodes to the JSON the server sends for `path`.
async fn same_as_raw<T: serde::Serialize>(c: &Client, typed: &T, path: &str) {
    let raw = c.get_value(path).await.expect(path);
    assert_eq!(serde_json::to_value(typed).unwrap(), raw, "{path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_client_against_server() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("client.db").display());
    let st = AppState::new(db::connect(&db_url).await.unwrap(), VlanPool { first: 100, last: 199 });
    let admin_token = metalcast_control_plane::app::tokens::bootstrap_admin(&st, "admin", Some("adminpw".into()))
        .await
        .unwrap()
        .token
        .token;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(metalcast_control_plane::serve(listener, st, async {
        let _ = rx.await;
    }));

    let admin = Client::new(&url, Auth::Bearer(admin_token)).unwrap();
    assert_eq!(admin.health().await.unwrap().status, "ok");
    let me = admin.whoami().await.unwrap();
    assert_eq!((me.user.as_str(), me.admin), ("admin", true));
    let basic = Client::new(&url, Auth::Basic { user: "admin".into(), password: Some("adminpw".into()) }).unwrap();
    assert_eq!(basic.whoami().await.unwrap().user, "admin");

    // Errors: status and the server's {"type", "msg"}.
    match Client::new(&url, Auth::None).unwrap().projects().await {
        Err(Error::Api { status: 401, body }) => assert_eq!(body.kind, "AuthorizationError"),
        other => panic!("anonymous project list: {other:?}"),
    }
    admin.project_create("p1").await.unwrap();
    match admin.project_create("p1").await {
        Err(Error::Api { status: 409, body }) => {
            assert_eq!((body.kind.as_str(), body.msg.as_str()), ("DuplicateError", "project \"p1\" already exists"))
        }
        other => panic!("second create: {other:?}"),
    }
    let e = admin.node("ghost").await.unwrap_err();
    assert_eq!(e.status(), Some(404));
    assert_eq!(e.body().map(|b| b.kind.as_str()), Some("NotFoundError"));
    // A name with a '/' stays one segment: the server names it, no other route answers.
    let e = admin.node("a/b").await.unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    assert!(e.to_string().contains("a/b"), "{e}");

    // Typed answers are lossless, including the admin-only null NIC ports.
    let obm = json!({"type": "ipmi", "host": "127.0.0.1", "user": "u", "password": "p"});
    admin
        .node_register("n1", &NodeRegister { obm, metadata: [("rack".to_string(), json!("r1"))].into() })
        .await
        .unwrap();
    admin.nic_register("n1", "eth0", "52:54:00:12:34:56").await.unwrap();
    admin.project_connect_node("p1", "n1").await.unwrap();
    let n1 = admin.node("n1").await.unwrap();
    assert_eq!(n1.nics[0].port, Some(None), "admins see an unwired NIC's port as null");
    assert_eq!(n1.metadata["rack"], "\"r1\"");
    same_as_raw(&admin, &n1, "/v0/node/n1").await;
    assert_eq!(admin.project_nodes("p1").await.unwrap(), ["n1"]);
    assert!(admin.nodes(NodeFilter::Free).await.unwrap().is_empty());

    admin.user_create("alice", &UserCreate { password: "pw".into(), is_admin: false }).await.unwrap();
    admin.user_add_project("alice", "p1").await.unwrap();
    let alice = Client::new(&url, Auth::Basic { user: "alice".into(), password: Some("pw".into()) }).unwrap();
    let token = alice.token_create("t").await.unwrap();
    let alice = Client::new(&url, Auth::Bearer(token.token)).unwrap();
    let seen = alice.node("n1").await.unwrap();
    assert_eq!(seen.nics[0].port, None, "members do not see ports");
    same_as_raw(&alice, &seen, "/v0/node/n1").await;
    assert_eq!(alice.tokens().await.unwrap().len(), 1);

    let net = NetworkCreate { owner: "p1".into(), access: "p1".into(), net_id: String::new() };
    alice.network_create("net1", &net).await.unwrap();
    let view = alice.network("net1").await.unwrap();
    assert_eq!(view.owner, "p1");
    same_as_raw(&alice, &view, "/v0/network/net1").await;
    let all = admin.networks().await.unwrap();
    assert_eq!(all["net1"].projects.as_deref(), Some(&["p1".to_string()][..]));
    same_as_raw(&admin, &all, "/v0/networks").await;

    let q = admin.quota_set("p1", &Quota { max_nodes: Some(3), ..Quota::default() }, false).await.unwrap();
    assert_eq!(q.max_nodes, Some(3));
    let usage = alice.quota("p1").await.unwrap();
    assert_eq!((usage.nodes, usage.quota.max_nodes), (1, Some(3)));
    same_as_raw(&alice, &usage, "/v1/projects/p1/quota").await;
    assert_eq!(alice.events(Some("n1")).await.unwrap(), []);
    assert_eq!(alice.get_value("/v1/events").await.unwrap(), Value::Array(Vec::new()));

    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    let e = admin.projects().await.unwrap_err();
    assert!(e.is_connect(), "server gone: {e}");
}
