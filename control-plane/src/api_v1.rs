//! metalcast's own API additions, under `/v1`, described by an OpenAPI
//! document served at `/v1/openapi.json`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{OpenApi, ToSchema};

use crate::auth::Caller;
use crate::db::Backend;
use crate::error::ApiError;
use crate::extract::{Body, check_name};
use crate::state::AppState;

/// OpenAPI description of `/v1`.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "metalcast control plane /v1",
        description = "metalcast additions to the HIL-compatible /v0 API. \
            Authenticate with `Authorization: Bearer mct_<id>_<secret>` or HTTP Basic."
    ),
    paths(health, whoami, token_create, token_list, token_delete),
    components(schemas(Health, WhoAmI, TokenCreate, TokenCreated, TokenInfo, ErrorBody))
)]
pub struct ApiDoc;

/// Routes of `/v1`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/whoami", get(whoami))
        .route("/v1/tokens", get(token_list).post(token_create))
        .route("/v1/tokens/{id}", delete(token_delete))
        .route("/v1/openapi.json", get(openapi))
}

/// Error body shared by `/v0` and `/v1`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// HIL-style error class, e.g. `NotFoundError`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Human-readable message.
    pub msg: String,
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
#[utoipa::path(get, path = "/v1/health", responses((status = 200, body = Health)))]
async fn health(State(st): State<AppState>) -> Result<Json<Health>, ApiError> {
    sqlx::query("SELECT 1").fetch_one(&st.db.pool).await?;
    Ok(Json(Health {
        status: "ok".into(),
        database: match st.db.backend {
            Backend::Sqlite => "sqlite".into(),
            Backend::Postgres => "postgres".into(),
        },
    }))
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
#[utoipa::path(get, path = "/v1/whoami",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
async fn whoami(c: Caller) -> Result<Json<WhoAmI>, ApiError> {
    let user = c.user.clone().ok_or(ApiError::Unauthenticated)?;
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

/// A newly created token; the secret is shown only once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    /// Token id (used to delete it).
    pub id: String,
    /// The bearer token `mct_<id>_<secret>`.
    pub token: String,
}

/// A stored token (without its secret).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// Token id.
    pub id: String,
    /// Owner.
    pub user: String,
    /// Description given at creation.
    pub description: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

/// Create an API token for `user`; returns (id, token). The secret is
/// stored as an argon2 hash.
pub async fn create_token(st: &AppState, user: &str, description: &str) -> Result<TokenCreated, ApiError> {
    let id = crate::auth::random_hex(8);
    let secret = crate::auth::random_hex(24);
    let hash = crate::auth::hash_secret(secret.clone()).await?;
    sqlx::query(
        "INSERT INTO api_tokens (id, user_name, secret_hash, description, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(user)
    .bind(hash)
    .bind(description)
    .bind(crate::now())
    .execute(&st.db.pool)
    .await?;
    Ok(TokenCreated { token: format!("{}{id}_{secret}", crate::auth::TOKEN_PREFIX), id })
}

/// Create a token for the caller.
#[utoipa::path(post, path = "/v1/tokens", request_body = TokenCreate,
    responses((status = 201, body = TokenCreated), (status = 401, body = ErrorBody)))]
async fn token_create(
    State(st): State<AppState>,
    c: Caller,
    Body(req): Body<TokenCreate>,
) -> Result<Response, ApiError> {
    let user = c.user.ok_or(ApiError::Unauthenticated)?;
    if req.description.len() > 200 {
        return Err(ApiError::BadRequest("description longer than 200 bytes".into()));
    }
    let t = create_token(&st, &user, &req.description).await?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

/// List the caller's tokens (all tokens for admins).
#[utoipa::path(get, path = "/v1/tokens",
    responses((status = 200, body = [TokenInfo]), (status = 401, body = ErrorBody)))]
async fn token_list(State(st): State<AppState>, c: Caller) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let user = c.user.clone().ok_or(ApiError::Unauthenticated)?;
    let rows = sqlx::query(
        "SELECT id, user_name, description, created_at FROM api_tokens \
         WHERE user_name = $1 OR $2 = 1 ORDER BY created_at, id",
    )
    .bind(&user)
    .bind(i64::from(c.admin))
    .fetch_all(&st.db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TokenInfo {
                id: r.try_get(0)?,
                user: r.try_get(1)?,
                description: r.try_get(2)?,
                created_at: r.try_get(3)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map(Json)
        .map_err(ApiError::from)
}

/// Delete a token (own tokens; admins may delete any).
#[utoipa::path(delete, path = "/v1/tokens/{id}",
    params(("id" = String, Path, description = "token id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn token_delete(State(st): State<AppState>, c: Caller, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let user = c.user.clone().ok_or(ApiError::Unauthenticated)?;
    check_name("token id", &id)?;
    let res = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND (user_name = $2 OR $3 = 1)")
        .bind(&id)
        .bind(&user)
        .bind(i64::from(c.admin))
        .execute(&st.db.pool)
        .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::not_found("token", &id));
    }
    st.auth_cache.clear();
    Ok(StatusCode::NO_CONTENT)
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::images::ImagesDoc::openapi());
    doc.merge(crate::deploy::DeploymentsDoc::openapi());
    doc.merge(crate::reclaim::ReclaimDoc::openapi());
    doc.merge(crate::keypairs::KeypairsDoc::openapi());
    doc.merge(crate::quotas::QuotasDoc::openapi());
    doc.merge(crate::upstream::EventsDoc::openapi());
    Json(doc)
}
