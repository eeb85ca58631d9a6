//! Enrollments (`/v1/enrollments`): machines of unknown MAC that netbooted
//! the runtime in enrollment mode (`serve --netboot-enroll`) and checked in
//! with their inventory. An admin accepts one (it becomes a free node with
//! one NIC of that MAC and a BMC the admin names) or rejects it (it is
//! never netbooted again).

use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{Error, Result, check_name};
use crate::authz::Caller;
use crate::db;
use crate::db::enrollments::Accepted;
use crate::drivers::ObmConfig;

/// An enrollment.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Enrollment {
    /// The MAC it checked in with.
    pub mac: String,
    /// `pending`, `accepted` or `rejected`.
    pub state: String,
    /// Its address on the provisioning network at its latest check-in.
    pub address: String,
    /// The runtime's inventory from its latest check-in (CPUs, memory, disks, NICs).
    #[schema(value_type = Object)]
    pub inventory: serde_json::Value,
    /// Unix seconds.
    pub first_seen: i64,
    /// Unix seconds.
    pub last_seen: i64,
    /// The node it became (accepted).
    pub node: Option<String>,
}

/// `POST /v1/enrollments/{mac}/accept`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentAccept {
    /// Name of the new node.
    pub node: String,
    /// Name of its NIC (default `eth0`).
    #[serde(default)]
    pub nic: Option<String>,
    /// Its BMC, as in `PUT /v0/node/{node}` (default: none).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub obm: Option<serde_json::Value>,
}

fn view(r: db::enrollments::EnrollmentRow) -> Enrollment {
    Enrollment {
        inventory: serde_json::from_str(&r.inventory).unwrap_or(serde_json::Value::Null),
        mac: r.mac,
        state: r.state,
        address: r.address,
        first_seen: r.first_seen,
        last_seen: r.last_seen,
        node: r.node,
    }
}

/// Every enrollment, newest first (admins).
pub async fn list(st: &AppState, c: &Caller) -> Result<Vec<Enrollment>> {
    c.require_admin()?;
    Ok(db::enrollments::list(&st.db.pool).await?.into_iter().map(view).collect())
}

/// One enrollment (admins).
pub async fn get(st: &AppState, c: &Caller, mac: &str) -> Result<Enrollment> {
    c.require_admin()?;
    let mac = super::netboot::normalize_mac(mac)?;
    db::enrollments::get(&st.db.pool, &mac)
        .await?
        .map(view)
        .ok_or_else(|| Error::NotFound(format!("no enrollment of {mac}")))
}

/// Registers a pending enrollment as a free node (admins).
pub async fn accept(st: &AppState, c: &Caller, mac: &str, req: &EnrollmentAccept) -> Result<Enrollment> {
    c.require_admin()?;
    let mac = super::netboot::normalize_mac(mac)?;
    check_name("node", &req.node)?;
    let nic = req.nic.clone().unwrap_or_else(|| "eth0".into());
    check_name("nic", &nic)?;
    let obm: ObmConfig = match &req.obm {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| Error::BadRequest(format!("obm: {e}")))?,
        None => ObmConfig::None {},
    };
    obm.validate().map_err(Error::BadRequest)?;
    let obm = serde_json::to_string(&obm).map_err(Error::internal)?;
    match db::enrollments::accept(&st.db.writer, &mac, &req.node, &nic, &obm).await? {
        Accepted::Registered => {}
        Accepted::NotPending => return Err(Error::Conflict(format!("no pending enrollment of {mac}"))),
        Accepted::NameTaken => return Err(Error::Duplicate(format!("node {:?} already exists", req.node))),
        Accepted::MacTaken(n) => return Err(Error::Conflict(format!("node {n:?} already has a NIC with MAC {mac}"))),
    }
    let who = c.user.as_deref().unwrap_or("?");
    let _ =
        super::events::record(st, &req.node, None, "enrolled", &format!("enrollment of {mac} accepted by {who}")).await;
    get(st, c, &mac).await
}

/// Rejects a pending enrollment (admins): that MAC is never netbooted again.
pub async fn reject(st: &AppState, c: &Caller, mac: &str) -> Result<Enrollment> {
    c.require_admin()?;
    let mac = super::netboot::normalize_mac(mac)?;
    if !db::enrollments::reject(&st.db.writer, &mac).await? {
        return Err(Error::Conflict(format!("no pending enrollment of {mac}")));
    }
    get(st, c, &mac).await
}
