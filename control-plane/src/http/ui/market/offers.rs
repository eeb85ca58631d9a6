//! Offers: the list with resource filters, one offer with the caller's
//! bids and the forms to buy at once or bid.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;

use super::{Keyed, after, parse_amount, price, project_select, run, tabs, whole_number};
use crate::app::AppState;
use crate::app::market::offers::{self, Offer};
use crate::app::market::trade::{self, BidCreate, BuyRequest};
use crate::app::market::{self, Op};
use crate::app::reclaim::WipeSpec;
use crate::app::sessions::Session;
use crate::http::ui::extract::{Form, Path, Query};
use crate::http::ui::{UiError, views};
use metalcast_operator_api::display::{credits, span};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/market", get(list))
        .route("/ui/market/offers/{id}", get(show))
        .route("/ui/market/offers/{id}/buy", post(buy))
        .route("/ui/market/offers/{id}/bid", post(bid))
        .route("/ui/market/offers/{id}/withdraw", post(withdraw))
        .route("/ui/market/bids/{id}/withdraw", post(withdraw_bid))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    /// open (default), settled, withdrawn, all.
    state: Option<String>,
    /// The API's filter syntax, `cpus>=16,memory_gib>=64`.
    #[serde(default)]
    filter: String,
    /// Quick fields: at least this many.
    #[serde(default)]
    cpus: String,
    #[serde(default)]
    memory_gib: String,
    #[serde(default)]
    disk_gib: String,
    #[serde(default)]
    nics: String,
    done: Option<String>,
}

fn resources(o: &Offer) -> String {
    let r = &o.resources;
    format!("{} CPUs, {} GiB, {} disks ({} GiB), {} NICs", r.cpus, r.memory_gib, r.disks, r.disk_gib, r.nics)
}

async fn list(State(st): State<AppState>, s: Session, Query(q): Query<ListQuery>) -> Result<Response, UiError> {
    let state = q.state.clone().unwrap_or_else(|| "open".into());
    let mut filter: Vec<String> =
        Some(q.filter.trim()).filter(|f| !f.is_empty()).map(str::to_string).into_iter().collect();
    for (field, v) in [("cpus", &q.cpus), ("memory_gib", &q.memory_gib), ("disk_gib", &q.disk_gib), ("nics", &q.nics)] {
        if let Some(n) = whole_number(field, v)? {
            filter.push(format!("{field}>={n}"));
        }
    }
    let api_state = if state == "all" { "" } else { state.as_str() };
    let all = offers::list(&st, &s.caller, api_state, &filter.join(",")).await?;
    let now = market::clock(&st).await?;
    let body = html! {
        (tabs("Offers"))
        h1 { "Offers" }
        (views::notice(q.done.as_deref()))
        form.filters method="get" action="/ui/market" {
            label { "State"
                select name="state" {
                    @for v in ["open", "settled", "withdrawn", "all"] { option value=(v) selected[state == v] { (v) } }
                }
            }
            label { "CPUs at least" input name="cpus" type="number" min="0" value=(q.cpus) size="4"; }
            label { "Memory GiB at least" input name="memory_gib" type="number" min="0" value=(q.memory_gib) size="5"; }
            label { "Disk GiB at least" input name="disk_gib" type="number" min="0" value=(q.disk_gib) size="5"; }
            label { "NICs at least" input name="nics" type="number" min="0" value=(q.nics) size="3"; }
            label { "Filter" input name="filter" value=(q.filter) placeholder="cpus>=16,disks>=2" size="22"; }
            button type="submit" { "Filter" }
        }
        table #offers {
            thead { tr {
                th.num { "Id" } th { "Owner" } th.num { "Free / nodes" } th { "Resources" } th { "Window (UTC)" }
                th.num { "Reserve" } th.num { "Buy now" } th { "Bids close" } th { "Terms" } th { "State" }
            } }
            tbody {
                @for o in &all {
                    tr data-offer=(o.id) {
                        td.num { a href=(format!("/ui/market/offers/{}", o.id)) { "#" (o.id) } }
                        td { (o.owner) }
                        td.num { (o.available) " / " (o.nodes.len()) }
                        td { (resources(o)) }
                        td { (views::time(o.start)) " – " (views::time(o.end)) }
                        td.num { (price(o.reserve_mph)) }
                        td.num { @if let Some(b) = o.buy_now_mph { (price(b)) } @else { span.muted { "–" } } }
                        td { @match o.closes_at {
                            Some(c) if c > now => { "in " (span(c - now)) }
                            Some(c) => { (views::time(c)) }
                            None => span.muted { "buy-now only" },
                        } }
                        td { @if o.interruptible { "interruptible, " (span(o.notice_secs)) " notice" } @else { "fixed" } }
                        td { (views::state(&o.state)) }
                    }
                }
            }
        }
        @if all.is_empty() { p.muted { "No offers match." } }
    };
    Ok(views::page("Market", Some(&s), body).into_response())
}

async fn show(
    State(st): State<AppState>,
    s: Session,
    Path(id): Path<i64>,
    Query(q): Query<views::Done>,
) -> Result<Response, UiError> {
    let o = offers::show(&st, &s.caller, id).await?;
    let bids = trade::list_bids(&st, &s.caller, id).await?;
    let now = market::clock(&st).await?;
    // Projects that may buy: the caller's, not the owner, within the audience.
    let buyers: Vec<String> = crate::app::projects::visible(&st, &s.caller)
        .await?
        .into_iter()
        .filter(|p| *p != o.owner && (o.audience.is_empty() || o.audience.contains(p)))
        .collect();
    let open = o.state == "open" && o.end > now;
    let auction_open = open && o.closes_at.is_some_and(|c| c > now);
    let from = o.start.max(now);
    let owner = s.caller.has_project(&o.owner);
    let body = html! {
        (super::tabs("Offers"))
        h1 { "Offer #" (o.id) " " (views::state(&o.state)) }
        (views::notice(q.done.as_deref()))
        dl.facts {
            dt { "Owner" } dd { (o.owner) }
            dt { "Nodes" } dd { (o.nodes.len()) " (" (o.available) " free for the rest of the window)" }
            dt { "Each has" } dd { (resources(&o)) }
            dt { "Window" } dd { (views::time(o.start)) " – " (views::time(o.end)) " (half-open, " (span(o.end - o.start)) ")" }
            dt { "Reserve" } dd { (price(o.reserve_mph)) }
            dt { "Buy now" } dd { @if let Some(b) = o.buy_now_mph { (price(b)) } @else { span.muted { "no" } } }
            dt { "Sealed bids" } dd { @match o.closes_at {
                Some(c) if c > now => { "close at " (views::time(c)) ", in " (span(c - now)) }
                Some(c) => { "closed at " (views::time(c)) }
                None => span.muted { "no auction" },
            } }
            dt { "Terms" } dd {
                @if o.interruptible { "interruptible with " (span(o.notice_secs)) " notice (pro-rata refund)" } @else { "fixed: never recalled" }
                ", " @match o.wipe {
                    WipeSpec::None => "no wipe between leases",
                    WipeSpec::Discard => "disks discarded between leases",
                    WipeSpec::Zero => "disks zeroed between leases",
                }
            }
            dt { "Audience" } dd { @if o.audience.is_empty() { "every project" } @else { (o.audience.join(", ")) } }
        }
        @if open && owner {
            form.inline method="post" action=(format!("/ui/market/offers/{}/withdraw", o.id)) {
                (views::csrf(&s)) (super::key_field())
                button.danger type="submit" { "Withdraw this offer" }
            }
        }
        @if open && !buyers.is_empty() {
            @if let Some(b) = o.buy_now_mph.filter(|_| o.available > 0) {
                h2 { "Buy now" }
                form #buy method="post" action=(format!("/ui/market/offers/{}/buy", o.id)) {
                    (views::csrf(&s)) (super::key_field())
                    div.filters {
                        label { "For project" (project_select("project", &buyers, None)) }
                        label { "Nodes" input name="quantity" type="number" min="1" max=(o.available) value="1" required; }
                        label { "Hours (empty: to the window's end)" input name="hours" type="number" min="1"; }
                        button type="submit" { "Buy" }
                    }
                    p.muted { "One node to the window's end costs " (credits(market::cost(b, o.end - from))) " credits, paid now." }
                }
            }
            @if auction_open {
                h2 { "Place a sealed bid" }
                form #bid method="post" action=(format!("/ui/market/offers/{}/bid", o.id)) {
                    (views::csrf(&s)) (super::key_field())
                    div.filters {
                        label { "For project" (project_select("project", &buyers, None)) }
                        label { "Nodes" input name="quantity" type="number" min="1" max=(o.nodes.len()) value="1" required; }
                        label { "Highest price, credits/node-h" input name="max" required placeholder=(credits(o.reserve_mph)) size="10"; }
                        label.check { input type="checkbox" name="all_or_nothing" value="true"; " all or nothing" }
                        button type="submit" { "Bid" }
                    }
                    p.muted {
                        "Your highest price for the whole window is held in escrow until the close; winners pay the "
                        "highest losing bid or the reserve, whichever is higher."
                    }
                }
            }
        }
        h2 { "Bids you may see" }
        table #bids {
            thead { tr { th.num { "Id" } th { "Project" } th.num { "Nodes" } th.num { "Highest" } th { "State" } th.num { "Won" } th.num { "Paid" } th.num { "Held" } th { "Placed" } th {} } }
            tbody {
                @for b in &bids {
                    tr data-bid=(b.id) data-state=(b.state) {
                        td.num { (b.id) } td { (b.project) } td.num { (b.quantity) @if b.all_or_nothing { " (all)" } }
                        td.num { (price(b.max_mph)) } td { (views::state(&b.state)) } td.num { (b.won) }
                        td.num { @if let Some(p) = b.price_mph { (price(p)) } @else { span.muted { "–" } } }
                        td.num { (credits(b.held)) } td { (views::time(b.created_at)) }
                        td { @if b.state == "open" && s.caller.has_project(&b.project) {
                            form.inline method="post" action=(format!("/ui/market/bids/{}/withdraw", b.id)) {
                                (views::csrf(&s)) (super::key_field())
                                input type="hidden" name="offer" value=(o.id);
                                button type="submit" { "Withdraw" }
                            }
                        } }
                    }
                }
            }
        }
        @if bids.is_empty() { p.muted { "None: bids are sealed; you see your projects' own, and an owner sees all once the auction settled." } }
    };
    Ok(views::page(&format!("Offer {}", o.id), Some(&s), body).into_response())
}

#[derive(Debug, Deserialize)]
struct BuyForm {
    key: String,
    project: String,
    #[serde(default)]
    quantity: String,
    #[serde(default)]
    hours: String,
}

async fn buy(
    State(st): State<AppState>,
    s: Session,
    Path(id): Path<i64>,
    Form(f): Form<BuyForm>,
) -> Result<Response, UiError> {
    let quantity = whole_number("nodes", &f.quantity)?.unwrap_or(1);
    let end = match whole_number("hours", &f.hours)? {
        Some(h) => {
            let o = offers::show(&st, &s.caller, id).await?;
            Some(o.start.max(market::clock(&st).await?).saturating_add(h.saturating_mul(3600)))
        }
        None => None,
    };
    let req = BuyRequest { project: f.project, quantity, start: None, end };
    let a = run(&st, &s, &f.key, Op::Buy { offer: id, req }).await?;
    let n = a.body.as_array().map_or(0, Vec::len);
    Ok(after("/ui/market/leases", &format!("bought {n} lease(s) from offer {id}"), &a))
}

#[derive(Debug, Deserialize)]
struct BidForm {
    key: String,
    project: String,
    #[serde(default)]
    quantity: String,
    max: String,
    #[serde(default)]
    all_or_nothing: Option<String>,
}

async fn bid(
    State(st): State<AppState>,
    s: Session,
    Path(id): Path<i64>,
    Form(f): Form<BidForm>,
) -> Result<Response, UiError> {
    let req = BidCreate {
        project: f.project,
        quantity: whole_number("nodes", &f.quantity)?.unwrap_or(1),
        max_mph: parse_amount("highest price", &f.max)?,
        all_or_nothing: f.all_or_nothing.is_some(),
    };
    let a = run(&st, &s, &f.key, Op::Bid { offer: id, req }).await?;
    let bid = a.body.get("id").and_then(serde_json::Value::as_i64).unwrap_or_default();
    Ok(after(&format!("/ui/market/offers/{id}"), &format!("bid {bid} placed"), &a))
}

async fn withdraw(
    State(st): State<AppState>,
    s: Session,
    Path(id): Path<i64>,
    Form(f): Form<Keyed>,
) -> Result<Response, UiError> {
    let a = run(&st, &s, &f.key, Op::WithdrawOffer { offer: id }).await?;
    Ok(after(&format!("/ui/market/offers/{id}"), &format!("offer {id} withdrawn"), &a))
}

#[derive(Debug, Deserialize)]
struct WithdrawBid {
    key: String,
    offer: i64,
}

async fn withdraw_bid(
    State(st): State<AppState>,
    s: Session,
    Path(id): Path<i64>,
    Form(f): Form<WithdrawBid>,
) -> Result<Response, UiError> {
    let a = run(&st, &s, &f.key, Op::WithdrawBid { bid: id }).await?;
    Ok(after(&format!("/ui/market/offers/{}", f.offer), &format!("bid {id} withdrawn"), &a))
}
