//! HIL-compatible REST API, mounted under `/v0`.
//!
//! Paths, verbs and JSON shapes follow HIL's `docs/rest_api.md`; the access
//! rules follow HIL's `api.py`: admin can do everything, project members can
//! act on their project's nodes and networks, free nodes and public networks
//! are visible to anyone.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::auth::{Caller, hash_secret};
use crate::drivers::{BOOT_DEVICES, ObmConfig, PowerOp, SwitchConfig};
use crate::error::ApiError;
use crate::extract::{Body, Empty, check_mac, check_name};
use crate::state::AppState;

type R<T> = Result<T, ApiError>;

/// Routes of the `/v0` API (to be nested under `/v0`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/projects", get(list_projects))
        .route("/project/{project}", put(project_create).delete(project_delete))
        .route("/project/{project}/connect_node", post(project_connect_node))
        .route("/project/{project}/detach_node", post(project_detach_node))
        .route("/project/{project}/nodes", get(list_project_nodes))
        .route("/project/{project}/networks", get(list_project_networks))
        .route("/nodes/{is_free}", get(list_nodes))
        .route("/node/{node}", put(node_register).delete(node_delete).get(show_node))
        .route("/node/{node}/power_on", post(node_power_on))
        .route("/node/{node}/power_off", post(node_power_off))
        .route("/node/{node}/power_cycle", post(node_power_cycle))
        .route("/node/{node}/power_status", get(node_power_status))
        .route("/node/{node}/boot_device", put(node_set_bootdev))
        .route("/node/{node}/console", get(node_show_console).put(node_start_console).delete(node_stop_console))
        .route("/node/{node}/nic/{nic}", put(node_register_nic).delete(node_delete_nic))
        .route("/node/{node}/nic/{nic}/connect_network", post(node_connect_network))
        .route("/node/{node}/nic/{nic}/detach_network", post(node_detach_network))
        .route("/node/{node}/metadata/{label}", put(node_set_metadata).delete(node_delete_metadata))
        .route("/networks", get(list_networks))
        .route("/network/{network}", put(network_create).delete(network_delete).get(show_network))
        .route("/network/{network}/attachments", get(list_network_attachments))
        .route("/network/{network}/access/{project}", put(network_grant_access).delete(network_revoke_access))
        .route("/switches", get(list_switches))
        .route("/switch/{switch}", put(switch_register).delete(switch_delete).get(show_switch))
        .route("/switch/{switch}/port/{port}", put(switch_register_port).delete(switch_delete_port).get(show_port))
        .route("/switch/{switch}/port/{port}/connect_nic", post(port_connect_nic))
        .route("/switch/{switch}/port/{port}/detach_nic", post(port_detach_nic))
        .route("/switch/{switch}/port/{port}/revert", post(port_revert))
        .route("/networking_action/{id}", get(show_networking_action))
        .route("/auth/basic/user/{user}", put(user_create).delete(user_delete))
        .route("/auth/basic/user/{user}/add_project", post(user_add_project))
        .route("/auth/basic/user/{user}/remove_project", post(user_remove_project))
}

fn ok() -> Response {
    StatusCode::OK.into_response()
}

fn strings(rows: Vec<AnyRow>) -> R<Vec<String>> {
    rows.iter().map(|r| r.try_get::<String, _>(0).map_err(ApiError::from)).collect()
}

/// Run an INSERT; a unique violation becomes 409 with `msg`.
async fn insert_or_conflict(
    q: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    st: &AppState,
    msg: String,
) -> R<()> {
    match q.execute(&st.db.pool).await {
        Ok(_) => Ok(()),
        Err(e) => match ApiError::from(e) {
            ApiError::Conflict(_) => Err(ApiError::Conflict(msg)),
            other => Err(other),
        },
    }
}

async fn count(st: &AppState, sql: &'static str, args: &[&str]) -> R<i64> {
    let mut q = sqlx::query(sql);
    for a in args {
        q = q.bind(*a);
    }
    Ok(q.fetch_one(&st.db.pool).await?.try_get(0)?)
}

async fn project_exists(st: &AppState, project: &str) -> R<()> {
    check_name("project", project)?;
    if count(st, "SELECT COUNT(*) FROM projects WHERE name = $1", &[project]).await? == 0 {
        return Err(ApiError::not_found("project", project));
    }
    Ok(())
}

/// A node's project (`None` when free); 404 if the node does not exist.
async fn node_project(st: &AppState, node: &str) -> R<Option<String>> {
    check_name("node", node)?;
    let row = sqlx::query("SELECT project FROM nodes WHERE name = $1")
        .bind(node)
        .fetch_optional(&st.db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("node", node))?;
    Ok(row.try_get(0)?)
}

async fn nic_exists(st: &AppState, node: &str, nic: &str) -> R<()> {
    check_name("nic", nic)?;
    if count(st, "SELECT COUNT(*) FROM nics WHERE node = $1 AND name = $2", &[node, nic]).await? == 0 {
        return Err(ApiError::NotFound(format!("node {node:?} has no nic {nic:?}")));
    }
    Ok(())
}

struct Network {
    owner: Option<String>,
    vlan: i64,
    access: Vec<String>,
}

async fn load_network(st: &AppState, name: &str) -> R<Network> {
    check_name("network", name)?;
    let row = sqlx::query("SELECT owner, vlan FROM networks WHERE name = $1")
        .bind(name)
        .fetch_optional(&st.db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("network", name))?;
    let access = strings(
        sqlx::query("SELECT project FROM network_access WHERE network = $1 ORDER BY project")
            .bind(name)
            .fetch_all(&st.db.pool)
            .await?,
    )?;
    Ok(Network { owner: row.try_get(0)?, vlan: row.try_get(1)?, access })
}

impl Network {
    fn visible_to(&self, c: &Caller) -> bool {
        self.access.is_empty() || c.admin || self.access.iter().any(|p| c.has_project(p))
    }
    fn channels(&self) -> Vec<String> {
        vec!["vlan/native".into(), format!("vlan/{}", self.vlan)]
    }
}

// --- projects ---------------------------------------------------------------

async fn list_projects(State(st): State<AppState>, c: Caller) -> R<Json<Vec<String>>> {
    c.require_admin()?;
    let rows = sqlx::query("SELECT name FROM projects ORDER BY name").fetch_all(&st.db.pool).await?;
    Ok(Json(strings(rows)?))
}

async fn project_create(
    State(st): State<AppState>,
    c: Caller,
    Path(project): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    c.require_admin()?;
    check_name("project", &project)?;
    if project == "admin" {
        return Err(ApiError::BadRequest("\"admin\" is reserved (it names admin-owned networks)".into()));
    }
    insert_or_conflict(
        sqlx::query("INSERT INTO projects (name) VALUES ($1)").bind(&project),
        &st,
        format!("project {project:?} already exists"),
    )
    .await?;
    Ok(ok())
}

async fn project_delete(State(st): State<AppState>, c: Caller, Path(project): Path<String>) -> R<Response> {
    c.require_admin()?;
    project_exists(&st, &project).await?;
    let p = project.as_str();
    if count(&st, "SELECT COUNT(*) FROM nodes WHERE project = $1", &[p]).await? > 0 {
        return Err(ApiError::Conflict("project still has nodes".into()));
    }
    if count(&st, "SELECT COUNT(*) FROM networks WHERE owner = $1", &[p]).await? > 0 {
        return Err(ApiError::Conflict("project still owns networks".into()));
    }
    if count(&st, "SELECT COUNT(*) FROM network_access WHERE project = $1", &[p]).await? > 0 {
        return Err(ApiError::Conflict("project can still access networks".into()));
    }
    if count(&st, "SELECT COUNT(*) FROM images WHERE owner = $1", &[p]).await? > 0 {
        return Err(ApiError::Conflict("project still owns images".into()));
    }
    let mut tx = st.db.pool.begin().await?;
    sqlx::query("DELETE FROM user_projects WHERE project = $1").bind(p).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM image_members WHERE project = $1").bind(p).execute(&mut *tx).await?;
    sqlx::query("UPDATE keypairs SET project = NULL WHERE project = $1").bind(p).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM projects WHERE name = $1").bind(p).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(ok())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeArg {
    node: String,
}

async fn project_connect_node(
    State(st): State<AppState>,
    c: Caller,
    Path(project): Path<String>,
    Body(NodeArg { node }): Body<NodeArg>,
) -> R<Response> {
    check_name("project", &project)?;
    c.require_project(Some(&project))?;
    project_exists(&st, &project).await?;
    node_project(&st, &node).await?;
    // The project's row lock orders this against the project's other
    // quota-counted changes; the conditional UPDATE makes exactly one of two
    // projects racing for the node win.
    let mut tx = st.db.pool.begin().await?;
    crate::quotas::lock_project(&mut tx, st.db.backend, &project).await?;
    crate::quotas::check_node(&mut tx, &project).await?;
    let res = sqlx::query("UPDATE nodes SET project = $1 WHERE name = $2 AND project IS NULL")
        .bind(&project)
        .bind(&node)
        .execute(&mut *tx)
        .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::Conflict(format!("node {node:?} is already owned by a project")));
    }
    tx.commit().await?;
    tracing::info!(%project, %node, "node connected to project");
    Ok(ok())
}

async fn project_detach_node(
    State(st): State<AppState>,
    c: Caller,
    Path(project): Path<String>,
    Body(NodeArg { node }): Body<NodeArg>,
) -> R<Response> {
    check_name("project", &project)?;
    c.require_project(Some(&project))?;
    project_exists(&st, &project).await?;
    if node_project(&st, &node).await?.as_deref() != Some(project.as_str()) {
        return Err(ApiError::NotFound(format!("node {node:?} is not in project {project:?}")));
    }
    if !free_node(&st, &node, &project).await? {
        return Err(ApiError::Conflict(
            "node is attached to networks, has pending network actions or is being deployed".into(),
        ));
    }
    Ok(ok())
}

/// Takes `node` out of `project` unless something still holds it there
/// (attached networks, a pending network action, a deployment in flight);
/// returns whether it left. Like HIL, its console log is dropped so the next
/// tenant does not see it.
pub(crate) async fn free_node(st: &AppState, node: &str, project: &str) -> R<bool> {
    let res = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE nodes SET project = NULL WHERE name = $1 AND project = $2 \
         AND NOT EXISTS (SELECT 1 FROM attachments WHERE node = $1) \
         AND NOT EXISTS (SELECT 1 FROM network_actions WHERE node = $1 AND status = 'PENDING') \
         AND NOT EXISTS ({})",
        crate::deploy::IN_FLIGHT_SQL
    )))
    .bind(node)
    .bind(project)
    .execute(&st.db.pool)
    .await?;
    if res.rows_affected() == 0 {
        return Ok(false);
    }
    st.consoles.stop(node);
    Ok(true)
}

async fn list_project_nodes(
    State(st): State<AppState>,
    c: Caller,
    Path(project): Path<String>,
) -> R<Json<Vec<String>>> {
    check_name("project", &project)?;
    c.require_project(Some(&project))?;
    project_exists(&st, &project).await?;
    let rows = sqlx::query("SELECT name FROM nodes WHERE project = $1 ORDER BY name")
        .bind(&project)
        .fetch_all(&st.db.pool)
        .await?;
    Ok(Json(strings(rows)?))
}

async fn list_project_networks(
    State(st): State<AppState>,
    c: Caller,
    Path(project): Path<String>,
) -> R<Json<Vec<String>>> {
    check_name("project", &project)?;
    c.require_project(Some(&project))?;
    project_exists(&st, &project).await?;
    let rows = sqlx::query("SELECT network FROM network_access WHERE project = $1 ORDER BY network")
        .bind(&project)
        .fetch_all(&st.db.pool)
        .await?;
    Ok(Json(strings(rows)?))
}

// --- nodes ------------------------------------------------------------------

async fn list_nodes(State(st): State<AppState>, _c: Caller, Path(is_free): Path<String>) -> R<Json<Vec<String>>> {
    let sql = match is_free.as_str() {
        "all" => "SELECT name FROM nodes ORDER BY name",
        "free" => "SELECT name FROM nodes WHERE project IS NULL ORDER BY name",
        _ => {
            return Err(ApiError::BadRequest("expected /nodes/all or /nodes/free".into()));
        }
    };
    Ok(Json(strings(sqlx::query(sql).fetch_all(&st.db.pool).await?)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeRegister {
    obm: ObmConfig,
    #[serde(default)]
    metadata: BTreeMap<String, Value>,
}

async fn node_register(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(req): Body<NodeRegister>,
) -> R<Response> {
    c.require_admin()?;
    check_name("node", &node)?;
    req.obm.validate().map_err(ApiError::BadRequest)?;
    for label in req.metadata.keys() {
        check_name("metadata label", label)?;
    }
    let obm = serde_json::to_string(&req.obm).map_err(|e| ApiError::Internal(Box::new(e)))?;
    let mut tx = st.db.pool.begin().await?;
    let res = sqlx::query("INSERT INTO nodes (name, project, obm) VALUES ($1, NULL, $2)")
        .bind(&node)
        .bind(obm)
        .execute(&mut *tx)
        .await;
    if let Err(e) = res {
        return Err(match ApiError::from(e) {
            ApiError::Conflict(_) => ApiError::Conflict(format!("node {node:?} already exists")),
            o => o,
        });
    }
    for (label, value) in &req.metadata {
        sqlx::query("INSERT INTO node_metadata (node, label, value) VALUES ($1, $2, $3)")
            .bind(&node)
            .bind(label)
            .bind(value.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(ok())
}

async fn node_delete(State(st): State<AppState>, c: Caller, Path(node): Path<String>) -> R<Response> {
    c.require_admin()?;
    if node_project(&st, &node).await?.is_some() {
        return Err(ApiError::Conflict("node is in a project".into()));
    }
    if count(&st, "SELECT COUNT(*) FROM nics WHERE node = $1", &[&node]).await? > 0 {
        return Err(ApiError::Conflict("node has nics; delete them first".into()));
    }
    let mut tx = st.db.pool.begin().await?;
    sqlx::query("DELETE FROM node_metadata WHERE node = $1").bind(&node).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM nodes WHERE name = $1 AND project IS NULL").bind(&node).execute(&mut *tx).await?;
    tx.commit().await?;
    st.consoles.stop(&node);
    Ok(ok())
}

async fn show_node(State(st): State<AppState>, c: Caller, Path(node): Path<String>) -> R<Json<Value>> {
    let project = node_project(&st, &node).await?;
    if let Some(p) = &project {
        c.require_project(Some(p))?;
    }
    let nic_rows = sqlx::query("SELECT name, macaddr, port_switch, port_name FROM nics WHERE node = $1 ORDER BY name")
        .bind(&node)
        .fetch_all(&st.db.pool)
        .await?;
    let att_rows = sqlx::query("SELECT nic, channel, network FROM attachments WHERE node = $1")
        .bind(&node)
        .fetch_all(&st.db.pool)
        .await?;
    let mut nics = Vec::new();
    for r in nic_rows {
        let label: String = r.try_get(0)?;
        let mut networks = serde_json::Map::new();
        for a in &att_rows {
            if a.try_get::<String, _>(0)? == label {
                networks.insert(a.try_get(1)?, Value::String(a.try_get(2)?));
            }
        }
        let mut nic = json!({
            "label": label,
            "macaddr": r.try_get::<String, _>(1)?,
            "networks": networks,
        });
        if c.admin {
            nic["switch"] = json!(r.try_get::<Option<String>, _>(2)?);
            nic["port"] = json!(r.try_get::<Option<String>, _>(3)?);
        }
        nics.push(nic);
    }
    let mut metadata = serde_json::Map::new();
    for r in sqlx::query("SELECT label, value FROM node_metadata WHERE node = $1 ORDER BY label")
        .bind(&node)
        .fetch_all(&st.db.pool)
        .await?
    {
        // HIL returns each metadata value as its JSON text.
        metadata.insert(r.try_get(0)?, Value::String(r.try_get(1)?));
    }
    Ok(Json(json!({
        "name": node,
        "project": project,
        "nics": nics,
        "metadata": metadata,
    })))
}

/// Look up a node's BMC after checking the caller may drive it.
pub(crate) async fn node_obm(st: &AppState, c: &Caller, node: &str) -> R<ObmConfig> {
    let project = node_project(st, node).await?;
    c.require_project(project.as_deref())?;
    let obm: String =
        sqlx::query("SELECT obm FROM nodes WHERE name = $1").bind(node).fetch_one(&st.db.pool).await?.try_get(0)?;
    serde_json::from_str(&obm).map_err(|e| ApiError::Internal(Box::new(e)))
}

async fn power(st: AppState, c: Caller, node: String, op: PowerOp) -> R<Response> {
    let obm = node_obm(&st, &c, &node).await?;
    obm.power(op).await?;
    tracing::info!(%node, ?op, user = ?c.user, "power action");
    Ok(ok())
}

async fn node_power_on(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    power(st, c, node, PowerOp::On).await
}

async fn node_power_off(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    power(st, c, node, PowerOp::Off).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PowerCycle {
    /// Accepted for HIL compatibility; every cycle is a hard reset.
    #[serde(default)]
    #[allow(dead_code)]
    force: bool,
}

async fn node_power_cycle(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(_req): Body<PowerCycle>,
) -> R<Response> {
    power(st, c, node, PowerOp::Cycle).await
}

async fn node_power_status(State(st): State<AppState>, c: Caller, Path(node): Path<String>) -> R<Json<Value>> {
    let obm = node_obm(&st, &c, &node).await?;
    let on = obm.power_status().await?;
    Ok(Json(json!({ "power_status": if on { "on" } else { "off" } })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BootDev {
    bootdev: String,
}

async fn node_set_bootdev(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(BootDev { bootdev }): Body<BootDev>,
) -> R<Response> {
    let obm = node_obm(&st, &c, &node).await?;
    if !BOOT_DEVICES.contains(&bootdev.as_str()) {
        return Err(ApiError::Unprocessable(format!("bootdev must be one of {BOOT_DEVICES:?}")));
    }
    obm.set_bootdev(&bootdev).await?;
    Ok(ok())
}

/// `GET /node/<node>/console`: the captured console log as text (404 if
/// no capture is running).
async fn node_show_console(State(st): State<AppState>, c: Caller, Path(node): Path<String>) -> R<Response> {
    node_obm(&st, &c, &node).await?;
    let log = st
        .consoles
        .show(&node)
        .ok_or_else(|| ApiError::NotFound(format!("the console log for {node:?} does not exist")))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], log).into_response())
}

/// `PUT /node/<node>/console`: start capturing the console (idempotent).
async fn node_start_console(
    State(st): State<AppState>,
    c: Caller,
    Path(node): Path<String>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    let obm = node_obm(&st, &c, &node).await?;
    if !st.consoles.is_running(&node) {
        let stream = obm.open_console().await?;
        st.consoles.start(&node, stream);
        tracing::info!(%node, user = ?c.user, "console capture started");
    }
    Ok(ok())
}

/// `DELETE /node/<node>/console`: stop capturing and delete the log.
async fn node_stop_console(State(st): State<AppState>, c: Caller, Path(node): Path<String>) -> R<Response> {
    node_obm(&st, &c, &node).await?;
    st.consoles.stop(&node);
    Ok(ok())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NicRegister {
    macaddr: String,
}

async fn node_register_nic(
    State(st): State<AppState>,
    c: Caller,
    Path((node, nic)): Path<(String, String)>,
    Body(NicRegister { macaddr }): Body<NicRegister>,
) -> R<Response> {
    c.require_admin()?;
    node_project(&st, &node).await?;
    check_name("nic", &nic)?;
    check_mac(&macaddr)?;
    insert_or_conflict(
        sqlx::query("INSERT INTO nics (node, name, macaddr) VALUES ($1, $2, $3)")
            .bind(&node)
            .bind(&nic)
            .bind(macaddr.to_ascii_lowercase()),
        &st,
        format!("node {node:?} already has a nic {nic:?}"),
    )
    .await?;
    Ok(ok())
}

async fn node_delete_nic(
    State(st): State<AppState>,
    c: Caller,
    Path((node, nic)): Path<(String, String)>,
) -> R<Response> {
    c.require_admin()?;
    node_project(&st, &node).await?;
    nic_exists(&st, &node, &nic).await?;
    let res = sqlx::query(
        "DELETE FROM nics WHERE node = $1 AND name = $2 AND port_switch IS NULL \
         AND NOT EXISTS (SELECT 1 FROM attachments WHERE node = $1 AND nic = $2) \
         AND NOT EXISTS (SELECT 1 FROM network_actions WHERE node = $1 AND nic = $2 AND status = 'PENDING')",
    )
    .bind(&node)
    .bind(&nic)
    .execute(&st.db.pool)
    .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::Conflict(
            "nic is connected to a switch port, attached to networks or has a pending action".into(),
        ));
    }
    Ok(ok())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataValue {
    value: Value,
}

async fn node_set_metadata(
    State(st): State<AppState>,
    c: Caller,
    Path((node, label)): Path<(String, String)>,
    Body(MetadataValue { value }): Body<MetadataValue>,
) -> R<Response> {
    c.require_admin()?;
    node_project(&st, &node).await?;
    check_name("metadata label", &label)?;
    sqlx::query(
        "INSERT INTO node_metadata (node, label, value) VALUES ($1, $2, $3) \
         ON CONFLICT (node, label) DO UPDATE SET value = excluded.value",
    )
    .bind(&node)
    .bind(&label)
    .bind(value.to_string())
    .execute(&st.db.pool)
    .await?;
    Ok(ok())
}

async fn node_delete_metadata(
    State(st): State<AppState>,
    c: Caller,
    Path((node, label)): Path<(String, String)>,
) -> R<Response> {
    c.require_admin()?;
    node_project(&st, &node).await?;
    check_name("metadata label", &label)?;
    let res = sqlx::query("DELETE FROM node_metadata WHERE node = $1 AND label = $2")
        .bind(&node)
        .bind(&label)
        .execute(&st.db.pool)
        .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::NotFound(format!("node {node:?} has no metadata {label:?}")));
    }
    Ok(ok())
}

// --- networking actions -----------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectNetwork {
    network: String,
    #[serde(default)]
    channel: Option<String>,
}

/// Node's project after checking the node is in one the caller may use.
async fn node_in_callers_project(st: &AppState, c: &Caller, node: &str) -> R<String> {
    let project = node_project(st, node).await?;
    let Some(project) = project else {
        // Admins get the specific answer; others learn nothing new.
        c.require_admin()?;
        return Err(ApiError::Conflict(format!("node {node:?} is not in a project")));
    };
    c.require_project(Some(&project))?;
    Ok(project)
}

/// Queue a networking action; 409 if the NIC already has a pending one.
pub(crate) async fn queue_action(
    st: &AppState,
    node: &str,
    nic: &str,
    kind: &str,
    network: Option<&str>,
    channel: &str,
) -> R<String> {
    let id = crate::auth::random_hex(16);
    let now = crate::now();
    insert_or_conflict(
        sqlx::query(
            "INSERT INTO network_actions (id, node, nic, kind, network, channel, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', $7)",
        )
        .bind(&id)
        .bind(node)
        .bind(nic)
        .bind(kind)
        .bind(network)
        .bind(channel)
        .bind(now),
        st,
        format!("nic {nic:?} of node {node:?} already has a pending network action"),
    )
    .await?;
    crate::actions::spawn(st.clone(), id.clone());
    Ok(id)
}

async fn nic_port(st: &AppState, node: &str, nic: &str) -> R<Option<(String, String)>> {
    let r = sqlx::query("SELECT port_switch, port_name FROM nics WHERE node = $1 AND name = $2")
        .bind(node)
        .bind(nic)
        .fetch_one(&st.db.pool)
        .await?;
    let sw: Option<String> = r.try_get(0)?;
    let port: Option<String> = r.try_get(1)?;
    Ok(sw.zip(port))
}

async fn node_connect_network(
    State(st): State<AppState>,
    c: Caller,
    Path((node, nic)): Path<(String, String)>,
    Body(req): Body<ConnectNetwork>,
) -> R<Response> {
    let project = node_in_callers_project(&st, &c, &node).await?;
    nic_exists(&st, &node, &nic).await?;
    let net = load_network(&st, &req.network).await?;
    if !net.access.is_empty() && !net.access.contains(&project) {
        return Err(ApiError::Forbidden(format!("project {project:?} has no access to network {:?}", req.network)));
    }
    if nic_port(&st, &node, &nic).await?.is_none() {
        return Err(ApiError::NotFound("no switch port is connected to this nic".into()));
    }
    let channel = req.channel.unwrap_or_else(|| "vlan/native".into());
    if !net.channels().contains(&channel) {
        return Err(ApiError::Unprocessable(format!(
            "channel {channel:?} is not legal for this network (legal: {:?})",
            net.channels()
        )));
    }
    let nn: &str = &node;
    let ni: &str = &nic;
    if count(
        &st,
        "SELECT COUNT(*) FROM attachments WHERE node = $1 AND nic = $2 AND network = $3",
        &[nn, ni, &req.network],
    )
    .await?
        > 0
    {
        return Err(ApiError::Conflict("the network is already attached to the nic".into()));
    }
    if count(&st, "SELECT COUNT(*) FROM attachments WHERE node = $1 AND nic = $2 AND channel = $3", &[nn, ni, &channel])
        .await?
        > 0
    {
        return Err(ApiError::Conflict("the channel is already in use on the nic".into()));
    }
    let id = queue_action(&st, &node, &nic, "modify_port", Some(&req.network), &channel).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "status_id": id }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetachNetwork {
    network: String,
}

async fn node_detach_network(
    State(st): State<AppState>,
    c: Caller,
    Path((node, nic)): Path<(String, String)>,
    Body(req): Body<DetachNetwork>,
) -> R<Response> {
    node_in_callers_project(&st, &c, &node).await?;
    nic_exists(&st, &node, &nic).await?;
    load_network(&st, &req.network).await?;
    let row = sqlx::query("SELECT channel FROM attachments WHERE node = $1 AND nic = $2 AND network = $3")
        .bind(&node)
        .bind(&nic)
        .bind(&req.network)
        .fetch_optional(&st.db.pool)
        .await?
        .ok_or_else(|| ApiError::Conflict("the network is not attached to the nic".into()))?;
    let channel: String = row.try_get(0)?;
    let id = queue_action(&st, &node, &nic, "modify_port", None, &channel).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "status_id": id }))).into_response())
}

async fn show_networking_action(State(st): State<AppState>, c: Caller, Path(id): Path<String>) -> R<Json<Value>> {
    check_name("status_id", &id)?;
    let r = sqlx::query(
        "SELECT a.status, a.node, a.nic, a.kind, a.channel, a.network, n.project \
         FROM network_actions a JOIN nodes n ON n.name = a.node WHERE a.id = $1",
    )
    .bind(&id)
    .fetch_optional(&st.db.pool)
    .await?
    .ok_or_else(|| ApiError::NotFound("status_id not found".into()))?;
    let project: Option<String> = r.try_get(6)?;
    c.require_project(project.as_deref())?;
    Ok(Json(json!({
        "status": r.try_get::<String, _>(0)?,
        "node": r.try_get::<String, _>(1)?,
        "nic": r.try_get::<String, _>(2)?,
        "type": r.try_get::<String, _>(3)?,
        "channel": r.try_get::<String, _>(4)?,
        "new_network": r.try_get::<Option<String>, _>(5)?,
    })))
}

// --- networks ---------------------------------------------------------------

async fn list_networks(State(st): State<AppState>, c: Caller) -> R<Json<Value>> {
    c.require_admin()?;
    let rows = sqlx::query("SELECT name, vlan FROM networks ORDER BY name").fetch_all(&st.db.pool).await?;
    let acc =
        sqlx::query("SELECT network, project FROM network_access ORDER BY project").fetch_all(&st.db.pool).await?;
    let mut out = serde_json::Map::new();
    for r in rows {
        let name: String = r.try_get(0)?;
        let vlan: i64 = r.try_get(1)?;
        let mut projects = Vec::new();
        for a in &acc {
            if a.try_get::<String, _>(0)? == name {
                projects.push(a.try_get::<String, _>(1)?);
            }
        }
        let projects = if projects.is_empty() { Value::Null } else { json!(projects) };
        out.insert(name, json!({ "network_id": vlan.to_string(), "projects": projects }));
    }
    Ok(Json(Value::Object(out)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkCreate {
    owner: String,
    access: String,
    net_id: String,
}

async fn network_create(
    State(st): State<AppState>,
    c: Caller,
    Path(network): Path<String>,
    Body(req): Body<NetworkCreate>,
) -> R<Response> {
    check_name("network", &network)?;
    let (owner, access) = if req.owner != "admin" {
        check_name("project", &req.owner)?;
        c.require_project(Some(&req.owner))?;
        project_exists(&st, &req.owner).await?;
        if req.access != req.owner {
            return Err(ApiError::BadRequest("project-owned networks must be accessible by the owner".into()));
        }
        if !req.net_id.is_empty() {
            return Err(ApiError::BadRequest(
                "project-owned networks must use network id allocation (net_id \"\")".into(),
            ));
        }
        (Some(req.owner.clone()), Some(req.owner))
    } else {
        c.require_admin()?;
        if req.access.is_empty() {
            (None, None)
        } else {
            project_exists(&st, &req.access).await?;
            (None, Some(req.access))
        }
    };
    if count(&st, "SELECT COUNT(*) FROM networks WHERE name = $1", &[&network]).await? > 0 {
        return Err(ApiError::Conflict(format!("network {network:?} already exists")));
    }
    let fixed = if req.net_id.is_empty() {
        None
    } else {
        match req.net_id.parse::<u16>() {
            Ok(v) if (1..=4094).contains(&v) => Some(v),
            _ => return Err(ApiError::BadRequest("net_id must be a VLAN id 1-4094".into())),
        }
    };
    // Allocation races are settled by UNIQUE(vlan): retry with the next id.
    for _ in 0..8 {
        let (vlan, allocated) = match fixed {
            Some(v) => (v, st.vlans.first <= v && v <= st.vlans.last),
            None => (allocate_vlan(&st).await?, true),
        };
        let mut tx = st.db.pool.begin().await?;
        let res = sqlx::query("INSERT INTO networks (name, owner, vlan, allocated) VALUES ($1, $2, $3, $4)")
            .bind(&network)
            .bind(&owner)
            .bind(i64::from(vlan))
            .bind(i64::from(allocated))
            .execute(&mut *tx)
            .await;
        match res.map_err(ApiError::from) {
            Ok(_) => {}
            Err(ApiError::Conflict(_)) => {
                drop(tx);
                if fixed.is_some() {
                    return Err(ApiError::Conflict(format!("network {network:?} or VLAN {vlan} already exists")));
                }
                continue;
            }
            Err(e) => return Err(e),
        }
        if let Some(p) = &access {
            sqlx::query("INSERT INTO network_access (network, project) VALUES ($1, $2)")
                .bind(&network)
                .bind(p)
                .execute(&mut *tx)
                .await?;
        }
        // Nested instance: the parent network must exist before this one
        // claims to (the open transaction is rolled back if it cannot).
        crate::upstream::network_created(&st, vlan).await?;
        if let Err(e) = tx.commit().await {
            crate::upstream::network_deleted(&st, vlan).await.ok();
            return Err(e.into());
        }
        tracing::info!(%network, vlan, "network created");
        return Ok(ok());
    }
    Err(ApiError::Conflict("network creation raced too often; retry".into()))
}

async fn allocate_vlan(st: &AppState) -> R<u16> {
    let used: Vec<i64> = sqlx::query("SELECT vlan FROM networks WHERE vlan >= $1 AND vlan <= $2 ORDER BY vlan")
        .bind(i64::from(st.vlans.first))
        .bind(i64::from(st.vlans.last))
        .fetch_all(&st.db.pool)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let used: std::collections::HashSet<i64> = used.into_iter().collect();
    (st.vlans.first..=st.vlans.last)
        .find(|v| !used.contains(&i64::from(*v)))
        .ok_or_else(|| ApiError::Exhausted("no more VLAN ids in the pool".into()))
}

async fn network_delete(State(st): State<AppState>, c: Caller, Path(network): Path<String>) -> R<Response> {
    let net = load_network(&st, &network).await?;
    if !net.visible_to(&c) {
        return Err(c.denied("no access to this network"));
    }
    c.require_project(net.owner.as_deref())?;
    let mut tx = st.db.pool.begin().await?;
    let res = sqlx::query(
        "DELETE FROM networks WHERE name = $1 \
         AND NOT EXISTS (SELECT 1 FROM attachments WHERE network = $1) \
         AND NOT EXISTS (SELECT 1 FROM network_actions WHERE network = $1 AND status = 'PENDING')",
    )
    .bind(&network)
    .execute(&mut *tx)
    .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::Conflict("network is attached to nodes or has pending actions".into()));
    }
    // Nested instance: gone here only once it is gone at the parent.
    crate::upstream::network_deleted(&st, u16::try_from(net.vlan).unwrap_or(0)).await?;
    tx.commit().await?;
    Ok(ok())
}

async fn show_network(State(st): State<AppState>, c: Caller, Path(network): Path<String>) -> R<Json<Value>> {
    let net = load_network(&st, &network).await?;
    if !net.visible_to(&c) {
        return Err(c.denied("you do not have access to this network"));
    }
    let owner_access = match &net.owner {
        Some(o) => c.has_project(o),
        None => c.admin,
    };
    let rows = sqlx::query(
        "SELECT a.node, a.nic, n.project FROM attachments a JOIN nodes n ON n.name = a.node \
         WHERE a.network = $1 ORDER BY a.node, a.nic",
    )
    .bind(&network)
    .fetch_all(&st.db.pool)
    .await?;
    let mut connected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows {
        let proj: Option<String> = r.try_get(2)?;
        if owner_access || proj.as_deref().is_some_and(|p| c.has_project(p)) {
            connected.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
        }
    }
    Ok(Json(json!({
        "name": network,
        "channels": net.channels(),
        "owner": net.owner.clone().unwrap_or_else(|| "admin".into()),
        "access": if net.access.is_empty() { Value::Null } else { json!(net.access) },
        "connected-nodes": connected,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentsQuery {
    project: Option<String>,
}

async fn list_network_attachments(
    State(st): State<AppState>,
    c: Caller,
    Path(network): Path<String>,
    Query(q): Query<AttachmentsQuery>,
) -> R<Json<Value>> {
    let net = load_network(&st, &network).await?;
    let owner_access = match &net.owner {
        Some(o) => c.has_project(o),
        None => c.admin,
    };
    match &q.project {
        None if !owner_access => {
            return Err(c.denied("listing all attachments requires admin or the network's owning project"));
        }
        None => {}
        Some(p) => {
            check_name("project", p)?;
            if !owner_access && !((net.access.is_empty() || net.access.contains(p)) && c.has_project(p)) {
                return Err(c.denied("you do not have access to this project"));
            }
            project_exists(&st, p).await?;
        }
    }
    let rows = sqlx::query(
        "SELECT a.node, a.nic, a.channel, n.project FROM attachments a \
         JOIN nodes n ON n.name = a.node WHERE a.network = $1 ORDER BY a.node",
    )
    .bind(&network)
    .fetch_all(&st.db.pool)
    .await?;
    let mut out = serde_json::Map::new();
    for r in rows {
        let proj: Option<String> = r.try_get(3)?;
        if q.project.is_none() || q.project == proj {
            out.insert(
                r.try_get(0)?,
                json!({ "nic": r.try_get::<String, _>(1)?, "channel": r.try_get::<String, _>(2)?, "project": proj }),
            );
        }
    }
    Ok(Json(Value::Object(out)))
}

async fn network_grant_access(
    State(st): State<AppState>,
    c: Caller,
    Path((network, project)): Path<(String, String)>,
) -> R<Response> {
    let net = load_network(&st, &network).await?;
    if !net.visible_to(&c) {
        return Err(c.denied("no access to this network"));
    }
    c.require_project(net.owner.as_deref())?;
    project_exists(&st, &project).await?;
    insert_or_conflict(
        sqlx::query("INSERT INTO network_access (network, project) VALUES ($1, $2)").bind(&network).bind(&project),
        &st,
        format!("project {project:?} already has access to {network:?}"),
    )
    .await?;
    Ok(ok())
}

async fn network_revoke_access(
    State(st): State<AppState>,
    c: Caller,
    Path((network, project)): Path<(String, String)>,
) -> R<Response> {
    let net = load_network(&st, &network).await?;
    check_name("project", &project)?;
    let owner_access = match &net.owner {
        Some(o) => c.has_project(o),
        None => c.admin,
    };
    if !(owner_access || c.has_project(&project)) {
        return Err(c.denied("only admins, the network owner or the project itself may revoke"));
    }
    project_exists(&st, &project).await?;
    if net.owner.as_deref() == Some(project.as_str()) {
        return Err(ApiError::Conflict("cannot revoke the owner's access".into()));
    }
    if count(
        &st,
        "SELECT COUNT(*) FROM attachments a JOIN nodes n ON n.name = a.node \
         WHERE a.network = $1 AND n.project = $2",
        &[&network, &project],
    )
    .await?
        > 0
    {
        return Err(ApiError::Conflict("project still has nodes attached to the network".into()));
    }
    let res = sqlx::query("DELETE FROM network_access WHERE network = $1 AND project = $2")
        .bind(&network)
        .bind(&project)
        .execute(&st.db.pool)
        .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::NotFound(format!("project {project:?} has no access to {network:?}")));
    }
    Ok(ok())
}

// --- switches and ports ------------------------------------------------------

async fn load_switch(st: &AppState, switch: &str) -> R<SwitchConfig> {
    check_name("switch", switch)?;
    let cfg: String = sqlx::query("SELECT config FROM switches WHERE name = $1")
        .bind(switch)
        .fetch_optional(&st.db.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("switch", switch))?
        .try_get(0)?;
    serde_json::from_str(&cfg).map_err(|e| ApiError::Internal(Box::new(e)))
}

async fn port_exists(st: &AppState, switch: &str, port: &str) -> R<()> {
    load_switch(st, switch).await?;
    check_name("port", port)?;
    if count(st, "SELECT COUNT(*) FROM ports WHERE switch = $1 AND name = $2", &[switch, port]).await? == 0 {
        return Err(ApiError::NotFound(format!("switch {switch:?} has no port {port:?}")));
    }
    Ok(())
}

async fn list_switches(State(st): State<AppState>, c: Caller) -> R<Json<Vec<String>>> {
    c.require_admin()?;
    Ok(Json(strings(sqlx::query("SELECT name FROM switches ORDER BY name").fetch_all(&st.db.pool).await?)?))
}

async fn switch_register(
    State(st): State<AppState>,
    c: Caller,
    Path(switch): Path<String>,
    Body(cfg): Body<SwitchConfig>,
) -> R<Response> {
    c.require_admin()?;
    check_name("switch", &switch)?;
    cfg.validate().map_err(ApiError::BadRequest)?;
    let text = serde_json::to_string(&cfg).map_err(|e| ApiError::Internal(Box::new(e)))?;
    insert_or_conflict(
        sqlx::query("INSERT INTO switches (name, config) VALUES ($1, $2)").bind(&switch).bind(text),
        &st,
        format!("switch {switch:?} already exists"),
    )
    .await?;
    Ok(ok())
}

async fn switch_delete(State(st): State<AppState>, c: Caller, Path(switch): Path<String>) -> R<Response> {
    c.require_admin()?;
    load_switch(&st, &switch).await?;
    let res =
        sqlx::query("DELETE FROM switches WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM ports WHERE switch = $1)")
            .bind(&switch)
            .execute(&st.db.pool)
            .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::Conflict("switch still has ports; delete them first".into()));
    }
    Ok(ok())
}

async fn show_switch(State(st): State<AppState>, c: Caller, Path(switch): Path<String>) -> R<Json<Value>> {
    c.require_admin()?;
    load_switch(&st, &switch).await?;
    let ports = strings(
        sqlx::query("SELECT name FROM ports WHERE switch = $1 ORDER BY name")
            .bind(&switch)
            .fetch_all(&st.db.pool)
            .await?,
    )?;
    Ok(Json(json!({ "name": switch, "ports": ports })))
}

async fn switch_register_port(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    c.require_admin()?;
    let cfg = load_switch(&st, &switch).await?;
    check_name("port", &port)?;
    cfg.validate_port(&port).map_err(ApiError::BadRequest)?;
    insert_or_conflict(
        sqlx::query("INSERT INTO ports (switch, name) VALUES ($1, $2)").bind(&switch).bind(&port),
        &st,
        format!("port {port:?} already exists on {switch:?}"),
    )
    .await?;
    Ok(ok())
}

async fn switch_delete_port(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
) -> R<Response> {
    c.require_admin()?;
    port_exists(&st, &switch, &port).await?;
    let res = sqlx::query(
        "DELETE FROM ports WHERE switch = $1 AND name = $2 AND NOT EXISTS \
         (SELECT 1 FROM nics WHERE port_switch = $1 AND port_name = $2)",
    )
    .bind(&switch)
    .bind(&port)
    .execute(&st.db.pool)
    .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::Conflict("a nic is connected to the port".into()));
    }
    Ok(ok())
}

async fn port_nic(st: &AppState, switch: &str, port: &str) -> R<Option<(String, String)>> {
    let r = sqlx::query("SELECT node, name FROM nics WHERE port_switch = $1 AND port_name = $2")
        .bind(switch)
        .bind(port)
        .fetch_optional(&st.db.pool)
        .await?;
    match r {
        Some(r) => Ok(Some((r.try_get(0)?, r.try_get(1)?))),
        None => Ok(None),
    }
}

async fn show_port(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
) -> R<Json<Value>> {
    c.require_admin()?;
    port_exists(&st, &switch, &port).await?;
    let Some((node, nic)) = port_nic(&st, &switch, &port).await? else {
        return Ok(Json(json!({})));
    };
    let mut networks = serde_json::Map::new();
    for r in sqlx::query("SELECT channel, network FROM attachments WHERE node = $1 AND nic = $2")
        .bind(&node)
        .bind(&nic)
        .fetch_all(&st.db.pool)
        .await?
    {
        networks.insert(r.try_get(0)?, Value::String(r.try_get(1)?));
    }
    Ok(Json(json!({ "node": node, "nic": nic, "networks": networks })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeNic {
    node: String,
    nic: String,
}

async fn port_connect_nic(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
    Body(NodeNic { node, nic }): Body<NodeNic>,
) -> R<Response> {
    c.require_admin()?;
    port_exists(&st, &switch, &port).await?;
    node_project(&st, &node).await?;
    nic_exists(&st, &node, &nic).await?;
    let res = sqlx::query(
        "UPDATE nics SET port_switch = $1, port_name = $2 \
         WHERE node = $3 AND name = $4 AND port_switch IS NULL",
    )
    .bind(&switch)
    .bind(&port)
    .bind(&node)
    .bind(&nic)
    .execute(&st.db.pool)
    .await
    .map_err(|e| match ApiError::from(e) {
        ApiError::Conflict(_) => ApiError::Conflict("the port is already connected to a nic".into()),
        o => o,
    })?;
    if res.rows_affected() == 0 {
        return Err(ApiError::Conflict("the nic is already connected to a port".into()));
    }
    Ok(ok())
}

async fn port_detach_nic(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
    Body(Empty {}): Body<Empty>,
) -> R<Response> {
    c.require_admin()?;
    port_exists(&st, &switch, &port).await?;
    let Some((node, _)) = port_nic(&st, &switch, &port).await? else {
        return Err(ApiError::NotFound("the port is not connected to a nic".into()));
    };
    let res = sqlx::query(
        "UPDATE nics SET port_switch = NULL, port_name = NULL \
         WHERE port_switch = $1 AND port_name = $2 \
         AND EXISTS (SELECT 1 FROM nodes WHERE name = $3 AND project IS NULL)",
    )
    .bind(&switch)
    .bind(&port)
    .bind(&node)
    .execute(&st.db.pool)
    .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::Conflict("the port's node is not free".into()));
    }
    Ok(ok())
}

async fn port_revert(
    State(st): State<AppState>,
    c: Caller,
    Path((switch, port)): Path<(String, String)>,
    Body(Empty {}): Body<Empty>,
) -> R<Json<Value>> {
    c.require_admin()?;
    port_exists(&st, &switch, &port).await?;
    let Some((node, nic)) = port_nic(&st, &switch, &port).await? else {
        return Err(ApiError::NotFound(format!("{port} not attached")));
    };
    let id = queue_action(&st, &node, &nic, "revert_port", None, "").await?;
    Ok(Json(json!({ "status_id": id })))
}

// --- users -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserCreate {
    password: String,
    #[serde(default, rename = "is_admin", alias = "is-admin")]
    is_admin: bool,
}

async fn user_create(
    State(st): State<AppState>,
    c: Caller,
    Path(user): Path<String>,
    Body(req): Body<UserCreate>,
) -> R<Response> {
    c.require_admin()?;
    check_name("user", &user)?;
    if req.password.is_empty() || req.password.len() > 1024 {
        return Err(ApiError::BadRequest("password must be 1-1024 bytes".into()));
    }
    let hash = hash_secret(req.password).await?;
    insert_or_conflict(
        sqlx::query("INSERT INTO users (name, password_hash, is_admin) VALUES ($1, $2, $3)")
            .bind(&user)
            .bind(hash)
            .bind(i64::from(req.is_admin)),
        &st,
        format!("user {user:?} already exists"),
    )
    .await?;
    Ok(ok())
}

async fn user_exists(st: &AppState, user: &str) -> R<()> {
    check_name("user", user)?;
    if count(st, "SELECT COUNT(*) FROM users WHERE name = $1", &[user]).await? == 0 {
        return Err(ApiError::not_found("user", user));
    }
    Ok(())
}

async fn user_delete(State(st): State<AppState>, c: Caller, Path(user): Path<String>) -> R<Response> {
    c.require_admin()?;
    user_exists(&st, &user).await?;
    let mut tx = st.db.pool.begin().await?;
    for sql in [
        "DELETE FROM user_projects WHERE user_name = $1",
        "DELETE FROM api_tokens WHERE user_name = $1",
        "DELETE FROM users WHERE name = $1",
    ] {
        sqlx::query(sql).bind(&user).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    st.auth_cache.clear();
    Ok(ok())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectArg {
    project: String,
}

async fn user_add_project(
    State(st): State<AppState>,
    c: Caller,
    Path(user): Path<String>,
    Body(ProjectArg { project }): Body<ProjectArg>,
) -> R<Response> {
    c.require_admin()?;
    user_exists(&st, &user).await?;
    project_exists(&st, &project).await?;
    insert_or_conflict(
        sqlx::query("INSERT INTO user_projects (user_name, project) VALUES ($1, $2)").bind(&user).bind(&project),
        &st,
        format!("user {user:?} is already in project {project:?}"),
    )
    .await?;
    Ok(ok())
}

async fn user_remove_project(
    State(st): State<AppState>,
    c: Caller,
    Path(user): Path<String>,
    Body(ProjectArg { project }): Body<ProjectArg>,
) -> R<Response> {
    c.require_admin()?;
    user_exists(&st, &user).await?;
    project_exists(&st, &project).await?;
    let res = sqlx::query("DELETE FROM user_projects WHERE user_name = $1 AND project = $2")
        .bind(&user)
        .bind(&project)
        .execute(&st.db.pool)
        .await?;
    if res.rows_affected() == 0 {
        return Err(ApiError::NotFound(format!("user {user:?} is not in project {project:?}")));
    }
    Ok(ok())
}
