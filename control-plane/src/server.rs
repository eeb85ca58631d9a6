//! The HTTP application and server loop.

use std::future::Future;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::error::ApiError;
use crate::extract::MAX_BODY;
use crate::state::AppState;

/// The whole HTTP API: `/v0` (HIL-compatible), `/v1`, `/metrics`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .nest("/v0", crate::api_v0::routes())
        .merge(crate::api_v1::routes())
        .merge(crate::images::routes())
        .merge(crate::keypairs::routes())
        .merge(crate::quotas::routes())
        .merge(crate::deploy::routes())
        .merge(crate::metadata::routes())
        .merge(crate::reclaim::routes())
        .merge(crate::upstream::routes())
        .route("/metrics", get(metrics))
        .with_state(state.clone())
        // The node runtimes' API (`docs/runtime-api.md`), with its own state and error shape.
        .merge(state.runtime.router())
        .fallback(|| async { ApiError::NotFound("no such API endpoint".into()) })
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::metrics::track))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// Turn axum's own plain-text or empty error responses (path/query
/// rejections, 405 Method Not Allowed) into the JSON error shape every other
/// error uses.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let msg = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text };
    let kind = match status.as_u16() {
        401 => "AuthenticationError",
        403 => "AuthorizationError",
        404 => "NotFoundError",
        409 => "BlockedError",
        400 | 405 | 413 | 415 | 422 => "BadArgumentError",
        _ => "ServerError",
    };
    (status, axum::Json(serde_json::json!({ "type": kind, "msg": msg }))).into_response()
}

async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render())
}

/// Serve `app(state)` on an already bound listener until `shutdown`
/// completes; in-flight requests are allowed to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    recover(&state).await;
    tracing::info!(addr = ?listener.local_addr().ok(), "metalcast control plane listening (http)");
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}

/// Like [`serve`], over TLS with a PEM certificate chain and private key.
/// On shutdown, in-flight requests get up to 30 s to finish.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    cert_pem: std::path::PathBuf,
    key_pem: std::path::PathBuf,
) -> std::io::Result<()> {
    crate::install_tls_provider();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert_pem, key_pem).await?;
    recover(&state).await;
    tracing::info!(addr = ?listener.local_addr().ok(), "metalcast control plane listening (https)");
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    axum_server::from_tcp_rustls(listener.into_std()?, config)?
        .handle(handle)
        .serve(app(state).into_make_service())
        .await
}

async fn recover(state: &AppState) {
    match crate::actions::recover(state).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(n, "marked networking actions interrupted by a restart as ERROR"),
        Err(e) => tracing::error!(error = %e, "cannot recover pending networking actions"),
    }
    match crate::deploy::recover(state).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(n, "marked nodes of deployments interrupted by a restart as failed"),
        Err(e) => tracing::error!(error = %e, "cannot recover interrupted deployments"),
    }
}
