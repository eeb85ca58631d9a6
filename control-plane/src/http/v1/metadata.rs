//! `GET /v1/metadata/{token}/{item}`: the NoCloud seed of one deployed node.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::app::{AppState, metadata};
use crate::http::ApiError;

/// Routes under `/v1/metadata/{token}/`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/metadata/{token}/{item}", get(item))
}

async fn item(
    State(st): State<AppState>,
    Path((token, item)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let text = metadata::item(&st, &token, &item).await?;
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}
