//! `/v1/events`: the node event log.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::app::AppState;
use crate::app::events::{self, NodeEvent};
use crate::authz::Caller;
use crate::http::ApiError;

/// OpenAPI description of the event log (merged into `/v1/openapi.json`).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(paths(list_events), components(schemas(NodeEvent)))]
pub struct EventsDoc;

/// Routes of the node event log.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/events", get(list_events))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    node: Option<String>,
}

/// `GET /v1/events[?node=N]`: node events of the caller's projects (admins: all), oldest first.
#[utoipa::path(get, path = "/v1/events", operation_id = "event_list",
    params(("node" = Option<String>, Query, description = "only events of this node")),
    responses((status = 200, body = [NodeEvent]), (status = 401, body = crate::http::error::ErrorBody)))]
async fn list_events(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Vec<NodeEvent>>, ApiError> {
    Ok(Json(events::list(&st, &c, q.node.as_deref()).await?))
}
