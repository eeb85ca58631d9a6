//! Authentication: who the caller of a request is, from its
//! `Authorization` header (HTTP Basic with a user password or a token,
//! Bearer API token), checked against the hashes at rest and cached per
//! credential. What the caller may do is `crate::authz`.

use std::collections::HashSet;

use base64::Engine;

use super::{AppState, Error};
use crate::auth::{TOKEN_PREFIX, verify_secret};
use crate::authz::Caller;

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
    let fail = || {
        state.metrics.auth_failure();
        Error::Unauthenticated
    };
    if let Some(b64) = value.strip_prefix("Basic ") {
        let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| fail())?;
        let raw = String::from_utf8(raw).map_err(|_| fail())?;
        let (user, password) = raw.split_once(':').ok_or_else(fail)?;
        verify_password(state, user, password).await
    } else if let Some(tok) = value.strip_prefix("Bearer ") {
        verify_bearer(state, tok.trim()).await
    } else {
        Err(fail())
    }
}

/// Checks a user's password, as HTTP Basic does (user `token` with an API
/// token as the password is the token's user); the user it names. A failure
/// is counted.
pub async fn verify_password(state: &AppState, user: &str, password: &str) -> Result<String, Error> {
    let fail = || {
        state.metrics.auth_failure();
        Error::Unauthenticated
    };
    // A token can also be given as the Basic password (user "token"),
    // for HIL clients that only speak Basic.
    if user == "token" && password.starts_with(TOKEN_PREFIX) {
        return verify_bearer(state, password).await;
    }
    let Some(phc) = crate::db::users::password_hash(&state.db.pool, user).await? else { return Err(fail()) };
    if verify_secret(password.to_string(), phc).await { Ok(user.to_string()) } else { Err(fail()) }
}

/// Checks an API token (`mct_...`); the user it belongs to. A failure is counted.
pub async fn verify_bearer(state: &AppState, token: &str) -> Result<String, Error> {
    match verify_token(state, token).await? {
        Some(user) => Ok(user),
        None => {
            state.metrics.auth_failure();
            Err(Error::Unauthenticated)
        }
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

/// The caller `user` is now: admin or not, its projects (a deleted user: refused).
pub async fn load_caller(state: &AppState, user: &str) -> Result<Caller, Error> {
    let pool = &state.db.pool;
    let Some(admin) = crate::db::users::is_admin(pool, user).await? else {
        return Err(Error::Unauthenticated);
    };
    let projects: HashSet<String> = crate::db::users::projects(pool, user).await?.into_iter().collect();
    Ok(Caller { user: Some(user.to_string()), admin, projects })
}
