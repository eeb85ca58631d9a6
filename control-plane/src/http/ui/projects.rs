//! Projects the caller is in (all for admins): their nodes, networks and
//! quota with what they use; admins set a quota.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;

use super::extract::{Form, Query, whole_number};
use super::{UiError, views};
use crate::app::AppState;
use crate::app::sessions::Session;
use metalcast_operator_api::display::size;

pub fn routes() -> Router<AppState> {
    Router::new().route("/ui/projects", get(list)).route("/ui/projects/quota", post(set_quota))
}

fn limit(v: Option<i64>, fmt: impl Fn(i64) -> String) -> String {
    v.map(fmt).unwrap_or_else(|| "unlimited".into())
}

async fn list(State(st): State<AppState>, s: Session, Query(q): Query<views::Done>) -> Result<Response, UiError> {
    let mut rows = Vec::new();
    for p in crate::app::projects::visible(&st, &s.caller).await? {
        let nodes = crate::app::projects::nodes(&st, &s.caller, &p).await?;
        let networks = crate::app::projects::networks(&st, &s.caller, &p).await?;
        let quota = crate::app::quotas::show(&st, &s.caller, p.clone()).await?;
        rows.push((p, nodes, networks, quota));
    }
    let bytes = |b: i64| size(b.max(0) as u64);
    let body = html! {
        h1 { "Projects" }
        (views::notice(q.done.as_deref()))
        table #projects {
            thead { tr { th { "Project" } th { "Nodes" } th { "Networks" } th.num { "Nodes / quota" } th.num { "Images / quota" } th.num { "Image bytes / quota" } } }
            tbody {
                @for (p, nodes, networks, q) in &rows {
                    tr {
                        td { a href=(format!("/ui/nodes?project={}", metalcast_operator_api::path::segment(p))) { (p) } }
                        td.wrap { @for n in nodes { (views::node_link(n)) " " } }
                        td.wrap { @for n in networks { (n) " " } }
                        td.num { (q.nodes) " / " (limit(q.quota.max_nodes, |v| v.to_string())) }
                        td.num { (q.images) " / " (limit(q.quota.max_images, |v| v.to_string())) }
                        td.num { (bytes(q.image_bytes)) " / " (limit(q.quota.max_image_bytes, bytes)) }
                    }
                }
            }
        }
        @if rows.is_empty() { p.muted { "You are in no project." } }
        @if s.caller.admin && !rows.is_empty() {
            h2 { "Set a quota (admins)" }
            form #quota method="post" action="/ui/projects/quota" {
                (views::csrf(&s))
                div.filters {
                    label { "Project" select name="project" required { @for (p, ..) in &rows { option value=(p) { (p) } } } }
                    label { "Nodes" input name="max_nodes" type="number" min="0" placeholder="unlimited" size="6"; }
                    label { "Images" input name="max_images" type="number" min="0" placeholder="unlimited" size="6"; }
                    label { "Image storage, MiB" input name="max_image_mib" type="number" min="0" placeholder="unlimited" size="8"; }
                    label.check { input type="checkbox" name="force" value="true"; " even below what it uses now" }
                    button type="submit" { "Set" }
                }
                p.muted { "An empty field is unlimited. Lowering a limit below the project's use is refused unless forced; forced, nothing is taken away and new requests are refused until the use is back under it." }
            }
        }
    };
    Ok(views::page("Projects", Some(&s), body).into_response())
}

#[derive(Debug, serde::Deserialize)]
struct QuotaForm {
    project: String,
    #[serde(default)]
    max_nodes: String,
    #[serde(default)]
    max_images: String,
    #[serde(default)]
    max_image_mib: String,
    #[serde(default)]
    force: Option<String>,
}

async fn set_quota(State(st): State<AppState>, s: Session, Form(f): Form<QuotaForm>) -> Result<Response, UiError> {
    let mib = whole_number("image storage", &f.max_image_mib)?;
    let quota = crate::app::quotas::Quota {
        max_nodes: whole_number("nodes", &f.max_nodes)?,
        max_images: whole_number("images", &f.max_images)?,
        max_image_bytes: mib.map(|m| m.saturating_mul(1 << 20)),
    };
    crate::app::quotas::set(&st, &s.caller, f.project.clone(), quota, f.force.is_some()).await?;
    let done = format!("quota of {} set", f.project);
    Ok(super::see_other_done("/ui/projects", &done))
}
