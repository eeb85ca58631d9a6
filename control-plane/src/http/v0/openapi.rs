//! The OpenAPI document of the HIL-compatible `/v0` API, served at
//! `/v0/openapi.json` (HIL has no such document; this one describes what
//! metalcast serves, in HIL's paths and shapes).

use axum::Json;
use utoipa::OpenApi;

use super::{StatusId, extensions, networks, nodes, projects, switches, users};
use crate::http::Empty;
use crate::http::error::ErrorBody;

/// OpenAPI description of `/v0`.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "metalcast control plane /v0 (HIL-compatible)",
        description = "HIL's REST API (CCI-MOC/hil docs/rest_api.md) as metalcast serves it. \
            Authenticate with HTTP Basic (HIL's auth backend) or `Authorization: Bearer mct_<id>_<secret>`. \
            Errors are `{\"type\": <HIL error class>, \"msg\": <text>}`."
    ),
    paths(
        projects::list,
        projects::create,
        projects::delete,
        projects::connect_node,
        projects::detach_node,
        projects::nodes,
        projects::networks,
        nodes::list,
        nodes::register,
        nodes::delete,
        nodes::show,
        nodes::set_obm,
        nodes::power_on,
        nodes::power_off,
        nodes::power_cycle,
        nodes::power_status,
        nodes::set_bootdev,
        nodes::show_console,
        nodes::start_console,
        nodes::stop_console,
        nodes::register_nic,
        nodes::delete_nic,
        nodes::set_metadata,
        nodes::delete_metadata,
        networks::list,
        networks::create,
        networks::delete,
        networks::show,
        networks::attachments,
        networks::grant,
        networks::revoke,
        networks::connect,
        networks::detach,
        networks::show_action,
        switches::list,
        switches::register,
        switches::delete,
        switches::show,
        switches::add_port,
        switches::delete_port,
        switches::show_port,
        switches::connect_nic,
        switches::detach_nic,
        switches::revert_port,
        users::list,
        users::create,
        users::set_admin,
        users::delete,
        users::add_project,
        users::remove_project,
        extensions::list,
    ),
    components(schemas(Empty, StatusId, ErrorBody))
)]
pub struct V0Doc;

/// The whole `/v0` document, with the security schemes and the error body
/// on every operation.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = V0Doc::openapi();
    crate::http::openapi::finish(&mut doc);
    doc
}

/// `GET /v0/openapi.json`.
pub(super) async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
