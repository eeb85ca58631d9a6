//! The console's error page: the use case's error with its status, as HTML.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use crate::http::ApiError;

/// A console request that failed.
#[derive(Debug)]
pub enum UiError {
    /// Not signed in on a page: go to the sign-in page, then back to this path.
    SignIn(String),
    /// Not signed in for a form post or a stream.
    Unauthenticated,
    /// Refused (cross-site post, missing anti-forgery token).
    Forbidden(String),
    /// A malformed form or query.
    BadRequest(String),
    /// No such page.
    NotFound(String),
    /// What the use case said, with the API's status for it.
    App(ApiError),
}

impl From<crate::app::Error> for UiError {
    fn from(e: crate::app::Error) -> Self {
        match e {
            crate::app::Error::Unauthenticated => UiError::Unauthenticated,
            e => UiError::App(ApiError::from(e)),
        }
    }
}

impl UiError {
    fn status_and_message(&self) -> (StatusCode, String) {
        match self {
            UiError::SignIn(_) | UiError::Unauthenticated => {
                (StatusCode::UNAUTHORIZED, "sign in first (your session may have expired)".into())
            }
            UiError::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
            UiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            UiError::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            UiError::App(e) => (e.status(), e.logged_message()),
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        if let UiError::SignIn(path) = &self {
            let next: String = form_urlencoded::byte_serialize(path.as_bytes()).collect();
            return Redirect::to(&format!("/ui/login?next={next}")).into_response();
        }
        let (status, message) = self.status_and_message();
        let title = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("error"));
        let page = super::views::page(
            &title,
            None,
            maud::html! {
                h1 { (title) }
                p.error role="alert" { (message) }
                p { a href="/ui/nodes" { "Back to the fleet" } }
            },
        );
        (status, page).into_response()
    }
}
