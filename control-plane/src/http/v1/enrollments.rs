//! `/v1/enrollments`: machines that netbooted in enrollment mode, for an
//! admin to accept (a node is registered) or reject.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::app::AppState;
use crate::app::enrollments::{self, Enrollment, EnrollmentAccept};
use crate::authz::Caller;
use crate::http::{ApiError, Body, Empty};

/// OpenAPI description of enrollments (merged into `/v1/openapi.json`).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(paths(list, show, accept, reject), components(schemas(Enrollment, EnrollmentAccept)))]
pub struct EnrollmentsDoc;

/// Routes of enrollments.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/enrollments", get(list))
        .route("/v1/enrollments/{mac}", get(show))
        .route("/v1/enrollments/{mac}/accept", post(accept))
        .route("/v1/enrollments/{mac}/reject", post(reject))
}

/// `GET /v1/enrollments`: every enrollment, newest first (admins).
#[utoipa::path(get, path = "/v1/enrollments", operation_id = "enrollment_list",
    responses((status = 200, body = [Enrollment])))]
async fn list(State(st): State<AppState>, c: Caller) -> Result<Json<Vec<Enrollment>>, ApiError> {
    Ok(Json(enrollments::list(&st, &c).await?))
}

/// `GET /v1/enrollments/{mac}`.
#[utoipa::path(get, path = "/v1/enrollments/{mac}", operation_id = "enrollment_show",
    params(("mac" = String, Path, description = "MAC address")),
    responses((status = 200, body = Enrollment)))]
async fn show(State(st): State<AppState>, c: Caller, Path(mac): Path<String>) -> Result<Json<Enrollment>, ApiError> {
    Ok(Json(enrollments::get(&st, &c, &mac).await?))
}

/// `POST /v1/enrollments/{mac}/accept`: register the machine as a free node (admins).
#[utoipa::path(post, path = "/v1/enrollments/{mac}/accept", operation_id = "enrollment_accept",
    request_body = EnrollmentAccept, params(("mac" = String, Path, description = "MAC address")),
    responses((status = 200, body = Enrollment)))]
async fn accept(
    State(st): State<AppState>,
    c: Caller,
    Path(mac): Path<String>,
    Body(req): Body<EnrollmentAccept>,
) -> Result<Json<Enrollment>, ApiError> {
    Ok(Json(enrollments::accept(&st, &c, &mac, &req).await?))
}

/// `POST /v1/enrollments/{mac}/reject`: never netboot this machine again (admins).
#[utoipa::path(post, path = "/v1/enrollments/{mac}/reject", operation_id = "enrollment_reject",
    params(("mac" = String, Path, description = "MAC address")),
    responses((status = 200, body = Enrollment)))]
async fn reject(
    State(st): State<AppState>,
    c: Caller,
    Path(mac): Path<String>,
    Body(_): Body<Empty>,
) -> Result<Json<Enrollment>, ApiError> {
    Ok(Json(enrollments::reject(&st, &c, &mac).await?))
}
