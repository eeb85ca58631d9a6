//! Networks (isolated VLANs): creation with VLAN allocation, access for
//! projects, and attaching them to NICs (queued networking actions).

use std::collections::{BTreeMap, HashSet};

use super::AppState;
use super::error::{Error, Result, check_carrier_owner, check_name, check_object_name, duplicate};
use crate::authz::{Action, Actor, Caller, Resource, authorize};
use crate::db;
use crate::db::actions::ActionKind;

/// A network with its access list.
#[derive(Debug, Clone)]
pub struct Network {
    /// Name.
    pub name: String,
    /// Owning project (`None`: the admins).
    pub owner: Option<String>,
    /// VLAN id.
    pub vlan: i64,
    /// Projects with access (empty: public).
    pub access: Vec<String>,
}

impl Network {
    /// The network as a policy resource.
    pub fn resource(&self) -> Resource<'_> {
        Resource::Network { owner: self.owner.as_deref(), access: &self.access }
    }

    /// The channels a NIC can attach it on.
    pub fn channels(&self) -> Vec<String> {
        vec!["vlan/native".into(), format!("vlan/{}", self.vlan)]
    }
}

/// Network `name` (404 if it does not exist).
pub async fn load(st: &AppState, name: &str) -> Result<Network> {
    check_object_name("network", name)?;
    let row = db::networks::load(&st.db.pool, name).await?.ok_or_else(|| Error::not_found("network", name))?;
    let access = db::networks::access(&st.db.pool, name).await?;
    Ok(Network { name: name.to_string(), owner: row.owner, vlan: row.vlan, access })
}

/// Every network: name -> (VLAN id, projects with access); admins see all, others the public ones.
pub async fn list(st: &AppState, c: &Caller) -> Result<BTreeMap<String, (i64, Vec<String>)>> {
    if c.user.is_none() {
        return Err(Error::Unauthenticated);
    }
    let grants = db::networks::all_access(&st.db.pool).await?;
    Ok(db::networks::list(&st.db.pool)
        .await?
        .into_iter()
        .map(|(name, vlan)| {
            let projects: Vec<String> = grants.iter().filter(|(n, _)| *n == name).map(|(_, p)| p.clone()).collect();
            (name, (vlan, projects))
        })
        // As HIL: admins see every network, everyone else the public ones
        // (a project's own networks are listed under /project/<p>/networks).
        .filter(|(_, (_, projects))| c.admin || projects.is_empty())
        .collect())
}

/// `PUT /network/<name>`: a project's own network (VLAN allocated from the
/// pool), or an admin network (public, or for one project; a fixed VLAN
/// id or an allocated one).
pub async fn create(st: &AppState, c: &Caller, network: &str, owner: &str, access: &str, net_id: &str) -> Result<()> {
    check_object_name("network", network)?;
    let (owner, access) = if owner != "admin" {
        check_name("project", owner)?;
        c.require_project(Some(owner))?;
        super::projects::must_exist(st, owner).await?;
        if access != owner {
            return Err(Error::BadRequest("project-owned networks must be accessible by the owner".into()));
        }
        if !net_id.is_empty() {
            return Err(Error::BadRequest(
                "project-owned networks must use network id allocation (net_id \"\")".into(),
            ));
        }
        (Some(owner.to_string()), Some(owner.to_string()))
    } else {
        c.require_admin()?;
        if access.is_empty() {
            (None, None)
        } else {
            super::projects::must_exist(st, access).await?;
            (None, Some(access.to_string()))
        }
    };
    check_carrier_owner("network", network, owner.as_deref())?;
    if db::networks::exists(&st.db.pool, network).await? {
        return Err(Error::Duplicate(format!("network {network:?} already exists")));
    }
    let fixed = if net_id.is_empty() {
        None
    } else {
        match net_id.parse::<u16>() {
            Ok(v) if (1..=4094).contains(&v) => Some(v),
            _ => return Err(Error::BadRequest("net_id must be a VLAN id 1-4094".into())),
        }
    };
    // The free VLAN is chosen inside the write transaction: on SQLite
    // writers are serialized, so the choice holds; on PostgreSQL two
    // transactions may choose the same id, UNIQUE(vlan) refuses the second,
    // and it retries with a random free id (so the retries spread out).
    for attempt in 0..8 {
        let mut tx = st.db.writer.begin().await?;
        let (vlan, allocated) = match fixed {
            Some(v) => (v, st.vlans.first <= v && v <= st.vlans.last),
            None => (allocate_vlan(st, &mut tx, attempt > 0).await?, true),
        };
        match db::networks::insert(&mut tx, network, owner.as_deref(), vlan, allocated).await {
            Ok(()) => {}
            Err(e) if db::is_conflict(&e) => {
                drop(tx);
                if fixed.is_some() {
                    return Err(Error::Duplicate(format!("network {network:?} or VLAN {vlan} already exists")));
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(p) = &access {
            db::networks::grant(&mut *tx, network, p).await?;
        }
        // Nested instance: the parent network must exist before this one
        // claims to (the open transaction is rolled back if it cannot).
        super::upstream::network_created(st, vlan).await?;
        if let Err(e) = tx.commit().await {
            super::upstream::network_deleted(st, vlan).await.ok();
            return Err(e.into());
        }
        tracing::info!(%network, vlan, "network created");
        return Ok(());
    }
    Err(Error::Conflict("network creation raced too often; retry".into()))
}

/// A VLAN id of the pool no network uses, as `tx` sees the networks: the
/// lowest, or (after a lost race) a random one.
async fn allocate_vlan(st: &AppState, tx: &mut db::Tx<'_>, random: bool) -> Result<u16> {
    let used: HashSet<i64> = db::networks::vlans_in(tx, st.vlans.first, st.vlans.last).await?.into_iter().collect();
    let free: Vec<u16> = (st.vlans.first..=st.vlans.last).filter(|v| !used.contains(&i64::from(*v))).collect();
    if free.is_empty() {
        return Err(Error::Exhausted("no more VLAN ids in the pool".into()));
    }
    let pick = if random {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).map_err(|e| Error::internal(format!("getrandom: {e}")))?;
        u32::from_le_bytes(b) as usize % free.len()
    } else {
        0
    };
    Ok(free[pick])
}

/// Deletes a network nothing is attached to (its owner).
pub async fn delete(st: &AppState, c: &Caller, network: &str) -> Result<()> {
    let net = load(st, network).await?;
    authorize(Actor::Caller(c), Action::ManageNetwork, net.resource())?;
    let mut tx = st.db.writer.begin().await?;
    if !db::networks::delete_if_unused(&mut tx, network).await? {
        return Err(Error::Conflict("network is attached to nodes or has pending actions".into()));
    }
    // Nested instance: gone here only once it is gone at the parent.
    super::upstream::network_deleted(st, u16::try_from(net.vlan).unwrap_or(0)).await?;
    tx.commit().await?;
    Ok(())
}

/// A network and the nodes attached to it that the caller may see: all of
/// them for its owner, else those of the caller's projects.
pub async fn show(st: &AppState, c: &Caller, network: &str) -> Result<(Network, BTreeMap<String, Vec<String>>)> {
    let net = load(st, network).await?;
    authorize(Actor::Caller(c), Action::SeeNetwork, net.resource())?;
    let owner_access = c.owns_network(net.owner.as_deref());
    let mut connected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in db::networks::attachments(&st.db.pool, network).await? {
        if owner_access || a.project.as_deref().is_some_and(|p| c.has_project(p)) {
            connected.entry(a.node).or_default().push(a.nic);
        }
    }
    Ok((net, connected))
}

/// One attachment as listed: node -> (nic, channel, the node's project).
pub type Attachments = BTreeMap<String, (String, String, Option<String>)>;

/// The network's attachments, all (its owner) or those of `project`.
pub async fn attachments(st: &AppState, c: &Caller, network: &str, project: Option<&str>) -> Result<Attachments> {
    let net = load(st, network).await?;
    if let Some(p) = project {
        check_name("project", p)?;
    }
    authorize(Actor::Caller(c), Action::ListAttachments(project), net.resource())?;
    if let Some(p) = project {
        super::projects::must_exist(st, p).await?;
    }
    Ok(db::networks::attachments(&st.db.pool, network)
        .await?
        .into_iter()
        .filter(|a| project.is_none() || project == a.project.as_deref())
        .map(|a| (a.node, (a.nic, a.channel, a.project)))
        .collect())
}

/// Grants `project` access to a network (its owner).
pub async fn grant(st: &AppState, c: &Caller, network: &str, project: &str) -> Result<()> {
    let net = load(st, network).await?;
    authorize(Actor::Caller(c), Action::ManageNetwork, net.resource())?;
    super::projects::must_exist(st, project).await?;
    duplicate(db::networks::grant(st.db.writer.pool(), network, project).await, || {
        format!("project {project:?} already has access to {network:?}")
    })
}

/// Revokes `project`'s access (its owner, or the project itself), unless the
/// project is the owner or still has nodes on the network.
pub async fn revoke(st: &AppState, c: &Caller, network: &str, project: &str) -> Result<()> {
    let net = load(st, network).await?;
    check_name("project", project)?;
    authorize(Actor::Caller(c), Action::RevokeNetworkAccess(project), net.resource())?;
    super::projects::must_exist(st, project).await?;
    if net.owner.as_deref() == Some(project) {
        return Err(Error::Conflict("cannot revoke the owner's access".into()));
    }
    if db::networks::project_attached(&st.db.pool, network, project).await? {
        return Err(Error::Conflict("project still has nodes attached to the network".into()));
    }
    if !db::networks::revoke(&st.db.writer, network, project).await? {
        return Err(Error::NotFound(format!("project {project:?} has no access to {network:?}")));
    }
    Ok(())
}

/// The node's project, once the caller may use it; a free node is a 409 (to admins).
async fn node_in_callers_project(st: &AppState, c: &Caller, node: &str) -> Result<String> {
    let project = super::nodes::project_of(st, node).await?;
    let Some(project) = project else {
        // Admins get the specific answer; others learn nothing new.
        c.require_admin()?;
        return Err(Error::Conflict(format!("node {node:?} is not in a project")));
    };
    c.require_project(Some(&project))?;
    Ok(project)
}

/// Queues attaching `network` to the NIC on `channel` (default `vlan/native`); returns the action id.
pub async fn connect(
    st: &AppState,
    c: &Caller,
    node: &str,
    nic: &str,
    network: &str,
    channel: Option<String>,
) -> Result<String> {
    let project = node_in_callers_project(st, c, node).await?;
    super::nodes::nic_must_exist(st, node, nic).await?;
    let net = load(st, network).await?;
    if !net.access.is_empty() && !net.access.contains(&project) {
        return Err(Error::Forbidden(format!("project {project:?} has no access to network {network:?}")));
    }
    if db::nics::port(&st.db.pool, node, nic).await?.is_none() {
        return Err(Error::NotFound("no switch port is connected to this nic".into()));
    }
    let channel = channel.unwrap_or_else(|| "vlan/native".into());
    if !net.channels().contains(&channel) {
        return Err(Error::Unprocessable(format!(
            "channel {channel:?} is not legal for this network (legal: {:?})",
            net.channels()
        )));
    }
    if db::networks::channel_of(&st.db.pool, node, nic, network).await?.is_some() {
        return Err(Error::Conflict("the network is already attached to the nic".into()));
    }
    if db::networks::channel_in_use(&st.db.pool, node, nic, &channel).await? {
        return Err(Error::Conflict("the channel is already in use on the nic".into()));
    }
    super::actions::queue(st, node, nic, ActionKind::ModifyPort, Some(network), &channel, Some(&project)).await
}

/// Queues detaching `network` from the NIC; returns the action id.
pub async fn detach(st: &AppState, c: &Caller, node: &str, nic: &str, network: &str) -> Result<String> {
    let project = node_in_callers_project(st, c, node).await?;
    super::nodes::nic_must_exist(st, node, nic).await?;
    load(st, network).await?;
    let channel = db::networks::channel_of(&st.db.pool, node, nic, network)
        .await?
        .ok_or_else(|| Error::Conflict("the network is not attached to the nic".into()))?;
    super::actions::queue(st, node, nic, ActionKind::ModifyPort, None, &channel, Some(&project)).await
}
