//! `GET|PUT /v1/projects/{project}/quota`.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::app::AppState;
use crate::app::quotas::{self, Quota, QuotaUsage};
use crate::http::{ApiError, Body};

/// OpenAPI description of these routes (merged into `/v1/openapi.json`).
#[derive(Debug, OpenApi)]
#[openapi(paths(show, set), components(schemas(Quota, QuotaUsage)))]
pub struct QuotasDoc;

/// Routes: `GET|PUT /v1/projects/{project}/quota`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/projects/{project}/quota", get(show).put(set))
}

/// Show a project's quota and usage (members and admins).
#[utoipa::path(get, path = "/v1/projects/{project}/quota", operation_id = "quota_show", params(("project" = String, Path, description = "project name: 1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = QuotaUsage)))]
async fn show(
    State(st): State<AppState>,
    c: crate::authz::Caller,
    Path(project): Path<String>,
) -> Result<Json<QuotaUsage>, ApiError> {
    Ok(Json(quotas::show(&st, &c, project).await?))
}

/// `?force=true` of `PUT .../quota`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SetQuery {
    #[serde(default)]
    force: bool,
}

/// Set a project's quota (admin only). Lowering a limit below what the
/// project uses now is refused (409) unless `force=true`: then nothing is
/// taken away, and new requests are refused until use is back under.
#[utoipa::path(put, path = "/v1/projects/{project}/quota", operation_id = "quota_set", params(("project" = String, Path, description = "project name: 1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"), ("force" = Option<bool>, Query, description = "set a limit below current use")), request_body = Quota, responses((status = 200, body = Quota), (status = 409, description = "a limit lowered below current use without force")))]
async fn set(
    State(st): State<AppState>,
    c: crate::authz::Caller,
    Path(project): Path<String>,
    axum::extract::Query(query): axum::extract::Query<SetQuery>,
    Body(q): Body<Quota>,
) -> Result<Json<Quota>, ApiError> {
    Ok(Json(quotas::set(&st, &c, project, q, query.force).await?))
}
