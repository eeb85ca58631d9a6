//! What a call can fail with.

use serde::{Deserialize, Serialize};

/// The server's error body: `{"type": "<HIL error class>", "msg": "..."}`
/// (fields in the order the server sends them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The server's message (safe to show).
    pub msg: String,
    /// HIL's error class, e.g. `NotFoundError`, `BlockedError`,
    /// `AuthorizationError`; empty when the answer was not such a body.
    #[serde(rename = "type", default)]
    pub kind: String,
}

impl ErrorBody {
    /// The error of an answer with status `status` and body `bytes`: the
    /// server's `{"type", "msg"}`, or else the body itself as the message
    /// (the status's reason when the body is empty).
    pub fn parse(status: u16, bytes: &[u8]) -> ErrorBody {
        if let Ok(body) = serde_json::from_slice::<ErrorBody>(bytes) {
            return body;
        }
        let text = String::from_utf8_lossy(bytes).trim().to_string();
        let msg = if text.is_empty() {
            reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("error").to_string()
        } else {
            text
        };
        ErrorBody { msg, kind: String::new() }
    }
}

/// Failure of a call to the operator API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The base URL is not an `http://` or `https://` URL.
    #[error("invalid server URL {0:?}: use http://HOST:PORT or https://HOST:PORT")]
    BadUrl(String),
    /// The HTTP client could not be built (TLS settings).
    #[error("cannot build the HTTP client")]
    Build(#[source] reqwest::Error),
    /// `.` or `..` given as a name: it cannot be a path segment.
    #[error("{0:?} is not a valid name")]
    DotSegment(String),
    /// No HTTP answer: connection refused, timeout, TLS failure, or the
    /// connection broke while the answer was read.
    #[error("cannot reach {url}: {source}")]
    Transport {
        /// The server's base URL.
        url: String,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{status}: {}", body.msg)]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's error body.
        body: ErrorBody,
    },
    /// The answer did not have the shape of the call's answer type.
    #[error("unexpected answer from the server to {path}: {source}")]
    Decode {
        /// The request path.
        path: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The server's event stream broke (connection lost, not an event stream).
    #[error("event stream broke: {0}")]
    Stream(#[source] eventsource_stream::EventStreamError<reqwest::Error>),
    /// A local file to send could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// [`crate::Client::ensure_image`]: an image of that name with another
    /// root hash exists.
    #[error("another image named {name:?} exists (root hash {root_hash})")]
    OtherImage {
        /// The image name.
        name: String,
        /// The root hash of the image that has the name.
        root_hash: String,
    },
}

impl Error {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error body of an API error.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            Error::Api { body, .. } => Some(body),
            _ => None,
        }
    }

    /// No answer because the request timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Transport { source, .. } if source.is_timeout())
    }

    /// No answer because no connection could be made.
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Transport { source, .. } if source.is_connect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_error_body_is_parsed() {
        let b = ErrorBody::parse(409, br#"{"msg":"project \"pa\" already exists","type":"BlockedError"}"#);
        assert_eq!(b.kind, "BlockedError");
        assert_eq!(b.msg, "project \"pa\" already exists");
        let e = Error::Api { status: 409, body: b };
        assert_eq!(e.to_string(), "409: project \"pa\" already exists");
        assert_eq!(e.status(), Some(409));
    }

    #[test]
    fn other_bodies_become_the_message() {
        // A proxy's text page, an empty 502, JSON without `msg`.
        assert_eq!(ErrorBody::parse(502, b"Bad gateway\n").msg, "Bad gateway");
        let b = ErrorBody::parse(503, b"");
        assert_eq!((b.kind.as_str(), b.msg.as_str()), ("", "Service Unavailable"));
        assert_eq!(ErrorBody::parse(400, br#"{"error":"x"}"#).msg, r#"{"error":"x"}"#);
        // A body with `msg` but no `type` still gives the message.
        assert_eq!(ErrorBody::parse(500, br#"{"msg":"internal error"}"#).msg, "internal error");
    }
}
