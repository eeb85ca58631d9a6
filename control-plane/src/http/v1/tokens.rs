//! `/v1/health`, `/v1/whoami`, `/v1/tokens[/{id}]`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::app::tokens::{self, TokenCreated, TokenInfo};
use crate::authz::Caller;
use crate::http::error::ErrorBody;
use crate::http::{ApiError, Body};

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/whoami", get(whoami))
        .route("/v1/tokens", get(token_list).post(token_create))
        .route("/v1/tokens/{id}", delete(token_delete))
}

/// Health report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the database answers.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub database: String,
}

/// Liveness and database check (no authentication).
#[utoipa::path(get, path = "/v1/health", operation_id = "health", responses((status = 200, body = Health)))]
pub async fn health(State(st): State<AppState>) -> Result<Json<Health>, ApiError> {
    let database = tokens::health(&st).await?;
    Ok(Json(Health { status: "ok".into(), database: database.into() }))
}

/// The authenticated caller.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    /// User name.
    pub user: String,
    /// Administrator?
    pub admin: bool,
    /// Project memberships, sorted.
    pub projects: Vec<String>,
}

/// Who am I (requires credentials).
#[utoipa::path(get, path = "/v1/whoami", operation_id = "whoami",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
pub async fn whoami(c: Caller) -> Result<Json<WhoAmI>, ApiError> {
    let user = tokens::user(&c)?.to_string();
    let mut projects: Vec<String> = c.projects.into_iter().collect();
    projects.sort();
    Ok(Json(WhoAmI { user, admin: c.admin, projects }))
}

/// Request to create an API token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// Free-form note, e.g. where the token is used (max 200 bytes).
    #[serde(default)]
    pub description: String,
}

/// Create a token for the caller.
#[utoipa::path(post, path = "/v1/tokens", operation_id = "token_create", request_body = TokenCreate,
    responses((status = 201, body = TokenCreated), (status = 401, body = ErrorBody)))]
pub async fn token_create(
    State(st): State<AppState>,
    c: Caller,
    Body(req): Body<TokenCreate>,
) -> Result<Response, ApiError> {
    let t = tokens::create(&st, &c, &req.description).await?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

/// List the caller's tokens (all tokens for admins).
#[utoipa::path(get, path = "/v1/tokens", operation_id = "token_list",
    responses((status = 200, body = [TokenInfo]), (status = 401, body = ErrorBody)))]
pub async fn token_list(State(st): State<AppState>, c: Caller) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(tokens::list(&st, &c).await?))
}

/// Delete a token (own tokens; admins may delete any).
#[utoipa::path(delete, path = "/v1/tokens/{id}", operation_id = "token_delete",
    params(("id" = String, Path, description = "token id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn token_delete(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    tokens::delete(&st, &c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
