//! `/v0/nodes/<all|free>`, `/v0/node/<node>` and its power, boot device,
//! console, NICs and metadata.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{R, ok};
use crate::app::{AppState, Error, nodes};
use crate::authz::Caller;
use crate::drivers::{ObmConfig, PowerOp};
use crate::http::{Body, Empty};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeRegister {
    obm: ObmConfig,
    #[serde(default)]
    metadata: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PowerCycle {
    /// Accepted for HIL compatibility; every cycle is a hard reset.
    #[serde(default)]
    #[allow(dead_code)]
    force: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BootDev {
    bootdev: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NicRegister {
    macaddr: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MetadataValue {
    value: Value,
}

pub(super) async fn list(State(st): State<AppState>, _c: Caller, Path(is_free): Path<String>) -> R<Json<Vec<String>>> {
    let free = match is_free.as_str() {
        "all" => false,
        "free" => true,
        _ => return Err(Error::BadRequest("expected /nodes/all or /nodes/free".into()).into()),
    };
    Ok(Json(nodes::list(&st, free).await?))
}

pub(super) async fn register(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(req): Body<NodeRegister>,
) -> R<Response> {
    nodes::register(&st, &c, &node, &req.obm, &req.metadata).await?;
    Ok(ok())
}

pub(super) async fn delete(State(st): State<AppState>, c: Caller, Path(node): Path<String>) -> R<Response> {
    nodes::delete(&st, &c, &node).await?;
    Ok(ok())
}

/// HIL's node view; admins also see each NIC's switch and port.
pub(super) async fn show(State(st): State<AppState>, c: Caller, Path(node): Path<String>) -> R<Json<Value>> {
    let n = nodes::show(&st, &c, &node).await?;
    let nics: Vec<Value> = n
        .nics
        .into_iter()
        .map(|nic| {
            let mut v = json!({ "label": nic.label, "macaddr": nic.macaddr, "networks": nic.networks });
            if let Some((switch, port)) = nic.port {
                v["switch"] = json!(switch);
                v["port"] = json!(port);
            }
            v
        })
        .collect();
    // HIL returns each metadata value as its JSON text.
    Ok(Json(json!({ "name": n.name, "project": n.project, "nics": nics, "metadata": n.metadata })))
}

pub(super) async fn power_on(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    nodes::power(&st, &c, &node, PowerOp::On).await?;
    Ok(ok())
}

pub(super) async fn power_off(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    nodes::power(&st, &c, &node, PowerOp::Off).await?;
    Ok(ok())
}

pub(super) async fn power_cycle(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(_req): Body<PowerCycle>,
) -> R<Response> {
    nodes::power(&st, &c, &node, PowerOp::Cycle).await?;
    Ok(ok())
}

pub(super) async fn power_status(State(st): State<AppState>, c: Caller, Path(node): Path<String>) -> R<Json<Value>> {
    let on = nodes::power_status(&st, &c, &node).await?;
    Ok(Json(json!({ "power_status": if on { "on" } else { "off" } })))
}

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
pub(super) async fn show_console(State(st): State<AppState>, c: Caller, Path(node): Path<String>) -> R<Response> {
    let log = nodes::console_log(&st, &c, &node).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], log).into_response())
}

/// `PUT /node/<node>/console`: start capturing the console (idempotent).
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
pub(super) async fn stop_console(State(st): State<AppState>, c: Caller, Path(node): Path<String>) -> R<Response> {
    nodes::console_stop(&st, &c, &node).await?;
    Ok(ok())
}

pub(super) async fn register_nic(
    State(st): State<AppState>,
    c: Caller,
    Path((node, nic)): Path<(String, String)>,
    Body(NicRegister { macaddr }): Body<NicRegister>,
) -> R<Response> {
    nodes::add_nic(&st, &c, &node, &nic, &macaddr).await?;
    Ok(ok())
}

pub(super) async fn delete_nic(
    State(st): State<AppState>,
    c: Caller,
    Path((node, nic)): Path<(String, String)>,
) -> R<Response> {
    nodes::delete_nic(&st, &c, &node, &nic).await?;
    Ok(ok())
}

pub(super) async fn set_metadata(
    State(st): State<AppState>,
    c: Caller,
    Path((node, label)): Path<(String, String)>,
    Body(MetadataValue { value }): Body<MetadataValue>,
) -> R<Response> {
    nodes::set_metadata(&st, &c, &node, &label, &value).await?;
    Ok(ok())
}

pub(super) async fn delete_metadata(
    State(st): State<AppState>,
    c: Caller,
    Path((node, label)): Path<(String, String)>,
) -> R<Response> {
    nodes::delete_metadata(&st, &c, &node, &label).await?;
    Ok(ok())
}
