//! # metalcast-ebpf
//!
//! metalcast's eBPF programs and their [aya] loaders. One program per C file,
//! one Rust module per program:
//!
//! - [`loss`]: `src/loss.bpf.c`, a tc (clsact/tcx) classifier that injects
//!   random and bursty (Gilbert-Elliott) loss, duplication and corruption on
//!   one interface and direction; loaded with [`LossInjector::attach`].
//! - [`objects`]: the compiled objects, embedded from `ebpf/obj/` (committed;
//!   rebuilt by `ebpf/build.sh`, verified by `ebpf/build.sh --check`), so the
//!   workspace builds without clang.
//! - `netns` (private): the small amount of network-namespace plumbing the
//!   loaders need to detach from the namespace they attached in.
//!
//! Attaching needs `CAP_BPF` + `CAP_NET_ADMIN`; interface names are resolved in
//! the calling thread's network namespace, so to attach inside a namespace call
//! the loader from a thread that entered it (e.g. `metalcast_fabric`'s
//! `Host::run_in`, or simply `Host::set_loss`).

pub mod loss;
mod netns;

pub use loss::{Direction, GilbertElliott, LossConfig, LossError, LossInjector, LossStats, PPM};

/// The compiled eBPF objects, embedded 8-byte aligned as aya requires.
pub mod objects {
    /// `ebpf/obj/loss.bpf.o`, built from `ebpf/src/loss.bpf.c`.
    pub static LOSS: &[u8] = aya::include_bytes_aligned!("../obj/loss.bpf.o");
}
