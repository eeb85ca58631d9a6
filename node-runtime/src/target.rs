//! Where a deployment's parts go: memfds (memory target; kernel and initrds
//! always, for kexec) or a block device written with `O_DIRECT` (disk
//! target), and the read-back verification of what was written.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use metalcast_image::{BundleError, Manifest, PartKind};
use metalcast_transport::ChunkSink;

use crate::sys;

/// Alignment of `O_DIRECT` buffers (covers every logical sector size in use).
const DIRECT_ALIGN: usize = 4096;

/// Target failures.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Creating a memfd or opening the device failed.
    #[error("{what} {path}: {source}")]
    Open {
        /// What we were doing.
        what: &'static str,
        /// The device or memfd name.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The device is smaller than the part.
    #[error("{device} holds {have} bytes, the part needs {need}")]
    TooSmall {
        /// The device.
        device: PathBuf,
        /// Its size.
        have: u64,
        /// The part's size.
        need: u64,
    },
    /// The bundle has no part the target can take.
    #[error("{0}")]
    Unsuitable(String),
    /// Flushing failed.
    #[error("flushing {device}: {source}")]
    Flush {
        /// The device.
        device: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Read-back verification found a difference.
    #[error("verification failed: {0}")]
    Verify(String),
}

/// A sector-aligned buffer for `O_DIRECT` (over-allocated, used from an aligned offset).
#[derive(Debug, Default)]
struct AlignedBuf {
    raw: Vec<u8>,
}

impl AlignedBuf {
    fn get(&mut self, len: usize) -> &mut [u8] {
        if self.raw.len() < len + DIRECT_ALIGN {
            self.raw = vec![0u8; len + DIRECT_ALIGN];
        }
        let off = self.raw.as_ptr().align_offset(DIRECT_ALIGN);
        &mut self.raw[off..off + len]
    }
}

#[derive(Debug)]
enum Dest {
    /// Part lives in a memfd at this base offset (initrds are concatenated into one).
    Mem { fd: usize, base: u64 },
    /// Part goes to the block device.
    Disk,
}

/// The device of a disk target.
#[derive(Debug)]
struct Device {
    path: PathBuf,
    file: File,
    sector: usize,
    buf: AlignedBuf,
}

/// Where each part of one deployment goes.
#[derive(Debug)]
pub struct Targets {
    dests: Vec<Dest>,
    memfds: Vec<(String, File)>,
    device: Option<Device>,
    kernel: Option<usize>,
    kernel_elf: Option<usize>,
    initrd: Option<usize>,
    /// Which chunks were written (each only after its hash matched the manifest).
    written: Vec<bool>,
}

/// What [`Targets::verify`] checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verified {
    /// Bytes re-read from the device (`O_DIRECT`) and hashed again.
    pub reread: u64,
    /// Bytes in memfds: hash-checked by the receiver before they were
    /// written, so not re-read (nothing between the two can change them).
    pub on_arrival: u64,
}

impl Verified {
    /// All bytes checked.
    pub fn total(&self) -> u64 {
        self.reread + self.on_arrival
    }
}

fn memfd(name: &str, size: u64) -> Result<File, TargetError> {
    let err = |source| TargetError::Open { what: "creating memfd", path: name.into(), source };
    let f = sys::memfd(name).map_err(err)?;
    f.set_len(size).map_err(err)?;
    Ok(f)
}

impl Targets {
    /// Plans the targets for `m`: with `device`, the first disk-like part goes
    /// there (it must fit) and every other part to memory.
    pub fn new(m: &Manifest, device: Option<&Path>) -> Result<Self, TargetError> {
        let boot = m.boot.as_ref();
        let disk_part =
            match device {
                Some(_) => Some(m.parts.iter().position(|p| p.kind.is_disk_like()).ok_or_else(|| {
                    TargetError::Unsuitable("disk target, but the bundle has no disk-like part".into())
                })?),
                None => None,
            };
        let device = match device {
            Some(path) => {
                let open_err = |source| TargetError::Open { what: "opening", path: path.into(), source };
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
                    .open(path)
                    .map_err(open_err)?;
                let (have, sector) = match sys::block_size_bytes(&file) {
                    Ok(n) => (n, sys::logical_sector_size(&file).map_err(open_err)?),
                    Err(_) => (file.metadata().map_err(open_err)?.len(), 512),
                };
                let need = m.parts[disk_part.expect("set with device")].size.div_ceil(sector as u64) * sector as u64;
                if have < need {
                    return Err(TargetError::TooSmall { device: path.into(), have, need });
                }
                Some(Device { path: path.into(), file, sector, buf: AlignedBuf::default() })
            }
            None => None,
        };
        let mut t = Targets {
            dests: Vec::new(),
            memfds: Vec::new(),
            device,
            kernel: None,
            kernel_elf: None,
            initrd: None,
            written: vec![false; m.chunks.len()],
        };
        let initrd_total: u64 =
            boot.map(|b| b.initrds.iter().filter_map(|n| m.part(n)).map(|p| p.size).sum()).unwrap_or(0);
        for (i, p) in m.parts.iter().enumerate() {
            let is_initrd = boot.is_some_and(|b| b.initrds.contains(&p.name));
            let d = if Some(i) == disk_part {
                Dest::Disk
            } else if is_initrd {
                let fd = match t.initrd {
                    Some(fd) => fd,
                    None => {
                        t.memfds.push(("initrd".into(), memfd("metalcast-initrd", initrd_total)?));
                        t.initrd = Some(t.memfds.len() - 1);
                        t.memfds.len() - 1
                    }
                };
                // Initrds concatenate in the boot spec's order, not the part order.
                let order = boot.map(|b| b.initrds.iter().position(|n| *n == p.name).unwrap_or(0)).unwrap_or(0);
                let base: u64 = boot
                    .map(|b| b.initrds[..order].iter().filter_map(|n| m.part(n)).map(|p| p.size).sum())
                    .unwrap_or(0);
                Dest::Mem { fd, base }
            } else {
                t.memfds.push((p.name.clone(), memfd(&format!("metalcast-{}", p.name), p.size)?));
                let fd = t.memfds.len() - 1;
                if boot.is_some_and(|b| b.kernel == p.name) && p.kind == PartKind::Kernel {
                    t.kernel = Some(fd);
                }
                if boot.is_some_and(|b| b.kernel_elf.as_ref() == Some(&p.name)) && p.kind == PartKind::KernelElf {
                    t.kernel_elf = Some(fd);
                }
                Dest::Mem { fd, base: 0 }
            };
            t.dests.push(d);
        }
        Ok(t)
    }

    /// The kernel memfd, if the bundle is bootable.
    pub fn kernel(&self) -> Option<&File> {
        self.kernel.map(|i| &self.memfds[i].1)
    }

    /// The kernel's uncompressed ELF memfd, if the bundle carries one.
    pub fn kernel_elf(&self) -> Option<&File> {
        self.kernel_elf.map(|i| &self.memfds[i].1)
    }

    /// The concatenated initrds, if any.
    pub fn initrd(&self) -> Option<&File> {
        self.initrd.map(|i| &self.memfds[i].1)
    }

    /// The memfd holding part `name` (not for initrds, which are concatenated).
    pub fn part_memfd(&self, name: &str) -> Option<&File> {
        self.memfds.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }

    /// Flushes the device to stable storage (no-op for memory).
    pub fn flush(&self) -> Result<(), TargetError> {
        if let Some(d) = &self.device {
            d.file.sync_all().map_err(|source| TargetError::Flush { device: d.path.clone(), source })?;
        }
        Ok(())
    }

    fn locate(&self, m: &Manifest, index: usize) -> Result<(usize, u64), BundleError> {
        let (part, off) =
            m.locate(index).ok_or_else(|| BundleError::invalid(format!("chunks[{index}]"), "outside every part"))?;
        let pi = m.parts.iter().position(|p| std::ptr::eq(p, part)).expect("part of this manifest");
        Ok((pi, off))
    }

    /// Checks that every stored chunk was written, and re-reads those on
    /// the device (`O_DIRECT`, bypassing the page cache) to check their
    /// BLAKE3 against the manifest again. Chunks in memfds are not re-read:
    /// the receiver checked each one's hash before writing it, and memory
    /// cannot change under us the way a device can (a memory target's
    /// verification is therefore cheap, which keeps it off the hand-over's
    /// critical path).
    pub fn verify(&mut self, m: &Manifest) -> Result<Verified, TargetError> {
        let mut v = Verified::default();
        for (i, c) in m.chunks.iter().enumerate() {
            let Some(want) = m.chunk_hash(i).map_err(|e| TargetError::Verify(e.to_string()))? else { continue };
            if !self.written.get(i).copied().unwrap_or(false) {
                return Err(TargetError::Verify(format!("chunk {i} was never written")));
            }
            let (pi, off) = self.locate(m, i).map_err(|e| TargetError::Verify(e.to_string()))?;
            let len = c.len as usize;
            match self.dests[pi] {
                Dest::Mem { .. } => v.on_arrival += len as u64,
                Dest::Disk => {
                    let d = self.device.as_mut().expect("disk dest implies a device");
                    let padded = len.div_ceil(d.sector) * d.sector;
                    let buf = d.buf.get(padded);
                    d.file.read_exact_at(buf, off).map_err(|e| {
                        TargetError::Verify(format!("reading chunk {i} from {}: {e}", d.path.display()))
                    })?;
                    if blake3::hash(&buf[..len]).as_bytes() != &want {
                        return Err(TargetError::Verify(format!("chunk {i} differs from the manifest after writing")));
                    }
                    v.reread += len as u64;
                }
            }
        }
        Ok(v)
    }
}

impl ChunkSink for Targets {
    fn write_chunk(&mut self, m: &Manifest, index: usize, data: &[u8]) -> Result<(), BundleError> {
        let (pi, off) = self.locate(m, index)?;
        let r = self.write_at(pi, off, data);
        if r.is_ok()
            && let Some(w) = self.written.get_mut(index)
        {
            *w = true;
        }
        r
    }
}

impl Targets {
    fn write_at(&mut self, pi: usize, off: u64, data: &[u8]) -> Result<(), BundleError> {
        match self.dests[pi] {
            Dest::Mem { fd, base } => {
                let (name, f) = &self.memfds[fd];
                f.write_all_at(data, base + off).map_err(|e| BundleError::io("writing memfd", name, e))
            }
            Dest::Disk => {
                let d = self.device.as_mut().expect("disk dest implies a device");
                // Chunk sizes are powers of two >= 64 KiB, so only a part's last
                // chunk can end off a sector: pad it with zeros (the device is
                // at least the part size rounded up to a sector, checked at open).
                let padded = data.len().div_ceil(d.sector) * d.sector;
                let buf = d.buf.get(padded);
                buf[..data.len()].copy_from_slice(data);
                buf[data.len()..].fill(0);
                d.file.write_all_at(buf, off).map_err(|e| BundleError::io("writing (O_DIRECT)", &d.path, e))
            }
        }
    }
}
