//! HIL-compatible REST API, mounted under `/v0`.
//!
//! Paths, verbs and JSON shapes follow HIL's `docs/rest_api.md`; the access
//! rules (HIL's `api.py`) are `crate::authz`'s. One file per resource; each
//! handler extracts, calls the use case in `crate::app`, and shapes HIL's
//! view. Views are typed (and described in [`openapi`]); their fields are in
//! alphabetical order, the order HIL's own server (a JSON map) puts them in,
//! so the bytes on the wire stay those of `tests/golden/hil_v0.txt`.

mod extensions;
mod networks;
mod nodes;
pub mod openapi;
mod projects;
mod switches;
mod users;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use super::ApiError;
use crate::app::AppState;

/// A handler's result.
type R<T> = Result<T, ApiError>;

/// `{"status_id": <id>}`: a networking action to poll at `/v0/networking_action/<id>`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct StatusId {
    status_id: String,
}

/// HIL's empty 200.
fn ok() -> Response {
    StatusCode::OK.into_response()
}

/// Routes of the `/v0` API (to be nested under `/v0`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi::serve))
        .route("/projects", get(projects::list))
        .route("/project/{project}", put(projects::create).delete(projects::delete))
        .route("/project/{project}/connect_node", post(projects::connect_node))
        .route("/project/{project}/detach_node", post(projects::detach_node))
        .route("/project/{project}/nodes", get(projects::nodes))
        .route("/project/{project}/networks", get(projects::networks))
        .route("/nodes/{is_free}", get(nodes::list))
        .route("/node/{node}", put(nodes::register).delete(nodes::delete).get(nodes::show))
        .route("/node/{node}/obm", put(nodes::set_obm))
        .route("/node/{node}/power_on", post(nodes::power_on))
        .route("/node/{node}/power_off", post(nodes::power_off))
        .route("/node/{node}/power_cycle", post(nodes::power_cycle))
        .route("/node/{node}/power_status", get(nodes::power_status))
        .route("/node/{node}/boot_device", put(nodes::set_bootdev))
        .route("/node/{node}/console", get(nodes::show_console).put(nodes::start_console).delete(nodes::stop_console))
        .route("/node/{node}/nic/{nic}", put(nodes::register_nic).delete(nodes::delete_nic))
        .route("/node/{node}/nic/{nic}/connect_network", post(networks::connect))
        .route("/node/{node}/nic/{nic}/detach_network", post(networks::detach))
        .route("/node/{node}/metadata/{label}", put(nodes::set_metadata).delete(nodes::delete_metadata))
        .route("/networks", get(networks::list))
        .route("/network/{network}", put(networks::create).delete(networks::delete).get(networks::show))
        .route("/network/{network}/attachments", get(networks::attachments))
        .route("/network/{network}/access/{project}", put(networks::grant).delete(networks::revoke))
        .route("/switches", get(switches::list))
        .route("/switch/{switch}", put(switches::register).delete(switches::delete).get(switches::show))
        .route(
            "/switch/{switch}/port/{port}",
            put(switches::add_port).delete(switches::delete_port).get(switches::show_port),
        )
        .route("/switch/{switch}/port/{port}/connect_nic", post(switches::connect_nic))
        .route("/switch/{switch}/port/{port}/detach_nic", post(switches::detach_nic))
        .route("/switch/{switch}/port/{port}/revert", post(switches::revert_port))
        .route("/networking_action/{id}", get(networks::show_action))
        .route("/auth/basic/users", get(users::list))
        .route("/auth/basic/user/{user}", put(users::create).delete(users::delete).patch(users::set_admin))
        .route("/active_extensions", get(extensions::list))
        .route("/auth/basic/user/{user}/add_project", post(users::add_project))
        .route("/auth/basic/user/{user}/remove_project", post(users::remove_project))
}
