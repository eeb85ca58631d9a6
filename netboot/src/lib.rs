//! metalcast netboot: DHCP (full or proxy) and TFTP so a bare node can PXE/iPXE/UEFI-HTTP boot
//! the metalcast runtime without dnsmasq. The control plane spawns it with [`Netboot::start`] and
//! implements [`Backend`] over its database: every per-node decision ([`Decision`]) and every
//! address lease ([`Lease`]) comes from there. No SQL and no HTTP server here: the control plane
//! serves iPXE binaries, scripts, kernels and initrds over HTTP.
//!
//! # Parts
//! - [`mac`]: [`Mac`], the key of every backend question.
//! - [`config`]: [`Config`] and [`Mode`] (`full`, `proxy`, `off`); [`pool`]: the full-mode [`Pool`].
//! - [`classify`](mod@classify): the pure check of one request: MAC, message type, [`Client`] kind from options
//!   60/77/93/97 (smee-style netboot checks), or a [`Reject`].
//! - [`decide`](mod@decide): the decision table, [`boot_file`] for a client and a [`Decision`].
//! - [`reply`]: the reply message (dhcproto) and its destination.
//! - [`handler`]: [`DhcpHandler`], bytes -> checks -> rate limit -> backend (with timeouts) -> reply.
//! - [`backend`]: the [`Backend`] trait; [`memory`]: [`MemoryBackend`] for tests.
//! - [`event`]: [`Event`], one step of a node's boot for its event log.
//! - [`counters`]: [`Counters`]; `tftp` (async-tftp handler over `boot_dir`), `dhcp` (socket
//!   loop), `server` ([`Netboot`]), `sys` (socket creation).
//!
//! # Decision table
//! | client (options) | boot file |
//! |---|---|
//! | 60 `HTTPClient`, 93 = 16 | `http_ipxe_url` (none if unset), reply option 60 `HTTPClient` |
//! | 60 `PXEClient`, 93 = 0 | `bios_file` (undionly.kpxe) over TFTP |
//! | 60 `PXEClient`, 93 = 7/9 | `uefi_file` (ipxe.efi) over TFTP |
//! | 77 contains `iPXE` (and the checks above) | the backend's `script_url` (so iPXE never loads iPXE again) |
//!
//! A netboot client has option 60 starting with `PXEClient`/`HTTPClient`, option 93, and option 97
//! either absent or 17 bytes with a leading 0. Not a netboot client, an unsupported architecture,
//! or `Decision::AddressOnly`: **proxy** mode does not answer; **full** mode offers an address
//! without a boot file. Full mode: DISCOVER -> OFFER (`lease_offer`), REQUEST -> ACK
//! (`lease_commit`) or NAK, RELEASE/DECLINE -> `lease_release`, with options 1, 3, 6, 51, 54,
//! `siaddr` = `server_ip`, boot file in `file` and option 67. Proxy mode answers DISCOVER and
//! REQUEST on 67 and REQUEST on 4011 (unicast back) with `yiaddr` 0, options 54, 60, 43
//! (PXE discovery control 8) and the boot file. Option 97 is echoed; xid, flags, giaddr, chaddr copied.
//!
//! # Tests
//! `cargo test -p metalcast-netboot`: unit tests per module; `tests/decision_table.rs` (the table
//! on golden dhcproto packets through [`DhcpHandler`], malformed input, proptests);
//! `tests/sockets.rs` ([`Netboot`] on loopback with high ports and `reply_to_source`, a small TFTP
//! client). Fuzzing: `cd netboot/fuzz && cargo +nightly fuzz run dhcp`. No VM tests here.
//!
//! # Bounds
//! Per-MAC rate limit (bounded table), at most `max_inflight` backend calls, each limited by
//! `backend_timeout_ms`; malformed packets are counted and dropped, never panic. TFTP serves
//! only regular files directly in `boot_dir`; writes are refused.

pub mod backend;
pub mod classify;
pub mod config;
pub mod counters;
pub mod decide;
mod dhcp;
pub mod error;
pub mod event;
pub mod handler;
pub mod mac;
pub mod memory;
mod peers;
pub mod pool;
mod ratelimit;
pub mod reply;
mod server;
mod sys;
mod tftp;

pub use backend::{Backend, Lease};
pub use classify::{Client, NotNetboot, Reject, Request, classify, decode};
pub use config::{Config, Mode};
pub use counters::Counters;
pub use decide::{BootFile, Decision, boot_file};
pub use error::{BackendError, NetbootError};
pub use event::Event;
pub use handler::{DhcpHandler, Reply, Via};
pub use mac::Mac;
pub use memory::MemoryBackend;
pub use pool::Pool;
pub use reply::Answer;
pub use server::{LocalAddrs, Netboot};
