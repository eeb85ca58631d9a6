//! The use cases' error: what went wrong, in words meant for the caller,
//! with no notion of HTTP. The HTTP layer maps each kind to a status and a
//! HIL error type (`http::ApiError`); internal and driver causes are kept for
//! the log and never shown.

use crate::drivers::DriverError;

/// Errors of the control plane's use cases.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed request: illegal names or values.
    #[error("{0}")]
    BadRequest(String),
    /// Missing or invalid credentials where credentials are required.
    #[error("authentication required")]
    Unauthenticated,
    /// The caller lacks the required access.
    #[error("{0}")]
    Forbidden(String),
    /// A referenced object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The object is in use or busy, or the state forbids the change (HIL's
    /// `BlockedError`).
    #[error("{0}")]
    Conflict(String),
    /// The object to create exists already (HIL's `DuplicateError`).
    #[error("{0}")]
    Duplicate(String),
    /// A well-formed request whose values are not acceptable (e.g. an illegal channel).
    #[error("{0}")]
    Unprocessable(String),
    /// A resource pool (VLAN ids) is exhausted.
    #[error("{0}")]
    Exhausted(String),
    /// The server is shutting down and takes no new long-running work.
    #[error("{0}")]
    ShuttingDown(String),
    /// This replica no longer holds the work (or its own lease), so it made
    /// no side effect: another replica took over, or it was paused or cut
    /// off past its dead timeout (`docs/scale-out.md`, fencing).
    #[error("{0}")]
    Fenced(String),
    /// The request body is larger than the server accepts.
    #[error("request body too large")]
    TooLarge,
    /// A hardware driver (BMC, switch) failed; the cause is logged.
    #[error("driver error")]
    Driver(#[source] DriverError),
    /// Anything else; the cause is logged, never returned.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The use cases' result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A 404 naming the missing object.
    pub fn not_found(kind: &str, name: &str) -> Self {
        Error::NotFound(format!("{kind} {name:?} does not exist"))
    }

    /// The message a caller may see: the error itself, with a driver's
    /// public cause (e.g. the parent's refusal, for a nested instance) and
    /// never an internal one.
    pub fn public_message(&self) -> String {
        match self {
            Error::Driver(e) => format!("driver error: {}", e.public_message()),
            other => other.to_string(),
        }
    }

    /// An internal error from any cause.
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Internal(e.into())
    }
}

impl From<sqlx::Error> for Error {
    /// Constraint violations are the caller's conflict or bad value (with a
    /// generic message: use [`conflict`] where a specific one is known);
    /// anything else is internal.
    fn from(e: sqlx::Error) -> Self {
        if let Some(db) = e.as_database_error() {
            use sqlx::error::ErrorKind;
            match db.kind() {
                ErrorKind::UniqueViolation => {
                    tracing::debug!(error = %db, "unique violation");
                    return Error::Conflict("object already exists or is in use".into());
                }
                ErrorKind::ForeignKeyViolation => {
                    tracing::debug!(error = %db, "foreign key violation");
                    return Error::Conflict("object is in use or references an object that does not exist".into());
                }
                ErrorKind::NotNullViolation | ErrorKind::CheckViolation => {
                    tracing::debug!(error = %db, "constraint violation");
                    return Error::Unprocessable("value violates a constraint".into());
                }
                _ => {}
            }
        }
        Error::Internal(Box::new(e))
    }
}

impl From<DriverError> for Error {
    fn from(e: DriverError) -> Self {
        Error::Driver(e)
    }
}

/// `r`, with a conflict (unique or foreign key violation) worded as `msg`.
/// A unique violation of a create: [`Error::Duplicate`] with `msg`.
pub fn duplicate<T>(r: std::result::Result<T, sqlx::Error>, msg: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|e| match Error::from(e) {
        Error::Conflict(_) => Error::Duplicate(msg()),
        other => other,
    })
}

pub fn conflict<T>(r: std::result::Result<T, sqlx::Error>, msg: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|e| match Error::from(e) {
        Error::Conflict(_) => Error::Conflict(msg()),
        other => other,
    })
}

/// Checks an object name given in a URL path or body ([`crate::names::check_name`]); a 400 if illegal.
pub fn check_name(kind: &str, name: &str) -> Result<()> {
    crate::names::check_name(kind, name).map_err(Error::BadRequest)
}

/// Checks the name of a network or image ([`crate::names::check_object_name`]:
/// carrier names allowed); a 400 if illegal.
pub fn check_object_name(kind: &str, name: &str) -> Result<()> {
    crate::names::check_object_name(kind, name).map_err(Error::BadRequest)
}

/// Refuses a carrier name for an object of another owner
/// ([`crate::names::check_carrier_owner`]); a 403.
pub fn check_carrier_owner(kind: &str, name: &str, owner: Option<&str>) -> Result<()> {
    crate::names::check_carrier_owner(kind, name, owner).map_err(Error::Forbidden)
}

/// Checks a MAC address ([`crate::names::check_mac`]); a 400 if illegal.
pub fn check_mac(mac: &str) -> Result<()> {
    crate::names::check_mac(mac).map_err(Error::BadRequest)
}

impl From<crate::drivers::parent::UpstreamError> for Error {
    fn from(e: crate::drivers::parent::UpstreamError) -> Self {
        Error::Driver(DriverError::Upstream(e))
    }
}

impl From<crate::auth::HashError> for Error {
    fn from(e: crate::auth::HashError) -> Self {
        Error::internal(e)
    }
}

impl From<crate::authz::Error> for Error {
    fn from(e: crate::authz::Error) -> Self {
        match e {
            crate::authz::Error::Unauthenticated => Error::Unauthenticated,
            crate::authz::Error::Forbidden(msg) => Error::Forbidden(msg),
            no_policy @ crate::authz::Error::NoPolicy(_) => Error::internal(no_policy),
        }
    }
}
