//! The crate's error type.

use std::io;
use std::process::ExitStatus;

/// Errors building or driving a [`Fabric`](crate::Fabric).
#[derive(Debug, thiserror::Error)]
pub enum FabricError {
    /// The caller lacks what building fabrics needs (root/capabilities, tools).
    #[error("cannot build fabrics here: {reason}")]
    NotPrivileged {
        /// Why.
        reason: String,
    },
    /// A setup command could not be started.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A setup command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// The kernel lacks a feature the fabric was asked to use.
    #[error("{feature} is not supported by this kernel: {detail}")]
    Unsupported {
        /// The feature (e.g. "bridge vlan_filtering").
        feature: &'static str,
        /// The underlying error text.
        detail: String,
    },
    /// The builder was given an inconsistent configuration.
    #[error("invalid fabric configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// No host of that name exists in the fabric.
    #[error("no host named `{name}` in this fabric")]
    UnknownHost {
        /// The name asked for.
        name: String,
    },
    /// The output of a setup command could not be understood.
    #[error("could not parse the output of `{command}`: {detail}")]
    Parse {
        /// The command line.
        command: String,
        /// What was wrong.
        detail: String,
    },
    /// Opening or entering a network namespace failed.
    #[error("network namespace {netns}: {source}")]
    Netns {
        /// The namespace's name.
        netns: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// No unused fabric name prefix was found.
    #[error("no free namespace name after {attempts} attempts (last tried {last})")]
    NameExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last namespace name tried.
        last: String,
    },
    /// Attaching, configuring or reading a loss injector failed.
    #[error("loss injector on {host} ({flow:?}): {source}")]
    Loss {
        /// The host whose link it is.
        host: String,
        /// Which way through the link.
        flow: crate::Flow,
        /// The loader's error.
        #[source]
        source: metalcast_ebpf::LossError,
    },
}
