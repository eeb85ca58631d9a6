//! Web console sessions: signing in with a password or an API token opens a
//! session whose cookie is `<id>.<secret>`; each session has its own
//! anti-forgery (CSRF) token that every form of the console must carry.
//! The caller of a session is loaded afresh on every request, so a user's
//! changed projects or admin flag apply at once, and a deleted user's
//! sessions go with it (foreign key).

use super::error::{Error, Result};
use super::{AppState, authn};
use crate::auth::random_hex;
use crate::authz::Caller;
use crate::db;

/// How long a session lasts from sign-in, seconds (a working day).
pub const TTL_SECS: i64 = 12 * 3600;

/// A session just opened: what the browser is given.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The cookie value `<id>.<secret>`.
    pub cookie: String,
}

/// A valid session and who it is.
#[derive(Debug, Clone)]
pub struct Session {
    /// Session id (the cookie's public part).
    pub id: String,
    /// The signed-in caller, as the API would see it.
    pub caller: Caller,
    /// The token every form of this session carries.
    pub csrf: String,
}

impl Session {
    /// Whether `given` is this session's anti-forgery token (compared in
    /// constant time: BLAKE3 hashes compare so).
    pub fn csrf_matches(&self, given: &str) -> bool {
        blake3::hash(given.as_bytes()) == blake3::hash(self.csrf.as_bytes())
    }
}

/// Signs in with a user's password (or user `token` and an API token).
pub async fn sign_in_password(st: &AppState, user: &str, password: &str) -> Result<Opened> {
    let user = authn::verify_password(st, user, password).await?;
    open(st, &user).await
}

/// Signs in with an API token.
pub async fn sign_in_token(st: &AppState, token: &str) -> Result<Opened> {
    let user = authn::verify_bearer(st, token.trim()).await?;
    open(st, &user).await
}

async fn open(st: &AppState, user: &str) -> Result<Opened> {
    let now = crate::now();
    // Expired sessions are dropped as new ones open; nothing else reads them.
    db::sessions::delete_expired(&st.db.writer, now).await?;
    let (id, secret) = (random_hex(16), random_hex(24));
    let row = db::sessions::SessionRow {
        id: id.clone(),
        user_name: user.to_string(),
        secret_hash: blake3::hash(secret.as_bytes()).to_hex().to_string(),
        csrf: random_hex(24),
        expires_at: now + TTL_SECS,
    };
    db::sessions::insert(&st.db.writer, &row, now).await?;
    tracing::info!(user, session = %id, "web console sign-in");
    Ok(Opened { cookie: format!("{id}.{secret}") })
}

/// The session a cookie value names, if it is valid now (`None` for a
/// malformed, unknown, expired or forged cookie).
pub async fn resolve(st: &AppState, cookie: &str) -> Result<Option<Session>> {
    let Some((id, secret)) = cookie.split_once('.') else { return Ok(None) };
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let Some(row) = db::sessions::get(&st.db.pool, id, crate::now()).await? else { return Ok(None) };
    let stored = blake3::Hash::from_hex(&row.secret_hash).map_err(|e| Error::Internal(e.into()))?;
    if blake3::hash(secret.as_bytes()) != stored {
        st.metrics.auth_failure();
        return Ok(None);
    }
    let caller = match authn::load_caller(st, &row.user_name).await {
        Ok(c) => c,
        Err(Error::Unauthenticated) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(Session { id: row.id, caller, csrf: row.csrf }))
}

/// Signs a session out.
pub async fn close(st: &AppState, id: &str) -> Result<()> {
    Ok(db::sessions::delete(&st.db.writer, id).await?)
}
