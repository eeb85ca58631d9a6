//! `/v0/auth/basic/user/<user>[/add_project|remove_project]`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{R, ok};
use crate::app::{AppState, users};
use crate::authz::Caller;
use crate::http::Body;

/// A new user: password and whether it is an admin (`is-admin` is accepted too).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UserCreate {
    password: String,
    #[serde(default, rename = "is_admin", alias = "is-admin")]
    is_admin: bool,
}

/// `{"is_admin": <bool>}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UserPatch {
    is_admin: bool,
}

/// A user in `GET /v0/auth/basic/users`.
#[derive(Serialize, ToSchema)]
pub(super) struct UserView {
    is_admin: bool,
    projects: Vec<String>,
}

/// `{"project": <name>}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ProjectArg {
    project: String,
}

/// Create a user (admin).
#[utoipa::path(put, path = "/v0/auth/basic/user/{user}", operation_id = "v0_user_create", params(("user" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = UserCreate, responses((status = 200, description = "created"), (status = 409)))]
pub(super) async fn create(
    State(st): State<AppState>,
    c: Caller,
    Path(user): Path<String>,
    Body(req): Body<UserCreate>,
) -> R<Response> {
    users::create(&st, &c, &user, req.password, req.is_admin).await?;
    Ok(ok())
}

/// Every user: name -> admin flag and projects (admin).
#[utoipa::path(get, path = "/v0/auth/basic/users", operation_id = "v0_user_list", responses((status = 200, body = std::collections::BTreeMap<String, UserView>), (status = 401), (status = 403)))]
pub(super) async fn list(State(st): State<AppState>, c: Caller) -> R<Json<BTreeMap<String, UserView>>> {
    let users = users::list(&st, &c).await?;
    Ok(Json(users.into_iter().map(|(n, u)| (n, UserView { is_admin: u.is_admin, projects: u.projects })).collect()))
}

/// Make a user an admin or not (admin; not oneself).
#[utoipa::path(patch, path = "/v0/auth/basic/user/{user}", operation_id = "v0_user_set_admin", params(("user" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = UserPatch, responses((status = 200, description = "changed"), (status = 404), (status = 409)))]
pub(super) async fn set_admin(
    State(st): State<AppState>,
    c: Caller,
    Path(user): Path<String>,
    Body(UserPatch { is_admin }): Body<UserPatch>,
) -> R<Response> {
    users::set_admin(&st, &c, &user, is_admin).await?;
    Ok(ok())
}

/// Delete a user (admin).
#[utoipa::path(delete, path = "/v0/auth/basic/user/{user}", operation_id = "v0_user_delete", params(("user" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, description = "deleted"), (status = 404)))]
pub(super) async fn delete(State(st): State<AppState>, c: Caller, Path(user): Path<String>) -> R<Response> {
    users::delete(&st, &c, &user).await?;
    Ok(ok())
}

/// Make the user a member of a project (admin).
#[utoipa::path(post, path = "/v0/auth/basic/user/{user}/add_project", operation_id = "v0_user_add_project", params(("user" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = ProjectArg, responses((status = 200, description = "added"), (status = 404), (status = 409)))]
pub(super) async fn add_project(
    State(st): State<AppState>,
    c: Caller,
    Path(user): Path<String>,
    Body(ProjectArg { project }): Body<ProjectArg>,
) -> R<Response> {
    users::add_project(&st, &c, &user, &project).await?;
    Ok(ok())
}

/// Remove the user from a project (admin).
#[utoipa::path(post, path = "/v0/auth/basic/user/{user}/remove_project", operation_id = "v0_user_remove_project", params(("user" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = ProjectArg, responses((status = 200, description = "removed"), (status = 404)))]
pub(super) async fn remove_project(
    State(st): State<AppState>,
    c: Caller,
    Path(user): Path<String>,
    Body(ProjectArg { project }): Body<ProjectArg>,
) -> R<Response> {
    users::remove_project(&st, &c, &user, &project).await?;
    Ok(ok())
}
