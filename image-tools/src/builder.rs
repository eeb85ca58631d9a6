//! Building a bundle from files: chunking, hole detection, parallel zstd +
//! BLAKE3, and an atomic write (temporary file renamed only when complete).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use indicatif::ProgressBar;
use serde::Deserialize;

use crate::codec::{EncodedChunk, encode_chunk, is_zero};
use crate::error::{BundleError, Result};
use crate::format::{DATA_OFFSET, Header};
use crate::manifest::{BootSpec, Chunk, DEFAULT_CHUNK_SIZE, Manifest, Part, PartKind, VmSpec};
use crate::sign::SecretKey;
use crate::sys;

/// One input file and what it becomes in the bundle.
#[derive(Debug, Clone)]
pub struct PartInput {
    /// Part name in the bundle.
    pub name: String,
    /// Part kind.
    pub kind: PartKind,
    /// Source file (raw, or qcow2 for disk-like parts).
    pub path: PathBuf,
}

/// Everything a build needs.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// Image name recorded in the manifest.
    pub name: String,
    /// Inputs, in bundle order.
    pub parts: Vec<PartInput>,
    /// kexec boot description.
    pub boot: Option<BootSpec>,
    /// VM-mode description.
    pub vm: Option<VmSpec>,
    /// Chunk size in bytes.
    pub chunk_size: u32,
    /// zstd level (1-19).
    pub zstd_level: i32,
    /// Compression threads (1 = inline, no threads).
    pub threads: usize,
    /// Also carry the kernel's uncompressed ELF, decompressed from the
    /// bzImage (a `kernel-elf` part, format 1.1): see [`crate::vmlinux`].
    pub kexec_elf: bool,
}

impl BuildSpec {
    /// A spec with defaults: 1 MiB chunks, zstd level 3, one thread per core.
    pub fn new(name: impl Into<String>) -> Self {
        BuildSpec {
            name: name.into(),
            parts: Vec::new(),
            boot: None,
            vm: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            zstd_level: 3,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kexec_elf: false,
        }
    }
}

/// `bundle.toml`, the spec file of `metalcast-image build --from-dir`.
/// Paths are relative to the directory holding it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirSpec {
    /// Image name (default: the directory's name).
    pub name: Option<String>,
    /// Kernel image to kexec.
    pub kernel: Option<PathBuf>,
    /// Initrds, in order.
    #[serde(default)]
    pub initrds: Vec<PathBuf>,
    /// Kernel command line.
    #[serde(default)]
    pub cmdline: String,
    /// Root filesystem image (raw or qcow2).
    pub rootfs: Option<PathBuf>,
    /// Whole-disk image (raw or qcow2).
    pub disk: Option<PathBuf>,
    /// VM-mode payload.
    pub vm: Option<DirVmSpec>,
    /// Also carry the kernel's uncompressed ELF for fast kexec (`--kexec-elf`).
    #[serde(default)]
    pub kexec_elf: bool,
}

/// The `[vm]` table of `bundle.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirVmSpec {
    /// Disk image to boot under QEMU (raw or qcow2).
    pub disk: PathBuf,
    /// Extra qemu arguments.
    #[serde(default)]
    pub qemu_args: Vec<String>,
}

/// Assembles parts, boot and VM descriptions from the common inputs, naming
/// parts `kernel`, `initrd`/`initrd1`..., `rootfs`, `disk`, `vm-disk`.
pub fn spec_from_inputs(
    name: &str,
    kernel: Option<PathBuf>,
    initrds: Vec<PathBuf>,
    cmdline: String,
    rootfs: Option<PathBuf>,
    disk: Option<PathBuf>,
    vm: Option<(PathBuf, Vec<String>)>,
) -> Result<BuildSpec> {
    let mut spec = BuildSpec::new(name);
    if kernel.is_none() && (!initrds.is_empty() || !cmdline.is_empty()) {
        return Err(BundleError::BadInput {
            what: "kernel".into(),
            reason: "initrds or a command line were given without a kernel".into(),
        });
    }
    let mut initrd_names = Vec::new();
    if let Some(k) = kernel {
        spec.parts.push(PartInput { name: "kernel".into(), kind: PartKind::Kernel, path: k });
        for (i, p) in initrds.into_iter().enumerate() {
            let n = if i == 0 { "initrd".to_string() } else { format!("initrd{i}") };
            initrd_names.push(n.clone());
            spec.parts.push(PartInput { name: n, kind: PartKind::Initrd, path: p });
        }
        spec.boot = Some(BootSpec { kernel: "kernel".into(), initrds: initrd_names, cmdline, kernel_elf: None });
    }
    if let Some(p) = rootfs {
        spec.parts.push(PartInput { name: "rootfs".into(), kind: PartKind::Rootfs, path: p });
    }
    if let Some(p) = disk {
        spec.parts.push(PartInput { name: "disk".into(), kind: PartKind::Disk, path: p });
    }
    if let Some((p, qemu_args)) = vm {
        spec.parts.push(PartInput { name: "vm-disk".into(), kind: PartKind::VmDisk, path: p });
        spec.vm = Some(VmSpec { disk: "vm-disk".into(), qemu_args });
    }
    if spec.parts.is_empty() {
        return Err(BundleError::BadInput {
            what: "parts".into(),
            reason: "nothing to bundle: give a kernel, a rootfs, a disk or a VM disk".into(),
        });
    }
    Ok(spec)
}

/// Reads `<dir>/bundle.toml` into a build spec.
pub fn spec_from_dir(dir: &Path) -> Result<BuildSpec> {
    let path = dir.join("bundle.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| BundleError::io("reading", &path, e))?;
    let d: DirSpec = toml::from_str(&text)
        .map_err(|e| BundleError::BadInput { what: path.display().to_string(), reason: e.to_string() })?;
    let name = d.name.clone().unwrap_or_else(|| {
        dir.canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "image".into())
    });
    let j = |p: PathBuf| dir.join(p);
    let kexec_elf = d.kexec_elf;
    let mut spec = spec_from_inputs(
        &name,
        d.kernel.map(j),
        d.initrds.into_iter().map(j).collect(),
        d.cmdline,
        d.rootfs.map(j),
        d.disk.map(j),
        d.vm.map(|v| (j(v.disk), v.qemu_args)),
    )?;
    spec.kexec_elf = kexec_elf;
    Ok(spec)
}

/// What a finished build reports.
#[derive(Debug, Clone)]
pub struct BuildSummary {
    /// Where the bundle was written.
    pub path: PathBuf,
    /// Uncompressed bytes of all parts.
    pub input_bytes: u64,
    /// Size of the bundle file.
    pub bundle_bytes: u64,
    /// Chunks in total.
    pub chunks: usize,
    /// Chunks that were all zero and not stored.
    pub holes: usize,
    /// The root hash (hex).
    pub root_hash: String,
}

/// A part whose source is ready to read (qcow2 already converted).
struct OpenPart {
    input: PartInput,
    file: File,
    size: u64,
    // Keeps a converted temporary raw file alive until the build ends.
    _converted: Option<tempfile::TempPath>,
}

const QCOW_MAGIC: &[u8; 4] = b"QFI\xfb";
/// Name of the part `--kexec-elf` adds.
const KERNEL_ELF_PART: &str = "kernel-elf";

/// The kernel's ELF, decompressed from the bzImage `kernel` into a scratch file.
fn kernel_elf_part(kernel: &OpenPart, scratch: &Path) -> Result<OpenPart> {
    let path = &kernel.input.path;
    let bz = std::fs::read(path).map_err(|e| BundleError::io("reading", path, e))?;
    let elf = crate::vmlinux::extract(&bz).map_err(|e| match e {
        BundleError::BadInput { reason, .. } => {
            BundleError::BadInput { what: format!("--kexec-elf: kernel {}", path.display()), reason }
        }
        e => e,
    })?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".metalcast-vmlinux-")
        .tempfile_in(scratch)
        .map_err(|e| BundleError::io("creating scratch file in", scratch, e))?;
    tmp.write_all(&elf).map_err(|e| BundleError::io("writing", tmp.path(), e))?;
    let (file, tmp) = tmp.into_parts();
    let input = PartInput { name: KERNEL_ELF_PART.into(), kind: PartKind::KernelElf, path: tmp.to_path_buf() };
    Ok(OpenPart { input, file, size: elf.len() as u64, _converted: Some(tmp) })
}

fn open_part(p: &PartInput, scratch: &Path) -> Result<OpenPart> {
    let file = File::open(&p.path).map_err(|e| BundleError::io("opening", &p.path, e))?;
    let mut magic = [0u8; 4];
    let is_qcow = file.read_exact_at(&mut magic, 0).is_ok() && &magic == QCOW_MAGIC;
    if is_qcow {
        if !p.kind.is_disk_like() {
            return Err(BundleError::BadInput {
                what: p.name.clone(),
                reason: "qcow2 input is only accepted for rootfs, disk and vm-disk parts".into(),
            });
        }
        let tmp = tempfile::Builder::new()
            .prefix(".metalcast-qcow2-")
            .tempfile_in(scratch)
            .map_err(|e| BundleError::io("creating scratch file in", scratch, e))?
            .into_temp_path();
        let out = std::process::Command::new("qemu-img")
            .args(["convert", "-q", "-f", "qcow2", "-O", "raw"])
            .arg(&p.path)
            .arg(&tmp)
            .output()
            .map_err(|e| BundleError::Tool { tool: "qemu-img", reason: format!("cannot run: {e}") })?;
        if !out.status.success() {
            return Err(BundleError::Tool {
                tool: "qemu-img",
                reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let file = File::open(&tmp).map_err(|e| BundleError::io("opening", &*tmp, e))?;
        let size = file.metadata().map_err(|e| BundleError::io("reading metadata of", &*tmp, e))?.len();
        return Ok(OpenPart { input: p.clone(), file, size, _converted: Some(tmp) });
    }
    let meta = file.metadata().map_err(|e| BundleError::io("reading metadata of", &p.path, e))?;
    if !meta.is_file() {
        return Err(BundleError::BadInput {
            what: p.name.clone(),
            reason: format!("{} is not a regular file", p.path.display()),
        });
    }
    Ok(OpenPart { input: p.clone(), file, size: meta.len(), _converted: None })
}

/// Work item: chunk index and its raw bytes, or `None` for a hole.
type Job = (usize, Option<Vec<u8>>);
type Done = (usize, Option<std::io::Result<EncodedChunk>>);

/// Builds a bundle at `out`, optionally signed. The file appears only when
/// complete; on any error nothing is left behind.
pub fn build(spec: &BuildSpec, out: &Path, key: Option<&SecretKey>, progress: &ProgressBar) -> Result<BuildSummary> {
    let cs = spec.chunk_size;
    if !cs.is_power_of_two() || !(crate::manifest::MIN_CHUNK_SIZE..=crate::manifest::MAX_CHUNK_SIZE).contains(&cs) {
        return Err(BundleError::BadInput {
            what: "chunk size".into(),
            reason: format!("{cs} is not a power of two in 64 KiB..16 MiB"),
        });
    }
    if !(1..=19).contains(&spec.zstd_level) {
        return Err(BundleError::BadInput {
            what: "zstd level".into(),
            reason: format!("{} is not in 1..=19", spec.zstd_level),
        });
    }
    let out_dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut opened: Vec<OpenPart> = spec.parts.iter().map(|p| open_part(p, &out_dir)).collect::<Result<_>>()?;
    let mut boot = spec.boot.clone();
    if spec.kexec_elf {
        let b = boot.as_mut().ok_or_else(|| BundleError::BadInput {
            what: "--kexec-elf".into(),
            reason: "the bundle has no kernel to take the ELF from".into(),
        })?;
        let k = opened.iter().position(|o| o.input.name == b.kernel).expect("the boot spec names a part");
        opened.insert(k + 1, kernel_elf_part(&opened[k], &out_dir)?);
        b.kernel_elf = Some(KERNEL_ELF_PART.into());
    }

    // Lay out the chunk table: which part and offset each chunk reads.
    let mut parts = Vec::new();
    let mut plan: Vec<(usize, u64, u32)> = Vec::new();
    for (pi, op) in opened.iter().enumerate() {
        let count = op.size.div_ceil(u64::from(cs)) as usize;
        parts.push(Part {
            name: op.input.name.clone(),
            kind: op.input.kind,
            size: op.size,
            first_chunk: plan.len(),
            chunk_count: count,
        });
        for j in 0..count as u64 {
            let off = j * u64::from(cs);
            plan.push((pi, off, (op.size - off).min(u64::from(cs)) as u32));
        }
    }
    let plan = &plan;
    let input_bytes: u64 = opened.iter().map(|o| o.size).sum();
    progress.set_length(input_bytes);

    let tmp = tempfile::Builder::new()
        .prefix(".metalcast-bundle-")
        .tempfile_in(&out_dir)
        .map_err(|e| BundleError::io("creating temporary bundle in", &out_dir, e))?;
    let file = tmp.as_file().try_clone().map_err(|e| BundleError::io("opening", tmp.path(), e))?;
    let mut w = BufWriter::with_capacity(4 << 20, file);
    w.seek(SeekFrom::Start(DATA_OFFSET)).map_err(|e| BundleError::io("seeking in", tmp.path(), e))?;

    let mut chunks: Vec<Chunk> = Vec::with_capacity(plan.len());
    let mut data_len = 0u64;
    let mut holes = 0usize;
    let mut write_result = |idx: usize, r: Option<std::io::Result<EncodedChunk>>| -> Result<()> {
        debug_assert_eq!(idx, chunks.len());
        let len = plan[idx].2;
        match r {
            None => {
                holes += 1;
                chunks.push(Chunk { len, offset: None, stored: 0, raw: false, hash: None });
            }
            Some(r) => {
                let e = r.map_err(|e| BundleError::Tool { tool: "zstd", reason: e.to_string() })?;
                w.write_all(&e.data).map_err(|err| BundleError::io("writing", out, err))?;
                chunks.push(Chunk {
                    len,
                    offset: Some(data_len),
                    stored: e.data.len() as u32,
                    raw: e.raw,
                    hash: Some(hex::encode(e.hash)),
                });
                data_len += e.data.len() as u64;
            }
        }
        progress.inc(u64::from(len));
        Ok(())
    };

    let read_chunk = |idx: usize| -> Result<Option<Vec<u8>>> {
        let (pi, off, len) = plan[idx];
        let op = &opened[pi];
        if op.input.kind.is_disk_like() && sys::range_is_hole(&op.file, off, u64::from(len)) {
            return Ok(None);
        }
        let mut buf = vec![0u8; len as usize];
        op.file.read_exact_at(&mut buf, off).map_err(|e| BundleError::io("reading", &op.input.path, e))?;
        Ok(if op.input.kind.is_disk_like() && is_zero(&buf) { None } else { Some(buf) })
    };

    let level = spec.zstd_level;
    if spec.threads <= 1 {
        let mut comp = zstd::bulk::Compressor::new(level)
            .map_err(|e| BundleError::Tool { tool: "zstd", reason: e.to_string() })?;
        for idx in 0..plan.len() {
            let r = read_chunk(idx)?.map(|buf| encode_chunk(&buf, &mut comp));
            write_result(idx, r)?;
        }
    } else {
        std::thread::scope(|s| -> Result<()> {
            let (job_tx, job_rx) = mpsc::sync_channel::<Job>(spec.threads * 2);
            let (done_tx, done_rx) = mpsc::sync_channel::<Done>(spec.threads * 4);
            let job_rx = Arc::new(Mutex::new(job_rx));
            for _ in 0..spec.threads {
                let (job_rx, done_tx) = (Arc::clone(&job_rx), done_tx.clone());
                s.spawn(move || {
                    let mut comp = match zstd::bulk::Compressor::new(level) {
                        Ok(c) => c,
                        Err(_) => return,
                    };
                    loop {
                        let job = job_rx.lock().expect("job queue lock is never poisoned").recv();
                        let Ok((idx, data)) = job else { return };
                        let r = data.map(|buf| encode_chunk(&buf, &mut comp));
                        if done_tx.send((idx, r)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(done_tx);
            let reader = s.spawn(move || -> Result<()> {
                for idx in 0..plan.len() {
                    if job_tx.send((idx, read_chunk(idx)?)).is_err() {
                        break;
                    }
                }
                Ok(())
            });
            let mut pending = BTreeMap::new();
            let mut next = 0usize;
            let mut failed = None;
            for (idx, r) in done_rx.iter() {
                pending.insert(idx, r);
                while let Some(r) = pending.remove(&next) {
                    if failed.is_none()
                        && let Err(e) = write_result(next, r)
                    {
                        failed = Some(e);
                    }
                    next += 1;
                }
            }
            reader.join().expect("reader thread does not panic")?;
            if let Some(e) = failed {
                return Err(e);
            }
            if next != plan.len() {
                return Err(BundleError::Tool { tool: "zstd", reason: "a compression worker failed to start".into() });
            }
            Ok(())
        })?;
    }

    let mut manifest = Manifest {
        name: spec.name.clone(),
        created_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        chunk_size: cs,
        zstd_level: level,
        data_len,
        root_hash: String::new(),
        boot,
        vm: spec.vm.clone(),
        parts,
        chunks,
    };
    manifest.root_hash = hex::encode(manifest.compute_root_hash()?);
    manifest.validate()?;
    let manifest_bytes = manifest.to_json();
    w.write_all(&manifest_bytes).map_err(|e| BundleError::io("writing", out, e))?;
    let f = w.into_inner().map_err(|e| BundleError::io("writing", out, e.into_error()))?;
    let header = Header {
        minor: manifest.format_minor(),
        manifest_offset: DATA_OFFSET + data_len,
        manifest_len: manifest_bytes.len() as u64,
        signature: key.map(|k| k.sign(&manifest_bytes)),
    };
    f.write_all_at(&header.encode(), 0).map_err(|e| BundleError::io("writing", out, e))?;
    let mut perms = f.metadata().map_err(|e| BundleError::io("reading metadata of", out, e))?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    f.set_permissions(perms).map_err(|e| BundleError::io("setting permissions of", out, e))?;
    f.sync_all().map_err(|e| BundleError::io("syncing", out, e))?;
    let bundle_bytes = DATA_OFFSET + data_len + manifest_bytes.len() as u64;
    tmp.persist(out).map_err(|e| BundleError::io("renaming into place", out, e.error))?;
    progress.finish_and_clear();
    Ok(BuildSummary {
        path: out.to_path_buf(),
        input_bytes,
        bundle_bytes,
        chunks: manifest.chunks.len(),
        holes,
        root_hash: manifest.root_hash,
    })
}
