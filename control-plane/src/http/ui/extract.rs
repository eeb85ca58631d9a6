//! The console's extractors: axum's `Path` and `Query` and axum-extra's
//! `Form` (repeated fields, such as a deployment's nodes), with a malformed
//! request answered as the console's HTML error page, not the API's JSON.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::UiError;

/// A whole number from a form field, or `None` when it is empty.
pub fn whole_number(what: &str, v: &str) -> Result<Option<i64>, UiError> {
    match v.trim() {
        "" => Ok(None),
        t => t.parse().map(Some).map_err(|_| UiError::BadRequest(format!("{what} {t:?} is not a whole number"))),
    }
}

/// A form body.
#[derive(Debug)]
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = UiError;

    async fn from_request(req: Request, st: &S) -> Result<Self, UiError> {
        match axum_extra::extract::Form::<T>::from_request(req, st).await {
            Ok(axum_extra::extract::Form(v)) => Ok(Form(v)),
            Err(e) => Err(UiError::BadRequest(format!("the form is incomplete or malformed: {}", e.body_text()))),
        }
    }
}

/// A query string.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<Self, UiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, st).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => Err(UiError::BadRequest(format!("malformed query: {}", e.body_text()))),
        }
    }
}

/// Path parameters.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<Self, UiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, st).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(UiError::NotFound(format!("no such page: {}", e.body_text()))),
        }
    }
}
