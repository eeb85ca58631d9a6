//! The marketplace in the console: offers with resource filters, buying
//! at once or bidding, the caller's leases with time left, autobuy rules,
//! credits and transfers, and analytics. Every form that changes something
//! carries a one-time key, used as its `Idempotency-Key`: a form sent twice
//! (a double click, a reload after a post) does its work once, through the
//! same `app::market::execute` as the API.

mod analytics;
mod autobuy;
mod credits;
mod leases;
mod offers;

use axum::Router;
use maud::{Markup, html};
use serde::Deserialize;

use super::UiError;
use super::extract::whole_number;
use crate::app::AppState;
use crate::app::market::{self, Answer, Op};
use crate::app::sessions::Session;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(offers::routes())
        .merge(leases::routes())
        .merge(credits::routes())
        .merge(autobuy::routes())
        .merge(analytics::routes())
}

/// The hidden one-time key of a form that changes something.
fn key_field() -> Markup {
    html! { input type="hidden" name="key" value=(format!("ui-{}", crate::auth::random_hex(16))); }
}

/// The one-time key every changing form sends.
#[derive(Debug, Deserialize)]
struct Keyed {
    key: String,
}

/// Runs `op` for the signed-in caller under the form's key.
async fn run(st: &AppState, s: &Session, key: &str, op: Op) -> Result<Answer, UiError> {
    Ok(market::execute(st, &s.caller, Some(key), op).await?)
}

/// Where to go after a form: `to` with `done` as its notice (saying so
/// when the form had been sent before and nothing was done again).
fn after(to: &str, done: &str, a: &Answer) -> axum::response::Response {
    if a.replayed {
        super::see_other_done(to, &format!("{done} (this form had been sent already: nothing done twice)"))
    } else {
        super::see_other_done(to, done)
    }
}

/// The market's own navigation, above each of its pages.
fn tabs(current: &str) -> Markup {
    html! {
        nav.tabs aria-label="market" {
            @for (href, label) in [("/ui/market", "Offers"), ("/ui/market/leases", "Leases"), ("/ui/market/credits", "Credits"),
                                   ("/ui/market/autobuy", "Autobuy"), ("/ui/market/analytics", "Analytics")] {
                @if label == current { strong aria-current="page" { (label) } } @else { a href=(href) { (label) } }
            }
        }
    }
}

/// A price, credits per node-hour.
fn price(mph: i64) -> String {
    format!("{}/node-h", metalcast_operator_api::display::credits(mph))
}

/// A price field's credits (`1.5`, `1500m`) as milli-credits.
fn parse_amount(what: &str, v: &str) -> Result<i64, UiError> {
    metalcast_operator_api::display::parse_credits(v).map_err(|e| UiError::BadRequest(format!("{what}: {e}")))
}

/// A `<select>` of the caller's projects, `selected` chosen.
fn project_select(name: &str, projects: &[String], selected: Option<&str>) -> Markup {
    html! {
        select name=(name) required {
            @for p in projects { option value=(p) selected[selected == Some(p.as_str())] { (p) } }
        }
    }
}
