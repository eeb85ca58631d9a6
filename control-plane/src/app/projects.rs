//! Projects: create, delete (only when nothing holds them), list, and the
//! nodes and networks a project has.

use super::AppState;
use super::error::{Error, Result, check_name, duplicate};
use crate::authz::Caller;
use crate::db;

/// 404 unless `project` exists (and is a legal name).
pub async fn must_exist(st: &AppState, project: &str) -> Result<()> {
    check_name("project", project)?;
    if !db::projects::exists(&st.db.pool, project).await? {
        return Err(Error::not_found("project", project));
    }
    Ok(())
}

/// Every project (admins).
pub async fn list(st: &AppState, c: &Caller) -> Result<Vec<String>> {
    c.require_admin()?;
    Ok(db::projects::list(&st.db.pool).await?)
}

/// The projects the caller may look into: every project for admins, its
/// own for others (the web console's project list).
pub async fn visible(st: &AppState, c: &Caller) -> Result<Vec<String>> {
    if c.admin {
        return list(st, c).await;
    }
    let mut mine: Vec<String> = c.projects.iter().cloned().collect();
    mine.sort();
    Ok(mine)
}

/// Creates a project (admins).
pub async fn create(st: &AppState, c: &Caller, project: &str) -> Result<()> {
    c.require_admin()?;
    check_name("project", project)?;
    if project == "admin" {
        return Err(Error::BadRequest("\"admin\" is reserved (it names admin-owned networks)".into()));
    }
    duplicate(db::projects::insert(&st.db.writer, project).await, || format!("project {project:?} already exists"))
}

/// Deletes a project that holds no nodes, networks, network access or images (admins).
pub async fn delete(st: &AppState, c: &Caller, project: &str) -> Result<()> {
    c.require_admin()?;
    must_exist(st, project).await?;
    let h = db::projects::holdings(&st.db.pool, project).await?;
    for (n, why) in [
        (h.nodes, "project still has nodes"),
        (h.owned_networks, "project still owns networks"),
        (h.network_access, "project can still access networks"),
        (h.images, "project still owns images"),
    ] {
        if n > 0 {
            return Err(Error::Conflict(why.into()));
        }
    }
    Ok(db::projects::delete(&st.db.writer, project).await?)
}

/// The project's nodes (members).
pub async fn nodes(st: &AppState, c: &Caller, project: &str) -> Result<Vec<String>> {
    check_name("project", project)?;
    c.require_project(Some(project))?;
    must_exist(st, project).await?;
    Ok(db::nodes::in_project(&st.db.pool, project).await?)
}

/// The networks the project can access (members).
pub async fn networks(st: &AppState, c: &Caller, project: &str) -> Result<Vec<String>> {
    check_name("project", project)?;
    c.require_project(Some(project))?;
    must_exist(st, project).await?;
    Ok(db::networks::accessible_by(&st.db.pool, project).await?)
}
