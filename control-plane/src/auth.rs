//! Authentication (HTTP Basic with user passwords, Bearer API tokens; both
//! hashed with argon2 at rest): who the caller is. What the caller may do is
//! `crate::authz`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;

use crate::app::{AppState, Error};
use crate::authz::Caller;

/// Prefix of API tokens: `mct_<id>_<secret>`.
pub const TOKEN_PREFIX: &str = "mct_";

/// Hash a secret (password or token secret) to a PHC string.
pub async fn hash_secret(secret: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || Argon2::default().hash_password(secret.as_bytes()).map(|h| h.to_string()))
        .await
        .map_err(Error::internal)?
        .map_err(|e| Error::internal(e.to_string()))
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

/// Resolves the caller from the value of an `Authorization` header (none:
/// anonymous); a header that does not name a user is refused.
pub async fn authenticate(state: &AppState, header: Option<&[u8]>) -> Result<Caller, Error> {
    let Some(value) = header else {
        return Ok(Caller::default());
    };
    // Visible ASCII only, as `HeaderValue::to_str` has it.
    if !value.iter().all(|b| *b == b'\t' || (0x20..0x7f).contains(b)) {
        return Err(Error::Unauthenticated);
    }
    let value = std::str::from_utf8(value).map_err(|_| Error::Unauthenticated)?;
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

async fn verify_header(state: &AppState, value: &str) -> Result<String, Error> {
    let pool = &state.db.pool;
    let fail = || {
        state.metrics.auth_failure();
        Error::Unauthenticated
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
        let Some(phc) = crate::db::users::password_hash(pool, user).await? else { return Err(fail()) };
        if verify_secret(password.to_string(), phc).await { Ok(user.to_string()) } else { Err(fail()) }
    } else if let Some(tok) = value.strip_prefix("Bearer ") {
        verify_token(state, tok.trim()).await?.ok_or_else(fail)
    } else {
        Err(fail())
    }
}

/// `Ok(None)` for a malformed or wrong token; `Err` only for database trouble.
async fn verify_token(state: &AppState, token: &str) -> Result<Option<String>, Error> {
    let Some((id, secret)) = token.strip_prefix(TOKEN_PREFIX).and_then(|rest| rest.split_once('_')) else {
        return Ok(None);
    };
    let Some((user, phc)) = crate::db::tokens::secret(&state.db.pool, id).await? else { return Ok(None) };
    Ok(verify_secret(secret.to_string(), phc).await.then_some(user))
}

async fn load_caller(state: &AppState, user: &str) -> Result<Caller, Error> {
    let pool = &state.db.pool;
    let Some(admin) = crate::db::users::is_admin(pool, user).await? else {
        return Err(Error::Unauthenticated);
    };
    let projects: HashSet<String> = crate::db::users::projects(pool, user).await?.into_iter().collect();
    Ok(Caller { user: Some(user.to_string()), admin, projects })
}
