//! `metalcast admin bootstrap`: create the first administrator.

use crate::api_v1::{TokenCreated, create_token};
use crate::auth::{hash_secret, random_hex};
use crate::error::ApiError;
use crate::extract::check_name;
use crate::state::AppState;

/// Credentials of a freshly bootstrapped administrator.
#[derive(Debug)]
pub struct Bootstrapped {
    /// User name.
    pub user: String,
    /// Password (generated when not supplied).
    pub password: String,
    /// API token.
    pub token: TokenCreated,
}

/// Create admin `user` (password generated if `None`) and an API token.
/// Fails with 409-class `Conflict` if the user exists.
pub async fn bootstrap_admin(st: &AppState, user: &str, password: Option<String>) -> Result<Bootstrapped, ApiError> {
    check_name("user", user)?;
    let password = password.unwrap_or_else(|| random_hex(16));
    let hash = hash_secret(password.clone()).await?;
    sqlx::query("INSERT INTO users (name, password_hash, is_admin) VALUES ($1, $2, 1)")
        .bind(user)
        .bind(hash)
        .execute(&st.db.pool)
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::Conflict(_) => ApiError::Conflict(format!("user {user:?} already exists")),
            o => o,
        })?;
    let token = create_token(st, user, "bootstrap").await?;
    Ok(Bootstrapped { user: user.into(), password, token })
}
