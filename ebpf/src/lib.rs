//! # metalcast-ebpf
//!
//! metalcast's eBPF programs and their [aya] loaders. One program per C file,
//! one Rust module per program:
//!
//! - [`loss`]: `src/loss.bpf.c`, a tc (clsact/tcx) classifier that injects
//!   random and bursty (Gilbert-Elliott) loss, duplication and corruption on
//!   one interface and direction; loaded with [`LossInjector::attach`].
//! - [`xdp_rx`]: `src/xdp_rx.bpf.c`, the XDP receive fast path: imaging
//!   session frames to an AF_XDP socket, symbols of finished blocks dropped
//!   in the kernel, everything else passed; loaded with [`XdpRx::load`].
//! - [`xsk`]: the AF_XDP socket ([xdpilone]) the fast path redirects to, and
//!   [`frame`]: the UDP payload of a redirected frame.
//! - [`objects`]: the compiled objects, embedded from `ebpf/obj/` (committed;
//!   rebuilt by `ebpf/build.sh`, verified by `ebpf/build.sh --check`), so the
//!   workspace builds without clang.
//! - `netns` (private): the small amount of network-namespace plumbing the
//!   loaders need to detach from the namespace they attached in; `sys`
//!   (private): the AF_XDP memory and `poll`, all of this crate's unsafe code
//!   besides the `#[repr(C)]` map mirrors.
//!
//! Attaching needs `CAP_BPF` + `CAP_NET_ADMIN`; interface names are resolved in
//! the calling thread's network namespace, so to attach inside a namespace call
//! the loader from a thread that entered it (e.g. `metalcast_fabric`'s
//! `Host::run_in`, or simply `Host::set_loss`).

pub mod frame;
pub mod loss;
mod netns;
mod sys;
#[cfg(test)]
mod testing;
pub mod xdp_rx;
pub mod xsk;

pub use loss::{Direction, GilbertElliott, LossConfig, LossError, LossInjector, LossStats, PPM};
pub use xdp_rx::{AttachMode, RxStats, SessionMatch, SessionSlot, XdpRx, XdpRxError};
pub use xsk::{XskConfig, XskError, XskRx, XskStats};

/// Waits until one of `fds` is readable or `timeout` passes; returns which are.
pub fn wait_readable(fds: &[std::os::fd::RawFd], timeout: std::time::Duration) -> std::io::Result<Vec<bool>> {
    sys::wait_readable(fds, timeout)
}

/// The compiled eBPF objects, embedded 8-byte aligned as aya requires.
pub mod objects {
    /// `ebpf/obj/loss.bpf.o`, built from `ebpf/src/loss.bpf.c`.
    pub static LOSS: &[u8] = aya::include_bytes_aligned!("../obj/loss.bpf.o");
    /// `ebpf/obj/xdp_rx.bpf.o`, built from `ebpf/src/xdp_rx.bpf.c`.
    pub static XDP_RX: &[u8] = aya::include_bytes_aligned!("../obj/xdp_rx.bpf.o");
}
