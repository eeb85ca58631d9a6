//! `GET /v1/nodes`: every node the caller may see, with where it stands.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::app::AppState;
use crate::app::nodes::{self, NodeStatus, NodeSummary};
use crate::authz::Caller;
use crate::http::ApiError;

/// OpenAPI description of the node list.
#[derive(Debug, OpenApi)]
#[openapi(paths(list), components(schemas(NodeSummary, NodeStatus)))]
pub struct NodesDoc;

/// `GET /v1/nodes`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/nodes", get(list))
}

/// Filters of the node list.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    project: Option<String>,
    state: Option<NodeStatus>,
}

/// The nodes the caller may see (admins: all; members: the free ones and
/// their projects'), each with its project, state (free, allocated,
/// deploying, deployed, failed, reclaiming), newest deployment and runtime
/// check-in age; sorted by name.
#[utoipa::path(get, path = "/v1/nodes", operation_id = "node_overview",
    params(("project" = Option<String>, Query, description = "only this project's nodes"),
           ("state" = Option<NodeStatus>, Query, description = "only nodes in this state")),
    responses((status = 200, body = [NodeSummary]), (status = 400)))]
async fn list(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<NodeSummary>>, ApiError> {
    Ok(Json(nodes::overview(&st, &c, q.project.as_deref(), q.state).await?))
}
