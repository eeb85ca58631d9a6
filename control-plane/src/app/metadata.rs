//! The metadata service deployed systems read: cloud-init NoCloud over HTTP.
//!
//! Every node of a deployment gets its own random token, put on its kernel
//! command line as `ds=nocloud;s=<public-url>/v1/metadata/<token>/` and
//! nowhere else. `GET .../meta-data`, `.../user-data` and `.../vendor-data`
//! answer for that node only: the token names exactly one (deployment, node)
//! pair, and it stops working once the node has left the deployment's
//! project (reclaim) or a newer deployment replaced it. An unknown or revoked
//! token is a plain 404, so tokens cannot be probed for other nodes' data.
//! A node's first `meta-data` fetch also tells the deployment that the new
//! system is up.

use super::AppState;
use super::error::{Error, Result};
use crate::db;

/// What the token resolves to.
#[derive(Debug)]
pub(crate) struct Seed {
    deployment: i64,
    node: String,
    user_data: String,
    ssh_keys: Vec<String>,
}

fn not_found() -> Error {
    Error::NotFound("no such metadata".into())
}

async fn resolve(st: &AppState, token: &str) -> Result<Seed> {
    if token.len() != 48 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let r = db::metadata::resolve(&st.db.pool, token).await?.ok_or_else(not_found)?;
    Ok(Seed {
        deployment: r.deployment,
        node: r.node,
        user_data: r.user_data.unwrap_or_default(),
        ssh_keys: r.ssh_keys.unwrap_or_default().lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect(),
    })
}

/// The text of NoCloud `item` (`meta-data`, `user-data`, `vendor-data`)
/// for the node `token` names; no credentials but the token itself.
pub async fn item(st: &AppState, token: &str, item: &str) -> Result<String> {
    let seed = resolve(st, token).await?;
    Ok(match item {
        "meta-data" => {
            // Stored, so the replica following the deployment sees it wherever the fetch landed.
            db::metadata::note_fetch(&st.db.writer, st.db.backend, seed.deployment, &seed.node).await?;
            st.deploys.metadata_fetched.notify_waiters();
            meta_data(&seed)
        }
        "user-data" if seed.user_data.is_empty() => "#cloud-config\n{}\n".to_owned(),
        "user-data" => seed.user_data,
        "vendor-data" => String::new(),
        _ => return Err(not_found()),
    })
}

/// NoCloud `meta-data` (YAML; strings written as JSON strings, which YAML reads as-is).
fn meta_data(s: &Seed) -> String {
    let q = |v: &str| serde_json::Value::from(v).to_string();
    let mut out = format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        q(&format!("metalcast-{}-{}", s.deployment, s.node)),
        q(&s.node)
    );
    if !s.ssh_keys.is_empty() {
        out.push_str("public-keys:\n");
        for k in &s.ssh_keys {
            out.push_str(&format!("  - {}\n", q(k)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_data_quotes_everything() {
        let s = Seed {
            deployment: 7,
            node: "n1".into(),
            user_data: String::new(),
            ssh_keys: vec!["ssh-ed25519 AAAA x: #y \"z\"".into()],
        };
        let m = meta_data(&s);
        assert!(m.contains("instance-id: \"metalcast-7-n1\""), "{m}");
        assert!(m.contains(r#"  - "ssh-ed25519 AAAA x: #y \"z\"""#), "{m}");
    }
}
