//! `/boot/...`: what netbooting machines fetch over HTTP (docs/netboot.md).
//! No credentials: each per-MAC request carries the signed, expiring token
//! of its iPXE script (`?t=`), bound to the MAC in the path; anything else
//! is refused (403, counted). `/boot/ipxe.efi` is the public iPXE binary
//! for UEFI HTTP boot clients.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::app::AppState;
use crate::app::netboot::{self, RuntimeFile};
use crate::http::ApiError;

/// Routes of the netboot HTTP side.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/boot/ipxe.efi", get(ipxe_efi))
        .route("/boot/{mac}/script.ipxe", get(script))
        .route("/boot/{mac}/vmlinuz", get(kernel))
        .route("/boot/{mac}/initrd", get(initrd))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenQuery {
    #[serde(default)]
    t: String,
}

async fn script(
    State(st): State<AppState>,
    Path(mac): Path<String>,
    Query(q): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    let text = netboot::script(&st, &mac, &q.t).await?;
    Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

async fn kernel(st: State<AppState>, mac: Path<String>, q: Query<TokenQuery>) -> Result<Response, ApiError> {
    runtime_file(st, mac, q, RuntimeFile::Kernel).await
}

async fn initrd(st: State<AppState>, mac: Path<String>, q: Query<TokenQuery>) -> Result<Response, ApiError> {
    runtime_file(st, mac, q, RuntimeFile::Initrd).await
}

async fn runtime_file(
    State(st): State<AppState>,
    Path(mac): Path<String>,
    Query(q): Query<TokenQuery>,
    which: RuntimeFile,
) -> Result<Response, ApiError> {
    let path = netboot::runtime_file(&st, &mac, &q.t, which).await?;
    send_file(&path).await
}

async fn ipxe_efi(State(st): State<AppState>) -> Result<Response, ApiError> {
    send_file(&netboot::uefi_binary(&st)?).await
}

/// Streams a file with its length (iPXE shows progress from it).
async fn send_file(path: &std::path::Path) -> Result<Response, ApiError> {
    let f = tokio::fs::File::open(path).await.map_err(|e| {
        tracing::error!(path = %path.display(), error = %e, "netboot file missing");
        ApiError::NotFound("netboot file not available on this server".into())
    })?;
    let len = f.metadata().await.map_err(|e| ApiError::Internal(Box::new(e)))?.len();
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(f, 256 << 10));
    Ok(([(CONTENT_TYPE, "application/octet-stream".to_string()), (CONTENT_LENGTH, len.to_string())], body)
        .into_response())
}
