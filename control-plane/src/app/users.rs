//! Users (HTTP Basic accounts) and their project memberships (admins only).

use super::AppState;
use super::error::{Error, Result, check_name, duplicate};
use crate::authz::Caller;
use crate::db;

/// 404 unless `user` exists.
async fn must_exist(st: &AppState, user: &str) -> Result<()> {
    check_name("user", user)?;
    if !db::users::exists(&st.db.pool, user).await? {
        return Err(Error::not_found("user", user));
    }
    Ok(())
}

/// Creates a user with a password (stored as an argon2 hash).
pub async fn create(st: &AppState, c: &Caller, user: &str, password: String, admin: bool) -> Result<()> {
    c.require_admin()?;
    check_name("user", user)?;
    if password.is_empty() || password.len() > 1024 {
        return Err(Error::BadRequest("password must be 1-1024 bytes".into()));
    }
    let hash = crate::auth::hash_secret(password).await?;
    duplicate(db::users::insert(&st.db.writer, user, &hash, admin).await, || format!("user {user:?} already exists"))
}

/// Deletes a user with its memberships and tokens; cached credentials are dropped.
pub async fn delete(st: &AppState, c: &Caller, user: &str) -> Result<()> {
    c.require_admin()?;
    must_exist(st, user).await?;
    db::users::delete(&st.db.writer, user).await?;
    st.auth_cache.clear();
    Ok(())
}

/// Makes `user` a member of `project`.
pub async fn add_project(st: &AppState, c: &Caller, user: &str, project: &str) -> Result<()> {
    c.require_admin()?;
    must_exist(st, user).await?;
    super::projects::must_exist(st, project).await?;
    duplicate(db::users::add_project(&st.db.writer, user, project).await, || {
        format!("user {user:?} is already in project {project:?}")
    })
}

/// Ends `user`'s membership of `project`.
pub async fn remove_project(st: &AppState, c: &Caller, user: &str, project: &str) -> Result<()> {
    c.require_admin()?;
    must_exist(st, user).await?;
    super::projects::must_exist(st, project).await?;
    if !db::users::remove_project(&st.db.writer, user, project).await? {
        return Err(Error::NotFound(format!("user {user:?} is not in project {project:?}")));
    }
    Ok(())
}

/// A user as HIL lists it.
#[derive(Debug)]
pub struct UserInfo {
    pub is_admin: bool,
    pub projects: Vec<String>,
}

/// Every user with its admin flag and projects, by name (admins).
pub async fn list(st: &AppState, c: &Caller) -> Result<std::collections::BTreeMap<String, UserInfo>> {
    c.require_admin()?;
    let mut out: std::collections::BTreeMap<String, UserInfo> = db::users::list(&st.db.pool)
        .await?
        .into_iter()
        .map(|(name, is_admin)| (name, UserInfo { is_admin, projects: Vec::new() }))
        .collect();
    for (user, project) in db::users::memberships(&st.db.pool).await? {
        if let Some(u) = out.get_mut(&user) {
            u.projects.push(project);
        }
    }
    Ok(out)
}

/// Makes `user` an admin or not (admins). Cached credentials are dropped, so
/// the change holds from the next request on.
pub async fn set_admin(st: &AppState, c: &Caller, user: &str, admin: bool) -> Result<()> {
    c.require_admin()?;
    check_name("user", user)?;
    if c.user.as_deref() == Some(user) {
        // HIL refuses it too: an admin cannot lock itself out (or in).
        return Err(Error::Conflict("cannot set your own admin status".into()));
    }
    if !db::users::set_admin(&st.db.writer, user, admin).await? {
        return Err(Error::not_found("user", user));
    }
    st.auth_cache.clear();
    Ok(())
}
