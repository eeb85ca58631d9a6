//! End-to-end: the `metalcast` binary as a client of an in-process server
//! (bound to 127.0.0.1:0), plus `admin bootstrap` and `completions`, and
//! `image|quota|keypair` against a server with a real image registry.

mod common;

use std::process::{Command, Output};

use metalcast_control_plane::registry::Registry;
use metalcast_control_plane::{AppState, VlanPool, db};
use serde_json::Value;

use common::{metalcast, metalcast_with_stdin};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_against_server() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("cli.db").display());

    // Bootstrap with the binary itself, directly on the database file. A
    // client's credentials in the environment (token and user both) are no
    // concern of a command that talks to no server.
    let out = Command::new(env!("CARGO_BIN_EXE_metalcast"))
        .args(["admin", "bootstrap", "--database-url", &db_url])
        .env("METALCAST_TOKEN", "mct_unused")
        .env("METALCAST_USER", "unused")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let token = text.lines().find_map(|l| l.strip_prefix("token:")).expect("token line").trim().to_string();
    assert!(token.starts_with("mct_"), "{text}");
    // A second bootstrap of the same user fails cleanly.
    let again = Command::new(env!("CARGO_BIN_EXE_metalcast"))
        .args(["admin", "bootstrap", "--database-url", &db_url])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let st = AppState::new(db::connect(&db_url).await.unwrap(), VlanPool::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(metalcast_control_plane::serve(listener, st, async {
        let _ = rx.await;
    }));

    let (u, t) = (url.clone(), token.clone());
    tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| metalcast(&u, &t, args);
        // Create and register commands confirm in one line for humans; -o json prints what it did before.
        let o = run(&["project", "create", "p1"]);
        assert_eq!(stdout(&o), "project p1 created\n", "{o:?}");
        let o = run(&[
            "node",
            "register",
            "n1",
            "--obm",
            r#"{"type":"ipmi","host":"127.0.0.1","user":"u","password":"p"}"#,
        ]);
        assert_eq!(stdout(&o), "node n1 registered\n", "{o:?}");
        let o = run(&["-o", "json", "node", "nic", "add", "n1", "eth0", "52:54:00:12:34:56"]);
        assert_eq!(stdout(&o), "null\n", "{o:?}");
        let o = run(&["node", "list", "free", "--names", "-o", "json"]);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(), serde_json::json!(["n1"]));
        assert_eq!(stdout(&run(&["node", "list", "free", "--names"])), "n1\n");
        assert_eq!(
            stdout(&run(&["node", "list", "free"])),
            "NAME  PROJECT  STATE  LAST DEPLOYMENT  CHECK-IN\nn1    -        free   -                never\n"
        );
        assert!(run(&["project", "node", "add", "p1", "n1"]).status.success());
        // One row per node: its project and state; --long asks the BMC (this one is unreachable: `?`).
        let o = run(&["-o", "json", "node", "list", "--long"]);
        let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            (rows[0]["name"].clone(), rows[0]["project"].clone(), rows[0]["state"].clone(), rows[0]["power"].clone()),
            (serde_json::json!("n1"), serde_json::json!("p1"), serde_json::json!("allocated"), serde_json::json!("?")),
            "{rows}"
        );
        assert_eq!(
            stdout(&run(&["node", "list", "--state", "free"])),
            "NAME  PROJECT  STATE  LAST DEPLOYMENT  CHECK-IN\n"
        );
        assert!(stdout(&run(&["node", "list", "--project", "p1"])).contains("n1    p1       allocated"));
        assert_eq!(run(&["node", "list", "--names", "--long"]).status.code(), Some(2), "--names conflicts with --long");
        // Documented exit codes.
        assert_eq!(run(&["project", "node", "add", "p1", "n1"]).status.code(), Some(6), "409");
        assert_eq!(run(&["node", "show", "ghost"]).status.code(), Some(5), "404");
        assert_eq!(run(&["node", "console", "show", "n1"]).status.code(), Some(5), "no console log yet");
        let rf = r#"{"type":"redfish","url":"http://127.0.0.1:1"}"#;
        assert!(run(&["node", "register", "rf1", "--obm", rf]).status.success());
        let o = run(&["node", "console", "start", "rf1"]);
        assert_eq!(o.status.code(), Some(7), "redfish console capture is 501: {o:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("redfish driver does not capture"), "{o:?}");
        assert_eq!(metalcast(&u, "mct_bad_token", &["project", "list"]).status.code(), Some(4), "401");
        assert_eq!(run(&["node", "register", "x", "--obm", "{"]).status.code(), Some(1), "bad local input");
        let o = run(&["node", "show", "n1"]);
        assert!(stdout(&o).contains("p1"), "{o:?}");
        let o = run(&["network", "create", "net1", "--owner", "p1", "--access", "p1"]);
        assert_eq!(stdout(&o), "network net1 created\n", "{o:?}");
        let o = run(&["network", "list"]);
        assert!(stdout(&o).starts_with("NAME"), "{o:?}");
        // Every switch type the server knows.
        let o = run(&["switch", "register", "up1", "--type", "upstream", "--parent-url", "http://127.0.0.1:1"]);
        assert_eq!(o.status.code(), Some(2), "--parent-project and --parent-node are required: {o:?}");
        let up = ["--parent-url", "http://127.0.0.1:1", "--parent-project", "pa", "--parent-node", "n9"];
        let o = run(&[&["switch", "register", "up1", "--type", "upstream"][..], &up].concat());
        assert_eq!(stdout(&o), "switch up1 registered\n", "{o:?}");
        let o = run(&["switch", "register", "vb1", "--type", "linux-vlan-bridges", "--netns", "mcnoexist9"]);
        assert_eq!(o.status.code(), Some(7), "{o:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("\"mcnoexist9\" does not exist"), "{o:?}");
        // linux-bridge stays the default type; its bridge must exist.
        let o = run(&["switch", "register", "br1", "--bridge", "mcnobr9"]);
        assert_eq!(o.status.code(), Some(7), "{o:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("bridge \"mcnobr9\" does not exist"), "{o:?}");
        // connect --wait: polls the action until it is no longer PENDING. The
        // parent of switch up1 does not answer, so the switch change ends in ERROR (exit 1).
        assert!(run(&["switch", "port", "add", "up1", "mcnoport9"]).status.success());
        assert!(run(&["switch", "port", "connect", "up1", "mcnoport9", "n1", "eth0"]).status.success());
        let o = run(&["node", "connect", "n1", "eth0", "net1", "--wait", "--timeout", "30"]);
        let err = String::from_utf8_lossy(&o.stderr);
        match o.status.code() {
            Some(0) => assert!(stdout(&o).contains("done: nic eth0 of node n1 on network net1"), "{o:?}"),
            _ => assert!(o.status.code() == Some(1) && err.contains("ended in ERROR"), "{o:?}"),
        }
        assert_eq!(
            run(&["node", "detach", "n1", "eth0", "net1", "--timeout", "5"]).status.code(),
            Some(2),
            "--timeout needs --wait"
        );
        let o = run(&["whoami", "-o", "json"]);
        assert!(stdout(&o).contains("\"admin\": true"), "{o:?}");
        let o = run(&["completions", "bash"]);
        assert!(o.status.success() && stdout(&o).contains("metalcast"));

        // Credentials: a flag beats the environment; mixing a token and a user is refused.
        // The new user's password: on stdin for scripts; never needed on argv.
        let o = metalcast_with_stdin(&u, &t, &["user", "create", "alice", "--password-stdin"], "alicepw\n");
        assert_eq!(stdout(&o), "user alice created\n", "{o:?}");
        let o = run(&["user", "list"]);
        assert!(stdout(&o).lines().any(|l| l.starts_with("alice") && l.contains("false")), "{o:?}");
        let o = run(&["user", "set-admin", "alice", "yes"]);
        assert_eq!(stdout(&o), "user alice is now an administrator\n", "{o:?}");
        let o = run(&["user", "show", "alice", "-o", "json"]);
        assert!(stdout(&o).contains("\"is_admin\": true"), "{o:?}");
        run(&["user", "set-admin", "alice", "no"]);
        let o = run(&["user", "show", "nobody"]);
        assert_eq!(o.status.code(), Some(5), "{o:?}");
        let o = run(&["user", "create", "carol"]);
        assert_eq!(o.status.code(), Some(1), "no terminal to ask on: {o:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("--password-stdin"), "{o:?}");
        let o = run(&["user", "create", "carol", "--new-password", "carolpw"]);
        assert!(o.status.success(), "{o:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("deprecated"), "{o:?}");
        let o = run(&["--user", "alice", "--password", "alicepw", "whoami", "-o", "json"]);
        assert!(stdout(&o).contains("\"user\": \"alice\""), "the exported admin token won over --user: {o:?}");
        let o = run(&["--user", "alice", "--password", "wrong", "whoami"]);
        assert_eq!(o.status.code(), Some(4), "a wrong password must not fall back to the token: {o:?}");
        let o = run(&["--user", "alice", "--password", "alicepw", "--token", &t, "whoami"]);
        assert_eq!(o.status.code(), Some(2), "{o:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("not both"), "{o:?}");
        let both_env = Command::new(env!("CARGO_BIN_EXE_metalcast"))
            .args(["whoami"])
            .env("METALCAST_URL", &u)
            .env("METALCAST_TOKEN", &t)
            .env("METALCAST_USER", "alice")
            .env("METALCAST_PASSWORD", "alicepw")
            .output()
            .unwrap();
        assert_eq!(both_env.status.code(), Some(2), "{both_env:?}");
        assert!(String::from_utf8_lossy(&both_env.stderr).contains("unset one"), "{both_env:?}");
    })
    .await
    .unwrap();

    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    // Server gone: exit code 3.
    let (u, t) = (url.clone(), token.clone());
    let code =
        tokio::task::spawn_blocking(move || metalcast(&u, &t, &["project", "list"]).status.code()).await.unwrap();
    assert_eq!(code, Some(3));
}

/// `serve_tls` with a self-signed certificate (made by the `openssl` CLI);
/// the CLI trusts it through `--ca-cert`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_and_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    // A throw-away CA and a server certificate for 127.0.0.1 signed by it.
    let d = dir.path();
    std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let steps: Vec<Vec<String>> = vec![
        [
            &["req", "-x509"][..],
            &ec,
            &["-subj", "/CN=metalcast-test-ca", "-days", "1", "-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
        [&["req"][..], &ec, &["-subj", "/CN=127.0.0.1", "-keyout", "key.pem", "-out", "leaf.csr"]].concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(String::from).collect())
    .collect();
    for args in steps {
        match Command::new("openssl").args(&args).current_dir(d).output() {
            Ok(o) if o.status.success() => {}
            other => {
                let reason = format!("tls_server_and_cli needs the openssl CLI to make test certificates: {other:?}");
                if std::env::var("METALCAST_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1") {
                    panic!("{reason}, but METALCAST_REQUIRE_PRIVILEGED=1 requires this test to run");
                }
                eprintln!("SKIP: {reason}");
                return;
            }
        }
    }
    let ca = d.join("ca.pem");
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("tls.db").display());
    let st = AppState::new(db::connect(&db_url).await.unwrap(), VlanPool::default());
    let b = metalcast_control_plane::app::tokens::bootstrap_admin(&st, "admin", None).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(metalcast_control_plane::serve_tls(
        listener,
        st,
        async {
            let _ = rx.await;
        },
        cert.clone(),
        key.clone(),
    ));
    let token = b.token.token.clone();
    tokio::task::spawn_blocking(move || {
        let https = format!("https://127.0.0.1:{port}");
        let ca = ca.to_str().unwrap().to_string();
        let o = metalcast(&https, &token, &["--ca-cert", &ca, "whoami", "-o", "json"]);
        assert!(o.status.success(), "{o:?}");
        assert!(stdout(&o).contains("\"user\": \"admin\""), "{o:?}");
        // Without trusting the certificate the handshake fails (exit 3).
        let o = metalcast(&https, &token, &["whoami"]);
        assert_eq!(o.status.code(), Some(3), "{o:?}");
        // Plain HTTP to the TLS port fails too.
        let o = metalcast(&format!("http://127.0.0.1:{port}"), &token, &["whoami"]);
        assert_ne!(o.status.code(), Some(0), "{o:?}");
    })
    .await
    .unwrap();
    tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(40), server).await.unwrap().unwrap().unwrap();
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{o:?}");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_quota_keypair_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("cli.db").display());
    let key = metalcast_image::SecretKey::generate();
    let reg = Registry::new(dir.path().join("data"), vec![key.public()]);
    reg.ensure_dirs().unwrap();
    let st = AppState::new(db::connect(&db_url).await.unwrap(), VlanPool::default()).with_registry(reg);
    let token = metalcast_control_plane::app::tokens::bootstrap_admin(&st, "root", None).await.unwrap().token.token;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(metalcast_control_plane::serve(listener, st, async {
        let _ = rx.await;
    }));

    let path = common::bundle(dir.path(), &key, "cli", 3 << 20);
    let d = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| metalcast(&url, &token, args);
        let bundle = path.to_str().unwrap();
        assert!(run(&["project", "create", "p1"]).status.success());
        let up = json(&run(&["-o", "json", "image", "upload", "deb", bundle, "--project", "p1"]));
        assert_eq!(up["visibility"], "private");
        assert_eq!(up["stored_bytes"], std::fs::metadata(&path).unwrap().len());
        let list = json(&run(&["-o", "json", "image", "list"]));
        assert_eq!(list[0]["name"], "deb");
        // Uploading the same name again: 409 -> exit code 6.
        assert_eq!(run(&["image", "upload", "deb", bundle, "--project", "p1"]).status.code(), Some(6));
        // A missing local file is bad local input (exit 1), not a server error.
        assert_eq!(run(&["image", "upload", "x", "/nonexistent.mcb"]).status.code(), Some(1));

        let m = d.join("deb.manifest");
        assert!(run(&["image", "manifest", "deb", m.to_str().unwrap()]).status.success());
        let sm = metalcast_image::SignedManifest::from_bytes(&std::fs::read(&m).unwrap()).unwrap();
        assert_eq!(sm.manifest.root_hash, up["root_hash"].as_str().unwrap());

        let q = json(&run(&["-o", "json", "quota", "set", "p1", "--max-images", "1", "--max-image-mib", "10"]));
        assert_eq!(q["max_image_bytes"], 10 << 20);
        let u = json(&run(&["-o", "json", "quota", "show", "p1"]));
        assert_eq!((u["images"].as_i64(), u["quota"]["max_images"].as_i64()), (Some(1), Some(1)));
        let o = run(&["image", "upload", "deb2", bundle, "--project", "p1"]);
        assert!(String::from_utf8_lossy(&o.stderr).contains("quota exceeded"), "{o:?}");
        // Below what p1 uses (1 image): refused with the way out, then forced.
        let o = run(&["quota", "set", "p1", "--max-images", "0"]);
        assert_eq!(o.status.code(), Some(6), "{o:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("max_images 0 < 1 images owned"), "{o:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("--force"), "{o:?}");
        assert!(run(&["quota", "set", "p1", "--max-images", "0", "--force"]).status.success());
        assert!(run(&["quota", "set", "p1", "--max-images", "1", "--max-image-mib", "10"]).status.success());

        let pubkey = d.join("id.pub");
        std::fs::write(
            &pubkey,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDo+XGOeX+3vjzikf9qkLbyd736n0DaIyWea5yDqgTHb me@host\n",
        )
        .unwrap();
        let k = json(&run(&["-o", "json", "keypair", "add", "laptop", pubkey.to_str().unwrap()]));
        assert_eq!(k["fingerprint"], "SHA256:SYh/06k3mCTHwvvgLzGC4I2R8RYnBiy9B9lPsjv94wo");
        assert!(run(&["keypair", "delete", "laptop"]).status.success());
        assert!(run(&["image", "delete", "deb"]).status.success());
        assert!(json(&run(&["-o", "json", "image", "list"])).as_array().unwrap().is_empty());
    })
    .await
    .unwrap();
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// A reader that goes away (`metalcast completions bash | head -1`) ends
/// the command quietly with exit code 0, not with a panic (exit 101).
#[test]
fn closed_stdout_is_not_a_panic() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_metalcast"))
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the only read end before the script is written: every write fails with EPIPE.
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Answers the first connection to `listener` with `response` (raw HTTP,
/// then the connection is closed), after which nothing listens any more;
/// returns the request line.
async fn answer_once(listener: tokio::net::TcpListener, response: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut s, _) = listener.accept().await.unwrap();
    drop(listener);
    let mut buf = vec![0u8; 8192];
    let n = s.read(&mut buf).await.unwrap();
    s.write_all(response).await.unwrap();
    s.flush().await.unwrap();
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string()
}

/// A deployment's event stream cut before its end (and the server gone):
/// exit code 3, as documented for a server that cannot be reached, and the
/// command that reattaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_event_stream_exits_3_and_names_deploy_watch() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Headers and one chunk (an SSE comment), then the connection closes mid-body.
    let cut: &[u8] =
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n6\r\n: hi\n\n\r\n";
    let server = tokio::spawn(answer_once(listener, cut));
    let o = tokio::task::spawn_blocking(move || metalcast(&url, "mct_x", &["deploy", "watch", "9"])).await.unwrap();
    assert_eq!(server.await.unwrap(), "GET /v1/deployments/9/events HTTP/1.1");
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("`metalcast deploy watch 9`"), "{o:?}");
}

/// `deploy --no-wait` for humans: the id and how to follow it; `-o json`:
/// the deployment as the server answered it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_no_wait_says_how_to_follow() {
    const CREATED: &[u8] = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 151\r\nconnection: close\r\n\r\n{\"id\":9,\"project\":\"p1\",\"image\":\"deb\",\"state\":\"running\",\"session\":null,\"summary\":null,\"created_by\":\"admin\",\"created_at\":0,\"finished_at\":null,\"nodes\":[]}";
    for (args, expect) in [
        (&["deploy", "--image", "deb", "--project", "p1", "--no-wait"][..], None),
        (&["-o", "json", "deploy", "--image", "deb", "--project", "p1", "--no-wait"], Some(9)),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(answer_once(listener, CREATED));
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let o = tokio::task::spawn_blocking(move || {
            metalcast(&url, "mct_x", &args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .unwrap();
        assert_eq!(server.await.unwrap(), "POST /v1/deployments HTTP/1.1");
        match expect {
            None => {
                assert_eq!(stdout(&o), "deployment 9 created; follow it with `metalcast deploy watch 9`\n", "{o:?}")
            }
            Some(id) => assert_eq!(json(&o)["id"], id),
        }
    }
}
