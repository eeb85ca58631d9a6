//! `/v0/nodes/<all|free>`, `/v0/node/<node>` and its power, boot device,
//! console, NICs and metadata.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{R, ok};
use crate::app::{AppState, Error, nodes};
use crate::authz::Caller;
use crate::drivers::{ObmConfig, PowerOp};
use crate::http::{Body, Empty};

/// A new node: its BMC and optional metadata. The BMC is either `obm`
/// (`type` selects the driver) or, as HIL master sends it, `obmd`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeRegister {
    #[serde(default)]
    obm: Option<ObmConfig>,
    #[serde(default)]
    obmd: Option<ObmdArg>,
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Object>)]
    metadata: BTreeMap<String, Value>,
}

/// HIL master's `obmd` object: obmd's URL of the node and its admin token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ObmdArg {
    uri: String,
    admin_token: String,
}

/// `{"enabled": bool}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ObmEnabled {
    enabled: bool,
}

/// `{"force": bool}` (optional).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PowerCycle {
    /// Accepted for HIL compatibility; every cycle is a hard reset.
    #[serde(default)]
    #[allow(dead_code)]
    force: bool,
}

/// `{"bootdev": "disk" | "pxe" | ...}` (what the driver supports).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct BootDev {
    bootdev: String,
}

/// `{"macaddr": "aa:bb:cc:dd:ee:ff"}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NicRegister {
    macaddr: String,
}

/// `{"value": <any JSON>}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MetadataValue {
    #[schema(value_type = Object)]
    value: Value,
}

/// HIL's node view.
#[derive(Serialize, ToSchema)]
pub(super) struct NodeView {
    /// Label -> the value's JSON text.
    metadata: BTreeMap<String, String>,
    name: String,
    nics: Vec<NicView>,
    /// The project holding it, `null` if free.
    project: Option<String>,
}

/// One NIC of [`NodeView`]; `switch` and `port` are shown to admins only.
#[derive(Serialize, ToSchema)]
pub(super) struct NicView {
    label: String,
    macaddr: String,
    /// Attached networks: channel -> network.
    networks: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    switch: Option<Option<String>>,
}

/// `{"power_status": "on" | "off"}`.
#[derive(Serialize, ToSchema)]
pub(super) struct PowerStatus {
    power_status: &'static str,
}

/// The nodes, `all` or only the `free` ones.
#[utoipa::path(get, path = "/v0/nodes/{is_free}", operation_id = "v0_node_list", params(("is_free" = String, Path, description = "`all` or `free`", pattern = "^(all|free)$")), responses((status = 200, body = [String]), (status = 400)))]
pub(super) async fn list(State(st): State<AppState>, _c: Caller, Path(is_free): Path<String>) -> R<Json<Vec<String>>> {
    let free = match is_free.as_str() {
        "all" => false,
        "free" => true,
        _ => return Err(Error::BadRequest("expected /nodes/all or /nodes/free".into()).into()),
    };
    Ok(Json(nodes::list(&st, free).await?))
}

/// Register a node (admin).
#[utoipa::path(put, path = "/v0/node/{node}", operation_id = "v0_node_register", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = NodeRegister, responses((status = 200, description = "registered"), (status = 409)))]
pub(super) async fn register(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(req): Body<NodeRegister>,
) -> R<Response> {
    let obm = match (req.obm, req.obmd) {
        (Some(obm), None) => obm,
        (None, Some(ObmdArg { uri, admin_token })) => ObmConfig::Obmd { uri, admin_token, token: None },
        _ => return Err(crate::http::ApiError::BadRequest("give exactly one of obm and obmd".into())),
    };
    nodes::register(&st, &c, &node, &obm, &req.metadata).await?;
    Ok(ok())
}

/// Enable or disable the node's OBM (its project's members; admins for a
/// free node). For an obmd node, enabling gets a node token from obmd and
/// disabling invalidates it; power, boot device and console need it. Other
/// BMC types are always enabled: the call changes nothing.
#[utoipa::path(put, path = "/v0/node/{node}/obm", operation_id = "v0_node_obm", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = ObmEnabled, responses((status = 200, description = "done"), (status = 404), (status = 502)))]
pub(super) async fn set_obm(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(ObmEnabled { enabled }): Body<ObmEnabled>,
) -> R<Response> {
    nodes::set_obm_enabled(&st, &c, &node, enabled).await?;
    Ok(ok())
}

/// Delete a free node without NICs (admin).
#[utoipa::path(delete, path = "/v0/node/{node}", operation_id = "v0_node_delete", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, description = "deleted"), (status = 404), (status = 409)))]
pub(super) async fn delete(State(st): State<AppState>, c: Caller, Path(node): Path<String>) -> R<Response> {
    nodes::delete(&st, &c, &node).await?;
    Ok(ok())
}

/// HIL's node view; admins also see each NIC's switch and port.
#[utoipa::path(get, path = "/v0/node/{node}", operation_id = "v0_node_show", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = NodeView), (status = 404)))]
pub(super) async fn show(State(st): State<AppState>, c: Caller, Path(node): Path<String>) -> R<Json<NodeView>> {
    let n = nodes::show(&st, &c, &node).await?;
    let nics = n
        .nics
        .into_iter()
        .map(|nic| {
            let (switch, port) = match nic.port {
                Some((switch, port)) => (Some(switch), Some(port)),
                None => (None, None),
            };
            NicView { label: nic.label, macaddr: nic.macaddr, networks: nic.networks, switch, port }
        })
        .collect();
    // HIL returns each metadata value as its JSON text.
    Ok(Json(NodeView { name: n.name, project: n.project, nics, metadata: n.metadata }))
}

/// Power the node on.
#[utoipa::path(post, path = "/v0/node/{node}/power_on", operation_id = "v0_node_power_on", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = Empty, responses((status = 200, description = "done"), (status = 404), (status = 501)))]
pub(super) async fn power_on(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    nodes::power(&st, &c, &node, PowerOp::On).await?;
    Ok(ok())
}

/// Power the node off.
#[utoipa::path(post, path = "/v0/node/{node}/power_off", operation_id = "v0_node_power_off", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = Empty, responses((status = 200, description = "done"), (status = 404), (status = 501)))]
pub(super) async fn power_off(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    nodes::power(&st, &c, &node, PowerOp::Off).await?;
    Ok(ok())
}

/// Power-cycle the node (a hard reset).
#[utoipa::path(post, path = "/v0/node/{node}/power_cycle", operation_id = "v0_node_power_cycle", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = PowerCycle, responses((status = 200, description = "done"), (status = 404), (status = 501)))]
pub(super) async fn power_cycle(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(_req): Body<PowerCycle>,
) -> R<Response> {
    nodes::power(&st, &c, &node, PowerOp::Cycle).await?;
    Ok(ok())
}

/// The node's power state from its BMC.
#[utoipa::path(get, path = "/v0/node/{node}/power_status", operation_id = "v0_node_power_status", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, body = PowerStatus), (status = 404), (status = 501)))]
pub(super) async fn power_status(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
) -> R<Json<PowerStatus>> {
    let on = nodes::power_status(&st, &c, &node).await?;
    Ok(Json(PowerStatus { power_status: if on { "on" } else { "off" } }))
}

/// Set the next boot device.
#[utoipa::path(put, path = "/v0/node/{node}/boot_device", operation_id = "v0_node_set_bootdev", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = BootDev, responses((status = 200, description = "set"), (status = 400), (status = 404), (status = 501)))]
pub(super) async fn set_bootdev(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(BootDev { bootdev }): Body<BootDev>,
) -> R<Response> {
    nodes::set_bootdev(&st, &c, &node, &bootdev).await?;
    Ok(ok())
}

/// `GET /node/<node>/console`: the captured console log as text (404 if
/// no capture is running).
#[utoipa::path(get, path = "/v0/node/{node}/console", operation_id = "v0_node_console_show", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, content_type = "text/plain", body = String), (status = 404), (status = 501)))]
pub(super) async fn show_console(State(st): State<AppState>, c: Caller, Path(node): Path<String>) -> R<Response> {
    let log = nodes::console_log(&st, &c, &node).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], log).into_response())
}

/// `PUT /node/<node>/console`: start capturing the console (idempotent).
#[utoipa::path(put, path = "/v0/node/{node}/console", operation_id = "v0_node_console_start", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = Empty, responses((status = 200, description = "capturing"), (status = 404), (status = 501)))]
pub(super) async fn start_console(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    nodes::console_start(&st, &c, &node).await?;
    Ok(ok())
}

/// `DELETE /node/<node>/console`: stop capturing and delete the log.
#[utoipa::path(delete, path = "/v0/node/{node}/console", operation_id = "v0_node_console_stop", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, description = "stopped"), (status = 404)))]
pub(super) async fn stop_console(State(st): State<AppState>, c: Caller, Path(node): Path<String>) -> R<Response> {
    nodes::console_stop(&st, &c, &node).await?;
    Ok(ok())
}

/// Register a NIC of the node (admin).
#[utoipa::path(put, path = "/v0/node/{node}/nic/{nic}", operation_id = "v0_nic_register", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"), ("nic" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = NicRegister, responses((status = 200, description = "registered"), (status = 404), (status = 409)))]
pub(super) async fn register_nic(
    State(st): State<AppState>,
    c: Caller,
    Path((node, nic)): Path<(String, String)>,
    Body(NicRegister { macaddr }): Body<NicRegister>,
) -> R<Response> {
    nodes::add_nic(&st, &c, &node, &nic, &macaddr).await?;
    Ok(ok())
}

/// Delete a NIC with no networks and no port (admin).
#[utoipa::path(delete, path = "/v0/node/{node}/nic/{nic}", operation_id = "v0_nic_delete", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"), ("nic" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, description = "deleted"), (status = 404), (status = 409)))]
pub(super) async fn delete_nic(
    State(st): State<AppState>,
    c: Caller,
    Path((node, nic)): Path<(String, String)>,
) -> R<Response> {
    nodes::delete_nic(&st, &c, &node, &nic).await?;
    Ok(ok())
}

/// Set a metadata label (admin).
#[utoipa::path(put, path = "/v0/node/{node}/metadata/{label}", operation_id = "v0_node_metadata_set", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"), ("label" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = MetadataValue, responses((status = 200, description = "set"), (status = 404)))]
pub(super) async fn set_metadata(
    State(st): State<AppState>,
    c: Caller,
    Path((node, label)): Path<(String, String)>,
    Body(MetadataValue { value }): Body<MetadataValue>,
) -> R<Response> {
    nodes::set_metadata(&st, &c, &node, &label, &value).await?;
    Ok(ok())
}

/// Delete a metadata label (admin).
#[utoipa::path(delete, path = "/v0/node/{node}/metadata/{label}", operation_id = "v0_node_metadata_delete", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"), ("label" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, description = "deleted"), (status = 404)))]
pub(super) async fn delete_metadata(
    State(st): State<AppState>,
    c: Caller,
    Path((node, label)): Path<(String, String)>,
) -> R<Response> {
    nodes::delete_metadata(&st, &c, &node, &label).await?;
    Ok(ok())
}
