//! Request extractors with uniform, clear 4xx errors.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Maximum accepted request body, in bytes.
pub const MAX_BODY: usize = 64 * 1024;

/// A JSON request body. Unlike `axum::Json` it does not insist on a
/// `Content-Type` header (HIL's client library does not send one), and an
/// empty body is read as `{}` so that missing required fields are reported
/// by name.
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
        serde_json::from_slice(text).map(Body).map_err(|e| ApiError::BadRequest(format!("invalid request body: {e}")))
    }
}

/// For calls that take no arguments: accepts an empty body or `{}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// Check an object name given in a URL path or body.
///
/// Names are 1–64 characters of `A-Z a-z 0-9 _ . -`, not starting with `-`
/// or `.`; this keeps them safe in URLs, shells and interface names.
pub fn check_name(kind: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['-', '.'])
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid {kind} name {name:?}: use 1-64 characters from A-Z a-z 0-9 _ . - (not starting with - or .)"
        )))
    }
}

/// Check a MAC address `xx:xx:xx:xx:xx:xx`.
pub fn check_mac(mac: &str) -> Result<(), ApiError> {
    let parts: Vec<&str> = mac.split(':').collect();
    let ok = parts.len() == 6 && parts.iter().all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!("invalid macaddr {mac:?}: expected six hex pairs separated by ':'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("node", "node-1.a_b").is_ok());
        for bad in ["", "-x", ".x", "a/b", "a b", "ä", "x;rm", &"a".repeat(65)] {
            assert!(check_name("node", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn macs() {
        assert!(check_mac("52:54:00:aB:cd:ef").is_ok());
        assert!(check_mac("52:54:00:ab:cd").is_err());
        assert!(check_mac("52-54-00-ab-cd-ef").is_err());
    }
}
