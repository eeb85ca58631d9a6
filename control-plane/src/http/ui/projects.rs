//! Projects the caller is in (all for admins): their nodes, networks and
//! quota with what they use.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::html;

use super::{UiError, views};
use crate::app::AppState;
use crate::app::sessions::Session;
use metalcast_operator_api::display::size;

pub fn routes() -> Router<AppState> {
    Router::new().route("/ui/projects", get(list))
}

fn limit(v: Option<i64>, fmt: impl Fn(i64) -> String) -> String {
    v.map(fmt).unwrap_or_else(|| "unlimited".into())
}

async fn list(State(st): State<AppState>, s: Session) -> Result<Response, UiError> {
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
    };
    Ok(views::page("Projects", Some(&s), body).into_response())
}
