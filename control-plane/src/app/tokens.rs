//! API tokens, the caller's identity, the server's health, and the first
//! administrator (`metalcast admin bootstrap`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{Error, Result, check_name, duplicate};
use crate::auth::{TOKEN_PREFIX, hash_secret, random_hex};
use crate::authz::Caller;
use crate::db;

/// A newly created token; the secret is shown only once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    /// Token id (used to delete it).
    pub id: String,
    /// The bearer token `mct_<id>_<secret>`.
    pub token: String,
}

/// A stored token (without its secret).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// Token id.
    pub id: String,
    /// Owner.
    pub user: String,
    /// Description given at creation.
    pub description: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

/// The signed-in user (HTTP Basic or Bearer).
pub fn user(c: &Caller) -> Result<&str> {
    c.user.as_deref().ok_or(Error::Unauthenticated)
}

/// Creates a token for `user` (no checks: the caller's own, or bootstrap).
pub async fn create_for(st: &AppState, user: &str, description: &str) -> Result<TokenCreated> {
    let id = random_hex(8);
    let secret = random_hex(24);
    let hash = hash_secret(secret.clone()).await?;
    db::tokens::insert(&st.db.writer, &id, user, &hash, description, crate::now()).await?;
    Ok(TokenCreated { token: format!("{TOKEN_PREFIX}{id}_{secret}"), id })
}

/// Creates a token for the caller.
pub async fn create(st: &AppState, c: &Caller, description: &str) -> Result<TokenCreated> {
    let user = user(c)?;
    if description.len() > 200 {
        return Err(Error::BadRequest("description longer than 200 bytes".into()));
    }
    create_for(st, user, description).await
}

/// The caller's tokens (every token for admins).
pub async fn list(st: &AppState, c: &Caller) -> Result<Vec<TokenInfo>> {
    let user = user(c)?;
    Ok(db::tokens::list(&st.db.pool, user, c.admin)
        .await?
        .into_iter()
        .map(|t| TokenInfo { id: t.id, user: t.user_name, description: t.description, created_at: t.created_at })
        .collect())
}

/// Deletes one of the caller's tokens (anyone's for admins).
pub async fn delete(st: &AppState, c: &Caller, id: &str) -> Result<()> {
    let user = user(c)?;
    check_name("token id", id)?;
    if !db::tokens::delete(&st.db.writer, id, user, c.admin).await? {
        return Err(Error::not_found("token", id));
    }
    st.auth_cache.clear();
    Ok(())
}

/// Which database backend answers (`sqlite` or `postgres`); fails if it does not.
pub async fn health(st: &AppState) -> Result<&'static str> {
    db::ping(&st.db.pool).await?;
    Ok(match st.db.backend {
        db::Backend::Sqlite => "sqlite",
        db::Backend::Postgres => "postgres",
    })
}

/// The first administrator: its password (random unless given) and a token.
#[derive(Debug)]
pub struct Bootstrapped {
    /// User name.
    pub user: String,
    /// Password (the one given, or a random one).
    pub password: String,
    /// A token for the new admin.
    pub token: TokenCreated,
}

/// Creates an administrator and a token for it (`metalcast admin bootstrap`).
pub async fn bootstrap_admin(st: &AppState, user: &str, password: Option<String>) -> Result<Bootstrapped> {
    check_name("user", user)?;
    let password = password.unwrap_or_else(|| random_hex(16));
    let hash = hash_secret(password.clone()).await?;
    duplicate(db::users::insert(&st.db.writer, user, &hash, true).await, || format!("user {user:?} already exists"))?;
    let token = create_for(st, user, "bootstrap").await?;
    Ok(Bootstrapped { user: user.into(), password, token })
}
