//! The manifest: what a bundle contains, how it is chunked, and the hashes
//! that bind every byte of it. It is the unit that gets signed.

use serde::{Deserialize, Serialize};

use crate::error::{BundleError, Result};

/// Smallest allowed chunk size (64 KiB).
pub const MIN_CHUNK_SIZE: u32 = 64 * 1024;
/// Largest allowed chunk size (16 MiB): keeps a chunk a single RaptorQ source
/// block of well under the RFC 6330 limit of 56,403 symbols.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Default chunk size (1 MiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;
/// Domain separator of the root hash.
const ROOT_HASH_CONTEXT: &[u8] = b"metalcast root hash v1\0";

/// What a part is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartKind {
    /// A Linux kernel image (bzImage) to kexec.
    Kernel,
    /// An initramfs to hand to the kernel.
    Initrd,
    /// A root filesystem image (raw).
    Rootfs,
    /// A whole-disk image (raw) to write to the node's disk.
    Disk,
    /// A whole-disk image to boot under QEMU on the node (VM mode).
    VmDisk,
    /// The same kernel as the `kernel` part, uncompressed: its ELF
    /// (`vmlinux`), which a runtime with an ELF loader boots without the
    /// bzImage's self-decompression (format 1.1).
    KernelElf,
}

impl PartKind {
    /// Kinds that are disk-like: written sparse, holes detected.
    pub fn is_disk_like(self) -> bool {
        matches!(self, PartKind::Rootfs | PartKind::Disk | PartKind::VmDisk)
    }

    /// The kebab-case name used in manifests and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            PartKind::Kernel => "kernel",
            PartKind::Initrd => "initrd",
            PartKind::Rootfs => "rootfs",
            PartKind::Disk => "disk",
            PartKind::VmDisk => "vm-disk",
            PartKind::KernelElf => "kernel-elf",
        }
    }
}

/// One named payload in the bundle (a kernel, an initrd, a disk image...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// Unique name, also the file name on extraction (`[A-Za-z0-9._-]`, 1-64 chars).
    pub name: String,
    /// What the part is for.
    pub kind: PartKind,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Index of the part's first chunk in [`Manifest::chunks`].
    pub first_chunk: usize,
    /// Number of chunks: `ceil(size / chunk_size)`.
    pub chunk_count: usize,
}

/// One fixed-size slice of a part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    /// Uncompressed length: `chunk_size`, except the last chunk of a part.
    pub len: u32,
    /// Where the stored bytes start, relative to the data section. Absent for a hole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Number of stored bytes (0 for a hole).
    #[serde(default)]
    pub stored: u32,
    /// True when stored uncompressed (zstd would not have made it smaller).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub raw: bool,
    /// BLAKE3 of the uncompressed bytes, hex. Absent for a hole (all zeros).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl Chunk {
    /// A chunk that is all zeros and is not stored.
    pub fn is_hole(&self) -> bool {
        self.offset.is_none()
    }
}

/// How to boot the bundle by kexec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSpec {
    /// Name of the kernel part.
    pub kernel: String,
    /// Names of the initrd parts, concatenated in this order.
    #[serde(default)]
    pub initrds: Vec<String>,
    /// Kernel command line.
    #[serde(default)]
    pub cmdline: String,
    /// Name of the `kernel-elf` part: the same kernel as an uncompressed ELF,
    /// for runtimes that load ELF kernels (format 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_elf: Option<String>,
}

/// How to boot the bundle as a VM on the node (for OSes that cannot be kexec'd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Name of the `vm-disk` part.
    pub disk: String,
    /// Extra arguments for `qemu-system-x86_64` (the disk is added by the runtime).
    #[serde(default)]
    pub qemu_args: Vec<String>,
}

/// The signed description of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Human name of the image.
    pub name: String,
    /// Build time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// Chunk size in bytes (power of two, 64 KiB..16 MiB).
    pub chunk_size: u32,
    /// zstd level used (informational).
    pub zstd_level: i32,
    /// Total bytes in the data section (sum of `stored` over all chunks).
    pub data_len: u64,
    /// BLAKE3 over the chunk table, hex; see [`Manifest::compute_root_hash`].
    pub root_hash: String,
    /// kexec boot description, if the bundle is bootable by kexec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootSpec>,
    /// VM-mode description, if the bundle boots as a VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmSpec>,
    /// The parts, in chunk order.
    pub parts: Vec<Part>,
    /// The chunk table, parts' chunks back to back.
    pub chunks: Vec<Chunk>,
}

/// A stored (non-hole) chunk as the transport sees it: one source block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredChunk {
    /// Global chunk index in [`Manifest::chunks`].
    pub index: usize,
    /// Offset of the stored bytes in the data section.
    pub offset: u64,
    /// Number of stored bytes.
    pub stored: u32,
}

fn hash_field(field: impl Fn() -> String, hex_hash: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut out)
        .map_err(|e| BundleError::invalid(field(), format!("not a 32-byte hex hash: {e}")))?;
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Manifest {
    /// Parses manifest bytes and checks them with [`Manifest::validate`].
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(BundleError::ManifestParse)?;
        m.validate()?;
        Ok(m)
    }

    /// Serialises the manifest (compact JSON); these bytes are what gets signed.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serialisation cannot fail: plain data")
    }

    /// The BLAKE3 hash of a chunk (decoded from hex), or `None` for a hole.
    pub fn chunk_hash(&self, index: usize) -> Result<Option<[u8; 32]>> {
        match &self.chunks[index].hash {
            None => Ok(None),
            Some(h) => hash_field(|| format!("chunks[{index}].hash"), h).map(Some),
        }
    }

    /// Computes the root hash: BLAKE3 over a context string, the chunk count and,
    /// per chunk, its length, a hole flag and its 32-byte hash (zeros for a hole).
    pub fn compute_root_hash(&self) -> Result<[u8; 32]> {
        let mut h = blake3::Hasher::new();
        h.update(ROOT_HASH_CONTEXT);
        h.update(&(self.chunks.len() as u64).to_le_bytes());
        for i in 0..self.chunks.len() {
            h.update(&self.chunks[i].len.to_le_bytes());
            match self.chunk_hash(i)? {
                None => h.update(&[0u8]).update(&[0u8; 32]),
                Some(x) => h.update(&[1u8]).update(&x),
            };
        }
        Ok(*h.finalize().as_bytes())
    }

    /// The part a chunk belongs to and the chunk's byte offset inside it.
    pub fn locate(&self, index: usize) -> Option<(&Part, u64)> {
        self.parts
            .iter()
            .find(|p| index >= p.first_chunk && index < p.first_chunk + p.chunk_count)
            .map(|p| (p, (index - p.first_chunk) as u64 * u64::from(self.chunk_size)))
    }

    /// Looks a part up by name.
    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// Stored chunks in order: these are the transport's source blocks.
    pub fn stored_chunks(&self) -> impl Iterator<Item = StoredChunk> + '_ {
        self.chunks
            .iter()
            .enumerate()
            .filter_map(|(index, c)| c.offset.map(|offset| StoredChunk { index, offset, stored: c.stored }))
    }

    /// Total uncompressed size of all parts.
    pub fn total_size(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum()
    }

    /// Checks every structural promise the manifest makes, so that code using
    /// it can index and allocate without further checks: chunk size bounds,
    /// parts tiling the chunk table, chunk lengths, stored offsets packed back
    /// to back, `data_len`, names, boot/VM references and the root hash.
    pub fn validate(&self) -> Result<()> {
        let cs = self.chunk_size;
        if !cs.is_power_of_two() || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&cs) {
            return Err(BundleError::invalid(
                "chunk_size",
                format!("{cs} is not a power of two between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}"),
            ));
        }
        if self.parts.is_empty() {
            return Err(BundleError::invalid("parts", "a bundle needs at least one part"));
        }
        let mut next_chunk = 0usize;
        for (i, p) in self.parts.iter().enumerate() {
            if !valid_name(&p.name) {
                return Err(BundleError::invalid(
                    format!("parts[{i}].name"),
                    format!("{:?} is not 1-64 characters of [A-Za-z0-9._-] not starting with '.'", p.name),
                ));
            }
            if self.parts[..i].iter().any(|q| q.name == p.name) {
                return Err(BundleError::invalid(
                    format!("parts[{i}].name"),
                    format!("duplicate part name {:?}", p.name),
                ));
            }
            if p.first_chunk != next_chunk {
                return Err(BundleError::invalid(
                    format!("parts[{i}].first_chunk"),
                    format!("is {}, expected {next_chunk} (parts must tile the chunk table)", p.first_chunk),
                ));
            }
            let expected = p.size.div_ceil(u64::from(cs));
            if p.chunk_count as u64 != expected {
                return Err(BundleError::invalid(
                    format!("parts[{i}].chunk_count"),
                    format!("is {}, but size {} needs {expected} chunks of {cs}", p.chunk_count, p.size),
                ));
            }
            next_chunk =
                next_chunk.checked_add(p.chunk_count).filter(|&n| n <= self.chunks.len()).ok_or_else(|| {
                    BundleError::invalid(
                        format!("parts[{i}].chunk_count"),
                        format!("runs past the chunk table ({} chunks)", self.chunks.len()),
                    )
                })?;
            for j in 0..p.chunk_count {
                let idx = p.first_chunk + j;
                let want = (p.size - j as u64 * u64::from(cs)).min(u64::from(cs));
                if u64::from(self.chunks[idx].len) != want {
                    return Err(BundleError::invalid(
                        format!("chunks[{idx}].len"),
                        format!("is {}, expected {want} for part {:?}", self.chunks[idx].len, p.name),
                    ));
                }
            }
        }
        if next_chunk != self.chunks.len() {
            return Err(BundleError::invalid(
                "chunks",
                format!("table has {} chunks but the parts cover {next_chunk}", self.chunks.len()),
            ));
        }
        let mut running = 0u64;
        for (i, c) in self.chunks.iter().enumerate() {
            match (c.offset, &c.hash) {
                (None, None) => {
                    if c.stored != 0 || c.raw {
                        return Err(BundleError::invalid(format!("chunks[{i}]"), "a hole stores no bytes"));
                    }
                }
                (Some(off), Some(h)) => {
                    hash_field(|| format!("chunks[{i}].hash"), h)?;
                    if off != running {
                        return Err(BundleError::invalid(
                            format!("chunks[{i}].offset"),
                            format!("is {off}, expected {running} (stored chunks are packed in order)"),
                        ));
                    }
                    if c.stored == 0 {
                        return Err(BundleError::invalid(format!("chunks[{i}].stored"), "a stored chunk has no bytes"));
                    }
                    if c.raw && c.stored != c.len {
                        return Err(BundleError::invalid(
                            format!("chunks[{i}].stored"),
                            format!("raw chunk stores {} bytes but is {} long", c.stored, c.len),
                        ));
                    }
                    if !c.raw && u64::from(c.stored) > zstd_bound(c.len) {
                        return Err(BundleError::invalid(
                            format!("chunks[{i}].stored"),
                            format!("{} bytes is more than zstd can produce for {} input bytes", c.stored, c.len),
                        ));
                    }
                    running += u64::from(c.stored);
                }
                _ => {
                    return Err(BundleError::invalid(
                        format!("chunks[{i}]"),
                        "a chunk has both offset and hash (stored) or neither (hole)",
                    ));
                }
            }
        }
        if running != self.data_len {
            return Err(BundleError::invalid(
                "data_len",
                format!("is {}, but the chunk table stores {running} bytes", self.data_len),
            ));
        }
        if let Some(b) = &self.boot {
            self.check_ref("boot.kernel", &b.kernel, PartKind::Kernel)?;
            for (i, n) in b.initrds.iter().enumerate() {
                self.check_ref(&format!("boot.initrds[{i}]"), n, PartKind::Initrd)?;
            }
            if let Some(e) = &b.kernel_elf {
                self.check_ref("boot.kernel_elf", e, PartKind::KernelElf)?;
            }
        }
        if let Some(v) = &self.vm {
            self.check_ref("vm.disk", &v.disk, PartKind::VmDisk)?;
        }
        let root = hex::encode(self.compute_root_hash()?);
        if root != self.root_hash {
            return Err(BundleError::RootHash { expected: self.root_hash.clone(), actual: root });
        }
        Ok(())
    }

    /// The oldest format minor version that can carry this manifest: 1 when
    /// it uses a 1.1 feature (a `kernel-elf` part), else 0, so bundles without
    /// one stay readable by 1.0 readers.
    pub fn format_minor(&self) -> u16 {
        let elf = self.parts.iter().any(|p| p.kind == PartKind::KernelElf)
            || self.boot.as_ref().is_some_and(|b| b.kernel_elf.is_some());
        u16::from(elf)
    }

    fn check_ref(&self, field: &str, name: &str, kind: PartKind) -> Result<()> {
        match self.part(name) {
            Some(p) if p.kind == kind => Ok(()),
            Some(p) => Err(BundleError::invalid(
                field,
                format!("part {name:?} is a {}, not a {}", p.kind.as_str(), kind.as_str()),
            )),
            None => Err(BundleError::invalid(field, format!("no part named {name:?}"))),
        }
    }
}

/// Upper bound of zstd's output for `len` input bytes (ZSTD_COMPRESSBOUND).
pub fn zstd_bound(len: u32) -> u64 {
    let len = u64::from(len);
    let margin = if len < (128 << 10) { ((128u64 << 10) - len) >> 11 } else { 0 };
    len + (len >> 8) + margin
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let h = hex::encode(blake3::hash(b"x").as_bytes());
        let mut m = Manifest {
            name: "t".into(),
            created_unix: 0,
            chunk_size: MIN_CHUNK_SIZE,
            zstd_level: 3,
            data_len: 30,
            root_hash: String::new(),
            boot: Some(BootSpec {
                kernel: "kernel".into(),
                initrds: vec![],
                cmdline: "quiet".into(),
                kernel_elf: None,
            }),
            vm: None,
            parts: vec![Part {
                name: "kernel".into(),
                kind: PartKind::Kernel,
                size: 70_000,
                first_chunk: 0,
                chunk_count: 2,
            }],
            chunks: vec![
                Chunk { len: MIN_CHUNK_SIZE, offset: None, stored: 0, raw: false, hash: None },
                Chunk { len: 70_000 - MIN_CHUNK_SIZE, offset: Some(0), stored: 30, raw: false, hash: Some(h) },
            ],
        };
        m.root_hash = hex::encode(m.compute_root_hash().unwrap());
        m
    }

    #[test]
    fn sample_validates_and_round_trips() {
        let m = sample();
        m.validate().unwrap();
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
        assert_eq!(m.stored_chunks().count(), 1);
        assert_eq!(m.locate(1).unwrap().1, u64::from(MIN_CHUNK_SIZE));
    }

    #[test]
    fn lies_are_named() {
        let mut m = sample();
        m.data_len = 31;
        assert!(m.validate().unwrap_err().to_string().contains("data_len"));

        let mut m = sample();
        m.chunks[1].offset = Some(5);
        assert!(m.validate().unwrap_err().to_string().contains("chunks[1].offset"));

        let mut m = sample();
        m.parts[0].size = 1 << 30;
        assert!(m.validate().unwrap_err().to_string().contains("parts[0].chunk_count"));

        let mut m = sample();
        m.chunks[1].hash = Some(hex::encode([7u8; 32]));
        assert!(matches!(m.validate().unwrap_err(), BundleError::RootHash { .. }));

        let mut m = sample();
        m.parts[0].name = "../etc".into();
        assert!(m.validate().unwrap_err().to_string().contains("parts[0].name"));

        let mut m = sample();
        m.boot.as_mut().unwrap().kernel = "nope".into();
        assert!(m.validate().unwrap_err().to_string().contains("boot.kernel"));

        let mut m = sample();
        assert_eq!(m.format_minor(), 0);
        m.boot.as_mut().unwrap().kernel_elf = Some("kernel".into());
        assert_eq!(m.format_minor(), 1);
        let e = m.validate().unwrap_err().to_string();
        assert!(e.contains("boot.kernel_elf") && e.contains("not a kernel-elf"), "{e}");

        let mut m = sample();
        m.chunks[1].stored = 70_000;
        assert!(m.validate().unwrap_err().to_string().contains("chunks[1].stored"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v["surprise"] = 1.into();
        let err = Manifest::from_json(v.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("surprise"), "{err}");
    }
}
