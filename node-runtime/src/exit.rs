//! Exit codes of `metalcast-node` and failure classes in phase reports,
//! stable so the control plane and scripts can act on them (documented in
//! `docs/node-runtime.md`).

/// Everything done.
pub const OK: u8 = 0;
/// Unexpected failure (I/O, internal error).
pub const FAILURE: u8 = 1;
/// Bad command line, or an instruction the bundle cannot satisfy.
pub const USAGE: u8 = 2;
/// The manifest is not trusted: unsigned, wrong key, malformed.
pub const UNTRUSTED: u8 = 3;
/// The session ended without a complete image (no data for too long).
pub const TIMEOUT: u8 = 4;
/// Writing the image failed (disk full, device error, read-back mismatch).
pub const WRITE: u8 = 5;
/// The hand-over failed (kexec refused, VM did not start).
pub const HANDOVER: u8 = 6;
/// The network could not be brought up (no interface, no DHCP lease).
pub const NETWORK: u8 = 7;
/// A destructive instruction (a wipe, a disk target) refused by the
/// disk-write guard: not the node's runtime, a device outside the node's
/// disks, or one in use (`docs/node-runtime.md`).
pub const REFUSED: u8 = 8;
/// The image as sent is corrupt: one block decoded to a chunk that failed
/// the manifest's hash again and again (`metalcast_transport::receiver::MAX_HASH_FAILURES`).
pub const CORRUPT: u8 = 9;
/// Stopped by a signal: 128 plus its number, as a shell reports a process
/// killed by it (130 SIGINT, 143 SIGTERM); partial outputs are removed first.
pub const SIGNALLED: u8 = 128;
