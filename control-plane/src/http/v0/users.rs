//! `/v0/auth/basic/user/<user>[/add_project|remove_project]`.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;

use super::{R, ok};
use crate::app::{AppState, users};
use crate::authz::Caller;
use crate::http::Body;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserCreate {
    password: String,
    #[serde(default, rename = "is_admin", alias = "is-admin")]
    is_admin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProjectArg {
    project: String,
}

pub(super) async fn create(
    State(st): State<AppState>,
    c: Caller,
    Path(user): Path<String>,
    Body(req): Body<UserCreate>,
) -> R<Response> {
    users::create(&st, &c, &user, req.password, req.is_admin).await?;
    Ok(ok())
}

pub(super) async fn delete(State(st): State<AppState>, c: Caller, Path(user): Path<String>) -> R<Response> {
    users::delete(&st, &c, &user).await?;
    Ok(ok())
}

pub(super) async fn add_project(
    State(st): State<AppState>,
    c: Caller,
    Path(user): Path<String>,
    Body(ProjectArg { project }): Body<ProjectArg>,
) -> R<Response> {
    users::add_project(&st, &c, &user, &project).await?;
    Ok(ok())
}

pub(super) async fn remove_project(
    State(st): State<AppState>,
    c: Caller,
    Path(user): Path<String>,
    Body(ProjectArg { project }): Body<ProjectArg>,
) -> R<Response> {
    users::remove_project(&st, &c, &user, &project).await?;
    Ok(ok())
}
