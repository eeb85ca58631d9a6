//! The original comparison of issue 3, kept as a preset of [`crate::suite`]:
//! one image to N receivers, metalcast versus udpcast (Debian's
//! `udp-sender`/`udp-receiver`), alternating in one run, on the same fabric,
//! the same loss, the same bytes. udpcast's packet size follows the fabric
//! MTU up to its maximum (see [`crate::contenders::udpcast_blocksize`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::suite::{self, Loss, Report};

/// Benchmark parameters.
#[derive(Debug, Clone)]
pub struct Config {
    /// Receivers.
    pub receivers: usize,
    /// Image size in MiB.
    pub size_mib: usize,
    /// Loss per receiver link.
    pub losses: Vec<Loss>,
    /// Repetitions per contender and loss.
    pub reps: usize,
    /// metalcast's send rate cap, Mbit/s of UDP payload (0: none).
    pub rate_mbit: u64,
    /// Scratch directory for the image.
    pub scratch: PathBuf,
    /// Link MTU of the fabric (1500, or 9000 for jumbo frames).
    pub mtu: u32,
}

/// Runs the comparison.
pub fn run(cfg: &Config) -> anyhow::Result<Report> {
    suite::run(&suite::Config {
        contenders: vec!["udpcast".into(), "metalcast".into()],
        receivers: vec![cfg.receivers],
        losses: cfg.losses.clone(),
        sizes_mib: vec![cfg.size_mib],
        chunk_bytes: metalcast_image::manifest::DEFAULT_CHUNK_SIZE,
        link_mbit: vec![0],
        reps: cfg.reps,
        rate_mbit: cfg.rate_mbit,
        mtu: cfg.mtu,
        offloads: false,
        scratch: cfg.scratch.clone(),
        verify: false,
        timeout: Duration::from_secs(600),
    })
}
