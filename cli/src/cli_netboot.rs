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

/// Runs `metalcast enrollment ...`.
pub async fn run_enrollment(c: &Client, cmd: &EnrollmentCmd) -> Result<Value, CliError> {
    match cmd {
        EnrollmentCmd::List => out(c.enrollments().await?),
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
