//! Deployments: the list with a form to start one, and one deployment with a
//! per-node progress grid that follows the deployment live (server-sent
//! events carrying the re-rendered grid, swapped in by htmx) and, once it
//! ends, its summary. Without JavaScript the page still shows the state at
//! load time.

use std::time::Duration;

use axum::Router;
use axum::extract::State;

use super::extract::{Form, Path};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use maud::{Markup, html};
use serde::Deserialize;

use super::{UiError, views};
use crate::app::AppState;
use crate::app::deployments::{self, DeployRequest, Deployment, HandoverSpec, NodeState};
use crate::app::sessions::Session;
use metalcast_operator_api::display::size;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/deployments", get(list).post(create))
        .route("/ui/deployments/{id}", get(show))
        .route("/ui/deployments/{id}/stream", get(stream))
}

async fn list(State(st): State<AppState>, s: Session) -> Result<Response, UiError> {
    let all = deployments::list(&st, &s.caller).await?;
    let images = crate::app::images::list(&st, &s.caller).await?;
    let nodes: Vec<_> = crate::app::nodes::overview(&st, &s.caller, None, None)
        .await?
        .into_iter()
        .filter(|n| n.project.is_some())
        .collect();
    let body = html! {
        h1 { "Deployments" }
        h2 { "New deployment" }
        @if nodes.is_empty() || images.is_empty() {
            p.muted { "To deploy you need an image you may see and nodes in one of your projects." }
        } @else {
            form #new-deployment method="post" action="/ui/deployments" {
                (views::csrf(&s))
                div.filters {
                    label { "Image"
                        select name="image" required {
                            @for i in &images { option value=(i.name) { (i.name) " (" (size(i.data_bytes.max(0) as u64)) ")" } }
                        }
                    }
                    label { "Hand-over"
                        select name="handover" {
                            option value="kexec" { "kexec into the image" }
                            option value="none" { "none: stay in the runtime (verified)" }
                            option value="vm" { "run the image's VM disk" }
                        }
                    }
                    label { "Rate cap, Mbit/s" input name="rate_mbit" type="number" min="1" placeholder="server default"; }
                }
                fieldset {
                    legend { "Nodes (all in one project)" }
                    @for n in &nodes {
                        label.check {
                            input type="checkbox" name="nodes" value=(n.name);
                            " " (n.name) " " span.muted { "(" (n.project.as_deref().unwrap_or("")) ", " (views::node_status(n.state)) ")" }
                        }
                        " "
                    }
                }
                p { button type="submit" { "Deploy" } }
            }
        }
        h2 { "History" }
        table #deployments {
            thead { tr { th.num { "Id" } th { "Project" } th { "Image" } th { "State" } th { "Nodes" } th { "By" } th { "Created" } th { "Finished" } } }
            tbody {
                @for d in &all {
                    tr {
                        td.num { a href=(format!("/ui/deployments/{}", d.id)) { "#" (d.id) } }
                        td { (d.project) } td { (d.image) } td { (views::state(d.state.as_str())) }
                        td.num { (d.nodes.len()) } td { (d.created_by) } td { (views::time(d.created_at)) }
                        td { @if let Some(f) = d.finished_at { (views::time(f)) } @else { span.muted { "–" } } }
                    }
                }
            }
        }
    };
    Ok(views::page("Deployments", Some(&s), body).into_response())
}

#[derive(Debug, Deserialize)]
struct NewDeployment {
    image: String,
    #[serde(default)]
    nodes: Vec<String>,
    #[serde(default)]
    handover: HandoverSpec,
    #[serde(default)]
    rate_mbit: String,
}

async fn create(State(st): State<AppState>, s: Session, Form(f): Form<NewDeployment>) -> Result<Response, UiError> {
    if f.nodes.is_empty() {
        return Err(UiError::BadRequest("choose at least one node".into()));
    }
    let rate_mbit = match f.rate_mbit.trim() {
        "" => None,
        r => Some(r.parse().map_err(|_| UiError::BadRequest(format!("rate cap {r:?} is not a whole number")))?),
    };
    let req = DeployRequest {
        image: f.image,
        nodes: f.nodes,
        project: None,
        target: Default::default(),
        handover: f.handover,
        cmdline_append: String::new(),
        user_data: None,
        keypairs: Vec::new(),
        rate_mbit,
        timeout_secs: None,
    };
    let d = deployments::create(&st, &s.caller, req).await?;
    Ok(super::see_other(&format!("/ui/deployments/{}", d.id)))
}

async fn show(State(st): State<AppState>, s: Session, Path(id): Path<i64>) -> Result<Response, UiError> {
    let d = deployments::show(&st, &s.caller, id).await?;
    let body = html! {
        h1 { "Deployment #" (d.id) }
        dl.facts {
            dt { "Project" } dd { (d.project) }
            dt { "Image" } dd { (d.image) }
            dt { "Created" } dd { (views::time(d.created_at)) " by " (d.created_by) }
            dt { "Session" } dd { (views::or_dash(d.session.as_deref())) }
        }
        // Live: the extension opens the stream and swaps each `grid` event in; it closes on `end`.
        @if d.is_finished() {
            div #progress { (grid(&d)) }
        } @else {
            div #progress hx-ext="sse" sse-connect=(format!("/ui/deployments/{id}/stream")) sse-swap="grid" sse-close="end" {
                (grid(&d))
            }
        }
    };
    Ok(views::page(&format!("Deployment #{id}"), Some(&s), body).into_response())
}

/// The state line, one cell per node, and (once finished) the summary.
fn grid(d: &Deployment) -> Markup {
    let count = |s: NodeState| d.nodes.iter().filter(|n| n.state == s).count();
    html! {
        p #deployment-state data-state=(d.state.as_str()) {
            (views::state(d.state.as_str())) " · "
            (count(NodeState::Verified) + count(NodeState::Booted)) " of " (d.nodes.len()) " done, "
            (count(NodeState::Failed)) " failed"
        }
        div.grid #grid {
            @for n in &d.nodes {
                div class=(format!("cell state-{}", n.state.as_str())) data-node=(n.node) data-state=(n.state.as_str()) {
                    strong { (n.node) } " " (views::state(n.state.as_str()))
                    br;
                    progress value=(n.blocks_done) max=(n.blocks_total.max(1)) {}
                    " " span.muted { (n.blocks_done) "/" (n.blocks_total) }
                    @if !n.reason.is_empty() { br; span.muted { (n.reason) } }
                }
            }
        }
        @if d.is_finished() {
            h2 { "Summary" }
            table #summary {
                thead { tr { th { "Node" } th { "State" } th.num { "Seconds" } th.num { "Attempts" } th.num { "Packets" } th.num { "Rejected" } th { "Reason" } } }
                tbody {
                    @for n in &d.nodes {
                        tr {
                            td { (views::node_link(&n.node)) } td { (views::state(n.state.as_str())) }
                            td.num { (views::or_dash(n.elapsed_ms.map(|ms| format!("{:.1}", ms as f64 / 1000.0)))) }
                            td.num { (n.attempts) } td.num { (n.received) } td.num { (n.rejected) }
                            td.wrap { (n.reason) }
                        }
                    }
                }
            }
            @if let Some(summary) = d.summary.as_ref().and_then(|s| s.as_object()) {
                h2 { "Sender" }
                // Scalars only: the per-receiver list is the summary table above.
                dl.facts {
                    @for (k, v) in summary.iter().filter(|(_, v)| !v.is_array() && !v.is_object()) {
                        dt { (k) }
                        dd {
                            @match v.as_u64() {
                                Some(b) if k.ends_with("_bytes") => (size(b)),
                                _ => (views::json_text(v)),
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The grid, re-rendered on every change: from this process's live channel
/// when the deployment runs here, and at least once a second from the
/// database (so it follows a deployment run by another replica, or taken
/// over). Ends with `end` once the deployment is finished, or at shutdown.
async fn stream(
    State(st): State<AppState>,
    s: Session,
    Path(id): Path<i64>,
) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, UiError> {
    let first = deployments::show(&st, &s.caller, id).await?;
    struct Follow {
        st: AppState,
        caller: crate::authz::Caller,
        last: Option<Deployment>,
        next: Option<Deployment>,
        /// Send `end` next, then stop.
        ending: bool,
        ended: bool,
    }
    let end = |why: &str| Some(Event::default().event("end").data(why));
    let f = Follow { st, caller: s.caller, last: None, next: Some(first), ending: false, ended: false };
    let events = futures_util::stream::unfold(f, move |mut f| async move {
        if f.ended {
            return None;
        }
        if f.ending {
            f.ended = true;
            return Some((end("finished"), f));
        }
        let d = match f.next.take() {
            Some(d) => d,
            None => {
                let token = f.st.tasks.token();
                let live = f.st.deploys.get(id).map(|tx| tx.subscribe());
                tokio::select! {
                    _ = token.cancelled() => {
                        f.ended = true;
                        return Some((end("shutdown"), f));
                    }
                    _ = async { match live { Some(mut rx) => { let _ = rx.changed().await; } None => std::future::pending().await } } => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                let live = f.st.deploys.get(id).map(|tx| tx.borrow().clone());
                match live {
                    Some(d) => d,
                    None => match deployments::show(&f.st, &f.caller, id).await {
                        Ok(d) => d,
                        Err(e) => {
                            tracing::warn!(id, error = %e, "console progress stream ends");
                            f.ended = true;
                            return Some((end("error"), f));
                        }
                    },
                }
            }
        };
        if f.last.as_ref() == Some(&d) {
            return Some((None, f));
        }
        let ev = Event::default().event("grid").data(grid(&d).into_string());
        // The finished grid, then `end` on the next turn.
        f.ending = d.is_finished();
        f.last = Some(d);
        Some((Some(ev), f))
    });
    let events = futures_util::StreamExt::filter_map(events, |e| async move { e.map(Ok) });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
