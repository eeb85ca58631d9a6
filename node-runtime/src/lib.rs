//! The node runtime: what runs on every node between tenants.
//!
//! Parts:
//! - [`init`]: PID 1 of the bootstrap initramfs (mounts, modules, agent supervision);
//! - [`agent`]: the lifecycle (network, check-in, long-poll, deploy, hand-over);
//! - [`config`]: settings from the kernel command line;
//! - [`net`]: interface bring-up, static or DHCP;
//! - [`inventory`]: the hardware inventory reported at check-in;
//! - [`kexec`]: staging the next kernel, `kexec_file_load` or the legacy
//!   `kexec_load` through kexec-tools;
//! - [`target`]: memory (memfd) and disk (`O_DIRECT`) targets and read-back verification;
//! - [`vm`]: VM mode (QEMU on the received disk image, without a network unless the bundle gives it one);
//! - [`seed`]: seed mode (keeping a received image in its stored form and serving it in a new session);
//! - [`receive`]: the standalone `receive` command (one image to a directory);
//! - [`rx_path`]: the receive path, XDP/AF_XDP fast path or socket, and
//!   the fallback from one to the other;
//! - [`guard`]: the disk-write guard (positive proof before a wipe, a disk
//!   target or a power-off);
//! - [`exit`]: the exit codes the control plane acts on;
//! - `sys`: the system calls (all the unsafe code).

pub mod agent;
pub mod config;
pub mod exit;
pub mod guard;
pub mod init;
pub mod inventory;
pub mod kexec;
pub mod net;
pub mod receive;
pub mod rx_path;
pub mod seed;
mod sys;
pub mod target;
pub mod vm;
