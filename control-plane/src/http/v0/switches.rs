//! `/v0/switches`, `/v0/switch/<switch>`, its ports and what is cabled to them.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{R, ok};
use crate::app::{AppState, switches};
use crate::authz::Caller;
use crate::drivers::SwitchConfig;
use crate::http::{Body, Empty};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeNic {
    node: String,
    nic: String,
}

pub(super) async fn list(State(st): State<AppState>, c: Caller) -> R<Json<Vec<String>>> {
    Ok(Json(switches::list(&st, &c).await?))
}

pub(super) async fn register(
    State(st): State<AppState>,
    c: Caller,
    Path(switch): Path<String>,
    Body(cfg): Body<SwitchConfig>,
) -> R<Response> {
    switches::register(&st, &c, &switch, &cfg).await?;
    Ok(ok())
}

pub(super) async fn delete(State(st): State<AppState>, c: Caller, Path(switch): Path<String>) -> R<Response> {
    switches::delete(&st, &c, &switch).await?;
    Ok(ok())
}

pub(super) async fn show(State(st): State<AppState>, c: Caller, Path(switch): Path<String>) -> R<Json<Value>> {
    let ports = switches::ports(&st, &c, &switch).await?;
    Ok(Json(json!({ "name": switch, "ports": ports })))
}

pub(super) async fn add_port(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    switches::add_port(&st, &c, &switch, &port).await?;
    Ok(ok())
}

pub(super) async fn delete_port(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
) -> R<Response> {
    switches::delete_port(&st, &c, &switch, &port).await?;
    Ok(ok())
}

pub(super) async fn show_port(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
) -> R<Json<Value>> {
    let Some((node, nic, attached)) = switches::show_port(&st, &c, &switch, &port).await? else {
        return Ok(Json(json!({})));
    };
    let networks: Map<String, Value> = attached.into_iter().map(|(ch, net)| (ch, Value::String(net))).collect();
    Ok(Json(json!({ "node": node, "nic": nic, "networks": networks })))
}

pub(super) async fn connect_nic(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
    Body(NodeNic { node, nic }): Body<NodeNic>,
) -> R<Response> {
    switches::connect_nic(&st, &c, &switch, &port, &node, &nic).await?;
    Ok(ok())
}

pub(super) async fn detach_nic(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    switches::detach_nic(&st, &c, &switch, &port).await?;
    Ok(ok())
}

pub(super) async fn revert_port(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
    Body(Empty {}): Body<Empty>,
) -> R<Json<Value>> {
    let id = switches::revert_port(&st, &c, &switch, &port).await?;
    Ok(Json(json!({ "status_id": id })))
}
