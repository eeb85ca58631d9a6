//! The node runtime: what runs on every node between tenants.
//!
//! Parts:
//! - [`receive`]: join a multicast session for a signed manifest and write
//!   the verified parts to a directory (or keep them in memory).
//! - [`exit`]: the exit codes the control plane acts on.

pub mod exit;
pub mod receive;
