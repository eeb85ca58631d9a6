//! `metalcast-image`: build, inspect, verify, extract and sign image bundles.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use metalcast_image::{Bundle, BundleError, PublicKey, SecretKey};

/// Exit codes (documented in docs/image-format.md):
/// 0 success, 1 operational error (I/O, bad input, tool failure), 2 usage error,
/// 3 integrity failure (corrupt chunk, bad or missing signature, malformed bundle).
const EXIT_INTEGRITY: u8 = 3;

#[derive(Parser)]
#[command(
    name = "metalcast-image",
    version,
    about = "Build, inspect, verify, extract and sign metalcast image bundles"
)]
struct Cli {
    /// Do not show progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build a bundle from files (or from a directory holding bundle.toml).
    Build(BuildArgs),
    /// Show a bundle's manifest: parts, sizes, chunking, signature.
    Inspect {
        /// The bundle file.
        bundle: PathBuf,
        /// Print the manifest and header facts as JSON.
        #[arg(long)]
        json: bool,
        /// List every chunk (table output).
        #[arg(long)]
        chunks: bool,
    },
    /// Check the signature and every chunk's hash. Exit 3 names each bad chunk.
    Verify {
        /// The bundle file.
        bundle: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Verify and write the parts to a directory (disk images stay sparse).
    Extract {
        /// The bundle file.
        bundle: PathBuf,
        /// Output directory (created if missing).
        #[arg(short, long)]
        output: PathBuf,
        /// Only these parts (repeatable); default all.
        #[arg(long = "part")]
        parts: Vec<String>,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Create an ed25519 key pair: <PREFIX>.key (secret, mode 0600) and <PREFIX>.pub.
    Keygen {
        /// Path prefix of the key files.
        prefix: PathBuf,
    },
    /// Sign a bundle in place with a secret key.
    Sign {
        /// The bundle file.
        bundle: PathBuf,
        /// Secret key file (from `keygen`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Build the node runtime's bootstrap initramfs (static runtime as /init + kernel modules),
    /// optionally packed with a kernel as a bootable bundle.
    Initramfs(InitramfsArgs),
    /// Write the bundle's signed manifest as a standalone file (what nodes get out of band).
    ExportManifest {
        /// The bundle file.
        bundle: PathBuf,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
    },
}

#[derive(clap::Args)]
struct TrustArgs {
    /// Trusted public key file (repeatable). The bundle must be signed by one of them.
    #[arg(long = "key")]
    keys: Vec<PathBuf>,
    /// Accept an unsigned bundle (hashes are still checked).
    #[arg(long)]
    allow_unsigned: bool,
}

#[derive(clap::Args)]
struct BuildArgs {
    /// Output bundle path.
    #[arg(short, long)]
    output: PathBuf,
    /// Directory with a bundle.toml describing the parts (instead of the part flags).
    #[arg(long, conflicts_with_all = ["kernel", "initrd", "cmdline", "rootfs", "disk", "vm_disk"])]
    from_dir: Option<PathBuf>,
    /// Image name (default: the output file's stem).
    #[arg(long)]
    name: Option<String>,
    /// Kernel image to kexec.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initrd (repeatable, concatenated in order).
    #[arg(long)]
    initrd: Vec<PathBuf>,
    /// Kernel command line.
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Root filesystem image (raw or qcow2).
    #[arg(long)]
    rootfs: Option<PathBuf>,
    /// Whole-disk image (raw or qcow2).
    #[arg(long)]
    disk: Option<PathBuf>,
    /// Disk image to boot as a VM on the node (raw or qcow2).
    #[arg(long)]
    vm_disk: Option<PathBuf>,
    /// Extra qemu argument for VM mode (repeatable).
    #[arg(long = "qemu-arg", requires = "vm_disk", allow_hyphen_values = true)]
    qemu_args: Vec<String>,
    /// Also carry the kernel's uncompressed ELF (decompressed from the bzImage;
    /// xz, gzip or zstd): runtimes with kexec-tools boot it without the
    /// kernel's self-decompression and purgatory's checks (a faster
    /// hand-over; no KASLR for that boot). Format 1.1.
    #[arg(long)]
    kexec_elf: bool,
    /// Chunk size, a power of two from 64K to 16M (suffixes K, M).
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    chunk_size: u32,
    /// zstd compression level (1-19).
    #[arg(long, default_value_t = 3)]
    level: i32,
    /// Compression threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Sign with this secret key file.
    #[arg(long)]
    sign_key: Option<PathBuf>,
}

#[derive(clap::Args)]
struct InitramfsArgs {
    /// Output initramfs (zstd-compressed newc cpio).
    #[arg(short, long)]
    output: PathBuf,
    /// The static runtime binary to run as /init (`metalcast-node`).
    #[arg(long)]
    init: PathBuf,
    /// A kernel's module tree, e.g. `<unpacked linux-image .deb>/lib/modules/6.1.0-56-amd64`.
    #[arg(long)]
    modules_dir: Option<PathBuf>,
    /// Kernel module to include with its dependencies (repeatable; comma lists allowed).
    #[arg(long = "module", value_delimiter = ',')]
    modules: Vec<String>,
    /// Extra file as SRC:DEST, DEST absolute inside the initramfs (repeatable),
    /// e.g. `trusted.pub:/etc/metalcast/trusted/site.pub`.
    #[arg(long = "file", value_parser = parse_file_arg)]
    files: Vec<(PathBuf, String)>,
    /// Program as SRC[:DEST] (repeatable; DEST defaults to SRC), added with its
    /// interpreter and exactly the shared libraries it needs (DT_NEEDED,
    /// recursively, from the system library directories), e.g.
    /// `/usr/sbin/kexec:/sbin/kexec` for the runtime's kexec_load fallback.
    #[arg(long = "program", value_parser = parse_program_arg)]
    programs: Vec<(PathBuf, String)>,
    /// zstd level of the archive (1-19).
    #[arg(long, default_value_t = 12)]
    level: i32,
    /// Also write a bootable bundle here: this kernel + the initramfs + --cmdline.
    #[arg(long, requires = "kernel")]
    bundle: Option<PathBuf>,
    /// Kernel image for --bundle.
    #[arg(long, requires = "bundle")]
    kernel: Option<PathBuf>,
    /// Kernel command line for --bundle.
    #[arg(long, default_value = "console=ttyS0 quiet")]
    cmdline: String,
    /// Sign the bundle with this secret key file.
    #[arg(long, requires = "bundle")]
    sign_key: Option<PathBuf>,
}

fn parse_file_arg(s: &str) -> Result<(PathBuf, String), String> {
    let (src, dest) = s.rsplit_once(':').ok_or_else(|| format!("{s:?}: expected SRC:DEST"))?;
    if !dest.starts_with('/') {
        return Err(format!("{s:?}: DEST must be an absolute path inside the initramfs"));
    }
    Ok((PathBuf::from(src), dest.to_owned()))
}

fn parse_program_arg(s: &str) -> Result<(PathBuf, String), String> {
    let (src, dest) = s.rsplit_once(':').unwrap_or((s, s));
    if !dest.starts_with('/') {
        return Err(format!("{s:?}: DEST must be an absolute path inside the initramfs"));
    }
    Ok((PathBuf::from(src), dest.to_owned()))
}

fn parse_size(s: &str) -> Result<u32, String> {
    let (num, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1024u64),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size like 1M or 256K"))?;
    u32::try_from(n * mult).map_err(|_| format!("{s} is too large"))
}

fn progress(quiet: bool, msg: &'static str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("{msg:>9} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message(msg);
    pb
}

fn load_trust(t: &TrustArgs) -> anyhow::Result<Vec<PublicKey>> {
    if t.keys.is_empty() && !t.allow_unsigned {
        bail!("give a trusted public key with --key, or --allow-unsigned to check hashes only");
    }
    t.keys.iter().map(|k| PublicKey::load(k).with_context(|| format!("loading trusted key {}", k.display()))).collect()
}

fn human(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{n} B") } else { format!("{v:.1} {}", U[i]) }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Build(a) => {
            let mut spec = match &a.from_dir {
                Some(d) => metalcast_image::spec_from_dir(d)
                    .with_context(|| format!("reading {}", d.join("bundle.toml").display()))?,
                None => {
                    let name = a.name.clone().unwrap_or_else(|| {
                        a.output.file_stem().map_or("image".into(), |s| s.to_string_lossy().into_owned())
                    });
                    let vm = a.vm_disk.clone().map(|d| (d, a.qemu_args.clone()));
                    metalcast_image::spec_from_inputs(&name, a.kernel, a.initrd, a.cmdline, a.rootfs, a.disk, vm)?
                }
            };
            if let Some(n) = a.name {
                spec.name = n;
            }
            spec.chunk_size = a.chunk_size;
            spec.zstd_level = a.level;
            spec.kexec_elf |= a.kexec_elf;
            if let Some(t) = a.threads {
                spec.threads = t.max(1);
            }
            let key = a.sign_key.as_deref().map(SecretKey::load).transpose().context("loading signing key")?;
            let t0 = std::time::Instant::now();
            let s = metalcast_image::build(&spec, &a.output, key.as_ref(), &progress(cli.quiet, "building"))
                .with_context(|| format!("building {}", a.output.display()))?;
            let secs = t0.elapsed().as_secs_f64();
            println!(
                "built {}: {} of input -> {} bundle ({} chunks, {} holes) in {:.2}s ({:.0} MB/s), root {}{}",
                s.path.display(),
                human(s.input_bytes),
                human(s.bundle_bytes),
                s.chunks,
                s.holes,
                secs,
                s.input_bytes as f64 / secs / 1e6,
                &s.root_hash[..16],
                if key.is_some() { ", signed" } else { ", unsigned" },
            );
        }
        Cmd::Inspect { bundle, json, chunks } => {
            let b = Bundle::open(&bundle).with_context(|| format!("opening {}", bundle.display()))?;
            inspect(&b, json, chunks)?;
        }
        Cmd::Verify { bundle, trust } => {
            let keys = load_trust(&trust)?;
            let b = Bundle::open(&bundle).with_context(|| format!("opening {}", bundle.display()))?;
            b.verify_signature(&keys, trust.allow_unsigned)?;
            let r = b.verify_chunks(&progress(cli.quiet, "verifying"))?;
            if !r.bad_chunks.is_empty() {
                for e in &r.bad_chunks {
                    eprintln!("error: {e}");
                }
                eprintln!("{} of {} stored chunks are corrupt", r.bad_chunks.len(), r.chunks_checked);
                return Ok(ExitCode::from(EXIT_INTEGRITY));
            }
            let signer =
                b.header.signature.map_or("unsigned".into(), |s| format!("signed by {}", hex::encode(s.public_key)));
            println!(
                "ok: {} chunks verified, {} covered, root {}, {signer}",
                r.chunks_checked,
                human(r.bytes_covered),
                b.manifest.root_hash
            );
        }
        Cmd::Extract { bundle, output, parts, trust } => {
            let keys = load_trust(&trust)?;
            let b = Bundle::open(&bundle).with_context(|| format!("opening {}", bundle.display()))?;
            b.verify_signature(&keys, trust.allow_unsigned)?;
            let paths = metalcast_image::extract(&b, &output, &parts, &progress(cli.quiet, "extracting"))?;
            for p in paths {
                println!("{}", p.display());
            }
        }
        Cmd::Keygen { prefix } => {
            let k = SecretKey::generate();
            k.save(&prefix).with_context(|| format!("writing key pair {}", prefix.display()))?;
            println!("{} {}", prefix.with_extension("pub").display(), k.public().to_hex());
        }
        Cmd::Sign { bundle, key } => {
            let k = SecretKey::load(&key).with_context(|| format!("loading {}", key.display()))?;
            Bundle::sign_in_place(&bundle, &k).with_context(|| format!("signing {}", bundle.display()))?;
            println!("signed {} with {}", bundle.display(), k.public().to_hex());
        }
        Cmd::Initramfs(a) => {
            let spec = metalcast_image::initramfs::InitramfsSpec {
                init: a.init,
                modules_root: a.modules_dir,
                modules: a.modules,
                files: a.files,
                programs: a.programs,
                zstd_level: a.level,
            };
            let s = metalcast_image::initramfs::build_initramfs(&spec, &a.output)
                .with_context(|| format!("building {}", a.output.display()))?;
            println!(
                "built {}: {} ({} cpio), modules in load order: {}",
                a.output.display(),
                human(s.bytes),
                human(s.cpio_bytes),
                s.modules.join(" ")
            );
            if !s.libraries.is_empty() {
                println!("shared libraries for the programs: {}", s.libraries.join(" "));
            }
            if let (Some(out), Some(kernel)) = (a.bundle, a.kernel) {
                let name = out.file_stem().map_or("bootstrap".into(), |s| s.to_string_lossy().into_owned());
                let spec = metalcast_image::spec_from_inputs(
                    &name,
                    Some(kernel),
                    vec![a.output],
                    a.cmdline,
                    None,
                    None,
                    None,
                )?;
                let key = a.sign_key.as_deref().map(SecretKey::load).transpose().context("loading signing key")?;
                let s = metalcast_image::build(&spec, &out, key.as_ref(), &progress(cli.quiet, "building"))
                    .with_context(|| format!("building {}", out.display()))?;
                println!("built {}: {} bundle, root {}", s.path.display(), human(s.bundle_bytes), &s.root_hash[..16]);
            }
        }
        Cmd::ExportManifest { bundle, output } => {
            let b = Bundle::open(&bundle).with_context(|| format!("opening {}", bundle.display()))?;
            write_atomic(&output, &b.signed_manifest().to_bytes())?;
            println!("{}", output.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut t =
        tempfile::NamedTempFile::new_in(dir).with_context(|| format!("creating a file in {}", dir.display()))?;
    std::io::Write::write_all(&mut t, bytes).context("writing")?;
    t.persist(path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

fn inspect(b: &Bundle, json: bool, chunks: bool) -> anyhow::Result<()> {
    let m = &b.manifest;
    let signer = b.header.signature.map(|s| hex::encode(s.public_key));
    let file_len = b.header.manifest_offset + b.header.manifest_len;
    if json {
        let v = serde_json::json!({
            "format": format!("{}.{}", metalcast_image::format::FORMAT_MAJOR, b.header.minor),
            "file_bytes": file_len,
            "signed_by": signer,
            "manifest": m,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let holes = m.chunks.iter().filter(|c| c.is_hole()).count();
    println!("name        {}", m.name);
    println!("format      {}.{}", metalcast_image::format::FORMAT_MAJOR, b.header.minor);
    println!("signed by   {}", signer.as_deref().unwrap_or("(unsigned)"));
    println!("root hash   {}", m.root_hash);
    println!(
        "chunking    {} x {} ({} holes), zstd level {}",
        m.chunks.len(),
        human(m.chunk_size.into()),
        holes,
        m.zstd_level
    );
    println!(
        "size        {} of parts in a {} bundle ({:.1}%)",
        human(m.total_size()),
        human(file_len),
        100.0 * file_len as f64 / m.total_size().max(1) as f64
    );
    if let Some(boot) = &m.boot {
        let elf = boot.kernel_elf.as_ref().map(|e| format!(" kernel_elf={e}")).unwrap_or_default();
        println!("boot        kernel={}{elf} initrds={:?} cmdline={:?}", boot.kernel, boot.initrds, boot.cmdline);
    }
    if let Some(vm) = &m.vm {
        println!("vm          disk={} qemu_args={:?}", vm.disk, vm.qemu_args);
    }
    println!();
    println!("{:<16} {:<8} {:>14} {:>8} {:>8} {:>14}", "PART", "KIND", "SIZE", "CHUNKS", "HOLES", "STORED");
    for p in &m.parts {
        let cs = &m.chunks[p.first_chunk..p.first_chunk + p.chunk_count];
        let stored: u64 = cs.iter().map(|c| u64::from(c.stored)).sum();
        let h = cs.iter().filter(|c| c.is_hole()).count();
        println!(
            "{:<16} {:<8} {:>14} {:>8} {:>8} {:>14}",
            p.name,
            p.kind.as_str(),
            human(p.size),
            p.chunk_count,
            h,
            human(stored)
        );
    }
    if chunks {
        println!();
        println!(
            "{:>8} {:<16} {:>12} {:>10} {:>10} {:<5} HASH",
            "INDEX", "PART", "PART_OFFSET", "LEN", "STORED", "CODEC"
        );
        for (i, c) in m.chunks.iter().enumerate() {
            let (p, off) = m.locate(i).expect("validated manifest: every chunk is in a part");
            let codec = if c.is_hole() {
                "hole"
            } else if c.raw {
                "raw"
            } else {
                "zstd"
            };
            println!(
                "{:>8} {:<16} {:>12} {:>10} {:>10} {:<5} {}",
                i,
                p.name,
                off,
                c.len,
                c.stored,
                codec,
                c.hash.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let integrity = e.chain().any(|c| c.downcast_ref::<BundleError>().is_some_and(BundleError::is_integrity));
            if integrity { ExitCode::from(EXIT_INTEGRITY) } else { ExitCode::FAILURE }
        }
    }
}
