//! The on-disk container: a fixed 128-byte header, the data section at 4096,
//! and the manifest as a trailer. Also the standalone signed-manifest file that
//! nodes receive out of band.
//!
//! ```text
//! 0     magic "MCBUNDL\0"
//! 8     u16 format major (1), u16 format minor (0)      little endian
//! 12    u32 flags (0; reserved)
//! 16    u64 manifest offset  (= 4096 + data_len)
//! 24    u64 manifest length  (<= 64 MiB)
//! 32    [32] ed25519 public key of the signer (zeros: unsigned)
//! 64    [64] ed25519 signature (zeros: unsigned)
//! 128   zeros up to 4096
//! 4096  data section: stored chunks back to back
//! ...   manifest JSON, then end of file
//! ```

use crate::error::{BundleError, Result};
use crate::manifest::Manifest;
use crate::sign::Signature;

/// Magic at offset 0 of a bundle.
pub const BUNDLE_MAGIC: &[u8; 8] = b"MCBUNDL\0";
/// Magic at offset 0 of a standalone signed manifest.
pub const MANIFEST_MAGIC: &[u8; 8] = b"MCMANIF\0";
/// The format major version this code reads and writes.
pub const FORMAT_MAJOR: u16 = 1;
/// The newest format minor version this code reads. Writers record the
/// oldest minor that can carry the manifest ([`Manifest::format_minor`]):
/// 1.1 added the `kernel-elf` part.
///
/// [`Manifest::format_minor`]: crate::manifest::Manifest::format_minor
pub const FORMAT_MINOR: u16 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 128;
/// Where the data section starts (page aligned for O_DIRECT readers).
pub const DATA_OFFSET: u64 = 4096;
/// Largest manifest accepted (a 16 TiB image at 1 MiB chunks is about 2.5 MB).
pub const MAX_MANIFEST_LEN: u64 = 64 << 20;

/// The decoded fixed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format minor version found.
    pub minor: u16,
    /// Where the manifest starts.
    pub manifest_offset: u64,
    /// Manifest length in bytes.
    pub manifest_len: u64,
    /// The signature block, if the bundle is signed.
    pub signature: Option<Signature>,
}

fn check_version(major: u16, minor: u16) -> Result<()> {
    if major != FORMAT_MAJOR || minor > FORMAT_MINOR {
        return Err(BundleError::UnsupportedVersion {
            major,
            minor,
            supported_major: FORMAT_MAJOR,
            supported_minor: FORMAT_MINOR,
        });
    }
    Ok(())
}

fn sig_block(sig: Option<&Signature>) -> [u8; 96] {
    let mut out = [0u8; 96];
    if let Some(s) = sig {
        out[..32].copy_from_slice(&s.public_key);
        out[32..].copy_from_slice(&s.signature);
    }
    out
}

fn parse_sig_block(b: &[u8]) -> Option<Signature> {
    if b.iter().all(|&x| x == 0) {
        return None;
    }
    Some(Signature {
        public_key: b[..32].try_into().expect("slice of 32"),
        signature: b[32..96].try_into().expect("slice of 64"),
    })
}

impl Header {
    /// Encodes the header (128 bytes).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(BUNDLE_MAGIC);
        h[8..10].copy_from_slice(&FORMAT_MAJOR.to_le_bytes());
        h[10..12].copy_from_slice(&self.minor.to_le_bytes());
        h[16..24].copy_from_slice(&self.manifest_offset.to_le_bytes());
        h[24..32].copy_from_slice(&self.manifest_len.to_le_bytes());
        h[32..128].copy_from_slice(&sig_block(self.signature.as_ref()));
        h
    }

    /// Decodes and sanity-checks a header against the file length.
    pub fn decode(b: &[u8], file_len: u64) -> Result<Self> {
        if b.len() < HEADER_LEN {
            return Err(BundleError::Truncated {
                what: "bundle header".into(),
                offset: 0,
                needed: HEADER_LEN as u64,
                actual: file_len,
            });
        }
        if &b[..8] != BUNDLE_MAGIC {
            return Err(BundleError::BadMagic { kind: "bundle" });
        }
        let major = u16::from_le_bytes([b[8], b[9]]);
        let minor = u16::from_le_bytes([b[10], b[11]]);
        check_version(major, minor)?;
        let flags = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
        if flags != 0 {
            return Err(BundleError::invalid("header.flags", format!("unknown flags {flags:#x}")));
        }
        let manifest_offset = u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
        let manifest_len = u64::from_le_bytes(b[24..32].try_into().expect("8 bytes"));
        if manifest_len == 0 || manifest_len > MAX_MANIFEST_LEN {
            return Err(BundleError::invalid(
                "header.manifest_len",
                format!("{manifest_len} is outside 1..={MAX_MANIFEST_LEN}"),
            ));
        }
        if manifest_offset < DATA_OFFSET {
            return Err(BundleError::invalid(
                "header.manifest_offset",
                format!("{manifest_offset} points into the header"),
            ));
        }
        let end = manifest_offset
            .checked_add(manifest_len)
            .ok_or_else(|| BundleError::invalid("header.manifest_offset", "offset + length overflows"))?;
        if end > file_len {
            return Err(BundleError::Truncated {
                what: "manifest".into(),
                offset: manifest_offset,
                needed: manifest_len,
                actual: file_len,
            });
        }
        if end < file_len {
            return Err(BundleError::invalid(
                "header.manifest_offset",
                format!("{} unexpected bytes after the manifest", file_len - end),
            ));
        }
        Ok(Header { minor, manifest_offset, manifest_len, signature: parse_sig_block(&b[32..128]) })
    }

    /// Checks the header against a parsed manifest: the data section must be
    /// exactly as long as the manifest says.
    pub fn check_against(&self, m: &Manifest) -> Result<()> {
        if self.manifest_offset != DATA_OFFSET + m.data_len {
            return Err(BundleError::invalid(
                "data_len",
                format!(
                    "manifest says {} data bytes, the file holds {}",
                    m.data_len,
                    self.manifest_offset - DATA_OFFSET
                ),
            ));
        }
        Ok(())
    }
}

/// A manifest with its signature, as handed to nodes out of band (the
/// control plane serves it; `metalcast-image export-manifest` writes it).
///
/// ```text
/// 0  magic "MCMANIF\0", u16 major, u16 minor, u32 flags (0), u64 manifest length
/// 24 [32] public key, [64] signature (zeros: unsigned)
/// 120 manifest JSON
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedManifest {
    /// The exact manifest bytes that were signed.
    pub manifest_bytes: Vec<u8>,
    /// The parsed and validated manifest.
    pub manifest: Manifest,
    /// The signature, if any.
    pub signature: Option<Signature>,
}

const SM_HEADER: usize = 24 + 96;

impl SignedManifest {
    /// Serialises to the standalone format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SM_HEADER + self.manifest_bytes.len());
        out.extend_from_slice(MANIFEST_MAGIC);
        out.extend_from_slice(&FORMAT_MAJOR.to_le_bytes());
        out.extend_from_slice(&self.manifest.format_minor().to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(self.manifest_bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&sig_block(self.signature.as_ref()));
        out.extend_from_slice(&self.manifest_bytes);
        out
    }

    /// Parses the standalone format and validates the manifest (not the signature).
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        if b.len() < SM_HEADER {
            return Err(BundleError::Truncated {
                what: "manifest header".into(),
                offset: 0,
                needed: SM_HEADER as u64,
                actual: b.len() as u64,
            });
        }
        if &b[..8] != MANIFEST_MAGIC {
            return Err(BundleError::BadMagic { kind: "manifest" });
        }
        check_version(u16::from_le_bytes([b[8], b[9]]), u16::from_le_bytes([b[10], b[11]]))?;
        let len = u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
        if len > MAX_MANIFEST_LEN || (SM_HEADER as u64 + len) != b.len() as u64 {
            return Err(BundleError::invalid(
                "manifest length",
                format!("header says {len} bytes, file has {}", b.len() - SM_HEADER),
            ));
        }
        let manifest_bytes = b[SM_HEADER..].to_vec();
        let manifest = Manifest::from_json(&manifest_bytes)?;
        Ok(SignedManifest { manifest_bytes, manifest, signature: parse_sig_block(&b[24..SM_HEADER]) })
    }

    /// Checks the signature against trusted keys (or accepts an unsigned
    /// manifest when `allow_unsigned`).
    pub fn verify_signature(&self, trusted: &[crate::sign::PublicKey], allow_unsigned: bool) -> Result<()> {
        crate::sign::verify(&self.manifest_bytes, self.signature.as_ref(), trusted, allow_unsigned)
    }
}
