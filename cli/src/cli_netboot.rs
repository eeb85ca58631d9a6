//! `metalcast enrollment ...`, `metalcast netboot leases` and `metalcast
//! node boot`: the CLI over built-in netboot (docs/netboot.md).

use clap::Subcommand;
use metalcast_operator_api::Client;
use metalcast_operator_api::netboot::{BootChoice, EnrollmentAccept};
use serde_json::Value;

use crate::cli_error::{CliError, out};

/// `metalcast enrollment ...` (admins).
#[derive(Debug, Subcommand)]
pub enum EnrollmentCmd {
    /// Machines that netbooted in enrollment mode (`serve --netboot-enroll`), newest first.
    List,
    /// One enrollment, with the runtime's inventory.
    Show {
        /// Its MAC.
        mac: String,
    },
    /// Register the machine as a free node with one NIC of its MAC.
    Accept {
        /// Its MAC.
        mac: String,
        /// Name of the new node.
        #[arg(long)]
        node: String,
        /// Name of its NIC.
        #[arg(long, default_value = "eth0")]
        nic: String,
        /// Its BMC as JSON, as in `node register --obm` (default: none).
        #[arg(long)]
        obm: Option<String>,
    },
    /// Refuse the machine: it is never netbooted again.
    Reject {
        /// Its MAC.
        mac: String,
    },
}

/// `metalcast netboot ...`
#[derive(Debug, Subcommand)]
pub enum NetbootCmd {
    /// Full mode's address leases (admins).
    Leases,
}

/// Runs `metalcast enrollment ...`; `human`: for a table.
pub async fn run_enrollment(c: &Client, cmd: &EnrollmentCmd, human: bool) -> Result<Value, CliError> {
    match cmd {
        EnrollmentCmd::List => {
            let mut v = out(c.enrollments().await?)?;
            if human {
                for e in v.as_array_mut().into_iter().flatten() {
                    if let Some(i) = e.get("inventory").filter(|i| i.is_object()) {
                        e["inventory"] = inventory_summary(i).into();
                    }
                }
            }
            Ok(v)
        }
        EnrollmentCmd::Show { mac } => out(c.enrollment(mac).await?),
        EnrollmentCmd::Accept { mac, node, nic, obm } => {
            let obm = obm
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| CliError::Input(format!("--obm is not JSON: {e}")))?;
            out(c.enrollment_accept(mac, &EnrollmentAccept { node: node.clone(), nic: Some(nic.clone()), obm }).await?)
        }
        EnrollmentCmd::Reject { mac } => out(c.enrollment_reject(mac).await?),
    }
}

/// A runtime's inventory in one cell of `enrollment list`: `16 cpus, 64.0
/// GiB memory, disks vda 1.0 GiB, nics eth0` (`enrollment show` and `-o
/// json` have all of it).
fn inventory_summary(i: &Value) -> String {
    let size = |v: &Value| v.as_u64().map_or_else(|| "?".to_string(), crate::table::size);
    let list = |key: &str, f: &dyn Fn(&Value) -> String| {
        let items: Vec<String> = i[key].as_array().map(|a| a.iter().map(f).collect()).unwrap_or_default();
        if items.is_empty() { "-".to_string() } else { items.join(", ") }
    };
    let name = |v: &Value| v["name"].as_str().unwrap_or("?").to_string();
    format!(
        "{} cpus, {} memory, disks {}, nics {}",
        i["cpus"],
        size(&i["memory_bytes"]),
        list("disks", &|d| format!("{} {}", name(d), size(&d["size_bytes"]))),
        list("nics", &name)
    )
}

/// Runs `metalcast netboot ...`.
pub async fn run_netboot(c: &Client, cmd: &NetbootCmd) -> Result<Value, CliError> {
    match cmd {
        NetbootCmd::Leases => out(c.netboot_leases().await?),
    }
}

/// `metalcast node boot NODE [CHOICE]`: show or set what the node netboots.
pub async fn node_boot(c: &Client, node: &str, choice: Option<BootChoice>) -> Result<Value, CliError> {
    match choice {
        Some(b) => out(c.node_boot_set(node, b).await?),
        None => out(c.node_boot(node).await?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_in_one_cell() {
        let i = serde_json::json!({"cpus": 16, "memory_bytes": 68_719_476_736u64, "kernel": "6.1",
            "disks": [{"name": "vda", "size_bytes": 1_073_741_824u64}, {"name": "vdb", "size_bytes": 512}],
            "nics": [{"name": "eth0", "mac": "52:54:00:00:00:01"}]});
        assert_eq!(inventory_summary(&i), "16 cpus, 64.0 GiB memory, disks vda 1.0 GiB, vdb 512 B, nics eth0");
        let none = serde_json::json!({"cpus": 1, "memory_bytes": 1024, "disks": [], "nics": []});
        assert_eq!(inventory_summary(&none), "1 cpus, 1.0 KiB memory, disks -, nics -");
    }
}
