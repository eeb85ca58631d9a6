//! `/v0/networks`, `/v0/network/<network>` (access, attachments), attaching
//! networks to NICs, and `/v0/networking_action/<id>`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{R, ok};
use crate::app::{AppState, actions, networks};
use crate::authz::Caller;
use crate::http::Body;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkCreate {
    owner: String,
    access: String,
    net_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AttachmentsQuery {
    project: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectNetwork {
    network: String,
    #[serde(default)]
    channel: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DetachNetwork {
    network: String,
}

/// A list of projects, or `null` for none (HIL's shape).
fn projects_or_null(p: Vec<String>) -> Value {
    if p.is_empty() { Value::Null } else { json!(p) }
}

pub(super) async fn list(State(st): State<AppState>, c: Caller) -> R<Json<Value>> {
    let out: Map<String, Value> = networks::list(&st, &c)
        .await?
        .into_iter()
        .map(|(name, (vlan, projects))| {
            (name, json!({ "network_id": vlan.to_string(), "projects": projects_or_null(projects) }))
        })
        .collect();
    Ok(Json(Value::Object(out)))
}

pub(super) async fn create(
    State(st): State<AppState>,
    c: Caller,
    Path(network): Path<String>,
    Body(req): Body<NetworkCreate>,
) -> R<Response> {
    networks::create(&st, &c, &network, &req.owner, &req.access, &req.net_id).await?;
    Ok(ok())
}

pub(super) async fn delete(State(st): State<AppState>, c: Caller, Path(network): Path<String>) -> R<Response> {
    networks::delete(&st, &c, &network).await?;
    Ok(ok())
}

pub(super) async fn show(State(st): State<AppState>, c: Caller, Path(network): Path<String>) -> R<Json<Value>> {
    let (net, connected) = networks::show(&st, &c, &network).await?;
    Ok(Json(json!({
        "name": net.name,
        "channels": net.channels(),
        "owner": net.owner.clone().unwrap_or_else(|| "admin".into()),
        "access": projects_or_null(net.access),
        "connected-nodes": connected,
    })))
}

pub(super) async fn attachments(
    State(st): State<AppState>,
    c: Caller,
    Path(network): Path<String>,
    Query(q): Query<AttachmentsQuery>,
) -> R<Json<Value>> {
    let out: Map<String, Value> = networks::attachments(&st, &c, &network, q.project.as_deref())
        .await?
        .into_iter()
        .map(|(node, (nic, channel, project))| (node, json!({ "nic": nic, "channel": channel, "project": project })))
        .collect();
    Ok(Json(Value::Object(out)))
}

pub(super) async fn grant(
    State(st): State<AppState>,
    c: Caller,
    Path((network, project)): Path<(String, String)>,
) -> R<Response> {
    networks::grant(&st, &c, &network, &project).await?;
    Ok(ok())
}

pub(super) async fn revoke(
    State(st): State<AppState>,
    c: Caller,
    Path((network, project)): Path<(String, String)>,
) -> R<Response> {
    networks::revoke(&st, &c, &network, &project).await?;
    Ok(ok())
}

pub(super) async fn connect(
    State(st): State<AppState>,
    c: Caller,
    Path((node, nic)): Path<(String, String)>,
    Body(req): Body<ConnectNetwork>,
) -> R<Response> {
    let id = networks::connect(&st, &c, &node, &nic, &req.network, req.channel).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "status_id": id }))).into_response())
}

pub(super) async fn detach(
    State(st): State<AppState>,
    c: Caller,
    Path((node, nic)): Path<(String, String)>,
    Body(req): Body<DetachNetwork>,
) -> R<Response> {
    let id = networks::detach(&st, &c, &node, &nic, &req.network).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "status_id": id }))).into_response())
}

pub(super) async fn show_action(State(st): State<AppState>, c: Caller, Path(id): Path<String>) -> R<Json<Value>> {
    let a = actions::show(&st, &c, &id).await?;
    Ok(Json(json!({
        "status": a.status,
        "node": a.node,
        "nic": a.nic,
        "type": a.kind,
        "channel": a.channel,
        "new_network": a.network,
    })))
}
