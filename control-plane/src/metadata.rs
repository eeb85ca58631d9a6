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

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use sqlx::Row;

use crate::app::AppState;
use crate::http::ApiError;

/// Routes under `/v1/metadata/{token}/`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/metadata/{token}/{item}", get(item))
}

/// What the token resolves to.
struct Seed {
    deployment: i64,
    node: String,
    user_data: String,
    ssh_keys: Vec<String>,
}

async fn resolve(st: &AppState, token: &str) -> Result<Seed, ApiError> {
    let not_found = || ApiError::NotFound("no such metadata".into());
    if token.len() != 48 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let r = sqlx::query(
        "SELECT dn.deployment, dn.node, u.user_data, u.ssh_keys FROM deployment_nodes dn \
         JOIN deployments d ON d.id = dn.deployment \
         JOIN nodes n ON n.name = dn.node AND n.project = d.project \
         LEFT JOIN deployment_userdata u ON u.deployment = dn.deployment \
         WHERE dn.metadata_token = $1 \
         AND NOT EXISTS (SELECT 1 FROM deployment_nodes newer WHERE newer.node = dn.node AND newer.deployment > dn.deployment)",
    )
    .bind(token)
    .fetch_optional(&st.db.pool)
    .await?
    .ok_or_else(not_found)?;
    let keys: Option<String> = r.try_get(3)?;
    Ok(Seed {
        deployment: r.try_get(0)?,
        node: r.try_get(1)?,
        user_data: r.try_get::<Option<String>, _>(2)?.unwrap_or_default(),
        ssh_keys: keys.unwrap_or_default().lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect(),
    })
}

async fn item(
    State(st): State<AppState>,
    Path((token, item)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let seed = resolve(&st, &token).await?;
    let text = match item.as_str() {
        "meta-data" => {
            st.deploys.note_fetch(seed.deployment, &seed.node);
            meta_data(&seed)
        }
        "user-data" if seed.user_data.is_empty() => "#cloud-config\n{}\n".to_owned(),
        "user-data" => seed.user_data,
        "vendor-data" => String::new(),
        _ => return Err(ApiError::NotFound("no such metadata".into())),
    };
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], text))
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
