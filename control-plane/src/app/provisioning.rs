//! The provisioning network (`metalcast serve --provision-network NAME`):
//! the network on which a node's runtime reaches this server (check-in,
//! instructions, reports, the multicast session).
//!
//! A tenant may detach it from its nodes (HIL lets a project rewire its
//! NICs). A deployment or a reclaim then has to put it back first, as Ironic
//! does with its provisioning and cleaning networks: [`ensure`] puts one NIC
//! of the node on it, through the node's switch port and the same queued
//! networking action a `connect_network` runs, and records a
//! `provisioning-network` node event the node's project can read. A NIC
//! already on it is left alone; tenant networks are never detached for it:
//! a node whose every NIC with a switch port uses its native VLAN for
//! another network fails with that reason.

use std::time::Duration;

use super::AppState;
use super::error::{Error, Result};
use crate::db;
use crate::db::actions::ActionKind;

/// The channel the provisioning network goes on: the runtime's DHCP and
/// network boot use untagged frames.
const CHANNEL: &str = "vlan/native";

/// Makes sure one NIC of `node` is on the provisioning network, for
/// `purpose` ("deployment 7", "the reclaim"). Returns what was done, or
/// `None` when nothing was (no provisioning network configured, or a NIC is
/// on it already). Bounded by `timeout` (the switch action).
pub async fn ensure(
    st: &AppState,
    node: &str,
    project: Option<&str>,
    purpose: &str,
    timeout: Duration,
) -> Result<Option<String>> {
    let Some(network) = st.provision.network.as_deref() else { return Ok(None) };
    let pool = &st.db.pool;
    if db::networks::load(pool, network).await?.is_none() {
        return Err(Error::Unprocessable(format!(
            "the provisioning network {network:?} (serve --provision-network) does not exist"
        )));
    }
    let attached = db::networks::attachments_of_node(pool, node).await?;
    if attached.iter().any(|a| a.network == network) {
        return Ok(None);
    }
    let mut nic = None;
    for n in db::nics::of_node(pool, node).await? {
        if n.port_name.is_some() && !db::networks::channel_in_use(pool, node, &n.name, CHANNEL).await? {
            nic = Some(n.name);
            break;
        }
    }
    let Some(nic) = nic else {
        return Err(Error::Unprocessable(format!(
            "node {node:?} is not on the provisioning network {network:?} and none of its NICs can be put on it \
             (each needs a switch port and a free native VLAN: detach a network from one)"
        )));
    };
    let id = super::actions::queue(st, node, &nic, ActionKind::ModifyPort, Some(network), CHANNEL, None).await?;
    super::actions::wait(st, &id, timeout, &format!("putting {nic} on the provisioning network {network}")).await?;
    let what = format!("{nic} put on the provisioning network {network} for {purpose} (action {id})");
    super::events::record(st, node, project, "provisioning-network", &what).await?;
    tracing::info!(%node, %nic, %network, %purpose, "node put back on the provisioning network");
    Ok(Some(what))
}
