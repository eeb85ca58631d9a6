//! End-to-end: `metalcast image|quota|keypair` against an in-process server
//! with a real image registry directory and trusted key.

use std::process::{Command, Output};

use metalcast_control_plane::registry::Registry;
use metalcast_control_plane::{AppState, VlanPool, db};
use serde_json::Value;

fn metalcast(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metalcast"))
        .args(args)
        .env("METALCAST_URL", url)
        .env("METALCAST_TOKEN", token)
        .env_remove("METALCAST_USER")
        .env_remove("METALCAST_PASSWORD")
        .output()
        .expect("run metalcast")
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{o:?}");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {o:?}"))
}

/// A signed bundle of `len` pseudo-random kernel bytes.
fn bundle(dir: &std::path::Path, key: &metalcast_image::SecretKey, len: usize) -> std::path::PathBuf {
    let kernel = dir.join("vmlinuz");
    let mut x = 0x1234_5678_u64;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect();
    std::fs::write(&kernel, data).unwrap();
    let spec = metalcast_image::spec_from_inputs("cli", Some(kernel), vec![], String::new(), None, None, None).unwrap();
    let out = dir.join("cli.mcb");
    metalcast_image::build(&spec, &out, Some(key), &indicatif::ProgressBar::hidden()).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_quota_keypair_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("cli.db").display());
    let key = metalcast_image::SecretKey::generate();
    let reg = Registry::new(dir.path().join("data"), vec![key.public()]);
    reg.ensure_dirs().unwrap();
    let st = AppState::new(db::connect(&db_url).await.unwrap(), VlanPool::default()).with_registry(reg);
    let token = metalcast_control_plane::bootstrap::bootstrap_admin(&st, "root", None).await.unwrap().token.token;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(metalcast_control_plane::serve(listener, st, async {
        let _ = rx.await;
    }));

    let path = bundle(dir.path(), &key, 3 << 20);
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
