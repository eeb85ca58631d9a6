//! Images the caller may see.

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
    Router::new().route("/ui/images", get(list))
}

async fn list(State(st): State<AppState>, s: Session) -> Result<Response, UiError> {
    let images = crate::app::images::list(&st, &s.caller).await?;
    let body = html! {
        h1 { "Images" }
        table #images {
            thead { tr { th { "Image" } th { "Owner" } th { "Visibility" } th.num { "Size" } th.num { "Stored" } th { "Root hash" } th { "Uploaded" } } }
            tbody {
                @for i in &images {
                    tr {
                        td { (i.name) } td { (views::or_dash(i.owner.as_deref())) } td { (i.visibility.as_str()) }
                        td.num { (size(i.data_bytes.max(0) as u64)) } td.num { (size(i.stored_bytes.max(0) as u64)) }
                        td { code title=(i.root_hash) { (i.root_hash.get(..16).unwrap_or(&i.root_hash)) "…" } }
                        td { (views::time(i.created_at)) " by " (i.uploaded_by) }
                    }
                }
            }
        }
    };
    Ok(views::page("Images", Some(&s), body).into_response())
}
