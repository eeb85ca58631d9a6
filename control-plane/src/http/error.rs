//! The one error type every HTTP handler returns, and its response: a
//! status and HIL's `{"type", "msg"}` body.
//!
//! The use cases return [`crate::app::Error`]; it becomes an [`ApiError`] at
//! this edge (`From`). Client errors carry a message meant for the caller.
//! Internal errors keep their cause for the log only; the response says
//! "internal error" and nothing else, so database or driver details never
//! leak.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// Errors returned by the REST API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request: bad JSON, unknown fields, illegal names or values.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or invalid credentials where credentials are required.
    #[error("authentication required")]
    Unauthenticated,
    /// Authenticated (or anonymous) caller lacks the required access.
    #[error("{0}")]
    Forbidden(String),
    /// A referenced object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The object is in use or busy (HIL's `BlockedError`).
    #[error("{0}")]
    Conflict(String),
    /// The object to create exists already (HIL's `DuplicateError`).
    #[error("{0}")]
    Duplicate(String),
    /// Well-formed request whose values are not acceptable (e.g. illegal channel).
    #[error("{0}")]
    Unprocessable(String),
    /// A resource pool (VLAN ids) is exhausted.
    #[error("{0}")]
    Exhausted(String),
    /// The server is shutting down, or this replica lost its lease (503, `Retry-After`).
    #[error("{0}")]
    Unavailable(String),
    /// The request body is larger than the server accepts.
    #[error("request body too large")]
    TooLarge,
    /// A hardware driver (BMC, switch) failed; the cause is logged.
    #[error("driver error")]
    Driver(#[source] crate::drivers::DriverError),
    /// Anything else; the cause is logged, never returned.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::Duplicate(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Exhausted(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Driver(crate::drivers::DriverError::Unsupported(_)) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Driver(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// HIL-style error type name returned in the `type` field.
    fn type_name(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BadArgumentError",
            // HIL has one type for 401 and for denied access.
            ApiError::Unauthenticated => "AuthorizationError",
            ApiError::Forbidden(_) => "AuthorizationError",
            ApiError::NotFound(_) => "NotFoundError",
            ApiError::Conflict(_) => "BlockedError",
            ApiError::Duplicate(_) => "DuplicateError",
            ApiError::Unprocessable(_) => "BadArgumentError",
            ApiError::Exhausted(_) => "AllocationError",
            ApiError::Unavailable(_) => "ServiceUnavailableError",
            ApiError::TooLarge => "BadArgumentError",
            ApiError::Driver(_) => "DriverError",
            ApiError::Internal(_) => "ServerError",
        }
    }

    /// Shorthand for a 404 naming the missing object.
    pub fn not_found(kind: &str, name: &str) -> Self {
        ApiError::NotFound(format!("{kind} {name:?} does not exist"))
    }
}

impl From<crate::app::Error> for ApiError {
    fn from(e: crate::app::Error) -> Self {
        use crate::app::Error as E;
        match e {
            E::BadRequest(m) => ApiError::BadRequest(m),
            E::Unauthenticated => ApiError::Unauthenticated,
            E::Forbidden(m) => ApiError::Forbidden(m),
            E::NotFound(m) => ApiError::NotFound(m),
            E::Conflict(m) => ApiError::Conflict(m),
            E::Duplicate(m) => ApiError::Duplicate(m),
            E::Unprocessable(m) => ApiError::Unprocessable(m),
            E::Exhausted(m) => ApiError::Exhausted(m),
            E::ShuttingDown(m) | E::Fenced(m) => ApiError::Unavailable(m),
            E::TooLarge => ApiError::TooLarge,
            E::Driver(d) => ApiError::Driver(d),
            E::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let msg = self.logged_message();
        let mut resp = (status, Json(json!({ "type": self.type_name(), "msg": msg }))).into_response();
        if matches!(self, ApiError::Unavailable(_)) {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("30"));
        }
        resp
    }
}

impl ApiError {
    /// Logs the error (an internal cause only here) and returns what the
    /// caller is told.
    pub fn logged_message(&self) -> String {
        let status = self.status();
        match self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, debug = ?cause, "internal error");
            }
            ApiError::Driver(cause) => {
                tracing::warn!(error = %cause, "driver error");
            }
            _ => tracing::debug!(%status, error = %self, "client error"),
        }
        match self {
            ApiError::Driver(e) => format!("driver error: {}", e.public_message()),
            _ => self.to_string(),
        }
    }
}

/// Error body shared by `/v0` and `/v1`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// HIL-style error class, e.g. `NotFoundError`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Human-readable message.
    pub msg: String,
}
