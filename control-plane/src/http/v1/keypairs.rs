//! `/v1/keypairs[/{name}]`: SSH public keys for deployed systems.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::app::AppState;
use crate::app::keypairs::{self, Keypair, KeypairCreate};
use crate::authz::Caller;
use crate::http::{ApiError, Body};

/// OpenAPI description of these routes (merged into `/v1/openapi.json`).
#[derive(Debug, OpenApi)]
#[openapi(paths(list, create, show, remove), components(schemas(Keypair, KeypairCreate)))]
pub struct KeypairsDoc;

/// Routes under `/v1/keypairs`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/keypairs", get(list).post(create)).route("/v1/keypairs/{name}", get(show).delete(remove))
}

/// List the keys the caller may use.
#[utoipa::path(get, path = "/v1/keypairs", operation_id = "keypair_list", responses((status = 200, body = [Keypair])))]
async fn list(State(st): State<AppState>, c: Caller) -> Result<Json<Vec<Keypair>>, ApiError> {
    Ok(Json(keypairs::usable(&st, &c).await?))
}

/// Register a public key.
#[utoipa::path(post, path = "/v1/keypairs", operation_id = "keypair_create", request_body = KeypairCreate, responses((status = 201, body = Keypair)))]
async fn create(
    State(st): State<AppState>,
    c: Caller,
    Body(req): Body<KeypairCreate>,
) -> Result<(StatusCode, Json<Keypair>), ApiError> {
    Ok((StatusCode::CREATED, Json(keypairs::create(&st, &c, req).await?)))
}

/// Show one of the caller's own keys.
#[utoipa::path(get, path = "/v1/keypairs/{name}", operation_id = "keypair_show", params(("name" = String, Path, description = "keypair name: 1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = Keypair)))]
async fn show(State(st): State<AppState>, c: Caller, Path(name): Path<String>) -> Result<Json<Keypair>, ApiError> {
    Ok(Json(keypairs::show(&st, &c, &name).await?))
}

/// Delete one of the caller's own keys.
#[utoipa::path(delete, path = "/v1/keypairs/{name}", operation_id = "keypair_delete", params(("name" = String, Path, description = "keypair name: 1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200)))]
async fn remove(State(st): State<AppState>, c: Caller, Path(name): Path<String>) -> Result<Json<()>, ApiError> {
    keypairs::delete(&st, &c, &name).await?;
    Ok(Json(()))
}
