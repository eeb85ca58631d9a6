//! Image registry, quotas and keypairs, on both database backends.

use axum::http::StatusCode;
use serde_json::json;

use super::{Harness, Who};
use crate::both_backends;

/// Build a small signed bundle (kernel + initrd parts from random bytes).
pub(super) fn bundle(key: Option<&metalcast_image::SecretKey>, seed: u8) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinuz");
    let initrd = dir.path().join("initrd");
    let mut x = 0x9e37_79b9_u32 ^ u32::from(seed);
    let mut noise = |n: usize| {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect::<Vec<u8>>()
    };
    std::fs::write(&kernel, noise(300_000)).unwrap();
    std::fs::write(&initrd, noise(200_000)).unwrap();
    let spec = metalcast_image::spec_from_inputs(
        &format!("img{seed}"),
        Some(kernel),
        vec![initrd],
        "console=ttyS0".into(),
        None,
        None,
        None,
    )
    .unwrap();
    let out = dir.path().join("b.mcb");
    metalcast_image::build(&spec, &out, key, &indicatif::ProgressBar::hidden()).unwrap();
    std::fs::read(out).unwrap()
}

async fn upload(h: &Harness, who: &Who, name: &str, query: &str, body: Vec<u8>) -> (StatusCode, serde_json::Value) {
    h.raw("PUT", &format!("/v1/images/{name}{query}"), who, body).await
}

/// Files in the registry's image directory (bundles and leftover uploads).
fn registry_files(h: &Harness) -> Vec<String> {
    let dir = h.registry_dir.path().join("images");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

async fn images(h: &Harness) {
    h.ok("PUT", "/v0/project/pa", None).await;
    h.ok("PUT", "/v0/project/pb", None).await;
    let alice = h.user("alice", &["pa"]).await;
    let bob = h.user("bob", &["pb"]).await;
    let good = bundle(Some(&h.signer), 1);

    // Bad uploads: each refused with a reason, nothing stored, nothing in the database.
    let before = h.snapshot().await;
    let other_key = metalcast_image::SecretKey::generate();
    let mut corrupt = good.clone();
    let mid = corrupt.len() / 3; // inside the first part's chunk data
    corrupt[mid] ^= 0x40;
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        ("unsigned", bundle(None, 2), StatusCode::UNPROCESSABLE_ENTITY, "signature"),
        ("untrusted", bundle(Some(&other_key), 3), StatusCode::UNPROCESSABLE_ENTITY, "signature"),
        ("corrupt", corrupt, StatusCode::UNPROCESSABLE_ENTITY, "corrupt"),
        ("garbage", b"not a bundle".to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "not a valid image bundle"),
        ("truncated", good[..good.len() / 2].to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "bundle"),
    ];
    for (name, body, want, msg) in cases {
        let (s, v) = upload(h, &alice, name, "?project=pa", body).await;
        assert_eq!(s, want, "{name}: {v}");
        assert!(v["msg"].as_str().unwrap().contains(msg), "{name}: {v}");
    }
    let (s, v) = upload(h, &alice, "x", "?project=pb", good.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "upload into another project: {v}");
    let (s, v) = upload(h, &alice, "x", "?project=pa&visibility=public", good.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only admins publish: {v}");
    let (s, v) = upload(h, &alice, "x", "?project=pa&colour=red", good.clone()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "unknown query field: {v}");
    let (s, v) = upload(h, &alice, "bad%20name", "?project=pa", good.clone()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(h.snapshot().await, before, "refused uploads changed the database");
    assert!(registry_files(h).is_empty(), "refused uploads left files: {:?}", registry_files(h));

    // A good private upload.
    let (s, v) = upload(h, &alice, "deb12", "?project=pa", good.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["visibility"], "private");
    assert_eq!(v["stored_bytes"], good.len());
    assert_eq!(v["signer"], h.signer.public().to_hex());
    assert_eq!(registry_files(h), ["deb12.mcb"]);
    let (s, _) = upload(h, &alice, "deb12", "?project=pa", good.clone()).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Visibility: owner and admin see it; another project and anonymous do not.
    let names = |v: serde_json::Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names(h.call("GET", "/v1/images", &alice, None).await.1), ["deb12"]);
    assert_eq!(names(h.ok("GET", "/v1/images", None).await), ["deb12"]);
    assert!(names(h.call("GET", "/v1/images", &bob, None).await.1).is_empty());
    assert_eq!(h.call("GET", "/v1/images/deb12", &bob, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(h.call("GET", "/v1/images", &Who::Anon, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(h.call("DELETE", "/v1/images/deb12", &bob, None).await.0, StatusCode::NOT_FOUND);

    // The manifest nodes get verifies under the signer's key.
    let (s, bytes) = h.raw_bytes("GET", "/v1/images/deb12/manifest", &alice, Vec::new()).await;
    assert_eq!(s, StatusCode::OK);
    let sm = metalcast_image::SignedManifest::from_bytes(&bytes).expect("a signed manifest");
    sm.verify_signature(&[h.signer.public()], false).expect("signed by the trusted key");

    // Sharing.
    let (s, _) = h.call("PUT", "/v1/images/deb12/members/pb", &alice, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "sharing needs visibility shared");
    let (s, _) = h.call("PUT", "/v1/images/deb12/visibility", &alice, Some(json!({"visibility": "shared"}))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h.call("PUT", "/v1/images/deb12/members/pb", &alice, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = h.call("GET", "/v1/images/deb12", &bob, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["members"].as_array().unwrap().is_empty(), "members are the owner's business: {v}");
    assert_eq!(h.call("DELETE", "/v1/images/deb12", &bob, None).await.0, StatusCode::FORBIDDEN);
    let (s, _) = h.call("PUT", "/v1/images/deb12/visibility", &alice, Some(json!({"visibility": "public"}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = h.call("DELETE", "/v1/images/deb12/members/pb", &alice, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h.call("GET", "/v1/images/deb12", &bob, None).await.0, StatusCode::NOT_FOUND);

    // Admin images are public by default.
    let (s, v) = upload(h, &h.admin, "base", "", bundle(Some(&h.signer), 4)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["visibility"], "public");
    assert_eq!(names(h.call("GET", "/v1/images", &bob, None).await.1), ["base"]);

    // Quotas: one image for pa, enforced; usage visible to members; set by admins only.
    let (s, _) = h.call("PUT", "/v1/projects/pa/quota", &alice, Some(json!({"max_images": 5}))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = h.call("PUT", "/v1/projects/pa/quota", &h.admin, Some(json!({"max_images": -1}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    h.ok("PUT", "/v1/projects/pa/quota", Some(json!({"max_images": 1}))).await;
    let (s, v) = upload(h, &alice, "second", "?project=pa", bundle(Some(&h.signer), 5)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("quota exceeded"), "{v}");
    assert_eq!(registry_files(h), ["base.mcb", "deb12.mcb"], "an over-quota upload left a file");
    let (s, v) = h.call("GET", "/v1/projects/pa/quota", &alice, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((v["images"].clone(), v["image_bytes"].clone()), (json!(1), json!(good.len())));
    assert_eq!(h.call("GET", "/v1/projects/pa/quota", &bob, None).await.0, StatusCode::FORBIDDEN);
    h.ok("PUT", "/v1/projects/pa/quota", Some(json!({"max_image_bytes": good.len() + 10}))).await;
    let (s, v) = upload(h, &alice, "second", "?project=pa", bundle(Some(&h.signer), 5)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "byte quota: {v}");
    // A declared length over the quota is refused before a byte is read: this body never ends.
    let req = alice
        .authorize(
            axum::http::Request::builder()
                .method("PUT")
                .uri("/v1/images/third?project=pa")
                .header("content-length", "1000000"),
        )
        .body(axum::body::Body::from_stream(futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>()))
        .unwrap();
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), tower::ServiceExt::oneshot(h.app.clone(), req))
        .await
        .expect("refused without reading the body")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let v: serde_json::Value =
        serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap()).unwrap();
    assert!(v["msg"].as_str().unwrap().contains("exceed its limit"), "{v}");
    // Without a declared length, the upload stops as soon as it passes what the quota has left.
    let endless = futures_util::stream::iter(std::iter::repeat_with(|| Ok::<_, std::io::Error>(vec![0u8; 4096])));
    let req = alice
        .authorize(axum::http::Request::builder().method("PUT").uri("/v1/images/third?project=pa"))
        .body(axum::body::Body::from_stream(endless))
        .unwrap();
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), tower::ServiceExt::oneshot(h.app.clone(), req))
        .await
        .expect("stopped at the quota")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(registry_files(h), ["base.mcb", "deb12.mcb"], "a refused upload left a file");

    // A project with images cannot be deleted; after deleting them it can.
    assert_eq!(h.call("DELETE", "/v0/project/pa", &h.admin, None).await.0, StatusCode::CONFLICT);
    let (s, _) = h.call("DELETE", "/v1/images/deb12", &alice, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(registry_files(h), ["base.mcb"]);
    h.ok("POST", "/v0/auth/basic/user/alice/remove_project", Some(json!({"project": "pa"}))).await;
    h.ok("DELETE", "/v0/project/pa", None).await;
}
both_backends!(images);

/// Projects racing for free nodes never exceed their node quota.
async fn node_quota_race(h: &Harness) {
    h.ok("PUT", "/v0/project/pa", None).await;
    let alice = h.user("alice", &["pa"]).await;
    h.ok("PUT", "/v1/projects/pa/quota", Some(json!({"max_nodes": 2}))).await;
    for i in 0..6 {
        h.ok("PUT", &format!("/v0/node/q{i}"), Some(json!({ "obm": crate::drivers::mock::obm(&format!("q{i}")) })))
            .await;
    }
    let calls: Vec<_> = (0..6)
        .map(|i| h.call("POST", "/v0/project/pa/connect_node", &alice, Some(json!({ "node": format!("q{i}") }))))
        .collect();
    let results = super::api::futures_join_all(calls).await;
    let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(ok, 2, "{results:?}");
    for (s, v) in &results {
        if *s != StatusCode::OK {
            assert_eq!(*s, StatusCode::FORBIDDEN, "{v}");
            assert!(v["msg"].as_str().unwrap().contains("quota exceeded"), "{v}");
        }
    }
    let held = h.ok("GET", "/v0/project/pa/nodes", None).await;
    assert_eq!(held.as_array().unwrap().len(), 2, "{held}");

    // Lowering the limit below the 2 nodes held is refused, naming the use; with force it is set.
    let (s, v) = h.call("PUT", "/v1/projects/pa/quota", &h.admin, Some(json!({"max_nodes": 1}))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("max_nodes 1 < 2 nodes held"), "{v}");
    assert_eq!(
        h.ok("GET", "/v1/projects/pa/quota", None).await["quota"]["max_nodes"],
        2,
        "a refused set changes nothing"
    );
    h.ok("PUT", "/v1/projects/pa/quota?force=true", Some(json!({"max_nodes": 1}))).await;
    // Already below: changing another limit does not need force again; nothing was taken away.
    h.ok("PUT", "/v1/projects/pa/quota", Some(json!({"max_nodes": 1, "max_images": 3}))).await;
    assert_eq!(h.ok("GET", "/v0/project/pa/nodes", None).await.as_array().unwrap().len(), 2);
    let (s, v) = h.call("PUT", "/v1/projects/pa/quota?force=maybe", &h.admin, Some(json!({"max_nodes": 0}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}
both_backends!(node_quota_race);

async fn keypairs(h: &Harness) {
    h.ok("PUT", "/v0/project/pa", None).await;
    let alice = h.user("alice", &["pa"]).await;
    let carol = h.user("carol", &["pa"]).await;
    let bob = h.user("bob", &[]).await;
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDo+XGOeX+3vjzikf9qkLbyd736n0DaIyWea5yDqgTHb laptop";
    let before = h.snapshot().await;
    for (body, want) in [
        (json!({"name": "k", "public_key": "ssh-ed25519 !!!"}), StatusCode::BAD_REQUEST),
        (json!({"name": "k", "public_key": key, "extra": 1}), StatusCode::BAD_REQUEST),
        (json!({"name": "k/1", "public_key": key}), StatusCode::BAD_REQUEST),
        (json!({"name": "k", "public_key": key, "project": "pb"}), StatusCode::FORBIDDEN),
    ] {
        let (s, v) = h.call("POST", "/v1/keypairs", &alice, Some(body.clone())).await;
        assert_eq!(s, want, "{body}: {v}");
    }
    assert_eq!(h.call("POST", "/v1/keypairs", &Who::Anon, Some(json!({"name": "k", "public_key": key}))).await.0, {
        StatusCode::UNAUTHORIZED
    });
    assert_eq!(h.snapshot().await, before);

    let (s, v) =
        h.call("POST", "/v1/keypairs", &alice, Some(json!({"name": "k", "public_key": key, "project": "pa"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["fingerprint"], "SHA256:SYh/06k3mCTHwvvgLzGC4I2R8RYnBiy9B9lPsjv94wo");
    let (s, _) = h.call("POST", "/v1/keypairs", &alice, Some(json!({"name": "k", "public_key": key}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let count = |v: serde_json::Value| v.as_array().unwrap().len();
    assert_eq!(count(h.call("GET", "/v1/keypairs", &carol, None).await.1), 1, "shared with carol's project");
    assert_eq!(count(h.call("GET", "/v1/keypairs", &bob, None).await.1), 0);
    assert_eq!(h.call("DELETE", "/v1/keypairs/k", &carol, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(h.call("DELETE", "/v1/keypairs/k", &alice, None).await.0, StatusCode::OK);
    assert_eq!(count(h.call("GET", "/v1/keypairs", &carol, None).await.1), 0);
}
both_backends!(keypairs);
