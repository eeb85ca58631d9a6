//! `/v0/switches`, `/v0/switch/<switch>`, its ports and what is cabled to them.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{R, StatusId, ok};
use crate::app::{AppState, switches};
use crate::authz::Caller;
use crate::drivers::SwitchConfig;
use crate::http::{Body, Empty};

/// `{"node": <name>, "nic": <label>}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeNic {
    node: String,
    nic: String,
}

/// A switch, what its driver can do, and its ports (HIL's shape).
#[derive(Serialize, ToSchema)]
pub(super) struct SwitchView {
    /// HIL's switch capabilities: `nativeless-trunk-mode` when a port can
    /// carry tagged VLANs with no native one (every metalcast switch driver).
    capabilities: Vec<String>,
    name: String,
    ports: Vec<PortLabel>,
}

/// `{"label": <port>}`.
#[derive(Serialize, ToSchema)]
pub(super) struct PortLabel {
    label: String,
}

/// What is cabled to a port: empty (`{}`) if nothing.
#[derive(Serialize, ToSchema)]
pub(super) struct PortView {
    /// Attached networks: channel -> network.
    #[serde(skip_serializing_if = "Option::is_none")]
    networks: Option<BTreeMap<String, String>>,
    /// That NIC's label.
    #[serde(skip_serializing_if = "Option::is_none")]
    nic: Option<String>,
    /// The node whose NIC is cabled to the port.
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
}

/// Every switch (admin).
#[utoipa::path(get, path = "/v0/switches", operation_id = "v0_switch_list", responses((status = 200, body = [String])))]
pub(super) async fn list(State(st): State<AppState>, c: Caller) -> R<Json<Vec<String>>> {
    Ok(Json(switches::list(&st, &c).await?))
}

/// Register a switch (admin); `type` selects the driver.
#[utoipa::path(put, path = "/v0/switch/{switch}", operation_id = "v0_switch_register", params(("switch" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = SwitchConfig, responses((status = 200, description = "registered"), (status = 409)))]
pub(super) async fn register(
    State(st): State<AppState>,
    c: Caller,
    Path(switch): Path<String>,
    Body(cfg): Body<SwitchConfig>,
) -> R<Response> {
    switches::register(&st, &c, &switch, &cfg).await?;
    Ok(ok())
}

/// Delete a switch without ports (admin).
#[utoipa::path(delete, path = "/v0/switch/{switch}", operation_id = "v0_switch_delete", params(("switch" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, description = "deleted"), (status = 404), (status = 409)))]
pub(super) async fn delete(State(st): State<AppState>, c: Caller, Path(switch): Path<String>) -> R<Response> {
    switches::delete(&st, &c, &switch).await?;
    Ok(ok())
}

/// A switch and its ports (admin).
#[utoipa::path(get, path = "/v0/switch/{switch}", operation_id = "v0_switch_show", params(("switch" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = SwitchView), (status = 404)))]
pub(super) async fn show(State(st): State<AppState>, c: Caller, Path(switch): Path<String>) -> R<Json<SwitchView>> {
    let (capabilities, ports) = switches::show(&st, &c, &switch).await?;
    let ports = ports.into_iter().map(|label| PortLabel { label }).collect();
    Ok(Json(SwitchView { capabilities, name: switch, ports }))
}

/// Add a port (admin).
#[utoipa::path(put, path = "/v0/switch/{switch}/port/{port}", operation_id = "v0_port_create", params(("switch" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"), ("port" = String, Path, description = "port name (for Linux switches an interface name: 1-15 characters A-Z a-z 0-9 _ . -, not starting with -)", pattern = "^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}$")), request_body = Empty, responses((status = 200, description = "added"), (status = 404), (status = 409)))]
pub(super) async fn add_port(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    switches::add_port(&st, &c, &switch, &port).await?;
    Ok(ok())
}

/// Delete a port with nothing cabled to it (admin).
#[utoipa::path(delete, path = "/v0/switch/{switch}/port/{port}", operation_id = "v0_port_delete", params(("switch" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"), ("port" = String, Path, description = "port name (for Linux switches an interface name: 1-15 characters A-Z a-z 0-9 _ . -, not starting with -)", pattern = "^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}$")), responses((status = 200, description = "deleted"), (status = 404), (status = 409)))]
pub(super) async fn delete_port(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
) -> R<Response> {
    switches::delete_port(&st, &c, &switch, &port).await?;
    Ok(ok())
}

/// What is cabled to a port (admin).
#[utoipa::path(get, path = "/v0/switch/{switch}/port/{port}", operation_id = "v0_port_show", params(("switch" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"), ("port" = String, Path, description = "port name (for Linux switches an interface name: 1-15 characters A-Z a-z 0-9 _ . -, not starting with -)", pattern = "^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}$")), responses((status = 200, body = PortView), (status = 404)))]
pub(super) async fn show_port(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
) -> R<Json<PortView>> {
    let Some((node, nic, attached)) = switches::show_port(&st, &c, &switch, &port).await? else {
        return Ok(Json(PortView { node: None, nic: None, networks: None }));
    };
    Ok(Json(PortView { node: Some(node), nic: Some(nic), networks: Some(attached.into_iter().collect()) }))
}

/// Cable a node's NIC to the port (admin).
#[utoipa::path(post, path = "/v0/switch/{switch}/port/{port}/connect_nic", operation_id = "v0_port_connect_nic", params(("switch" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"), ("port" = String, Path, description = "port name (for Linux switches an interface name: 1-15 characters A-Z a-z 0-9 _ . -, not starting with -)", pattern = "^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}$")), request_body = NodeNic, responses((status = 200, description = "connected"), (status = 404), (status = 409)))]
pub(super) async fn connect_nic(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
    Body(NodeNic { node, nic }): Body<NodeNic>,
) -> R<Response> {
    switches::connect_nic(&st, &c, &switch, &port, &node, &nic).await?;
    Ok(ok())
}

/// Uncable the port (admin; no networks may be attached).
#[utoipa::path(post, path = "/v0/switch/{switch}/port/{port}/detach_nic", operation_id = "v0_port_detach_nic", params(("switch" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"), ("port" = String, Path, description = "port name (for Linux switches an interface name: 1-15 characters A-Z a-z 0-9 _ . -, not starting with -)", pattern = "^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}$")), request_body = Empty, responses((status = 200, description = "detached"), (status = 404), (status = 409)))]
pub(super) async fn detach_nic(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    switches::detach_nic(&st, &c, &switch, &port).await?;
    Ok(ok())
}

/// Detach every network from the port (admin); a networking action.
#[utoipa::path(post, path = "/v0/switch/{switch}/port/{port}/revert", operation_id = "v0_port_revert", params(("switch" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"), ("port" = String, Path, description = "port name (for Linux switches an interface name: 1-15 characters A-Z a-z 0-9 _ . -, not starting with -)", pattern = "^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}$")), request_body = Empty, responses((status = 200, body = StatusId), (status = 404)))]
pub(super) async fn revert_port(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
    Body(Empty {}): Body<Empty>,
) -> R<Json<StatusId>> {
    let status_id = switches::revert_port(&st, &c, &switch, &port).await?;
    Ok(Json(StatusId { status_id }))
}
