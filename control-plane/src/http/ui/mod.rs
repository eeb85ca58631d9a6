//! The web console under `/ui` (`docs/web-console.md`): server-rendered HTML
//! (maud escapes every value), readable without JavaScript; htmx and its
//! server-sent-events extension, vendored at pinned versions and served from
//! the binary, update the live pages. Thin handlers like the API's: each page
//! calls the same use cases in `crate::app` with the signed-in caller, so a
//! project member sees exactly what the API would show it.
//!
//! Security: a session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` under
//! TLS, path `/ui`), a per-session anti-forgery token checked on every form
//! post before any handler runs, a cross-site `Origin` refused, a strict
//! Content-Security-Policy (scripts and styles from `/ui/assets` only) and no
//! credential ever in a URL.

mod assets;
mod charts;
mod deployments;
mod error;
mod extract;
mod images;
mod market;
mod nodes;
mod projects;
mod sessions;
mod views;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::CookieJar;

pub use error::UiError;

use crate::app::AppState;
use crate::app::sessions::Session;

/// Marks requests that arrived over TLS (set by `serve_tls`): the session
/// cookie is then `Secure`.
#[derive(Debug, Clone, Copy)]
pub struct Tls;

/// Name of the session cookie.
const SESSION_COOKIE: &str = "metalcast_session";
/// Name of the form field carrying the anti-forgery token.
const CSRF_FIELD: &str = "csrf";
/// Largest form the console accepts, bytes.
const MAX_FORM: usize = 64 * 1024;

/// Every header a console response carries.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Routes under `/ui`.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/nodes") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/nodes") }))
        .merge(sessions::routes())
        .merge(nodes::routes())
        .merge(deployments::routes())
        .merge(projects::routes())
        .merge(images::routes())
        .merge(market::routes())
        .merge(assets::routes())
        .fallback(|| async { UiError::NotFound("no such page".into()) })
        .layer(axum::middleware::from_fn_with_state(state, check_forms))
        .layer(axum::middleware::from_fn(security_headers))
}

/// The signed-in session of a console request; a request without one is
/// sent to the sign-in page (a GET) or refused (anything else).
impl FromRequestParts<AppState> for Session {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, st: &AppState) -> Result<Self, UiError> {
        if let Some(s) = parts.extensions.get::<Session>() {
            return Ok(s.clone());
        }
        match session_of(&parts.headers, st).await? {
            Some(s) => Ok(s),
            None if parts.method == Method::GET => Err(UiError::SignIn(parts.uri.path().to_string())),
            None => Err(UiError::Unauthenticated),
        }
    }
}

async fn session_of(headers: &axum::http::HeaderMap, st: &AppState) -> Result<Option<Session>, UiError> {
    let jar = CookieJar::from_headers(headers);
    match jar.get(SESSION_COOKIE) {
        Some(c) => Ok(crate::app::sessions::resolve(st, c.value()).await?),
        None => Ok(None),
    }
}

/// Every state-changing console request is a form post that must come from
/// the console itself: a cross-site `Origin` or `Sec-Fetch-Site` is refused,
/// and the form must carry the session's anti-forgery token (the sign-in form
/// its own, checked by its handler). Runs before any handler, so no form can
/// forget it.
async fn check_forms(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, UiError> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return Ok(next.run(req).await);
    }
    if req.method() != Method::POST {
        return Err(UiError::BadRequest("the console accepts only GET and form POST".into()));
    }
    let h = req.headers();
    if h.get("sec-fetch-site").is_some_and(|v| v != "same-origin" && v != "none") {
        return Err(UiError::Forbidden("cross-site form post refused".into()));
    }
    if let (Some(origin), Some(host)) = (h.get(header::ORIGIN), h.get(header::HOST)) {
        let origin = origin.to_str().unwrap_or("");
        let same = origin.split_once("://").is_some_and(|(_, rest)| rest.as_bytes() == host.as_bytes());
        if !same {
            return Err(UiError::Forbidden("cross-origin form post refused".into()));
        }
    }
    if req.uri().path() == "/ui/login" {
        return Ok(next.run(req).await);
    }
    let Some(session) = session_of(req.headers(), &st).await? else { return Err(UiError::Unauthenticated) };
    let (mut parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| UiError::BadRequest("form too large".into()))?;
    let given = form_urlencoded::parse(&bytes).find(|(k, _)| k == CSRF_FIELD).map(|(_, v)| v.into_owned());
    if !given.is_some_and(|t| session.csrf_matches(&t)) {
        st.metrics.auth_failure();
        tracing::warn!(path = %parts.uri.path(), "console form without a valid anti-forgery token refused");
        return Err(UiError::Forbidden("the form's anti-forgery token is missing or wrong: reload the page".into()));
    }
    parts.extensions.insert(session);
    Ok(next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await)
}

/// Security headers on every console response.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// A redirect after a successful form post (303: the browser GETs the target).
fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// [`see_other`] to `to` with `done` as the notice the page shows
/// ([`views::Done`]).
fn see_other_done(to: &str, done: &str) -> Response {
    let done: String = form_urlencoded::byte_serialize(done.as_bytes()).collect();
    let sep = if to.contains('?') { '&' } else { '?' };
    see_other(&format!("{to}{sep}done={done}"))
}
