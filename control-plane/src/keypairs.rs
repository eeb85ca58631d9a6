//! SSH keypairs: public keys a user registers so that deployed operating
//! systems let them in (handed to cloud-init through the metadata service).
//!
//! A keypair belongs to its user; it may also be shared with one of the
//! user's projects, and then every member of that project can use it in a
//! deployment. Keys are parsed with the `ssh-key` crate (RustCrypto), so a
//! malformed key is refused with the parser's reason and the stored
//! fingerprint is the one `ssh-keygen -l` prints.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{OpenApi, ToSchema};

use crate::app::AppState;
use crate::app::error::check_name;
use crate::authz::Caller;
use crate::http::ApiError;
use crate::http::Body;

/// Most bytes of an OpenSSH public key line we accept.
const MAX_KEY_LEN: usize = 16 * 1024;

/// Request to register a public key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeypairCreate {
    /// Name, unique per user.
    pub name: String,
    /// One OpenSSH public key line, e.g. `ssh-ed25519 AAAA... comment`.
    pub public_key: String,
    /// Share with this project (the caller must be a member).
    #[serde(default)]
    pub project: Option<String>,
}

/// A registered public key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Keypair {
    /// Owning user.
    pub user: String,
    /// Name.
    pub name: String,
    /// Project it is shared with.
    pub project: Option<String>,
    /// The public key line as stored (normalised by the parser).
    pub public_key: String,
    /// `SHA256:...` fingerprint.
    pub fingerprint: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

/// OpenAPI description of these routes (merged into `/v1/openapi.json`).
#[derive(Debug, OpenApi)]
#[openapi(paths(list, create, show, remove), components(schemas(Keypair, KeypairCreate)))]
pub struct KeypairsDoc;

/// Routes under `/v1/keypairs`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/keypairs", get(list).post(create)).route("/v1/keypairs/{name}", get(show).delete(remove))
}

/// Parse and normalise an OpenSSH public key line; returns `(line, fingerprint)`.
pub fn parse_public_key(line: &str) -> Result<(String, String), ApiError> {
    let line = line.trim();
    if line.len() > MAX_KEY_LEN {
        return Err(ApiError::BadRequest(format!("public_key is longer than {MAX_KEY_LEN} bytes")));
    }
    if line.contains(['\n', '\r']) {
        return Err(ApiError::BadRequest("public_key must be a single line".into()));
    }
    let key = ssh_key::PublicKey::from_openssh(line)
        .map_err(|e| ApiError::BadRequest(format!("public_key is not an OpenSSH public key: {e}")))?;
    let text = key.to_openssh().map_err(|e| ApiError::BadRequest(format!("public_key cannot be encoded: {e}")))?;
    Ok((text, key.fingerprint(ssh_key::HashAlg::Sha256).to_string()))
}

const COLUMNS: &str = "owner_user, name, project, public_key, fingerprint, created_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Keypair, ApiError> {
    Ok(Keypair {
        user: r.try_get(0)?,
        name: r.try_get(1)?,
        project: r.try_get(2)?,
        public_key: r.try_get(3)?,
        fingerprint: r.try_get(4)?,
        created_at: r.try_get(5)?,
    })
}

/// Keys `c` may use: its own plus those shared with its projects.
pub async fn usable(st: &AppState, c: &Caller) -> Result<Vec<Keypair>, ApiError> {
    let user = c.user.as_deref().ok_or(ApiError::Unauthenticated)?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM keypairs ORDER BY owner_user, name")))
        .fetch_all(&st.db.pool)
        .await?;
    let mut out = Vec::new();
    for r in &rows {
        let k = from_row(r)?;
        if k.user == user || k.project.as_deref().is_some_and(|p| c.projects.contains(p)) {
            out.push(k);
        }
    }
    Ok(out)
}

/// List the keys the caller may use.
#[utoipa::path(get, path = "/v1/keypairs", responses((status = 200, body = [Keypair])))]
async fn list(State(st): State<AppState>, c: Caller) -> Result<Json<Vec<Keypair>>, ApiError> {
    Ok(Json(usable(&st, &c).await?))
}

/// Register a public key.
#[utoipa::path(post, path = "/v1/keypairs", request_body = KeypairCreate, responses((status = 201, body = Keypair)))]
async fn create(
    State(st): State<AppState>,
    c: Caller,
    Body(req): Body<KeypairCreate>,
) -> Result<(StatusCode, Json<Keypair>), ApiError> {
    let user = c.user.clone().ok_or(ApiError::Unauthenticated)?;
    check_name("keypair", &req.name)?;
    if let Some(p) = &req.project {
        check_name("project", p)?;
        if !c.projects.contains(p) {
            return Err(ApiError::Forbidden(format!("you are not a member of project {p:?}")));
        }
    }
    let (public_key, fingerprint) = parse_public_key(&req.public_key)?;
    let k = Keypair { user, name: req.name, project: req.project, public_key, fingerprint, created_at: crate::now() };
    sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO keypairs ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)")))
        .bind(&k.user)
        .bind(&k.name)
        .bind(&k.project)
        .bind(&k.public_key)
        .bind(&k.fingerprint)
        .bind(k.created_at)
        .execute(&st.db.pool)
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::Conflict(_) => ApiError::Conflict(format!("you already have a keypair named {:?}", k.name)),
            other => other,
        })?;
    Ok((StatusCode::CREATED, Json(k)))
}

/// Show one of the caller's own keys.
#[utoipa::path(get, path = "/v1/keypairs/{name}", responses((status = 200, body = Keypair)))]
async fn show(State(st): State<AppState>, c: Caller, Path(name): Path<String>) -> Result<Json<Keypair>, ApiError> {
    let user = c.user.as_deref().ok_or(ApiError::Unauthenticated)?;
    check_name("keypair", &name)?;
    let row =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM keypairs WHERE owner_user = $1 AND name = $2")))
            .bind(user)
            .bind(&name)
            .fetch_optional(&st.db.pool)
            .await?;
    match row {
        Some(r) => Ok(Json(from_row(&r)?)),
        None => Err(ApiError::not_found("keypair", &name)),
    }
}

/// Delete one of the caller's own keys.
#[utoipa::path(delete, path = "/v1/keypairs/{name}", responses((status = 200)))]
async fn remove(State(st): State<AppState>, c: Caller, Path(name): Path<String>) -> Result<Json<()>, ApiError> {
    let user = c.user.as_deref().ok_or(ApiError::Unauthenticated)?;
    check_name("keypair", &name)?;
    let res = sqlx::query("DELETE FROM keypairs WHERE owner_user = $1 AND name = $2")
        .bind(user)
        .bind(&name)
        .execute(&st.db.pool)
        .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::not_found("keypair", &name));
    }
    Ok(Json(()))
}

#[cfg(test)]
mod unit {
    use super::*;

    /// What `ssh-keygen -lf` prints for the key below.
    const FP: &str = "SHA256:SYh/06k3mCTHwvvgLzGC4I2R8RYnBiy9B9lPsjv94wo";

    #[test]
    fn parses_and_fingerprints_a_real_key() {
        // Generated with `ssh-keygen -t ed25519 -N '' -C test`.
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDo+XGOeX+3vjzikf9qkLbyd736n0DaIyWea5yDqgTHb test";
        let (text, fp) = parse_public_key(line).expect("valid key");
        assert!(text.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDo+XGOeX+3vjzikf9qkLbyd736n0DaIyWea5yDqgTHb"));
        assert_eq!(fp, FP);
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "ssh-ed25519", "ssh-ed25519 !!!!", "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqq", "a\nb"] {
            assert!(parse_public_key(bad).is_err(), "{bad:?}");
        }
    }
}
