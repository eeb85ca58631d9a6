//! `/v0/networks`, `/v0/network/<network>` (access, attachments), attaching
//! networks to NICs, and `/v0/networking_action/<id>`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{R, StatusId, ok};
use crate::app::{AppState, actions, networks};
use crate::authz::Caller;
use crate::http::Body;

/// A new network: owner project (`admin` for none), access (a project, or `""` for public), and `net_id` (`""`: allocate a VLAN; an id: admins only).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkCreate {
    owner: String,
    access: String,
    net_id: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AttachmentsQuery {
    /// Only the nodes of this project.
    project: Option<String>,
}

/// `{"network": <name>, "channel": "vlan/native" | "vlan/<id>"}` (native if absent).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectNetwork {
    network: String,
    #[serde(default)]
    channel: Option<String>,
}

/// `{"network": <name>}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DetachNetwork {
    network: String,
}

/// A list of projects, or `null` for none (HIL's shape).
fn projects_or_null(p: Vec<String>) -> Option<Vec<String>> {
    if p.is_empty() { None } else { Some(p) }
}

/// One network of `GET /v0/networks`.
#[derive(Serialize, ToSchema)]
pub(super) struct NetworkEntry {
    /// The VLAN id, as text.
    network_id: String,
    /// The projects that may use it; `null` for a public network.
    projects: Option<Vec<String>>,
}

/// `GET /v0/network/<network>`.
#[derive(Serialize, ToSchema)]
pub(super) struct NetworkView {
    /// The projects with access; `null` for a public network (or a caller who may not see them).
    access: Option<Vec<String>>,
    /// The channels a NIC can attach it on.
    channels: Vec<String>,
    /// Node -> its NICs on the network.
    #[serde(rename = "connected-nodes")]
    connected_nodes: BTreeMap<String, Vec<String>>,
    name: String,
    /// Owner project, or `admin`.
    owner: String,
}

/// One node of `GET /v0/network/<network>/attachments`.
#[derive(Serialize, ToSchema)]
pub(super) struct Attachment {
    channel: String,
    nic: String,
    project: Option<String>,
}

/// `GET /v0/networking_action/<id>`.
#[derive(Serialize, ToSchema)]
pub(super) struct ActionView {
    channel: String,
    /// The network attached, `null` for a detach.
    new_network: Option<String>,
    nic: String,
    node: String,
    /// `PENDING`, `DONE` or `ERROR`.
    status: String,
    /// `modify_port` or `revert_port`.
    #[serde(rename = "type")]
    kind: String,
}

/// Every network (admin), or the public ones (everyone else, as in HIL): name -> VLAN and projects.
#[utoipa::path(get, path = "/v0/networks", operation_id = "v0_network_list", responses((status = 200, body = BTreeMap<String, NetworkEntry>)))]
pub(super) async fn list(State(st): State<AppState>, c: Caller) -> R<Json<BTreeMap<String, NetworkEntry>>> {
    let out = networks::list(&st, &c)
        .await?
        .into_iter()
        .map(|(name, (vlan, projects))| {
            (name, NetworkEntry { network_id: vlan.to_string(), projects: projects_or_null(projects) })
        })
        .collect();
    Ok(Json(out))
}

/// Create a network.
#[utoipa::path(put, path = "/v0/network/{network}", operation_id = "v0_network_create", params(("network" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .), or a nested instance's carrier name <prefix>~<name>", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.~-]{0,63}$")), request_body = NetworkCreate, responses((status = 200, description = "created"), (status = 404), (status = 409)))]
pub(super) async fn create(
    State(st): State<AppState>,
    c: Caller,
    Path(network): Path<String>,
    Body(req): Body<NetworkCreate>,
) -> R<Response> {
    networks::create(&st, &c, &network, &req.owner, &req.access, &req.net_id).await?;
    Ok(ok())
}

/// Delete a network attached to no NIC.
#[utoipa::path(delete, path = "/v0/network/{network}", operation_id = "v0_network_delete", params(("network" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .), or a nested instance's carrier name <prefix>~<name>", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.~-]{0,63}$")), responses((status = 200, description = "deleted"), (status = 404), (status = 409)))]
pub(super) async fn delete(State(st): State<AppState>, c: Caller, Path(network): Path<String>) -> R<Response> {
    networks::delete(&st, &c, &network).await?;
    Ok(ok())
}

/// A network.
#[utoipa::path(get, path = "/v0/network/{network}", operation_id = "v0_network_show", params(("network" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .), or a nested instance's carrier name <prefix>~<name>", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.~-]{0,63}$")), responses((status = 200, body = NetworkView), (status = 404)))]
pub(super) async fn show(State(st): State<AppState>, c: Caller, Path(network): Path<String>) -> R<Json<NetworkView>> {
    let (net, connected) = networks::show(&st, &c, &network).await?;
    Ok(Json(NetworkView {
        channels: net.channels(),
        owner: net.owner.clone().unwrap_or_else(|| "admin".into()),
        access: projects_or_null(net.access),
        connected_nodes: connected,
        name: net.name,
    }))
}

/// The nodes attached to a network: node -> NIC, channel, project.
#[utoipa::path(get, path = "/v0/network/{network}/attachments", operation_id = "v0_network_attachments", params(("network" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .), or a nested instance's carrier name <prefix>~<name>", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.~-]{0,63}$"), AttachmentsQuery), responses((status = 200, body = BTreeMap<String, Attachment>), (status = 404)))]
pub(super) async fn attachments(
    State(st): State<AppState>,
    c: Caller,
    Path(network): Path<String>,
    Query(q): Query<AttachmentsQuery>,
) -> R<Json<BTreeMap<String, Attachment>>> {
    let out = networks::attachments(&st, &c, &network, q.project.as_deref())
        .await?
        .into_iter()
        .map(|(node, (nic, channel, project))| (node, Attachment { nic, channel, project }))
        .collect();
    Ok(Json(out))
}

/// Give a project access to a network.
#[utoipa::path(put, path = "/v0/network/{network}/access/{project}", operation_id = "v0_network_grant", params(("network" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .), or a nested instance's carrier name <prefix>~<name>", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.~-]{0,63}$"), ("project" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, description = "granted"), (status = 404), (status = 409)))]
pub(super) async fn grant(
    State(st): State<AppState>,
    c: Caller,
    Path((network, project)): Path<(String, String)>,
) -> R<Response> {
    networks::grant(&st, &c, &network, &project).await?;
    Ok(ok())
}

/// Take a project's access to a network away.
#[utoipa::path(delete, path = "/v0/network/{network}/access/{project}", operation_id = "v0_network_revoke", params(("network" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .), or a nested instance's carrier name <prefix>~<name>", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.~-]{0,63}$"), ("project" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), responses((status = 200, description = "revoked"), (status = 404), (status = 409)))]
pub(super) async fn revoke(
    State(st): State<AppState>,
    c: Caller,
    Path((network, project)): Path<(String, String)>,
) -> R<Response> {
    networks::revoke(&st, &c, &network, &project).await?;
    Ok(ok())
}

/// Attach a network to a NIC; a networking action (poll its status).
#[utoipa::path(post, path = "/v0/node/{node}/nic/{nic}/connect_network", operation_id = "v0_nic_connect_network", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"), ("nic" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = ConnectNetwork, responses((status = 202, body = StatusId), (status = 404), (status = 409)))]
pub(super) async fn connect(
    State(st): State<AppState>,
    c: Caller,
    Path((node, nic)): Path<(String, String)>,
    Body(req): Body<ConnectNetwork>,
) -> R<(StatusCode, Json<StatusId>)> {
    let status_id = networks::connect(&st, &c, &node, &nic, &req.network, req.channel).await?;
    Ok((StatusCode::ACCEPTED, Json(StatusId { status_id })))
}

/// Detach a network from a NIC; a networking action (poll its status).
#[utoipa::path(post, path = "/v0/node/{node}/nic/{nic}/detach_network", operation_id = "v0_nic_detach_network", params(("node" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"), ("nic" = String, Path, description = "1-64 characters A-Z a-z 0-9 _ . - (not starting with - or .)", pattern = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")), request_body = DetachNetwork, responses((status = 202, body = StatusId), (status = 404), (status = 409)))]
pub(super) async fn detach(
    State(st): State<AppState>,
    c: Caller,
    Path((node, nic)): Path<(String, String)>,
    Body(req): Body<DetachNetwork>,
) -> R<(StatusCode, Json<StatusId>)> {
    let status_id = networks::detach(&st, &c, &node, &nic, &req.network).await?;
    Ok((StatusCode::ACCEPTED, Json(StatusId { status_id })))
}

/// A networking action's state.
#[utoipa::path(get, path = "/v0/networking_action/{id}", operation_id = "v0_networking_action_show", params(("id" = String, Path, description = "the `status_id` a connect, detach or revert answered")), responses((status = 200, body = ActionView), (status = 404)))]
pub(super) async fn show_action(State(st): State<AppState>, c: Caller, Path(id): Path<String>) -> R<Json<ActionView>> {
    let a = actions::show(&st, &c, &id).await?;
    Ok(Json(ActionView {
        status: a.status,
        node: a.node,
        nic: a.nic,
        kind: a.kind,
        channel: a.channel,
        new_network: a.network,
    }))
}
