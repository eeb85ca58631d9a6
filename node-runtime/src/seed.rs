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
    /// Why keeping a chunk failed (then the image is not held; the deployment goes on).
    failed: Option<String>,
}

/// Whether keeping `m` for seeding fits in `available` bytes of memory
/// (`MemAvailable`), next to a memory target's parts (`memory_target`): the
/// copy may take at most half of what the deployment leaves free. `Err`
/// says why not; the deployment then goes on without keeping a copy.
pub fn fits(m: &Manifest, memory_target: bool, available: u64) -> Result<(), String> {
    let parts = if memory_target { m.total_size() } else { 0 };
    let left = available.saturating_sub(parts);
    if m.data_len > left / 2 {
        return Err(format!(
            "the {} MiB stored image is more than half of the {} MiB of memory the deployment leaves available",
            m.data_len >> 20,
            left >> 20
        ));
    }
    Ok(())
}

impl Held {
    /// An empty holder for `m`'s stored chunks (a memfd as large as the data
    /// section; memory is used only as chunks arrive).
    pub fn new(m: &Manifest) -> std::io::Result<Held> {
        let data = sys::memfd("metalcast-seed")?;
        data.set_len(m.data_len)?;
        let have: Vec<bool> = m.chunks.iter().map(|c| c.offset.is_none()).collect();
        let missing = have.iter().filter(|h| !**h).count();
        Ok(Held { manifest: m.clone(), data, have, missing, failed: None })
    }

    /// Whether every stored chunk is held.
    pub fn complete(&self) -> bool {
        self.missing == 0 && self.failed.is_none()
    }

    /// Why a chunk could not be kept, if one could not.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
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

/// A sink that writes to `sink` and keeps every stored chunk in `held`. A
/// chunk that cannot be kept (memory) only makes `held` incomplete: the
/// deployment itself never fails for the sake of seeding.
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
        if self.held.failed.is_none()
            && let Err(e) = self.held.keep(index, stored)
        {
            self.held.failed = Some(e.to_string());
        }
        Ok(())
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
    let mut last = std::time::Instant::now();
    let progress = &mut |p: &metalcast_transport::SenderProgress| {
        if last.elapsed() >= Duration::from_secs(2) {
            last = std::time::Instant::now();
            let done = p.receivers.iter().filter(|r| r.state == "done").count();
            println!(
                "metalcast: seeding {}: first pass {}/{} blocks, {done}/{} receivers done, {:.1} MiB sent",
                h.manifest.name,
                p.pass_blocks,
                p.total_blocks,
                s.expected_receivers,
                p.bytes_sent as f64 / f64::from(1 << 20)
            );
        }
    };
    Ok(Sender::new(&s.session, h, cfg)?.run(progress)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the chunks written through it.
    #[derive(Debug, Default)]
    struct Count(usize);

    impl ChunkSink for Count {
        fn write_chunk(&mut self, _: &Manifest, _: usize, _: &[u8]) -> Result<(), BundleError> {
            self.0 += 1;
            Ok(())
        }
    }

    fn manifest(dir: &std::path::Path) -> metalcast_image::Bundle {
        let data: Vec<u8> = (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(dir.join("vm.img"), data).unwrap();
        let spec = metalcast_image::spec_from_inputs(
            "t",
            None,
            vec![],
            String::new(),
            None,
            None,
            Some((dir.join("vm.img"), vec![])),
        )
        .unwrap();
        metalcast_image::build(&spec, &dir.join("b.mcb"), None, &indicatif::ProgressBar::hidden()).unwrap();
        metalcast_image::Bundle::open(&dir.join("b.mcb")).unwrap()
    }

    #[test]
    fn keeps_a_copy_only_where_half_the_free_memory_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let b = manifest(dir.path());
        let (m, stored, parts) = (&b.manifest, b.manifest.data_len, b.manifest.total_size());
        assert!(fits(m, false, 2 * stored).is_ok());
        assert!(fits(m, false, 2 * stored - 1).unwrap_err().contains("more than half"));
        // A memory target's parts come off first.
        assert!(fits(m, true, 2 * stored).is_err());
        assert!(fits(m, true, parts + 2 * stored).is_ok());
    }

    #[test]
    fn keeps_exactly_the_stored_chunks_and_a_bad_one_only_spoils_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let b = manifest(dir.path());
        let m = &b.manifest;
        let mut held = Held::new(m).unwrap();
        let mut sink = Count::default();
        let mut stored = Vec::new();
        let stored_idx: Vec<usize> = (0..m.chunks.len()).filter(|i| !m.chunks[*i].is_hole()).collect();
        assert!(stored_idx.len() >= 2);
        for &i in &stored_idx {
            b.read_stored(i, &mut stored).unwrap();
            assert!(!held.complete());
            let mut k = Keeping { sink: &mut sink, held: &mut held };
            k.write_chunk(m, i, b"decoded data").unwrap();
            k.stored_chunk(m, i, &stored).unwrap();
        }
        assert!(held.complete());
        assert_eq!(sink.0, stored_idx.len(), "every write passed through");
        assert_eq!(held.stored_bytes(), stored_idx.iter().map(|i| u64::from(m.chunks[*i].stored)).sum::<u64>());
        // What the sender reads is the bundle's data section, chunk for chunk.
        let mut got = Vec::new();
        for &i in &stored_idx {
            let c = &m.chunks[i];
            b.read_stored(i, &mut stored).unwrap();
            got.resize(c.stored as usize, 0);
            StoredImage::read_data(&held, c.offset.unwrap(), &mut got).unwrap();
            assert_eq!(got, stored, "chunk {i}");
        }
        // A chunk of the wrong size is not kept: the copy is spoilt, the write itself goes on.
        let mut held = Held::new(m).unwrap();
        let mut k = Keeping { sink: &mut sink, held: &mut held };
        k.stored_chunk(m, stored_idx[0], b"short").unwrap();
        assert!(!held.complete() && held.failure().is_some_and(|f| f.contains("stored bytes")), "{:?}", held.failure());
    }
}
