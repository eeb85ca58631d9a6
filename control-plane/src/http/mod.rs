//! The HTTP layer: routers and thin handlers (extract, call the use case in
//! `crate::app`, turn the result into a view), the [`ApiError`] response,
//! and the request extractors. No SQL and no policy here.
//!
//! `/v0` ([`v0`]) is HIL's API, one file per resource; `/v1` ([`v1`]) is
//! metalcast's own, one file per resource too; `/ui` ([`ui`]) is the web
//! console, HTML over the same use cases.

mod error;
mod extract;
mod netboot;
mod openapi;
pub mod ui;
pub mod v0;
pub mod v1;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

pub use error::ApiError;
pub use extract::{Body, Empty, MAX_BODY};

use crate::app::AppState;

/// The whole HTTP API: `/v0` (HIL-compatible), `/v1`, `/boot` (netboot),
/// `/metrics`, and the web console under `/ui`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .nest("/v0", v0::routes())
        .merge(v1::tokens::routes())
        .merge(v1::openapi::routes())
        .merge(v1::images::routes())
        .merge(v1::keypairs::routes())
        .merge(v1::quotas::routes())
        .merge(v1::deployments::routes())
        .merge(v1::metadata::routes())
        .merge(v1::reclaim::routes())
        .merge(v1::nodes::routes())
        .merge(v1::events::routes())
        .merge(v1::market::routes())
        .merge(v1::ledger::routes())
        .merge(v1::netboot::routes())
        .merge(v1::enrollments::routes())
        .merge(netboot::routes())
        .route("/metrics", get(metrics))
        .merge(ui::routes(state.clone()))
        .with_state(state.clone())
        // The node runtimes' API (`docs/runtime-api.md`), with its own state and error shape.
        .merge(state.runtime.router())
        .fallback(|| async { ApiError::NotFound("no such API endpoint".into()) })
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// Turn axum's own plain-text or empty error responses (path/query
/// rejections, 405 Method Not Allowed) into the JSON error shape every other
/// error uses.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let resp = next.run(req).await;
    let status = resp.status();
    // JSON errors, and the web console's own HTML error pages, stay as they are.
    let own = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || own {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let msg = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text };
    let kind = match status.as_u16() {
        401 => "AuthorizationError", // HIL has one type for 401 and 403
        403 => "AuthorizationError",
        404 => "NotFoundError",
        409 => "BlockedError",
        400 | 405 | 413 | 415 | 422 => "BadArgumentError",
        _ => "ServerError",
    };
    (status, axum::Json(serde_json::json!({ "type": kind, "msg": msg }))).into_response()
}

async fn metrics(State(st): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let text = crate::app::metrics::scrape(&st).await?;
    Ok(([(CONTENT_TYPE, crate::metrics::Metrics::content_type())], text))
}

/// Middleware counting every request by method, matched route and status.
async fn track(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    state.metrics.request(&method, &route, status);
    tracing::debug!(%method, %route, status, micros = start.elapsed().as_micros() as u64, "request");
    resp
}
