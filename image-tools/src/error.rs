//! The one error type of the bundle library.

use std::path::PathBuf;

/// Everything that can go wrong reading, writing or checking a bundle.
///
/// Each variant names what is wrong precisely enough for an operator to act on
/// (which chunk, which field, which file).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// An I/O operation on a named file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What we were doing ("reading", "creating", ...).
        what: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the bundle (or manifest) magic.
    #[error("not a metalcast {kind}: bad magic")]
    BadMagic {
        /// "bundle" or "manifest".
        kind: &'static str,
    },
    /// The file is a bundle of a format version this reader does not know.
    #[error(
        "unsupported format version {major}.{minor}: this reader understands {supported_major}.0 to {supported_major}.{supported_minor}"
    )]
    UnsupportedVersion {
        /// Major version found.
        major: u16,
        /// Minor version found.
        minor: u16,
        /// The only major version this reader understands.
        supported_major: u16,
        /// The newest minor version this reader understands.
        supported_minor: u16,
    },
    /// The file ends before a structure it must contain.
    #[error("truncated {what}: need {needed} bytes at offset {offset}, file has {actual}")]
    Truncated {
        /// The structure that is cut short.
        what: String,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// How long the file really is.
        actual: u64,
    },
    /// The manifest is not valid JSON of the expected shape.
    #[error("manifest does not parse: {0}")]
    ManifestParse(#[source] serde_json::Error),
    /// The manifest parses but contradicts itself or the file (a lie about sizes or offsets).
    #[error("manifest field {field} is inconsistent: {reason}")]
    ManifestInvalid {
        /// Path of the offending field, e.g. `chunks[12].offset`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The bundle carries no signature but one was required.
    #[error("bundle is not signed (use a trusted key to sign it, or allow unsigned bundles explicitly)")]
    Unsigned,
    /// The signature does not verify, or was made by an untrusted key.
    #[error("signature check failed: {0}")]
    BadSignature(String),
    /// A chunk's data does not decompress or does not hash to the manifest's value.
    #[error("chunk {index} (part {part}, offset {part_offset}) is corrupt: {reason}")]
    CorruptChunk {
        /// Global chunk index.
        index: usize,
        /// Name of the part the chunk belongs to.
        part: String,
        /// Byte offset of the chunk inside its part.
        part_offset: u64,
        /// Why it is rejected.
        reason: String,
    },
    /// The root hash over all chunk hashes does not match the manifest.
    #[error("root hash mismatch: manifest says {expected}, chunk table gives {actual}")]
    RootHash {
        /// Value in the manifest.
        expected: String,
        /// Value computed from the chunk table.
        actual: String,
    },
    /// A key file is malformed.
    #[error("key file {path}: {reason}")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A build input is unusable.
    #[error("input {what}: {reason}")]
    BadInput {
        /// Which input (part name, spec file...).
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// An external tool (qemu-img) failed.
    #[error("{tool} failed: {reason}")]
    Tool {
        /// The tool run.
        tool: &'static str,
        /// Its stderr or the spawn error.
        reason: String,
    },
}

impl BundleError {
    /// Wraps an I/O error with what we were doing and on which file.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BundleError::Io { what, path: path.into(), source }
    }

    /// Shorthand for [`BundleError::ManifestInvalid`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        BundleError::ManifestInvalid { field: field.into(), reason: reason.into() }
    }

    /// True for errors that mean "this bundle cannot be trusted or read as a
    /// bundle": malformed, unsupported version, corrupt, unsigned or untrusted
    /// (as opposed to I/O or usage problems). The CLI maps these to exit code 3.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            BundleError::Unsigned
                | BundleError::BadSignature(_)
                | BundleError::CorruptChunk { .. }
                | BundleError::RootHash { .. }
                | BundleError::ManifestInvalid { .. }
                | BundleError::Truncated { .. }
                | BundleError::BadMagic { .. }
                | BundleError::UnsupportedVersion { .. }
                | BundleError::ManifestParse(_)
        )
    }
}

/// Result alias for the bundle library.
pub type Result<T, E = BundleError> = std::result::Result<T, E>;
