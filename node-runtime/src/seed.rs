//! Seed mode: a node that received a complete image keeps it in its stored
//! form (the manifest and every stored, compressed chunk, exactly what the
//! session carried) and can serve it as the sender of a new session
//! (`seed` instruction). What is kept is a copy in a memfd, separate from the
//! deployment's targets: a VM writes to its disk, and a disk target is not
//! read back for sending. Memory cost: the image's stored size.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use metalcast_image::{BundleError, Manifest};
use metalcast_runtime_api::Seed;
use metalcast_transport::{ChunkSink, Sender, SenderConfig, SenderSummary, StoredImage, TransportError};

use crate::sys;

/// An image held for seeding: its manifest and stored chunks.
#[derive(Debug)]
pub struct Held {
    manifest: Manifest,
    /// The data section: each stored chunk at its manifest offset (sparse until written).
    data: File,
    have: Vec<bool>,
    missing: usize,
}

impl Held {
    /// An empty holder for `m`'s stored chunks (a memfd as large as the data
    /// section; memory is used only as chunks arrive).
    pub fn new(m: &Manifest) -> std::io::Result<Held> {
        let data = sys::memfd("metalcast-seed")?;
        data.set_len(m.data_len)?;
        let have: Vec<bool> = m.chunks.iter().map(|c| c.offset.is_none()).collect();
        let missing = have.iter().filter(|h| !**h).count();
        Ok(Held { manifest: m.clone(), data, have, missing })
    }

    /// Whether every stored chunk is held.
    pub fn complete(&self) -> bool {
        self.missing == 0
    }

    /// The held image's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Stored bytes held (the memory this costs).
    pub fn stored_bytes(&self) -> u64 {
        self.manifest
            .chunks
            .iter()
            .zip(&self.have)
            .filter(|(c, h)| **h && c.offset.is_some())
            .map(|(c, _)| u64::from(c.stored))
            .sum()
    }

    fn keep(&mut self, index: usize, stored: &[u8]) -> Result<(), BundleError> {
        let c = self
            .manifest
            .chunks
            .get(index)
            .ok_or_else(|| BundleError::invalid(format!("chunks[{index}]"), "no such chunk"))?;
        let off = c.offset.ok_or_else(|| BundleError::invalid(format!("chunks[{index}]"), "is a hole"))?;
        if stored.len() != c.stored as usize {
            return Err(BundleError::invalid(
                format!("chunks[{index}]"),
                format!("{} stored bytes, manifest says {}", stored.len(), c.stored),
            ));
        }
        self.data.write_all_at(stored, off).map_err(|e| BundleError::io("writing memfd", "metalcast-seed", e))?;
        if !std::mem::replace(&mut self.have[index], true) {
            self.missing -= 1;
        }
        Ok(())
    }
}

impl StoredImage for Held {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn read_data(&self, offset: u64, buf: &mut [u8]) -> Result<(), BundleError> {
        self.data.read_exact_at(buf, offset).map_err(|e| BundleError::io("reading memfd", "metalcast-seed", e))
    }
}

/// A sink that writes to `sink` and keeps every stored chunk in `held`.
#[derive(Debug)]
pub struct Keeping<'a, S: ChunkSink> {
    /// Where the image is written (the deployment's targets).
    pub sink: &'a mut S,
    /// Where its stored chunks are kept.
    pub held: &'a mut Held,
}

impl<S: ChunkSink> ChunkSink for Keeping<'_, S> {
    fn write_chunk(&mut self, m: &Manifest, index: usize, data: &[u8]) -> Result<(), BundleError> {
        self.sink.write_chunk(m, index, data)
    }

    fn stored_chunk(&mut self, m: &Manifest, index: usize, stored: &[u8]) -> Result<(), BundleError> {
        self.sink.stored_chunk(m, index, stored)?;
        self.held.keep(index, stored)
    }
}

/// Why a seed instruction was refused before anything was sent.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The node holds no image, or another one.
    #[error("this node does not hold image {want} ({have})")]
    NotHeld {
        /// The root hash asked for.
        want: String,
        /// What the node holds.
        have: String,
    },
    /// A field is unusable.
    #[error("{0}")]
    Invalid(String),
    /// The session failed.
    #[error("{0}")]
    Transport(#[from] TransportError),
}

/// Runs the seed session `s` from `held` (the image the node holds, if any),
/// sending from interface address `local`, to its end.
pub fn serve(held: Option<&Held>, s: &Seed, local: Ipv4Addr) -> Result<SenderSummary, SeedError> {
    let want = &s.session.root_hash;
    let h = match held {
        Some(h) if h.complete() && h.manifest.root_hash == *want => h,
        other => {
            let have = match other {
                Some(h) => format!("it holds {} ({})", &h.manifest.root_hash, h.manifest.name),
                None => "it holds none".into(),
            };
            return Err(SeedError::NotHeld { want: want.clone(), have });
        }
    };
    if s.rate_bytes_per_sec == 0 || s.expected_receivers == 0 {
        return Err(SeedError::Invalid("rate_bytes_per_sec and expected_receivers must be positive".into()));
    }
    let defaults = SenderConfig::default();
    let wait = Duration::from_secs(s.join_timeout_secs.max(1));
    let cfg = SenderConfig {
        local,
        rate: Some(s.rate_bytes_per_sec),
        start_rate: defaults.start_rate.min(s.rate_bytes_per_sec),
        expected_receivers: s.expected_receivers,
        join_timeout: wait,
        receiver_timeout: wait,
        ..defaults
    };
    Ok(Sender::new(&s.session, h, cfg)?.run(&mut |_| {})?)
}
