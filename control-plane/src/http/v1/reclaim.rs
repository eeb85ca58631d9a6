//! `/v1/nodes/{node}/reclaim`: give a node back to the free pool, clean.

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::app::AppState;
use crate::app::reclaim::{self, ReclaimPhase, ReclaimRequest, Reclaimed, WipeSpec};
use crate::authz::Caller;
use crate::http::{ApiError, Body};

/// OpenAPI description of reclaim.
#[derive(Debug, OpenApi)]
#[openapi(paths(reclaim), components(schemas(ReclaimRequest, WipeSpec, ReclaimPhase, Reclaimed)))]
pub struct ReclaimDoc;

/// `POST /v1/nodes/{node}/reclaim`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/nodes/{node}/reclaim", post(reclaim))
}

/// Return a node to the free pool running the runtime (kexec, else BMC), optionally wiped, networks detached.
#[utoipa::path(post, path = "/v1/nodes/{node}/reclaim", operation_id = "node_reclaim", params(("node" = String, Path, description = "node name: 1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = ReclaimRequest,
    responses((status = 200, body = Reclaimed), (status = 409), (status = 502)))]
async fn reclaim(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(req): Body<ReclaimRequest>,
) -> Result<Json<Reclaimed>, ApiError> {
    Ok(Json(reclaim::reclaim(&st, &c, node, req).await?))
}
