//! Sign-in and sign-out. The sign-in form has its own anti-forgery token (a
//! cookie it must match), since there is no session yet; a password or a
//! token never appears in a URL and is never logged.

use axum::Router;
use axum::extract::State;

use super::extract::{Form, Query};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use maud::html;
use serde::Deserialize;

use super::{SESSION_COOKIE, Tls, UiError, views};
use crate::app::AppState;
use crate::app::sessions::{self, Session};

const LOGIN_COOKIE: &str = "metalcast_signin";

pub fn routes() -> Router<AppState> {
    Router::new().route("/ui/login", get(form).post(sign_in)).route("/ui/logout", post(sign_out))
}

#[derive(Debug, Deserialize)]
struct Next {
    next: Option<String>,
    failed: Option<String>,
}

/// Only a console path may follow the sign-in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("//") && !n.contains(['\\', '\r', '\n']) => n.to_string(),
        _ => "/ui/nodes".to_string(),
    }
}

/// A browser-session cookie (gone when the browser closes; the server
/// ends the session itself after [`sessions::TTL_SECS`]).
fn cookie(name: &'static str, value: String, path: &'static str, tls: bool) -> Cookie<'static> {
    Cookie::build((name, value)).path(path).http_only(true).same_site(SameSite::Strict).secure(tls).build()
}

async fn form(jar: CookieJar, tls: Option<axum::Extension<Tls>>, Query(q): Query<Next>) -> Response {
    let token = crate::auth::random_hex(16);
    let next = safe_next(q.next.as_deref());
    let body = html! {
        div.signin {
            h1 { "Sign in to metalcast" }
            @if q.failed.is_some() {
                p.error role="alert" { "Sign-in failed: wrong user, password or token." }
            }
            form method="post" action="/ui/login" {
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="next" value=(next);
                fieldset {
                    legend { "User and password" }
                    label { "User" input name="user" autocomplete="username" autofocus; }
                    label { "Password" input name="password" type="password" autocomplete="current-password"; }
                }
                fieldset {
                    legend { "or an API token" }
                    label { "Token (mct_...)" input name="token" type="password" autocomplete="off"; }
                }
                button type="submit" { "Sign in" }
            }
        }
    };
    let jar = jar.add(cookie(LOGIN_COOKIE, token, "/ui/login", tls.is_some()));
    (jar, views::page("Sign in", None, body)).into_response()
}

#[derive(Deserialize)]
struct SignIn {
    csrf: String,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    token: String,
}

async fn sign_in(
    State(st): State<AppState>,
    jar: CookieJar,
    tls: Option<axum::Extension<Tls>>,
    Form(f): Form<SignIn>,
) -> Result<Response, UiError> {
    let expected = jar.get(LOGIN_COOKIE).map(|c| c.value().to_string());
    if !expected.is_some_and(|e| blake3::hash(e.as_bytes()) == blake3::hash(f.csrf.as_bytes())) {
        return Err(UiError::Forbidden("the sign-in form expired or came from elsewhere: reload it".into()));
    }
    let next = safe_next(f.next.as_deref());
    let opened = if !f.token.trim().is_empty() {
        sessions::sign_in_token(&st, &f.token).await
    } else {
        sessions::sign_in_password(&st, &f.user, &f.password).await
    };
    let opened = match opened {
        Ok(o) => o,
        Err(crate::app::Error::Unauthenticated) => {
            let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
            return Ok(super::see_other(&format!("/ui/login?failed=1&next={next}")));
        }
        Err(e) => return Err(e.into()),
    };
    let jar = jar.remove(Cookie::build(LOGIN_COOKIE).path("/ui/login")).add(cookie(
        SESSION_COOKIE,
        opened.cookie,
        "/ui",
        tls.is_some(),
    ));
    Ok((jar, super::see_other(&next)).into_response())
}

async fn sign_out(State(st): State<AppState>, jar: CookieJar, s: Session) -> Result<Response, UiError> {
    sessions::close(&st, &s.id).await?;
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/ui"));
    Ok((jar, super::see_other("/ui/login")).into_response())
}
