//! The console's static files, compiled into the binary: its stylesheet and
//! the vendored htmx 2.0.11 and htmx-ext-sse 2.2.4 (from their npm packages
//! `htmx.org` and `htmx-ext-sse`, Zero-Clause BSD; licenses beside them in
//! `control-plane/assets/ui/vendor/`). File names carry the version (the
//! stylesheet's, a hash of its bytes), so they are cached for a year and a
//! changed file is a new name.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::UiError;
use crate::app::AppState;

/// The stylesheet.
const CSS_BYTES: &[u8] = include_bytes!("../../../assets/ui/console.css");

/// The stylesheet's file name, `console-<hash>.css`.
static CSS_NAME: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("console-{}.css", &blake3::hash(CSS_BYTES).to_hex()[..12]));

/// The stylesheet's URL.
pub fn css() -> String {
    format!("/ui/assets/{}", *CSS_NAME)
}
/// htmx's URL.
pub const HTMX: &str = "/ui/assets/htmx-2.0.11.min.js";
/// The SSE extension's URL.
pub const HTMX_SSE: &str = "/ui/assets/htmx-ext-sse-2.2.4.min.js";

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "htmx-2.0.11.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../assets/ui/vendor/htmx-2.0.11.min.js"),
    ),
    (
        "htmx-ext-sse-2.2.4.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../assets/ui/vendor/htmx-ext-sse-2.2.4.min.js"),
    ),
    ("LICENSE-htmx.org", "text/plain; charset=utf-8", include_bytes!("../../../assets/ui/vendor/LICENSE-htmx.org")),
    (
        "LICENSE-htmx-ext-sse",
        "text/plain; charset=utf-8",
        include_bytes!("../../../assets/ui/vendor/LICENSE-htmx-ext-sse"),
    ),
];

pub fn routes() -> Router<AppState> {
    Router::new().route("/ui/assets/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Result<Response, UiError> {
    let (mime, bytes) = if file == *CSS_NAME {
        ("text/css; charset=utf-8", CSS_BYTES)
    } else {
        let (_, mime, bytes) =
            FILES.iter().find(|(name, _, _)| *name == file).ok_or_else(|| UiError::NotFound("no such file".into()))?;
        (*mime, *bytes)
    };
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    Ok(resp)
}
