//! metalcast's benchmarks: each compares metalcast with the tool people use
//! today, side by side in one run, and reports ratios with the command that
//! produced them (see `perf/RESULTS.md`).
//!
//! - [`stats`]: repetitions, medians and spread;
//! - [`image_build`]: bundle build throughput versus `zstd -T1 | b3sum`;
//! - [`multicast`]: one image to N receivers, metalcast versus udpcast;
//! - [`kexec_boot`]: in a QEMU guest, kexec hand-over versus firmware reboot + PXE.

pub mod image_build;
pub mod kexec_boot;
pub mod multicast;
pub mod stats;
