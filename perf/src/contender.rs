//! The contender contract: what every way of putting an image onto N nodes
//! implements ([`Contender`]), what one run of it is given ([`Env`], with
//! the [`Image`]) and what it hands back ([`Outcome`]), and the checks they
//! share. [`crate::suite`] drives contenders through this contract,
//! [`crate::contenders`] lists them, and [`crate::blaster`] is one of them;
//! this module imports none of those.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use metalcast_fabric::Fabric;

/// Name of the raw blaster, the fabric's physical limit.
pub const BLASTER: &str = "blaster";

/// One way of delivering the image.
pub trait Contender: std::fmt::Debug {
    /// Name in tables and plots.
    fn name(&self) -> &'static str;
    /// Whether it moves data over UDP (loss then spares non-UDP packets) or TCP.
    fn udp(&self) -> bool;
    /// Whether receivers end with the raw image (metalcast decompresses) rather than the bundle file.
    fn delivers_raw(&self) -> bool {
        false
    }
    /// `Err(reason)` when it cannot run here (tool not installed, not root).
    fn available(&self) -> Result<(), String>;
    /// One run on `env`'s fabric.
    fn run(&self, env: &Env<'_>) -> anyhow::Result<Outcome>;
}

/// A generated image: the raw data and the bundle built from it.
#[derive(Debug)]
pub struct Image {
    /// Directory holding the bundle (served by nginx, seeded by aria2c).
    pub dir: PathBuf,
    /// The bundle (what udpcast, HTTP, BitTorrent and the blaster deliver).
    pub bundle: PathBuf,
    /// Bundle size in bytes.
    pub bundle_bytes: u64,
    /// BLAKE3 of the bundle file.
    pub bundle_hash: blake3::Hash,
    /// Raw image size (what metalcast delivers, decompressed).
    pub raw_bytes: u64,
    /// BLAKE3 of the raw image.
    pub raw_hash: blake3::Hash,
}

impl Image {
    /// Writes `mib` MiB of incompressible data and builds a bundle of it in `dir`.
    pub fn make(dir: &Path, mib: usize, chunk_size: u32) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let raw = dir.join("image.raw");
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ mib as u64;
        let mut buf = vec![0u8; 1 << 20];
        let mut hasher = blake3::Hasher::new();
        let mut f = std::io::BufWriter::new(std::fs::File::create(&raw)?);
        for _ in 0..mib {
            for w in buf.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.copy_from_slice(&x.to_le_bytes());
            }
            hasher.update(&buf);
            f.write_all(&buf)?;
        }
        f.flush()?;
        drop(f);
        let mut spec =
            metalcast_image::spec_from_inputs("bench", None, vec![], String::new(), None, Some(raw.clone()), None)?;
        spec.chunk_size = chunk_size;
        let bundle = dir.join("image.mcb");
        metalcast_image::build(&spec, &bundle, None, &indicatif::ProgressBar::hidden())?;
        std::fs::remove_file(&raw)?;
        Ok(Image {
            dir: dir.to_path_buf(),
            bundle_bytes: std::fs::metadata(&bundle)?.len(),
            bundle_hash: hash_file(&bundle)?,
            bundle,
            raw_bytes: mib as u64 * (1 << 20),
            raw_hash: hasher.finalize(),
        })
    }
}

/// BLAKE3 of a file.
pub fn hash_file(path: &Path) -> anyhow::Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(h.finalize())
}

/// Everything a contender needs for one run.
#[derive(Debug)]
pub struct Env<'a> {
    /// The fabric (receivers already shaped and lossy as the scenario says).
    pub fabric: &'a Fabric,
    /// The image.
    pub image: &'a Image,
    /// Scratch directory for this run only (removed afterwards).
    pub work: &'a Path,
    /// A port range of 10 ports starting here, unused by any earlier run.
    pub port: u16,
    /// Fabric MTU.
    pub mtu: u32,
    /// Emulated link rate, Mbit/s (0: none).
    pub link_mbit: u64,
    /// metalcast's send-rate cap, Mbit/s (0: none).
    pub rate_mbit: u64,
    /// Receivers keep their data for a byte-for-byte check.
    pub verify: bool,
    /// Give up after this long.
    pub timeout: Duration,
}

/// What one run of a contender produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Seconds from starting the sending side to the last receiver done.
    pub secs: f64,
    /// CPU seconds of the sending side.
    pub sender_cpu: f64,
    /// CPU seconds of all receivers together.
    pub receiver_cpu: f64,
    /// Bytes each receiver ended up with.
    pub delivered: Vec<u64>,
    /// With `verify`: whether every receiver's data is byte-identical to the image.
    pub identical: Option<bool>,
}

/// Checks every receiver's file against `want`; `delivered` gets their sizes.
pub(crate) fn check_files(files: &[PathBuf], want: blake3::Hash) -> anyhow::Result<(Vec<u64>, bool)> {
    let mut sizes = Vec::new();
    let mut same = true;
    for f in files {
        sizes.push(std::fs::metadata(f).with_context(|| format!("{} missing", f.display()))?.len());
        same &= hash_file(f)? == want;
    }
    Ok((sizes, same))
}
