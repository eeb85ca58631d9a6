//! # metalcast-fabric
//!
//! Real network fabrics on one machine, for tests, benchmarks and demos. A
//! [`Fabric`] is built by [`Fabric::builder`] and consists of:
//!
//! - a **switch**: a Linux bridge in its own network namespace with IGMP/MLD
//!   snooping (the bridge is the querier) and optional VLAN filtering
//!   ([`Switch`]), plus optional **tap** devices for QEMU guests ([`Tap`]);
//! - **hosts**: `sender`, receivers `r0..rN`, and any extra hosts, each in its
//!   own namespace, joined to the bridge by a veth pair, with an IPv4 address
//!   from a /24 test subnet, a `239.0.0.0/8` multicast route, and an optional
//!   ULA IPv6 address ([`Host`]);
//! - per-link, per-direction **shaping** ([`Rate`], tbf) and **loss/dup/corrupt
//!   injection** ([`LossConfig`], an eBPF tc program from `metalcast-ebpf`).
//!
//! Code runs inside a namespace as a process ([`Host::command`]) or as a
//! closure on a thread that entered it ([`Host::spawn_in`], [`Host::run_in`]).
//! Names carry a per-fabric prefix so parallel tests never clash; dropping the
//! fabric (or a failed build) deletes exactly the namespaces it created.
//!
//! Modules: `fabric` (builder, fabric, hosts), `netns` ([`Netns`]), `error`
//! ([`FabricError`]), `cmd` (iproute2 invocations), `sys` (setns, sysctl,
//! capabilities). Tests start with [`skip_unless_root!`]. See
//! `docs/test-fabric.md`.

mod cmd;
mod error;
mod fabric;
mod netns;
mod sys;

pub mod qemu;

pub use error::FabricError;
pub use fabric::{Fabric, FabricBuilder, Flow, Host, Rate, Switch, Tap, delete_live_namespaces};
pub use metalcast_ebpf::{GilbertElliott, LossConfig, LossStats};
pub use netns::Netns;

/// Checks that this process can build fabrics: `CAP_SYS_ADMIN` and
/// `CAP_NET_ADMIN` (in practice: root) and iproute2's `ip`, `tc`, `bridge`.
pub fn privileged() -> Result<(), FabricError> {
    let not = |reason: String| FabricError::NotPrivileged { reason };
    let caps = sys::effective_caps().map_err(|e| not(format!("reading capabilities: {e}")))?;
    for (cap, name) in [(sys::CAP_SYS_ADMIN, "CAP_SYS_ADMIN"), (sys::CAP_NET_ADMIN, "CAP_NET_ADMIN")] {
        if caps & (1 << cap) == 0 {
            return Err(not(format!("needs {name} (run as root)")));
        }
    }
    for tool in ["ip", "tc", "bridge"] {
        let found = std::process::Command::new(tool).arg("-V").output().map(|o| o.status.success()).unwrap_or(false);
        if !found {
            return Err(not(format!("`{tool}` (iproute2) not found")));
        }
    }
    Ok(())
}

/// Like [`privileged`], and additionally `CAP_BPF` for loss injection.
pub fn bpf_capable() -> Result<(), FabricError> {
    privileged()?;
    let caps = sys::effective_caps()
        .map_err(|e| FabricError::NotPrivileged { reason: format!("reading capabilities: {e}") })?;
    if caps & (1 << sys::CAP_BPF) == 0 {
        return Err(FabricError::NotPrivileged { reason: "needs CAP_BPF for loss injection".into() });
    }
    Ok(())
}

/// True when `METALCAST_REQUIRE_PRIVILEGED=1`: CI sets it (as root, with
/// every prerequisite installed), turning a would-be skip into a failure.
pub fn require_privileged() -> bool {
    std::env::var("METALCAST_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// Returns early from a test (printing `SKIP <test>: <reason>` to stderr)
/// when this process cannot build fabrics; never a silent pass. With
/// `METALCAST_REQUIRE_PRIVILEGED=1` it fails the test instead.
///
/// `skip_unless_root!()` in a test returning `()`; `skip_unless_root!(Ok(()))`
/// to return that value instead; `skip_unless_root!(bpf)` / `(bpf, value)`
/// also requires `CAP_BPF`.
#[macro_export]
macro_rules! skip_unless_root {
    () => {
        $crate::skip_unless_root!(@check $crate::privileged(), ())
    };
    (bpf) => {
        $crate::skip_unless_root!(@check $crate::bpf_capable(), ())
    };
    (bpf, $ret:expr) => {
        $crate::skip_unless_root!(@check $crate::bpf_capable(), $ret)
    };
    (@check $check:expr, $ret:expr) => {
        if let Err(reason) = $check {
            fn __here() {}
            let name = ::std::any::type_name_of_val(&__here);
            let name = name.strip_suffix("::__here").unwrap_or(name);
            if $crate::require_privileged() {
                panic!("{name} cannot run ({reason}) but METALCAST_REQUIRE_PRIVILEGED is set");
            }
            eprintln!("SKIP {name}: {reason}");
            return $ret;
        }
    };
    ($ret:expr) => {
        $crate::skip_unless_root!(@check $crate::privileged(), $ret)
    };
}
