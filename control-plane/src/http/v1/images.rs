//! `/v1/images`: the image registry (upload, list, show, share, delete).

use axum::body::Body as RawBody;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::OpenApi;

use crate::app::AppState;
use crate::app::images::{self, ImageInfo, SetVisibility, Visibility};
use crate::authz::Caller;
use crate::http::{ApiError, Body};

/// Query of an upload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    /// Owner project (omit for an administrator image).
    project: Option<String>,
    /// Default: `private` for project images, `public` for administrator images.
    visibility: Option<Visibility>,
}

/// OpenAPI description of these routes (merged into `/v1/openapi.json`).
#[derive(Debug, OpenApi)]
#[openapi(
    paths(list, show, manifest, upload, remove, set_visibility, add_member, remove_member),
    components(schemas(ImageInfo, Visibility, SetVisibility))
)]
pub struct ImagesDoc;

/// Routes under `/v1/images`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/images", get(list))
        .route("/v1/images/{name}", get(show).delete(remove).put(upload).layer(DefaultBodyLimit::disable()))
        .route("/v1/images/{name}/manifest", get(manifest))
        .route("/v1/images/{name}/visibility", put(set_visibility))
        .route("/v1/images/{name}/members/{project}", put(add_member).delete(remove_member))
}

/// List the images the caller may see.
#[utoipa::path(get, path = "/v1/images", operation_id = "image_list", responses((status = 200, body = [ImageInfo])))]
async fn list(State(st): State<AppState>, c: Caller) -> Result<Json<Vec<ImageInfo>>, ApiError> {
    Ok(Json(images::list(&st, &c).await?))
}

/// Show one image.
#[utoipa::path(get, path = "/v1/images/{name}", operation_id = "image_show", params(("name" = String, Path, description = "image name: 1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .), or a nested instance's carrier name <prefix>~<name>")), responses((status = 200, body = ImageInfo)))]
async fn show(State(st): State<AppState>, c: Caller, Path(name): Path<String>) -> Result<Json<ImageInfo>, ApiError> {
    Ok(Json(images::show(&st, &c, &name).await?))
}

/// The image's standalone signed manifest (what nodes verify chunks against).
#[utoipa::path(get, path = "/v1/images/{name}/manifest", operation_id = "image_manifest", params(("name" = String, Path, description = "image name: 1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .), or a nested instance's carrier name <prefix>~<name>")),
    responses((status = 200, description = "signed manifest bytes", content_type = "application/octet-stream")))]
async fn manifest(State(st): State<AppState>, c: Caller, Path(name): Path<String>) -> Result<Response, ApiError> {
    let bytes = images::manifest(&st, &c, &name).await?;
    Ok(([(CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// Upload a signed bundle as image `name`. The body is the bundle file.
#[utoipa::path(put, path = "/v1/images/{name}", operation_id = "image_upload",
    params(("name" = String, Path, description = "image name: 1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .), or a nested instance's carrier name <prefix>~<name>"),
           ("project" = Option<String>, Query, description = "owner project (omit: administrator image)"),
           ("visibility" = Option<Visibility>, Query, description = "public, private or shared")),
    request_body(content = String, content_type = "application/octet-stream", description = "the signed bundle file (`metalcast-image build`)"),
    responses((status = 201, body = ImageInfo), (status = 409), (status = 413), (status = 422)))]
async fn upload(
    State(st): State<AppState>,
    c: Caller,
    Path(name): Path<String>,
    Query(q): Query<UploadQuery>,
    headers: axum::http::HeaderMap,
    body: RawBody,
) -> Result<(StatusCode, Json<ImageInfo>), ApiError> {
    // The declared length, so that size limits and quotas refuse before the upload, not after it.
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let img = images::upload(&st, &c, &name, q.project, q.visibility, declared, body.into_data_stream()).await?;
    Ok((StatusCode::CREATED, Json(img)))
}

/// Delete an image (owner project member or admin).
#[utoipa::path(delete, path = "/v1/images/{name}", operation_id = "image_delete", params(("name" = String, Path, description = "image name: 1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .), or a nested instance's carrier name <prefix>~<name>")), responses((status = 200)))]
async fn remove(State(st): State<AppState>, c: Caller, Path(name): Path<String>) -> Result<Json<()>, ApiError> {
    images::delete(&st, &c, &name).await?;
    Ok(Json(()))
}

/// Change an image's visibility (publishing needs an administrator).
#[utoipa::path(put, path = "/v1/images/{name}/visibility", operation_id = "image_set_visibility", params(("name" = String, Path, description = "image name: 1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .), or a nested instance's carrier name <prefix>~<name>")), request_body = SetVisibility, responses((status = 200)))]
async fn set_visibility(
    State(st): State<AppState>,
    c: Caller,
    Path(name): Path<String>,
    Body(SetVisibility { visibility }): Body<SetVisibility>,
) -> Result<Json<()>, ApiError> {
    images::set_visibility(&st, &c, &name, visibility).await?;
    Ok(Json(()))
}

/// Share an image with a project.
#[utoipa::path(put, path = "/v1/images/{name}/members/{project}", operation_id = "image_member_add", params(("name" = String, Path, description = "image name: 1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .), or a nested instance's carrier name <prefix>~<name>"), ("project" = String, Path, description = "project name: 1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200)))]
async fn add_member(
    State(st): State<AppState>,
    c: Caller,
    Path((name, project)): Path<(String, String)>,
) -> Result<Json<()>, ApiError> {
    images::add_member(&st, &c, &name, &project).await?;
    Ok(Json(()))
}

/// Stop sharing an image with a project.
#[utoipa::path(delete, path = "/v1/images/{name}/members/{project}", operation_id = "image_member_remove", params(("name" = String, Path, description = "image name: 1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .), or a nested instance's carrier name <prefix>~<name>"), ("project" = String, Path, description = "project name: 1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200)))]
async fn remove_member(
    State(st): State<AppState>,
    c: Caller,
    Path((name, project)): Path<(String, String)>,
) -> Result<Json<()>, ApiError> {
    images::remove_member(&st, &c, &name, &project).await?;
    Ok(Json(()))
}
