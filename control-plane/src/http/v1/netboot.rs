//! `/v1/netboot/leases` and `/v1/nodes/{node}/boot`: built-in netboot's
//! address leases (full mode) and what each node boots.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use crate::app::AppState;
use crate::app::netboot::{self, BootChoice, DhcpLease, NodeBoot};
use crate::authz::Caller;
use crate::http::{ApiError, Body};

/// OpenAPI description of netboot (merged into `/v1/openapi.json`).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(paths(leases, boot_show, boot_set), components(schemas(DhcpLease, NodeBoot, BootChoice)))]
pub struct NetbootDoc;

/// Routes of netboot's API.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/netboot/leases", get(leases)).route("/v1/nodes/{node}/boot", get(boot_show).put(boot_set))
}

/// `GET /v1/netboot/leases`: full mode's address leases (admins).
#[utoipa::path(get, path = "/v1/netboot/leases", operation_id = "netboot_leases",
    responses((status = 200, body = [DhcpLease])))]
async fn leases(State(st): State<AppState>, c: Caller) -> Result<Json<Vec<DhcpLease>>, ApiError> {
    Ok(Json(netboot::leases(&st, &c).await?))
}

/// `GET /v1/nodes/{node}/boot`: what the node boots when it netboots.
#[utoipa::path(get, path = "/v1/nodes/{node}/boot", operation_id = "node_boot_show",
    params(("node" = String, Path, description = "node name")),
    responses((status = 200, body = NodeBoot)))]
async fn boot_show(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
) -> Result<Json<NodeBoot>, ApiError> {
    Ok(Json(netboot::boot_of(&st, &c, &node).await?))
}

/// `PUT /v1/nodes/{node}/boot`: set what the node boots (admins and its project's members).
#[utoipa::path(put, path = "/v1/nodes/{node}/boot", operation_id = "node_boot_set", request_body = NodeBoot,
    params(("node" = String, Path, description = "node name")),
    responses((status = 200, body = NodeBoot)))]
async fn boot_set(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(req): Body<NodeBoot>,
) -> Result<Json<NodeBoot>, ApiError> {
    Ok(Json(netboot::set_boot(&st, &c, &node, req.boot).await?))
}
