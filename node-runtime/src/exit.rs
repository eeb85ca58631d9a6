//! Exit codes of `metalcast-node`, stable so the control plane and scripts
//! can act on them (documented in `docs/node-runtime.md`).

/// Everything done.
pub const OK: u8 = 0;
/// Unexpected failure (I/O, internal error).
pub const FAILURE: u8 = 1;
/// Bad command line.
pub const USAGE: u8 = 2;
/// The manifest is not trusted: unsigned, wrong key, malformed.
pub const UNTRUSTED: u8 = 3;
/// The session ended without a complete image (no data for too long).
pub const TIMEOUT: u8 = 4;
/// Writing the image failed (disk full, device error).
pub const WRITE: u8 = 5;
