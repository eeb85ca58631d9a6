//! metalcast image bundles: what the fabric transmits and a node verifies
//! before it hands control to it.
//!
//! A bundle holds parts (kernel, initrds, root filesystem, whole disk, VM
//! disk) cut into fixed-size chunks, each compressed on its own with zstd so
//! it can be written the moment it arrives; all-zero chunks are not stored.
//! Every chunk has a BLAKE3 hash, a root hash binds the chunk table, and the
//! manifest carrying all of it is signed with ed25519. The format is specified
//! in `docs/image-format.md`.
//!
//! Parts of this crate:
//! - [`manifest`]: the manifest and its validation (every lie about sizes and
//!   offsets is caught here, before anything is allocated or read);
//! - [`format`]: the container layout and the standalone signed manifest;
//! - [`codec`]: chunk encoding and checked decoding;
//! - [`sign`]: keys and signatures;
//! - [`builder`]: building bundles from files or a directory;
//! - [`reader`]: opening and verifying bundles;
//! - [`extract`]: writing parts out, sparse and atomic;
//! - [`initramfs`]: the node runtime's bootstrap initramfs (newc cpio + zstd).
//! - [`vmlinux`]: the uncompressed kernel ELF inside a bzImage (for `--kexec-elf`).

pub mod builder;
pub mod codec;
pub mod error;
pub mod extract;
pub mod format;
pub mod initramfs;
pub mod manifest;
pub mod reader;
pub mod sign;
mod sys;
pub mod vmlinux;

pub use builder::{BuildSpec, BuildSummary, PartInput, build, spec_from_dir, spec_from_inputs};
pub use codec::{check_or_decode_chunk, decode_chunk};
pub use error::{BundleError, Result};
pub use extract::{PartFiles, extract};
pub use format::SignedManifest;
pub use manifest::{BootSpec, Chunk, Manifest, Part, PartKind, StoredChunk, VmSpec};
pub use reader::{Bundle, VerifyReport};
pub use sign::{PublicKey, SecretKey, Signature};
