//! Credits: one project's accounts and its latest transfers, a form to pay
//! another project (or move revenue to available), and for admins a form
//! to mint.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;

use super::{after, parse_amount, project_select, run, tabs};
use crate::app::AppState;
use crate::app::market::Op;
use crate::app::market::ledger::{self, Mint, TransferCreate};
use crate::app::sessions::Session;
use crate::http::ui::extract::{Form, Query};
use crate::http::ui::{UiError, views};
use metalcast_operator_api::display::credits;

/// Transfers shown.
const LATEST: i64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/market/credits", get(show))
        .route("/ui/market/credits/transfer", post(transfer))
        .route("/ui/market/credits/mint", post(mint))
}

#[derive(Debug, Deserialize)]
struct CreditsQuery {
    project: Option<String>,
    done: Option<String>,
}

fn to_credits_page(project: &str) -> String {
    format!("/ui/market/credits?project={}", form_urlencoded::byte_serialize(project.as_bytes()).collect::<String>())
}

async fn show(State(st): State<AppState>, s: Session, Query(q): Query<CreditsQuery>) -> Result<Response, UiError> {
    let projects = crate::app::projects::visible(&st, &s.caller).await?;
    let Some(project) = q.project.clone().or_else(|| projects.first().cloned()) else {
        let body = html! { (tabs("Credits")) h1 { "Credits" } p.muted { "You are in no project." } };
        return Ok(views::page("Credits", Some(&s), body).into_response());
    };
    let accounts = ledger::accounts(&st, &s.caller, &project).await?;
    let transfers = ledger::transfers(&st, &s.caller, &project, LATEST).await?;
    let balance = |kind: &str| accounts.iter().find(|a| a.kind == kind).map_or(0, |a| a.balance);
    let body = html! {
        (tabs("Credits"))
        h1 { "Credits of " (project) }
        (views::notice(q.done.as_deref()))
        form.filters method="get" action="/ui/market/credits" {
            label { "Project" (project_select("project", &projects, Some(&project))) }
            button type="submit" { "Show" }
        }
        table #accounts {
            thead { tr { th { "Account" } th.num { "Credits" } th { "What it is" } } }
            tbody {
                @for (kind, what) in [("available", "free to spend"), ("escrow", "held for open bids, autobuy budgets and leases not yet paid out"),
                                      ("revenue", "earned by leasing out this project's nodes")] {
                    tr data-account=(kind) data-balance=(balance(kind)) {
                        td { (kind) } td.num { (credits(balance(kind))) } td.muted { (what) }
                    }
                }
            }
        }
        h2 { "Pay or move credits" }
        form #transfer method="post" action="/ui/market/credits/transfer" {
            (views::csrf(&s)) (super::key_field())
            input type="hidden" name="from_project" value=(project);
            div.filters {
                label { "From account" select name="from_account" { option value="available" { "available" } option value="revenue" { "revenue" } } }
                label { "To project" input name="to_project" required size="14" placeholder=(project); }
                label { "Credits" input name="amount" required size="10" placeholder="1.5"; }
                label { "Memo" input name="memo" size="24"; }
                button type="submit" { "Transfer" }
            }
        }
        @if s.caller.admin {
            h2 { "Mint (admins)" }
            form #mint method="post" action="/ui/market/credits/mint" {
                (views::csrf(&s)) (super::key_field())
                div.filters {
                    label { "Project" (project_select("project", &projects, Some(&project))) }
                    label { "Credits" input name="amount" required size="10"; }
                    label { "Memo" input name="memo" required size="24"; }
                    button type="submit" { "Mint" }
                }
            }
        }
        h2 { "Latest transfers" }
        table #transfers {
            thead { tr { th.num { "Id" } th { "When" } th { "Kind" } th { "From" } th { "To" } th.num { "Credits" } th { "For" } th { "By" } th { "Memo" } } }
            tbody {
                @for t in &transfers {
                    tr data-transfer=(t.id) data-kind=(t.kind) {
                        td.num { (t.id) } td { (views::time(t.created_at)) } td { (t.kind) }
                        td { (t.from_project) "/" (t.from_account) } td { (t.to_project) "/" (t.to_account) }
                        td.num { (credits(t.amount)) } td { (t.reference) } td { (t.actor) } td.wrap { (t.memo) }
                    }
                }
            }
        }
        @if transfers.is_empty() { p.muted { "No transfers yet." } }
    };
    Ok(views::page("Credits", Some(&s), body).into_response())
}

#[derive(Debug, Deserialize)]
struct TransferForm {
    key: String,
    from_project: String,
    from_account: String,
    to_project: String,
    amount: String,
    #[serde(default)]
    memo: String,
}

async fn transfer(State(st): State<AppState>, s: Session, Form(f): Form<TransferForm>) -> Result<Response, UiError> {
    let amount = parse_amount("credits", &f.amount)?;
    let back = to_credits_page(&f.from_project);
    let req = TransferCreate {
        from_project: f.from_project,
        from_account: f.from_account,
        to_project: f.to_project.trim().to_string(),
        amount,
        memo: f.memo,
    };
    let done = format!("{} credits sent to {}", credits(amount), req.to_project);
    let a = run(&st, &s, &f.key, Op::Transfer(req)).await?;
    Ok(after(&back, &done, &a))
}

#[derive(Debug, Deserialize)]
struct MintForm {
    key: String,
    project: String,
    amount: String,
    memo: String,
}

async fn mint(State(st): State<AppState>, s: Session, Form(f): Form<MintForm>) -> Result<Response, UiError> {
    let amount = parse_amount("credits", &f.amount)?;
    let back = to_credits_page(&f.project);
    let done = format!("{} credits minted into {}", credits(amount), f.project);
    let a = run(&st, &s, &f.key, Op::Mint(Mint { project: f.project, amount, memo: f.memo })).await?;
    Ok(after(&back, &done, &a))
}
