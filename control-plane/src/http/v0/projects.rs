//! `/v0/projects`, `/v0/project/<project>[/connect_node|detach_node|nodes|networks]`.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;

use super::{R, ok};
use crate::app::{AppState, nodes, projects};
use crate::authz::Caller;
use crate::http::{Body, Empty};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeArg {
    node: String,
}

pub(super) async fn list(State(st): State<AppState>, c: Caller) -> R<Json<Vec<String>>> {
    Ok(Json(projects::list(&st, &c).await?))
}

pub(super) async fn create(
    State(st): State<AppState>,
    c: Caller,
    Path(project): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    projects::create(&st, &c, &project).await?;
    Ok(ok())
}

pub(super) async fn delete(State(st): State<AppState>, c: Caller, Path(project): Path<String>) -> R<Response> {
    projects::delete(&st, &c, &project).await?;
    Ok(ok())
}

pub(super) async fn connect_node(
    State(st): State<AppState>,
    c: Caller,
    Path(project): Path<String>,
    Body(NodeArg { node }): Body<NodeArg>,
) -> R<Response> {
    nodes::connect_project(&st, &c, &project, &node).await?;
    Ok(ok())
}

pub(super) async fn detach_node(
    State(st): State<AppState>,
    c: Caller,
    Path(project): Path<String>,
    Body(NodeArg { node }): Body<NodeArg>,
) -> R<Response> {
    nodes::detach_project(&st, &c, &project, &node).await?;
    Ok(ok())
}

pub(super) async fn nodes(State(st): State<AppState>, c: Caller, Path(project): Path<String>) -> R<Json<Vec<String>>> {
    Ok(Json(projects::nodes(&st, &c, &project).await?))
}

pub(super) async fn networks(
    State(st): State<AppState>,
    c: Caller,
    Path(project): Path<String>,
) -> R<Json<Vec<String>>> {
    Ok(Json(projects::networks(&st, &c, &project).await?))
}
