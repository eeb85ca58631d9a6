//! Opening a bundle, reading stored chunks, and verifying it whole.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;

use crate::codec::decode_chunk;
use crate::error::{BundleError, Result};
use crate::format::{DATA_OFFSET, HEADER_LEN, Header, SignedManifest};
use crate::manifest::Manifest;
use crate::sign::PublicKey;

/// An open bundle file whose header and manifest have been checked for
/// structure (not yet for signature or chunk integrity).
#[derive(Debug)]
pub struct Bundle {
    path: PathBuf,
    file: File,
    /// The decoded header.
    pub header: Header,
    /// The exact manifest bytes (what the signature covers).
    pub manifest_bytes: Vec<u8>,
    /// The parsed, validated manifest.
    pub manifest: Manifest,
}

/// The outcome of a full verification.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Chunks checked (stored chunks; holes need no check).
    pub chunks_checked: usize,
    /// Uncompressed bytes covered, holes included.
    pub bytes_covered: u64,
    /// Every chunk that failed, each naming its index, part and reason.
    pub bad_chunks: Vec<BundleError>,
}

impl Bundle {
    /// Opens a bundle and checks its header and manifest.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| BundleError::io("opening", path, e))?;
        let len = file.metadata().map_err(|e| BundleError::io("reading metadata of", path, e))?.len();
        let mut hdr = vec![0u8; HEADER_LEN.min(len as usize)];
        file.read_exact_at(&mut hdr, 0).map_err(|e| BundleError::io("reading", path, e))?;
        let header = Header::decode(&hdr, len)?;
        let mut manifest_bytes = vec![0u8; header.manifest_len as usize];
        file.read_exact_at(&mut manifest_bytes, header.manifest_offset)
            .map_err(|e| BundleError::io("reading manifest of", path, e))?;
        let manifest = Manifest::from_json(&manifest_bytes)?;
        header.check_against(&manifest)?;
        Ok(Bundle { path: path.to_path_buf(), file, header, manifest_bytes, manifest })
    }

    /// The bundle's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The manifest with its signature, for handing to nodes out of band.
    pub fn signed_manifest(&self) -> SignedManifest {
        SignedManifest {
            manifest_bytes: self.manifest_bytes.clone(),
            manifest: self.manifest.clone(),
            signature: self.header.signature,
        }
    }

    /// Checks the signature against trusted keys.
    pub fn verify_signature(&self, trusted: &[PublicKey], allow_unsigned: bool) -> Result<()> {
        crate::sign::verify(&self.manifest_bytes, self.header.signature.as_ref(), trusted, allow_unsigned)
    }

    /// Reads the stored bytes of chunk `index` (unchecked) into `buf`.
    pub fn read_stored(&self, index: usize, buf: &mut Vec<u8>) -> Result<()> {
        let c = &self.manifest.chunks[index];
        let off = c.offset.ok_or_else(|| BundleError::invalid(format!("chunks[{index}]"), "is a hole"))?;
        buf.resize(c.stored as usize, 0);
        self.file
            .read_exact_at(buf, DATA_OFFSET + off)
            .map_err(|e| BundleError::io("reading chunk data of", &self.path, e))
    }

    /// Reads the whole data section range `[offset, offset+len)` (for the sender).
    pub fn read_data(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file
            .read_exact_at(buf, DATA_OFFSET + offset)
            .map_err(|e| BundleError::io("reading data of", &self.path, e))
    }

    /// Decodes and checks every stored chunk. Structural and I/O errors return
    /// `Err`; corrupt chunks are collected in the report so all are named.
    pub fn verify_chunks(&self, progress: &ProgressBar) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut dec =
            zstd::bulk::Decompressor::new().map_err(|e| BundleError::Tool { tool: "zstd", reason: e.to_string() })?;
        let (mut stored, mut out) = (Vec::new(), Vec::new());
        progress.set_length(self.manifest.total_size());
        for (i, c) in self.manifest.chunks.iter().enumerate() {
            if !c.is_hole() {
                self.read_stored(i, &mut stored)?;
                report.chunks_checked += 1;
                if let Err(e) = decode_chunk(&self.manifest, i, &stored, &mut dec, &mut out) {
                    report.bad_chunks.push(e);
                }
            }
            report.bytes_covered += u64::from(c.len);
            progress.inc(u64::from(c.len));
        }
        Ok(report)
    }

    /// Signs the bundle in place (the manifest is unchanged; only the
    /// signature block of the header is rewritten).
    pub fn sign_in_place(path: &Path, key: &crate::sign::SecretKey) -> Result<()> {
        let b = Bundle::open(path)?;
        let mut header = b.header.clone();
        header.signature = Some(key.sign(&b.manifest_bytes));
        drop(b);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| BundleError::io("opening for signing", path, e))?;
        f.write_all_at(&header.encode(), 0).map_err(|e| BundleError::io("writing header of", path, e))?;
        f.sync_all().map_err(|e| BundleError::io("syncing", path, e))
    }
}

/// Parses and fully checks a bundle held in memory (header, manifest, every
/// chunk), returning the number of stored chunks that verified. The fuzz
/// target drives the parsers through this.
pub fn check_in_memory(bytes: &[u8]) -> Result<usize> {
    let header = Header::decode(&bytes[..HEADER_LEN.min(bytes.len())], bytes.len() as u64)?;
    let start = header.manifest_offset as usize;
    let manifest = Manifest::from_json(&bytes[start..start + header.manifest_len as usize])?;
    header.check_against(&manifest)?;
    let mut dec =
        zstd::bulk::Decompressor::new().map_err(|e| BundleError::Tool { tool: "zstd", reason: e.to_string() })?;
    let mut out = Vec::new();
    let mut good = 0;
    for s in manifest.stored_chunks() {
        let at = (DATA_OFFSET + s.offset) as usize;
        if decode_chunk(&manifest, s.index, &bytes[at..at + s.stored as usize], &mut dec, &mut out).is_ok() {
            good += 1;
        }
    }
    Ok(good)
}
