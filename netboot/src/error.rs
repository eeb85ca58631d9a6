//! Typed errors: startup errors of the server, and the backend's error.

use std::io;
use std::net::SocketAddr;

/// A startup error of [`crate::Netboot::start`]; it names the port or interface.
#[derive(Debug, thiserror::Error)]
pub enum NetbootError {
    /// The configuration cannot work (e.g. full mode without a pool).
    #[error("netboot config: {0}")]
    Config(String),
    /// A socket could not be created, configured or bound.
    #[error("cannot bind the {what} socket on {addr}: {source}")]
    Bind {
        /// Which listener: "DHCP", "proxyDHCP (4011)", "TFTP".
        what: &'static str,
        /// The address we tried.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `SO_BINDTODEVICE` failed (no such interface, or not root / no CAP_NET_RAW).
    #[error("cannot bind the {what} socket to interface {interface:?}: {source}")]
    BindDevice {
        /// Which listener.
        what: &'static str,
        /// The interface name from the config.
        interface: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The TFTP boot directory is unusable.
    #[error("TFTP boot directory {dir}: {source}")]
    BootDir {
        /// `boot_dir` from the config.
        dir: std::path::PathBuf,
        /// Why (missing, not a directory, unreadable).
        #[source]
        source: io::Error,
    },
    /// The TFTP library refused to start.
    #[error("TFTP server on {addr}: {source}")]
    Tftp {
        /// The TFTP listen address.
        addr: SocketAddr,
        /// async-tftp's error.
        #[source]
        source: async_tftp::Error,
    },
}

/// An error of the control plane's [`crate::Backend`] (database down, bad row...). Counted as
/// `backend_errors`; the packet that needed it gets no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("netboot backend: {0}")]
pub struct BackendError(pub String);

impl From<String> for BackendError {
    fn from(s: String) -> Self {
        BackendError(s)
    }
}

impl From<&str> for BackendError {
    fn from(s: &str) -> Self {
        BackendError(s.to_owned())
    }
}
