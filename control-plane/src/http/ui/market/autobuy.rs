//! Autobuy rules: keep N nodes matching a filter leased at no more than a
//! price and a daily budget.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;

use super::{Keyed, after, parse_amount, price, project_select, run, tabs, whole_number};
use crate::app::AppState;
use crate::app::market::Op;
use crate::app::market::autobuy::{self, AutobuyCreate};
use crate::app::sessions::Session;
use crate::http::ui::extract::{Form, Path, Query};
use crate::http::ui::{UiError, views};
use metalcast_operator_api::display::credits;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/market/autobuy", get(list).post(create))
        .route("/ui/market/autobuy/{id}/delete", post(delete))
}

async fn list(State(st): State<AppState>, s: Session, Query(q): Query<views::Done>) -> Result<Response, UiError> {
    let rules = autobuy::list(&st, &s.caller, "").await?;
    let projects = crate::app::projects::visible(&st, &s.caller).await?;
    let body = html! {
        (tabs("Autobuy"))
        h1 { "Autobuy rules" }
        (views::notice(q.done.as_deref()))
        table #autobuy {
            thead { tr {
                th.num { "Id" } th { "Project" } th { "Filter" } th.num { "Leased / target" } th.num { "Highest" }
                th.num { "Budget left / day" } th.num { "Hours" } th { "Status" } th {}
            } }
            tbody {
                @for r in &rules {
                    tr data-rule=(r.id) {
                        td.num { (r.id) } td { (r.project) } td { code { (r.filter) } }
                        td.num { (r.leased) " / " (r.target) } td.num { (price(r.max_mph)) }
                        td.num { (credits(r.budget_left)) " / " (credits(r.daily_budget)) } td.num { (r.hours) }
                        td.wrap { @if r.enabled { (r.status) } @else { span.state.state-failed { "paused" } " " (r.status) } }
                        td { form.inline method="post" action=(format!("/ui/market/autobuy/{}/delete", r.id)) {
                            (views::csrf(&s)) (super::key_field())
                            button.danger type="submit" { "Delete" }
                        } }
                    }
                }
            }
        }
        @if rules.is_empty() { p.muted { "No rules." } }
        @if !projects.is_empty() {
            h2 { "New rule" }
            form #new-autobuy method="post" action="/ui/market/autobuy" {
                (views::csrf(&s)) (super::key_field())
                div.filters {
                    label { "Project" (project_select("project", &projects, None)) }
                    label { "Filter" input name="filter" placeholder="cpus>=16,memory_gib>=64" size="22"; }
                    label { "Nodes to keep" input name="target" type="number" min="1" value="1" required; }
                    label { "Highest buy-now, credits/node-h" input name="max" required size="10"; }
                    label { "Daily budget, credits" input name="budget" required size="10"; }
                    label { "Hours per lease" input name="hours" type="number" min="1" value="1" required; }
                    button type="submit" { "Create" }
                }
                p.muted { "The day's budget is held in escrow; what is not spent comes back at the next UTC day." }
            }
        }
    };
    Ok(views::page("Autobuy", Some(&s), body).into_response())
}

#[derive(Debug, Deserialize)]
struct NewRule {
    key: String,
    project: String,
    #[serde(default)]
    filter: String,
    target: String,
    max: String,
    budget: String,
    hours: String,
}

async fn create(State(st): State<AppState>, s: Session, Form(f): Form<NewRule>) -> Result<Response, UiError> {
    let req = AutobuyCreate {
        project: f.project,
        filter: f.filter.trim().to_string(),
        target: whole_number("nodes to keep", &f.target)?.unwrap_or(1),
        max_mph: parse_amount("highest price", &f.max)?,
        daily_budget: parse_amount("daily budget", &f.budget)?,
        hours: whole_number("hours per lease", &f.hours)?.unwrap_or(1),
    };
    let a = run(&st, &s, &f.key, Op::CreateAutobuy(req)).await?;
    let id = a.body.get("id").and_then(serde_json::Value::as_i64).unwrap_or_default();
    Ok(after("/ui/market/autobuy", &format!("autobuy rule {id} created"), &a))
}

async fn delete(
    State(st): State<AppState>,
    s: Session,
    Path(id): Path<i64>,
    Form(f): Form<Keyed>,
) -> Result<Response, UiError> {
    let a = run(&st, &s, &f.key, Op::DeleteAutobuy { rule: id }).await?;
    Ok(after("/ui/market/autobuy", &format!("autobuy rule {id} deleted, its budget released"), &a))
}
