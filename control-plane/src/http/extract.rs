//! Request extractors with uniform, clear 4xx errors: the caller (from its
//! credentials, checked by `crate::auth`) and JSON bodies.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::app::AppState;
use crate::authz::Caller;

/// Resolves the caller from the `Authorization` header (none: anonymous).
impl axum::extract::FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).map(|v| v.as_bytes());
        Ok(crate::app::authn::authenticate(state, header).await?)
    }
}

/// Maximum accepted request body, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// A JSON request body. Unlike `axum::Json` it does not insist on a
/// `Content-Type` header (HIL's client library does not send one), and an
/// empty body is read as `{}` so that missing required fields are reported
/// by name. Every body of the API is a JSON object: anything else (an array,
/// which serde would map onto a struct's fields by position, a string, a
/// number) is a 400.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge
            } else {
                ApiError::BadRequest("could not read request body".into())
            }
        })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &bytes };
        if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::BadRequest("invalid request body: expected a JSON object".into()));
        }
        serde_json::from_slice(text).map(Body).map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))
    }
}

/// For calls that take no arguments: accepts an empty body or `{}`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}
