//! metalcast's benchmarks: each compares metalcast with the tool people use
//! today, side by side in one run, and reports ratios with the command that
//! produced them (see `perf/RESULTS.md`).
//!
//! - [`stats`]: repetitions, medians and spread;
//! - [`image_build`]: bundle build throughput versus `zstd -T1 | b3sum`;
//! - [`multicast`]: one image to N receivers, metalcast versus udpcast;
//! - [`rx_path`]: receive CPU per GB and max packets/s, AF_XDP versus `recvmmsg`.

pub mod image_build;
pub mod multicast;
pub mod rx_path;
pub mod stats;
