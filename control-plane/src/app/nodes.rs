//! Nodes: registration, what a node looks like, its project, its BMC
//! (power, boot device, console), its NICs and its metadata.

use std::collections::BTreeMap;

use serde_json::Value;

use super::AppState;
use super::error::{Error, Result, check_mac, check_name, duplicate};
use crate::authz::{Action, Actor, Caller, Resource, authorize};
use crate::db;
use crate::drivers::{BOOT_DEVICES, ObmConfig, PowerOp};

/// A node's project (`None` when free); 404 if the node does not exist.
pub async fn project_of(st: &AppState, node: &str) -> Result<Option<String>> {
    check_name("node", node)?;
    db::nodes::project_of(&st.db.pool, node).await?.ok_or_else(|| Error::not_found("node", node))
}

/// 404 unless the node has `nic`.
pub async fn nic_must_exist(st: &AppState, node: &str, nic: &str) -> Result<()> {
    check_name("nic", nic)?;
    if !db::nics::exists(&st.db.pool, node, nic).await? {
        return Err(Error::NotFound(format!("node {node:?} has no nic {nic:?}")));
    }
    Ok(())
}

/// Every node, or the free ones (anyone authenticated or not, as in HIL).
pub async fn list(st: &AppState, free: bool) -> Result<Vec<String>> {
    Ok(db::nodes::list(&st.db.pool, free).await?)
}

/// Where a node stands, at a glance (`GET /v1/nodes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// In no project.
    Free,
    /// In a project, not deployed by it (or its deployment is not its newest).
    Allocated,
    /// Its project's newest deployment of it is running.
    Deploying,
    /// Its project's newest deployment of it ended verified or booted.
    Deployed,
    /// Its project's newest deployment of it failed on it.
    Failed,
    /// A reclaim of it is running.
    Reclaiming,
}

/// One row of the node list.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NodeSummary {
    /// Node name.
    pub name: String,
    /// Its project (`null`: free).
    pub project: Option<String>,
    /// Where it stands.
    pub state: NodeStatus,
    /// The newest deployment that included it, while it is in the project that made it.
    pub last_deployment: Option<i64>,
    /// The node's state in that deployment (`waiting` ... `verified`, `booted`, `failed`).
    pub last_deployment_state: Option<String>,
    /// Seconds since its runtime last checked in (database clock; `null`: never).
    pub checkin_age_secs: Option<i64>,
}

/// The nodes a caller may see (admins: all; others: the free ones and their
/// projects'), with where each stands; filtered by `project` and `state`.
pub async fn overview(
    st: &AppState,
    c: &Caller,
    project: Option<&str>,
    state: Option<NodeStatus>,
) -> Result<Vec<NodeSummary>> {
    if let Some(p) = project {
        check_name("project", p)?;
    }
    // A node with several NICs: its newest check-in.
    let mut checkin: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    for r in super::runtime::checkin_ages(st).await?.into_iter().filter(|r| !r.node.is_empty()) {
        let e = checkin.entry(r.node).or_insert(r.age);
        *e = (*e).min(r.age);
    }
    let mut out = Vec::new();
    for r in db::nodes::overview(&st.db.pool).await? {
        let visible = c.admin || r.project.as_ref().is_none_or(|p| c.projects.contains(p));
        if !visible || project.is_some_and(|p| r.project.as_deref() != Some(p)) {
            continue;
        }
        // The newest deployment counts while the node is in the project that made it.
        let (last, last_state) = match (&r.project, &r.last_project) {
            (Some(p), Some(lp)) if p == lp => (r.last_deployment, r.last_state.clone()),
            _ => (None, None),
        };
        let status = if r.reclaiming == 1 {
            NodeStatus::Reclaiming
        } else if r.project.is_none() {
            NodeStatus::Free
        } else {
            match last_state.as_deref().map(str::parse::<db::deployments::NodeState>) {
                Some(Ok(db::deployments::NodeState::Failed)) => NodeStatus::Failed,
                Some(Ok(s)) if s.is_terminal() => NodeStatus::Deployed,
                Some(Ok(_)) => NodeStatus::Deploying,
                _ => NodeStatus::Allocated,
            }
        };
        if state.is_some_and(|s| s != status) {
            continue;
        }
        out.push(NodeSummary {
            checkin_age_secs: checkin.get(&r.name).copied(),
            name: r.name,
            project: r.project,
            state: status,
            last_deployment: last,
            last_deployment_state: last_state,
        });
    }
    Ok(out)
}

/// Registers a free node with its BMC and metadata (admins).
pub async fn register(
    st: &AppState,
    c: &Caller,
    node: &str,
    obm: &ObmConfig,
    metadata: &BTreeMap<String, Value>,
) -> Result<()> {
    c.require_admin()?;
    check_name("node", node)?;
    obm.validate().map_err(Error::BadRequest)?;
    if matches!(obm, ObmConfig::Obmd { token: Some(_), .. }) {
        return Err(Error::BadRequest("obm.token is set by the server (PUT /v0/node/<n>/obm)".into()));
    }
    for label in metadata.keys() {
        check_name("metadata label", label)?;
    }
    let obm = serde_json::to_string(obm).map_err(Error::internal)?;
    let metadata: Vec<(String, String)> = metadata.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
    if !db::nodes::insert(&st.db.writer, node, &obm, &metadata).await? {
        return Err(Error::Duplicate(format!("node {node:?} already exists")));
    }
    Ok(())
}

/// Deletes a free node without NICs (admins).
pub async fn delete(st: &AppState, c: &Caller, node: &str) -> Result<()> {
    c.require_admin()?;
    if project_of(st, node).await?.is_some() {
        return Err(Error::Conflict("node is in a project".into()));
    }
    if db::nics::count(&st.db.pool, node).await? > 0 {
        return Err(Error::Conflict("node has nics; delete them first".into()));
    }
    db::nodes::delete_free(&st.db.writer, node).await?;
    st.consoles.stop(node);
    Ok(())
}

/// A node as HIL shows it.
#[derive(Debug, Clone)]
pub struct NodeDetails {
    /// Name.
    pub name: String,
    /// Project, if any.
    pub project: Option<String>,
    /// NICs, sorted by label.
    pub nics: Vec<NicDetails>,
    /// Metadata: label -> the value's JSON text.
    pub metadata: BTreeMap<String, String>,
}

/// One NIC of [`NodeDetails`].
#[derive(Debug, Clone)]
pub struct NicDetails {
    /// Label.
    pub label: String,
    /// MAC address.
    pub macaddr: String,
    /// Attached networks: channel -> network.
    pub networks: BTreeMap<String, String>,
    /// The switch and port it is connected to: shown to admins only (`None` for others).
    pub port: Option<(Option<String>, Option<String>)>,
}

/// A node, to admins and to members of its project; a free node to anyone.
pub async fn show(st: &AppState, c: &Caller, node: &str) -> Result<NodeDetails> {
    let project = project_of(st, node).await?;
    if let Some(p) = &project {
        c.require_project(Some(p))?;
    }
    let attachments = db::networks::attachments_of_node(&st.db.pool, node).await?;
    let nics = db::nics::of_node(&st.db.pool, node)
        .await?
        .into_iter()
        .map(|n| NicDetails {
            networks: attachments
                .iter()
                .filter(|a| a.nic == n.name)
                .map(|a| (a.channel.clone(), a.network.clone()))
                .collect(),
            port: c.admin.then(|| (n.port_switch.clone(), n.port_name.clone())),
            label: n.name,
            macaddr: n.macaddr,
        })
        .collect();
    let metadata = db::nodes::metadata(&st.db.pool, node).await?.into_iter().collect();
    Ok(NodeDetails { name: node.to_string(), project, nics, metadata })
}

/// The node's BMC, once `actor` may drive it (members of its project; admins for a free node).
pub async fn obm(st: &AppState, actor: Actor<'_>, node: &str) -> Result<ObmConfig> {
    let project = project_of(st, node).await?;
    authorize(actor, Action::UseProject, Resource::Project(project.as_deref()))?;
    let obm: ObmConfig = serde_json::from_str(&db::nodes::obm(&st.db.pool, node).await?).map_err(Error::internal)?;
    if matches!(obm, ObmConfig::Obmd { token: None, .. }) {
        return Err(Error::Conflict(format!("the OBM of node {node:?} is not enabled (PUT /v0/node/{node}/obm)")));
    }
    Ok(obm)
}

/// Enables or disables the node's OBM (as [`obm`] may drive it): for an
/// obmd node, a new node token from obmd, or its token invalidated there
/// and forgotten here; other BMC types are always enabled.
pub async fn set_obm_enabled(st: &AppState, c: &Caller, node: &str, enabled: bool) -> Result<()> {
    let project = project_of(st, node).await?;
    authorize(Actor::Caller(c), Action::UseProject, Resource::Project(project.as_deref()))?;
    let obm: ObmConfig = serde_json::from_str(&db::nodes::obm(&st.db.pool, node).await?).map_err(Error::internal)?;
    let ObmConfig::Obmd { uri, admin_token, token } = obm else {
        return Ok(());
    };
    use super::fencing::{Work, fenced};
    let token = if enabled {
        Some(
            fenced(st, Work::Request, "obmd call (new token)", || crate::drivers::obmd::new_token(&uri, &admin_token))
                .await?,
        )
    } else {
        if token.is_some() {
            fenced(st, Work::Request, "obmd call (drop token)", || {
                crate::drivers::obmd::drop_token(&uri, &admin_token)
            })
            .await?;
        }
        None
    };
    let text = serde_json::to_string(&ObmConfig::Obmd { uri, admin_token, token }).map_err(Error::internal)?;
    db::nodes::set_obm(&st.db.writer, node, &text).await?;
    tracing::info!(%node, enabled, user = ?c.user, "obmd OBM set");
    Ok(())
}

/// A power action through the node's BMC.
pub async fn power(st: &AppState, c: &Caller, node: &str, op: PowerOp) -> Result<()> {
    let obm = obm(st, Actor::Caller(c), node).await?;
    let bmc = st.bmc(&obm);
    super::fencing::fenced(st, super::fencing::Work::Request, "BMC call (power)", || bmc.power(op)).await?;
    tracing::info!(%node, ?op, user = ?c.user, "power action");
    Ok(())
}

/// Whether the node is powered on.
pub async fn power_status(st: &AppState, c: &Caller, node: &str) -> Result<bool> {
    let obm = obm(st, Actor::Caller(c), node).await?;
    Ok(st.bmc(&obm).power_status().await?)
}

/// Sets the next boot device (one of [`BOOT_DEVICES`]).
pub async fn set_bootdev(st: &AppState, c: &Caller, node: &str, bootdev: &str) -> Result<()> {
    let obm = obm(st, Actor::Caller(c), node).await?;
    if !BOOT_DEVICES.contains(&bootdev) {
        return Err(Error::Unprocessable(format!("bootdev must be one of {BOOT_DEVICES:?}")));
    }
    let bmc = st.bmc(&obm);
    let set = || bmc.set_bootdev(bootdev);
    super::fencing::fenced(st, super::fencing::Work::Request, "BMC call (boot device)", set).await
}

/// The captured console log (404 if no capture is running).
pub async fn console_log(st: &AppState, c: &Caller, node: &str) -> Result<String> {
    obm(st, Actor::Caller(c), node).await?;
    st.consoles.show(node).ok_or_else(|| Error::NotFound(format!("the console log for {node:?} does not exist")))
}

/// Starts capturing the console (idempotent).
pub async fn console_start(st: &AppState, c: &Caller, node: &str) -> Result<()> {
    let obm = obm(st, Actor::Caller(c), node).await?;
    if !st.consoles.is_running(node) {
        let stream = st.bmc(&obm).open_console().await?;
        st.consoles.start(node, stream);
        tracing::info!(%node, user = ?c.user, "console capture started");
    }
    Ok(())
}

/// Stops capturing the console and deletes the log.
pub async fn console_stop(st: &AppState, c: &Caller, node: &str) -> Result<()> {
    obm(st, Actor::Caller(c), node).await?;
    st.consoles.stop(node);
    Ok(())
}

/// Registers a NIC (admins).
pub async fn add_nic(st: &AppState, c: &Caller, node: &str, nic: &str, macaddr: &str) -> Result<()> {
    c.require_admin()?;
    project_of(st, node).await?;
    check_name("nic", nic)?;
    check_mac(macaddr)?;
    duplicate(db::nics::insert(&st.db.writer, node, nic, &macaddr.to_ascii_lowercase()).await, || {
        format!("node {node:?} already has a nic {nic:?}")
    })
}

/// Deletes a NIC that is on no port and no network and has no pending action (admins).
pub async fn delete_nic(st: &AppState, c: &Caller, node: &str, nic: &str) -> Result<()> {
    c.require_admin()?;
    project_of(st, node).await?;
    nic_must_exist(st, node, nic).await?;
    if !db::nics::delete_if_unused(&st.db.writer, node, nic).await? {
        return Err(Error::Conflict(
            "nic is connected to a switch port, attached to networks or has a pending action".into(),
        ));
    }
    Ok(())
}

/// Sets a metadata value (admins).
pub async fn set_metadata(st: &AppState, c: &Caller, node: &str, label: &str, value: &Value) -> Result<()> {
    c.require_admin()?;
    project_of(st, node).await?;
    check_name("metadata label", label)?;
    Ok(db::nodes::set_metadata(&st.db.writer, node, label, &value.to_string()).await?)
}

/// Deletes a metadata value (admins).
pub async fn delete_metadata(st: &AppState, c: &Caller, node: &str, label: &str) -> Result<()> {
    c.require_admin()?;
    project_of(st, node).await?;
    check_name("metadata label", label)?;
    if !db::nodes::delete_metadata(&st.db.writer, node, label).await? {
        return Err(Error::NotFound(format!("node {node:?} has no metadata {label:?}")));
    }
    Ok(())
}

/// Gives a free node to `project` (members), within the project's quota.
pub async fn connect_project(st: &AppState, c: &Caller, project: &str, node: &str) -> Result<()> {
    check_name("project", project)?;
    c.require_project(Some(project))?;
    super::projects::must_exist(st, project).await?;
    // Said before the quota check, which would otherwise answer first.
    match project_of(st, node).await? {
        Some(p) if p == project => return Err(Error::Conflict(format!("node {node:?} is already in project {p:?}"))),
        Some(_) => return Err(Error::Conflict(format!("node {node:?} is already owned by a project"))),
        None => {}
    }
    // The project's row lock orders this against the project's other
    // quota-counted changes; the conditional UPDATE makes exactly one of two
    // projects racing for the node win.
    let mut tx = st.db.writer.begin().await?;
    super::quotas::lock_project(&mut tx, st.db.backend, project).await?;
    super::quotas::check_node(&mut tx, project).await?;
    if !db::nodes::take_free(&mut tx, node, project).await? {
        return Err(Error::Conflict(format!("node {node:?} is already owned by a project")));
    }
    tx.commit().await?;
    tracing::info!(%project, %node, "node connected to project");
    Ok(())
}

/// Takes a node out of `project` (members) unless something still holds it there.
pub async fn detach_project(st: &AppState, c: &Caller, project: &str, node: &str) -> Result<()> {
    check_name("project", project)?;
    c.require_project(Some(project))?;
    super::projects::must_exist(st, project).await?;
    if project_of(st, node).await?.as_deref() != Some(project) {
        return Err(Error::NotFound(format!("node {node:?} is not in project {project:?}")));
    }
    if let Some(claim) = db::market::leases::claim_on(&st.db.pool, node).await? {
        return Err(Error::Conflict(format!(
            "node {node:?} is in the market ({claim}): withdraw the offer, or wait for the lease to end"
        )));
    }
    if !free(st, node, project).await? {
        return Err(Error::Conflict(
            "node is attached to networks, has pending network actions or is being deployed".into(),
        ));
    }
    Ok(())
}

/// Takes `node` out of `project` unless something still holds it there
/// (attached networks other than the provisioning network, a pending
/// network action, a deployment in flight); returns whether it left. Like
/// HIL, its console log is dropped so the next tenant does not see it.
pub async fn free(st: &AppState, node: &str, project: &str) -> Result<bool> {
    if !db::nodes::release(&st.db.writer, st.db.backend, node, project, st.provision.network.as_deref()).await? {
        return Ok(false);
    }
    st.consoles.stop(node);
    Ok(true)
}
