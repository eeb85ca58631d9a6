//! HIL's `GET /active_extensions`: what this server provides, named the way
//! HIL names its extensions where HIL has one (so a HIL tool that looks for
//! `hil.ext.auth.database` finds it), and `metalcast.*` for the drivers HIL
//! has no extension for.

use super::AppState;
use super::error::Result;
use crate::authz::Caller;

/// The active extensions, sorted (admins).
pub fn active(st: &AppState, c: &Caller) -> Result<Vec<&'static str>> {
    c.require_admin()?;
    let mut out = vec![
        // Users with passwords in the database, and their projects.
        "hil.ext.auth.database",
        // Networks get a free VLAN from the configured pool.
        "hil.ext.network_allocators.vlan_pool",
        "metalcast.obm.ipmi",
        "metalcast.obm.none",
        "metalcast.obm.obmd",
        "metalcast.obm.qmp",
        "metalcast.obm.redfish",
        "metalcast.switches.linux_bridge",
        "metalcast.switches.linux_vlan_bridges",
    ];
    if st.upstream.is_some() {
        // A nested instance: nodes and switch ports held in a parent metalcast.
        out.extend(["metalcast.obm.upstream", "metalcast.switches.upstream"]);
    }
    out.sort_unstable();
    Ok(out)
}
