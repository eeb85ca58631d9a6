//! Switches and ports, and which NIC is cabled to which port (admins only).

use super::AppState;
use super::error::{Error, Result, check_name, conflict, duplicate};
use crate::authz::Caller;
use crate::db;
use crate::db::actions::ActionKind;
use crate::drivers::SwitchConfig;

/// A switch's driver configuration (404 if it does not exist).
async fn load(st: &AppState, switch: &str) -> Result<SwitchConfig> {
    check_name("switch", switch)?;
    let cfg = db::switches::config(&st.db.pool, switch).await?.ok_or_else(|| Error::not_found("switch", switch))?;
    serde_json::from_str(&cfg).map_err(Error::internal)
}

/// 404 unless the switch has `port`.
async fn port_must_exist(st: &AppState, switch: &str, port: &str) -> Result<()> {
    load(st, switch).await?;
    check_name("port", port)?;
    if !db::switches::port_exists(&st.db.pool, switch, port).await? {
        return Err(Error::NotFound(format!("switch {switch:?} has no port {port:?}")));
    }
    Ok(())
}

/// Every switch.
pub async fn list(st: &AppState, c: &Caller) -> Result<Vec<String>> {
    c.require_admin()?;
    Ok(db::switches::list(&st.db.pool).await?)
}

/// Registers a switch with its driver configuration.
pub async fn register(st: &AppState, c: &Caller, switch: &str, cfg: &SwitchConfig) -> Result<()> {
    c.require_admin()?;
    check_name("switch", switch)?;
    cfg.validate().map_err(Error::BadRequest)?;
    crate::drivers::check_switch(cfg).await.map_err(Error::BadRequest)?;
    let text = serde_json::to_string(cfg).map_err(Error::internal)?;
    duplicate(db::switches::insert(&st.db.writer, switch, &text).await, || format!("switch {switch:?} already exists"))
}

/// Deletes a switch without ports.
pub async fn delete(st: &AppState, c: &Caller, switch: &str) -> Result<()> {
    c.require_admin()?;
    load(st, switch).await?;
    if !db::switches::delete_if_no_ports(&st.db.writer, switch).await? {
        return Err(Error::Conflict("switch still has ports; delete them first".into()));
    }
    Ok(())
}

/// A switch's capabilities (HIL's names) and ports.
pub async fn show(st: &AppState, c: &Caller, switch: &str) -> Result<(Vec<String>, Vec<String>)> {
    c.require_admin()?;
    let cfg = load(st, switch).await?;
    let capabilities = cfg.capabilities().iter().map(|s| s.to_string()).collect();
    Ok((capabilities, db::switches::ports(&st.db.pool, switch).await?))
}

/// Registers a port the switch's driver accepts.
pub async fn add_port(st: &AppState, c: &Caller, switch: &str, port: &str) -> Result<()> {
    c.require_admin()?;
    let cfg = load(st, switch).await?;
    check_name("port", port)?;
    cfg.validate_port(port).map_err(Error::BadRequest)?;
    duplicate(db::switches::insert_port(&st.db.writer, switch, port).await, || {
        format!("port {port:?} already exists on {switch:?}")
    })
}

/// Deletes a port no NIC is connected to.
pub async fn delete_port(st: &AppState, c: &Caller, switch: &str, port: &str) -> Result<()> {
    c.require_admin()?;
    port_must_exist(st, switch, port).await?;
    if !db::switches::delete_port_if_free(&st.db.writer, switch, port).await? {
        return Err(Error::Conflict("a nic is connected to the port".into()));
    }
    Ok(())
}

/// What is on a port: (node, nic, attached networks as (channel, network)), or nothing.
pub async fn show_port(
    st: &AppState,
    c: &Caller,
    switch: &str,
    port: &str,
) -> Result<Option<(String, String, Vec<(String, String)>)>> {
    c.require_admin()?;
    port_must_exist(st, switch, port).await?;
    let Some((node, nic)) = db::nics::on_port(&st.db.pool, switch, port).await? else {
        return Ok(None);
    };
    let networks = db::networks::attachments_of_node(&st.db.pool, &node)
        .await?
        .into_iter()
        .filter(|a| a.nic == nic)
        .map(|a| (a.channel, a.network))
        .collect();
    Ok(Some((node, nic, networks)))
}

/// Cables a NIC (on no port yet) to a free port.
pub async fn connect_nic(st: &AppState, c: &Caller, switch: &str, port: &str, node: &str, nic: &str) -> Result<()> {
    c.require_admin()?;
    port_must_exist(st, switch, port).await?;
    super::nodes::project_of(st, node).await?;
    super::nodes::nic_must_exist(st, node, nic).await?;
    let connected = conflict(db::nics::connect_port(&st.db.writer, switch, port, node, nic).await, || {
        "the port is already connected to a nic".into()
    })?;
    if !connected {
        return Err(Error::Conflict("the nic is already connected to a port".into()));
    }
    Ok(())
}

/// Uncables the NIC on a port, if its node is free.
pub async fn detach_nic(st: &AppState, c: &Caller, switch: &str, port: &str) -> Result<()> {
    c.require_admin()?;
    port_must_exist(st, switch, port).await?;
    let Some((node, _)) = db::nics::on_port(&st.db.pool, switch, port).await? else {
        return Err(Error::NotFound("the port is not connected to a nic".into()));
    };
    if !db::nics::detach_port_of_free_node(&st.db.writer, switch, port, &node).await? {
        return Err(Error::Conflict("the port's node is not free".into()));
    }
    Ok(())
}

/// Queues detaching every network from the port; returns the action id.
pub async fn revert_port(st: &AppState, c: &Caller, switch: &str, port: &str) -> Result<String> {
    c.require_admin()?;
    port_must_exist(st, switch, port).await?;
    let Some((node, nic)) = db::nics::on_port(&st.db.pool, switch, port).await? else {
        return Err(Error::NotFound(format!("{port} not attached")));
    };
    super::actions::queue(st, &node, &nic, ActionKind::RevertPort, None, "", None).await
}
