//! Authentication (HTTP Basic with user passwords, Bearer API tokens; both
//! hashed with argon2 at rest) and the access rules shared by all handlers.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use sqlx::Row;

use crate::error::ApiError;
use crate::state::AppState;

/// Prefix of API tokens: `mct_<id>_<secret>`.
pub const TOKEN_PREFIX: &str = "mct_";

/// Hash a secret (password or token secret) to a PHC string.
pub async fn hash_secret(secret: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || Argon2::default().hash_password(secret.as_bytes()).map(|h| h.to_string()))
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?
        .map_err(|e| ApiError::Internal(e.to_string().into()))
}

/// Check a secret against a stored PHC string.
async fn verify_secret(secret: String, phc: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc)
            .map(|h| Argon2::default().verify_password(secret.as_bytes(), &h).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Random hex string of `bytes` random bytes.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("operating system RNG unavailable");
    hex::encode(buf)
}

/// Verified credentials, keyed by a BLAKE3 hash of the Authorization header,
/// so argon2 runs once per credential rather than once per request. Cleared
/// whenever users or tokens are deleted or changed.
#[derive(Debug, Default)]
pub struct AuthCache(Mutex<HashMap<[u8; 32], String>>);

impl AuthCache {
    const MAX: usize = 10_000;

    fn get(&self, key: &[u8; 32]) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    fn put(&self, key: [u8; 32], user: String) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= Self::MAX {
            m.clear();
        }
        m.insert(key, user);
    }

    /// Forget every cached credential.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Who is calling: anonymous, or a user with admin flag and project set.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// User name; `None` for anonymous requests.
    pub user: Option<String>,
    /// Administrator?
    pub admin: bool,
    /// Projects the user is a member of.
    pub projects: HashSet<String>,
}

impl Caller {
    /// Fail unless the caller is an administrator.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.admin { Ok(()) } else { Err(self.denied("administrative access required")) }
    }

    /// Admin or member of `project`.
    pub fn has_project(&self, project: &str) -> bool {
        self.admin || self.projects.contains(project)
    }

    /// HIL's `require_project_access`: `None` (no project) means admin only.
    pub fn require_project(&self, project: Option<&str>) -> Result<(), ApiError> {
        match project {
            Some(p) if self.has_project(p) => Ok(()),
            Some(_) => Err(self.denied("access to the project required")),
            None => self.require_admin(),
        }
    }

    /// The error for a denied request: 401 for anonymous callers (they may
    /// retry with credentials), 403 for authenticated ones.
    pub fn denied(&self, msg: &str) -> ApiError {
        if self.user.is_none() { ApiError::Unauthenticated } else { ApiError::Forbidden(msg.into()) }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return Ok(Caller::default());
        };
        let value = value.to_str().map_err(|_| ApiError::Unauthenticated)?;
        let key = *blake3::hash(value.as_bytes()).as_bytes();
        let user = match state.auth_cache.get(&key) {
            Some(u) => u,
            None => {
                let u = verify_header(state, value).await?;
                state.auth_cache.put(key, u.clone());
                u
            }
        };
        load_caller(state, &user).await
    }
}

async fn verify_header(state: &AppState, value: &str) -> Result<String, ApiError> {
    let pool = &state.db.pool;
    let fail = || {
        state.metrics.auth_failure();
        ApiError::Unauthenticated
    };
    if let Some(b64) = value.strip_prefix("Basic ") {
        let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| fail())?;
        let raw = String::from_utf8(raw).map_err(|_| fail())?;
        let (user, password) = raw.split_once(':').ok_or_else(fail)?;
        // A token can also be given as the Basic password (user "token"),
        // for HIL clients that only speak Basic.
        if user == "token" && password.starts_with(TOKEN_PREFIX) {
            return verify_token(state, password).await?.ok_or_else(fail);
        }
        let row =
            sqlx::query("SELECT password_hash FROM users WHERE name = $1").bind(user).fetch_optional(pool).await?;
        let Some(row) = row else { return Err(fail()) };
        let phc: String = row.try_get(0)?;
        if verify_secret(password.to_string(), phc).await { Ok(user.to_string()) } else { Err(fail()) }
    } else if let Some(tok) = value.strip_prefix("Bearer ") {
        verify_token(state, tok.trim()).await?.ok_or_else(fail)
    } else {
        Err(fail())
    }
}

/// `Ok(None)` for a malformed or wrong token; `Err` only for database trouble.
async fn verify_token(state: &AppState, token: &str) -> Result<Option<String>, ApiError> {
    let Some((id, secret)) = token.strip_prefix(TOKEN_PREFIX).and_then(|rest| rest.split_once('_')) else {
        return Ok(None);
    };
    let row = sqlx::query("SELECT user_name, secret_hash FROM api_tokens WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let user: String = row.try_get(0)?;
    let phc: String = row.try_get(1)?;
    Ok(verify_secret(secret.to_string(), phc).await.then_some(user))
}

async fn load_caller(state: &AppState, user: &str) -> Result<Caller, ApiError> {
    let pool = &state.db.pool;
    let row = sqlx::query("SELECT is_admin FROM users WHERE name = $1").bind(user).fetch_optional(pool).await?;
    let Some(row) = row else {
        return Err(ApiError::Unauthenticated);
    };
    let admin: i64 = row.try_get(0)?;
    let projects = sqlx::query("SELECT project FROM user_projects WHERE user_name = $1")
        .bind(user)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<HashSet<_>, _>>()?;
    Ok(Caller { user: Some(user.to_string()), admin: admin != 0, projects })
}
