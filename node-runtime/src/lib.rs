//! The node runtime: what runs on every node between tenants.
//!
//! Parts:
//! - [`receive`]: join a multicast session for a signed manifest and write
//!   the verified parts to a directory (or keep them in memory).
//! - [`rx_path`]: the receive path, XDP/AF_XDP fast path or socket, and
//!   the fallback from one to the other;
//! - [`exit`]: the exit codes the control plane acts on.

pub mod exit;
pub mod receive;
pub mod rx_path;
