//! metalcast's benchmarks: each compares metalcast with the tool people use
//! today, side by side in one run, and reports ratios with the command that
//! produced them (see `perf/README.md` and `perf/RESULTS.md`).
//!
//! - [`stats`]: repetitions, medians and spread;
//! - [`image_build`]: bundle build throughput versus `zstd -T1 | b3sum`;
//! - [`rx_path`]: receive CPU per GB and max packets/s, AF_XDP versus `recvmmsg`;
//! - [`suite`]: one image to N receivers on a namespace fabric, every
//!   [`contenders`] entry (metalcast, udpcast, HTTP, BitTorrent, and the
//!   [`blaster`] as the fabric's limit) over scenarios of N, loss, image size
//!   and link rate; [`report`] writes the table, JSON and plots;
//! - [`results`]: the plots of `perf/plots/`, drawn from the tables
//!   `perf/RESULTS.md` quotes (`metalcast-bench plot-results`);
//! - [`contender`]: the contract between them (a contender, the image and
//!   environment of one run, its outcome), which `suite`, `contenders` and
//!   `blaster` import and which imports none of them;
//! - [`multicast`]: the original metalcast-vs-udpcast preset of the suite;
//! - [`feedback`]: report packets per receiver at the sender, plans off and on;
//! - [`outliers`]: one lossy or late receiver among N, the healthy ones'
//!   completion time against a run without it;
//! - [`sim`]: a discrete-event simulation of 10 to 10,000 receivers, and
//!   [`validate`]: its CPU constants measured here and its predictions checked
//!   against real fabric runs;
//! - [`market`]: the marketplace under load: auction settlement of 10,000
//!   bids on 1,000 nodes, buy-now latency and throughput, SQLite or PostgreSQL;
//! - `sys`: `wait4` and thread CPU time (the only unsafe code).
//! - [`kexec_boot`]: in a QEMU guest, kexec hand-over versus firmware reboot + PXE;

pub mod blaster;
pub mod contender;
pub mod contenders;
pub mod feedback;
pub mod image_build;
pub mod interrupt;
pub mod kexec_boot;
pub mod market;
pub mod multicast;
pub mod netboot;
pub mod outliers;
pub mod recursion;
pub mod report;
pub mod results;
pub mod rx_path;
pub mod sim;
pub mod stats;
pub mod suite;
pub mod sys;
pub mod tftp_client;
pub mod validate;
