//! `/v0/active_extensions`.

use axum::Json;
use axum::extract::State;

use super::R;
use crate::app::{AppState, extensions};
use crate::authz::Caller;

/// The server's active extensions, HIL's names where HIL has one (admin).
#[utoipa::path(get, path = "/v0/active_extensions", operation_id = "v0_active_extensions", responses((status = 200, body = Vec<String>), (status = 401), (status = 403)))]
pub(super) async fn list(State(st): State<AppState>, c: Caller) -> R<Json<Vec<&'static str>>> {
    Ok(Json(extensions::active(&st, &c)?))
}
