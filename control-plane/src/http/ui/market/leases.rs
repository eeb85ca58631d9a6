//! The caller's leases (as lessee or owner) with time left, and the
//! actions the API allows on them: the lessee cancels a lease that has not
//! started, the owner recalls an interruptible one.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;

use super::{Keyed, after, price, run, tabs};
use crate::app::AppState;
use crate::app::market::Op;
use crate::app::market::leases;
use crate::app::sessions::Session;
use crate::db::market::leases::LeaseState;
use crate::http::ui::extract::{Form, Path, Query};
use crate::http::ui::{UiError, views};
use metalcast_operator_api::display::{credits, span};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/market/leases", get(list))
        .route("/ui/market/leases/{id}/cancel", post(cancel))
        .route("/ui/market/leases/{id}/recall", post(recall))
}

async fn list(State(st): State<AppState>, s: Session, Query(q): Query<views::Done>) -> Result<Response, UiError> {
    let all = leases::list(&st, &s.caller, "").await?;
    let body = html! {
        (tabs("Leases"))
        h1 { "Leases" }
        (views::notice(q.done.as_deref()))
        table #leases {
            thead { tr {
                th.num { "Id" } th { "Node" } th { "Lessee" } th { "Owner" } th { "State" } th { "Window (UTC)" }
                th.num { "Time left" } th.num { "Price" } th.num { "Cost" } th { "Offer" } th { "Note" } th {}
            } }
            tbody {
                @for l in &all {
                    @let word = l.state.as_str();
                    tr data-lease=(l.id) data-state=(word) {
                        td.num { (l.id) }
                        td { @if s.caller.has_project(&l.lessee) || s.caller.has_project(&l.owner) { (views::node_link(&l.node)) } @else { (l.node) } }
                        td { (l.lessee) } td { (l.owner) }
                        td { (views::state(word)) @if l.recalled { " (recalled)" } }
                        td { (views::time(l.start)) " – " (views::time(l.end)) }
                        td.num { @if matches!(l.state, LeaseState::Ended | LeaseState::Cancelled | LeaseState::Recalled | LeaseState::Failed) {
                            span.muted { "–" }
                        } @else { (span(l.secs_left)) } }
                        td.num { (price(l.price_mph)) } td.num { (credits(l.cost)) }
                        td { a href=(format!("/ui/market/offers/{}", l.offer)) { "#" (l.offer) }
                             @if let Some(b) = l.bid { span.muted { " bid " (b) } }
                             @if let Some(r) = l.autobuy { span.muted { " autobuy " (r) } } }
                        td.wrap { (l.reason) }
                        td {
                            @if l.state == LeaseState::Scheduled && s.caller.has_project(&l.lessee) {
                                form.inline method="post" action=(format!("/ui/market/leases/{}/cancel", l.id)) {
                                    (views::csrf(&s)) (super::key_field())
                                    button.danger type="submit" { "Cancel" }
                                }
                            }
                            @if l.interruptible && l.state == LeaseState::Active && !l.recalled && s.caller.has_project(&l.owner) {
                                form.inline method="post" action=(format!("/ui/market/leases/{}/recall", l.id)) {
                                    (views::csrf(&s)) (super::key_field())
                                    button.danger type="submit" { "Recall (" (span(l.notice_secs)) " notice)" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if all.is_empty() { p.muted { "No leases of your projects: buy or bid on an " a href="/ui/market" { "offer" } "." } }
    };
    Ok(views::page("Leases", Some(&s), body).into_response())
}

async fn cancel(
    State(st): State<AppState>,
    s: Session,
    Path(id): Path<i64>,
    Form(f): Form<Keyed>,
) -> Result<Response, UiError> {
    let a = run(&st, &s, &f.key, Op::CancelLease { lease: id }).await?;
    Ok(after("/ui/market/leases", &format!("lease {id} cancelled and refunded"), &a))
}

async fn recall(
    State(st): State<AppState>,
    s: Session,
    Path(id): Path<i64>,
    Form(f): Form<Keyed>,
) -> Result<Response, UiError> {
    let a = run(&st, &s, &f.key, Op::RecallLease { lease: id }).await?;
    Ok(after("/ui/market/leases", &format!("lease {id} recalled: it ends after its notice"), &a))
}
