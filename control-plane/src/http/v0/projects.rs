//! `/v0/projects`, `/v0/project/<project>[/connect_node|detach_node|nodes|networks]`.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{R, ok};
use crate::app::{AppState, nodes, projects};
use crate::authz::Caller;
use crate::http::{Body, Empty};

/// `{"node": <name>}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeArg {
    node: String,
}

/// Every project (admin).
#[utoipa::path(get, path = "/v0/projects", operation_id = "v0_project_list", responses((status = 200, body = [String])))]
pub(super) async fn list(State(st): State<AppState>, c: Caller) -> R<Json<Vec<String>>> {
    Ok(Json(projects::list(&st, &c).await?))
}

/// Create a project (admin).
#[utoipa::path(put, path = "/v0/project/{project}", operation_id = "v0_project_create", params(("project" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = Empty, responses((status = 200, description = "created"), (status = 409)))]
pub(super) async fn create(
    State(st): State<AppState>,
    c: Caller,
    Path(project): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    projects::create(&st, &c, &project).await?;
    Ok(ok())
}

/// Delete a project that holds nothing (admin).
#[utoipa::path(delete, path = "/v0/project/{project}", operation_id = "v0_project_delete", params(("project" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, description = "deleted"), (status = 404), (status = 409)))]
pub(super) async fn delete(State(st): State<AppState>, c: Caller, Path(project): Path<String>) -> R<Response> {
    projects::delete(&st, &c, &project).await?;
    Ok(ok())
}

/// Give a free node to the project.
#[utoipa::path(post, path = "/v0/project/{project}/connect_node", operation_id = "v0_project_connect_node", params(("project" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = NodeArg, responses((status = 200, description = "connected"), (status = 404), (status = 409)))]
pub(super) async fn connect_node(
    State(st): State<AppState>,
    c: Caller,
    Path(project): Path<String>,
    Body(NodeArg { node }): Body<NodeArg>,
) -> R<Response> {
    nodes::connect_project(&st, &c, &project, &node).await?;
    Ok(ok())
}

/// Take a node back from the project (no networks may be attached).
#[utoipa::path(post, path = "/v0/project/{project}/detach_node", operation_id = "v0_project_detach_node", params(("project" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = NodeArg, responses((status = 200, description = "detached"), (status = 404), (status = 409)))]
pub(super) async fn detach_node(
    State(st): State<AppState>,
    c: Caller,
    Path(project): Path<String>,
    Body(NodeArg { node }): Body<NodeArg>,
) -> R<Response> {
    nodes::detach_project(&st, &c, &project, &node).await?;
    Ok(ok())
}

/// The project's nodes.
#[utoipa::path(get, path = "/v0/project/{project}/nodes", operation_id = "v0_project_nodes", params(("project" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = [String]), (status = 404)))]
pub(super) async fn nodes(State(st): State<AppState>, c: Caller, Path(project): Path<String>) -> R<Json<Vec<String>>> {
    Ok(Json(projects::nodes(&st, &c, &project).await?))
}

/// The networks the project may use.
#[utoipa::path(get, path = "/v0/project/{project}/networks", operation_id = "v0_project_networks", params(("project" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = [String]), (status = 404)))]
pub(super) async fn networks(
    State(st): State<AppState>,
    c: Caller,
    Path(project): Path<String>,
) -> R<Json<Vec<String>>> {
    Ok(Json(projects::networks(&st, &c, &project).await?))
}
