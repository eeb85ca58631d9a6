//! The fleet (`/ui/nodes`, filtered like `GET /v1/nodes`) and one node: its
//! NICs and networks, metadata, what its runtime reported, its events, the
//! console log's tail, and the power and reclaim buttons for those allowed.

use axum::Router;
use axum::extract::State;

use super::extract::{Form, Path, Query};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;

use super::{UiError, views};
use crate::app::AppState;
use crate::app::nodes::{self, NodeStatus};
use crate::app::sessions::Session;
use crate::drivers::PowerOp;
use metalcast_operator_api::display::{ago, size};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/nodes", get(fleet))
        .route("/ui/nodes/{node}", get(node))
        .route("/ui/nodes/{node}/power", post(power))
        .route("/ui/nodes/{node}/reclaim", post(reclaim))
}

/// Every state's word, as the API has them.
const STATES: [metalcast_operator_api::v1::NodeStatus; 6] = metalcast_operator_api::v1::NodeStatus::ALL;

#[derive(Debug, Deserialize)]
struct Filter {
    #[serde(default)]
    project: String,
    #[serde(default)]
    state: String,
}

async fn fleet(State(st): State<AppState>, s: Session, Query(f): Query<Filter>) -> Result<Response, UiError> {
    let project = Some(f.project.as_str()).filter(|p| !p.is_empty());
    let state = match f.state.as_str() {
        "" => None,
        w => Some(
            serde_json::from_value::<NodeStatus>(serde_json::Value::String(w.to_string()))
                .map_err(|_| UiError::BadRequest(format!("unknown state {w:?}")))?,
        ),
    };
    let rows = nodes::overview(&st, &s.caller, project, state).await?;
    let projects = crate::app::projects::visible(&st, &s.caller).await?;
    let body = html! {
        h1 { "Fleet" span.muted { " · " (rows.len()) " nodes" } }
        form.filters method="get" action="/ui/nodes" {
            label { "Project"
                select name="project" {
                    option value="" { "any" }
                    @for p in &projects {
                        option value=(p) selected[project == Some(p.as_str())] { (p) }
                    }
                }
            }
            label { "State"
                select name="state" {
                    option value="" { "any" }
                    @for w in STATES.map(|s| s.as_str()) {
                        option value=(w) selected[f.state == w] { (w) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        table #fleet {
            thead { tr { th { "Node" } th { "Project" } th { "State" } th { "Last deployment" } th { "Runtime check-in" } } }
            tbody {
                @for r in &rows {
                    tr data-node=(r.name) {
                        td { (views::node_link(&r.name)) }
                        td { (views::or_dash(r.project.as_deref())) }
                        td { (views::state(&views::node_status(r.state))) }
                        td {
                            @if let Some(id) = r.last_deployment {
                                a href=(format!("/ui/deployments/{id}")) { "#" (id) }
                                @if let Some(ls) = &r.last_deployment_state { " " (views::state(ls)) }
                            } @else { span.muted { "–" } }
                        }
                        td { (views::or_dash(r.checkin_age_secs.map(ago))) }
                    }
                }
            }
        }
        @if rows.is_empty() { p.muted { "No node matches (you see free nodes and your projects' nodes)." } }
    };
    Ok(views::page("Fleet", Some(&s), body).into_response())
}

async fn node(
    State(st): State<AppState>,
    s: Session,
    Path(name): Path<String>,
    Query(q): Query<views::Done>,
) -> Result<Response, UiError> {
    crate::app::error::check_name("node", &name)?;
    let d = nodes::show(&st, &s.caller, &name).await?;
    // What the caller may not see or the hardware cannot say is shown as such, not as an error page.
    let runtime = crate::app::deployments::node_runtime(&st, &s.caller, name.clone()).await.ok();
    let power = nodes::power_status(&st, &s.caller, &name).await;
    let may_drive = nodes::obm(&st, crate::authz::Actor::Caller(&s.caller), &name).await.is_ok();
    let events = crate::app::events::list(&st, &s.caller, Some(&name)).await.unwrap_or_default();
    let console = nodes::console_log(&st, &s.caller, &name).await.ok();
    let seg = metalcast_operator_api::path::segment(&name);
    let body = html! {
        h1 { "Node " (d.name) }
        (views::notice(q.done.as_deref()))
        dl.facts {
            dt { "Project" } dd { (views::or_dash(d.project.as_deref())) }
            dt { "Power" } dd {
                @match &power {
                    Ok(true) => (views::state("on")),
                    Ok(false) => (views::state("off")),
                    Err(e) => span.muted { "unknown (" (e.public_message()) ")" },
                }
            }
            @if let Some(r) = &runtime {
                dt { "Runtime" } dd {
                    @if r.checked_in {
                        (r.role.as_deref().unwrap_or("?")) " at " (r.address.as_deref().unwrap_or("?"))
                        ", checked in " (r.secs_since_checkin.map(|s| ago(s as i64)).unwrap_or_default())
                    } @else { span.muted { "not checked in" } }
                }
            }
        }
        @if may_drive {
            h2 { "Actions" }
            @for (op, label) in [("on", "Power on"), ("off", "Power off"), ("cycle", "Power cycle")] {
                form.inline method="post" action=(format!("/ui/nodes/{seg}/power")) {
                    (views::csrf(&s))
                    input type="hidden" name="op" value=(op);
                    button.danger[op != "on"] type="submit" { (label) }
                }
                " "
            }
            @if d.project.is_some() {
                form.inline method="post" action=(format!("/ui/nodes/{seg}/reclaim")) {
                    (views::csrf(&s))
                    select name="wipe" aria-label="wipe" {
                        option value="none" { "no wipe" }
                        option value="discard" { "wipe: discard" }
                        option value="zero" { "wipe: zero" }
                    }
                    " "
                    button.danger type="submit" { "Reclaim" }
                }
            }
        }
        h2 { "NICs" }
        table #nics {
            thead { tr { th { "NIC" } th { "MAC" } th { "Networks (channel: network)" } @if s.caller.admin { th { "Switch port" } } } }
            tbody {
                @for n in &d.nics {
                    tr {
                        td { (n.label) } td { code { (n.macaddr) } }
                        td.wrap {
                            @for (ch, net) in &n.networks { (ch) ": " (net) br; }
                            @if n.networks.is_empty() { span.muted { "none" } }
                        }
                        @if let Some((sw, port)) = &n.port {
                            td { (sw.as_deref().unwrap_or("–")) " " (port.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        h2 { "Metadata" }
        table #metadata {
            thead { tr { th { "Label" } th { "Value" } } }
            tbody {
                @for (k, v) in &d.metadata {
                    tr { td { (k) } td.wrap { (serde_json::from_str::<serde_json::Value>(v).map(|v| views::json_text(&v)).unwrap_or_else(|_| v.clone())) } }
                }
            }
        }
        @if let Some(inv) = runtime.as_ref().and_then(|r| r.inventory.as_ref()) {
            h2 { "Inventory (reported by the runtime)" }
            (inventory(inv))
        }
        h2 { "Events" }
        table #events {
            thead { tr { th { "When" } th { "Kind" } th { "Reason" } } }
            tbody {
                @for e in &events {
                    tr { td { (views::time(e.created_at)) } td { (e.kind) } td.wrap { (e.reason) } }
                }
            }
        }
        @if let Some(log) = &console {
            h2 { "Console (last lines)" }
            pre.console { (tail(log, 60)) }
        }
    };
    Ok(views::page(&format!("Node {name}"), Some(&s), body).into_response())
}

/// The runtime's inventory as a table: one row per field, sizes readable.
fn inventory(v: &serde_json::Value) -> Markup {
    let mut rows = Vec::new();
    flatten("", v, &mut rows);
    html! {
        table #inventory {
            tbody {
                @for (k, v) in &rows { tr { td { (k) } td.wrap { (v) } } }
            }
        }
    }
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        serde_json::Value::Number(n) if prefix.ends_with("bytes") => {
            out.push((prefix.to_string(), n.as_u64().map(size).unwrap_or_else(|| n.to_string())));
        }
        other => out.push((prefix.to_string(), views::json_text(other))),
    }
}

/// The last `lines` lines of a console log.
fn tail(log: &str, lines: usize) -> &str {
    let log = log.trim_end_matches('\n');
    let mut start = log.len();
    for _ in 0..lines {
        match log[..start].rfind('\n') {
            Some(i) => start = i,
            None => return log,
        }
    }
    &log[start + 1..]
}

#[derive(Debug, Deserialize)]
struct PowerForm {
    op: String,
}

async fn power(
    State(st): State<AppState>,
    s: Session,
    Path(name): Path<String>,
    Form(f): Form<PowerForm>,
) -> Result<Response, UiError> {
    let op = match f.op.as_str() {
        "on" => PowerOp::On,
        "off" => PowerOp::Off,
        "cycle" => PowerOp::Cycle,
        other => return Err(UiError::BadRequest(format!("unknown power action {other:?}"))),
    };
    crate::app::error::check_name("node", &name)?;
    nodes::power(&st, &s.caller, &name, op).await?;
    let seg = metalcast_operator_api::path::segment(&name);
    Ok(super::see_other(&format!("/ui/nodes/{seg}?done=power+{}+sent", f.op)))
}

#[derive(Debug, Deserialize)]
struct ReclaimForm {
    wipe: crate::app::reclaim::WipeSpec,
}

async fn reclaim(
    State(st): State<AppState>,
    s: Session,
    Path(name): Path<String>,
    Form(f): Form<ReclaimForm>,
) -> Result<Response, UiError> {
    let req = crate::app::reclaim::ReclaimRequest { wipe: f.wipe, timeout_secs: None };
    let r = crate::app::reclaim::reclaim(&st, &s.caller, name.clone(), req).await?;
    let seg = metalcast_operator_api::path::segment(&name);
    let done = format!("reclaimed from {} by {} in {:.1} s", r.project, r.method, r.secs);
    Ok(super::see_other_done(&format!("/ui/nodes/{seg}"), &done))
}

#[cfg(test)]
mod tests {
    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(super::tail("a\nb\nc\n", 1), "c");
        assert_eq!(super::tail("a\nb\nc", 2), "b\nc");
        assert_eq!(super::tail("one line", 5), "one line");
    }
}
