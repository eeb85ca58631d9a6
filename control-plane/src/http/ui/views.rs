//! The console's page frame and the small pieces every page uses. maud
//! escapes every interpolated value, so names, metadata, reasons and
//! console text from the database or the (hostile) provisioning LAN render
//! as text.

use maud::{DOCTYPE, Markup, html};

use crate::app::sessions::Session;

/// htmx's configuration: nothing that needs `eval` or inline styles, so the
/// Content-Security-Policy can forbid both.
const HTMX_CONFIG: &str =
    r#"{"allowEval":false,"allowScriptTags":false,"includeIndicatorStyles":false,"historyCacheSize":0}"#;

/// A whole page: head, the navigation (when signed in), `body`.
pub fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=(HTMX_CONFIG);
                title { (title) " · metalcast" }
                link rel="stylesheet" href=(super::assets::css());
                script src=(super::assets::HTMX) defer {}
                script src=(super::assets::HTMX_SSE) defer {}
            }
            body {
                @if let Some(s) = session {
                    (nav(s))
                }
                main { (body) }
            }
        }
    }
}

fn nav(s: &Session) -> Markup {
    let who = s.caller.user.as_deref().unwrap_or("?");
    html! {
        nav aria-label="main" {
            a.brand href="/ui/nodes" { "metalcast" }
            a href="/ui/nodes" accesskey="f" { "Fleet" }
            a href="/ui/deployments" accesskey="d" { "Deployments" }
            a href="/ui/projects" accesskey="p" { "Projects" }
            a href="/ui/images" accesskey="i" { "Images" }
            a href="/ui/market" accesskey="m" { "Market" }
            span.who {
                (who) @if s.caller.admin { " (admin)" }
                form.inline method="post" action="/ui/logout" {
                    (csrf(s))
                    button type="submit" { "Sign out" }
                }
            }
        }
    }
}

/// The hidden anti-forgery field every form of a session carries.
pub fn csrf(s: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(s.csrf); }
}

/// A state word with a class for its colour (`state-deployed`, ...).
pub fn state(word: &str) -> Markup {
    let class = format!("state state-{}", word.chars().filter(char::is_ascii_alphanumeric).collect::<String>());
    html! { span class=(class) { (word) } }
}

/// A node state's word on the wire (its serde name, as `GET /v1/nodes` sends it).
pub fn node_status(s: crate::app::nodes::NodeStatus) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// A Unix time as UTC RFC 3339, in a `<time>` element.
pub fn time(secs: i64) -> Markup {
    let t = metalcast_operator_api::display::rfc3339(secs);
    html! { time datetime=(t) { (t) } }
}

/// An optional value, or a dash.
pub fn or_dash(v: Option<impl std::fmt::Display>) -> Markup {
    match v {
        Some(v) => html! { (v.to_string()) },
        None => html! { span.muted { "–" } },
    }
}

/// A link to a node's page.
pub fn node_link(name: &str) -> Markup {
    let href = format!("/ui/nodes/{}", metalcast_operator_api::path::segment(name));
    html! { a href=(href) { (name) } }
}

/// A JSON value as readable text: strings without quotes, the rest compact.
pub fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The query of a page a form sends the browser back to: what was done.
#[derive(Debug, serde::Deserialize)]
pub struct Done {
    /// Shown as the page's notice.
    pub done: Option<String>,
}

/// A notice at the top of a page (from a `?done=` after a form post).
pub fn notice(text: Option<&str>) -> Markup {
    match text {
        Some(t) => html! { p.notice role="status" { (t) } },
        None => html! {},
    }
}
