//! Users and their project memberships.

use super::Writer;
use sqlx::AnyPool;

/// Whether `name` exists.
pub async fn exists(pool: &AnyPool, name: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE name = $1").bind(name).fetch_one(pool).await?;
    Ok(n > 0)
}

/// Creates a user (a unique violation if the name is taken).
pub async fn insert(w: &Writer, name: &str, password_hash: &str, admin: bool) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO users (name, password_hash, is_admin) VALUES ($1, $2, $3)")
        .bind(name)
        .bind(password_hash)
        .bind(i64::from(admin))
        .execute(w.pool())
        .await
        .map(drop)
}

/// Deletes a user with its memberships and API tokens.
pub async fn delete(w: &Writer, name: &str) -> Result<(), sqlx::Error> {
    let mut tx = w.begin().await?;
    for sql in [
        "DELETE FROM user_projects WHERE user_name = $1",
        "DELETE FROM api_tokens WHERE user_name = $1",
        "DELETE FROM users WHERE name = $1",
    ] {
        sqlx::query(sql).bind(name).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Makes `user` a member of `project` (a unique violation if it is one).
pub async fn add_project(w: &Writer, user: &str, project: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO user_projects (user_name, project) VALUES ($1, $2)")
        .bind(user)
        .bind(project)
        .execute(w.pool())
        .await
        .map(drop)
}

/// Ends `user`'s membership of `project`; returns whether it was one.
pub async fn remove_project(w: &Writer, user: &str, project: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM user_projects WHERE user_name = $1 AND project = $2")
        .bind(user)
        .bind(project)
        .execute(w.pool())
        .await?;
    Ok(r.rows_affected() > 0)
}

/// The user's password hash (PHC string), if the user exists.
pub async fn password_hash(pool: &AnyPool, name: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE name = $1").bind(name).fetch_optional(pool).await
}

/// Whether the user is an admin (`None`: no such user).
pub async fn is_admin(pool: &AnyPool, name: &str) -> Result<Option<bool>, sqlx::Error> {
    let v: Option<i64> =
        sqlx::query_scalar("SELECT is_admin FROM users WHERE name = $1").bind(name).fetch_optional(pool).await?;
    Ok(v.map(|a| a != 0))
}

/// The projects the user is a member of.
pub async fn projects(pool: &AnyPool, name: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT project FROM user_projects WHERE user_name = $1").bind(name).fetch_all(pool).await
}

/// Every user: (name, is admin), by name.
pub async fn list(pool: &AnyPool) -> Result<Vec<(String, bool)>, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, is_admin FROM users ORDER BY name").fetch_all(pool).await?;
    Ok(rows.into_iter().map(|(n, a)| (n, a != 0)).collect())
}

/// Every membership: (user, project), by user then project.
pub async fn memberships(pool: &AnyPool) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT user_name, project FROM user_projects ORDER BY user_name, project").fetch_all(pool).await
}

/// Makes `name` an admin or not; returns whether the user exists.
pub async fn set_admin(w: &Writer, name: &str, admin: bool) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE users SET is_admin = $1 WHERE name = $2")
        .bind(i64::from(admin))
        .bind(name)
        .execute(w.pool())
        .await?;
    Ok(r.rows_affected() > 0)
}
