//! The `metalcast-image` CLI end to end, on real files: the acceptance
//! scenario of the bundle format and every kind of bad input it must name.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use metalcast_image::format::DATA_OFFSET;
use metalcast_image::{Bundle, Manifest};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_metalcast-image"))
}

fn run(args: &[&str], cwd: &Path) -> Output {
    bin().args(args).current_dir(cwd).output().expect("run metalcast-image")
}

fn ok(args: &[&str], cwd: &Path) -> String {
    let o = run(args, cwd);
    assert!(o.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// Runs a command that must fail with `code`; returns stderr.
fn fails(args: &[&str], cwd: &Path, code: i32) -> String {
    let o = run(args, cwd);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "{args:?}: expected exit {code}, stderr: {err}");
    err
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    // A fast, seeded generator (xorshift) so data is incompressible and reproducible.
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// A sparse disk of `size` bytes with `islands` of random data.
fn sparse_disk(path: &Path, size: u64, islands: &[(u64, usize)]) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    for (i, &(off, len)) in islands.iter().enumerate() {
        f.write_all_at(&random(len, i as u64 + 7), off).unwrap();
    }
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A signed bundle with a kernel, an initrd and a 64 MiB sparse disk.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("vmlinuz"), random(3 << 20, 1)).unwrap();
        std::fs::write(d.join("initrd.img"), b"initrd ".repeat(200_000)).unwrap();
        sparse_disk(&d.join("disk.raw"), 64 << 20, &[(0, 1 << 20), (10 << 20, 3 << 20), ((63 << 20) + 12345, 100_000)]);
        ok(&["keygen", "k"], d);
        ok(&["keygen", "other"], d);
        ok(
            &[
                "build",
                "-o",
                "b.mcb",
                "--kernel",
                "vmlinuz",
                "--initrd",
                "initrd.img",
                "--cmdline",
                "console=ttyS0 quiet",
                "--disk",
                "disk.raw",
                "--sign-key",
                "k.key",
                "--chunk-size",
                "256K",
            ],
            d,
        );
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }
}

#[test]
fn build_inspect_verify_extract_round_trip() {
    let f = Fixture::new();
    let out = ok(&["verify", "b.mcb", "--key", "k.pub"], f.d());
    assert!(out.starts_with("ok:"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&ok(&["inspect", "--json", "b.mcb"], f.d())).unwrap();
    assert_eq!(json["manifest"]["boot"]["cmdline"], "console=ttyS0 quiet");
    assert_eq!(json["manifest"]["parts"].as_array().unwrap().len(), 3);
    let table = ok(&["inspect", "--chunks", "b.mcb"], f.d());
    assert!(table.contains("hole") && table.contains("disk"), "{table}");

    ok(&["extract", "b.mcb", "--key", "k.pub", "-o", "out"], f.d());
    for (part, src) in [("kernel", "vmlinuz"), ("initrd", "initrd.img"), ("disk", "disk.raw")] {
        assert_eq!(std::fs::read(f.path("out").join(part)).unwrap(), std::fs::read(f.path(src)).unwrap(), "{part}");
    }
    // Holes stay holes: the 64 MiB disk with ~4.1 MiB of data occupies far less than 64 MiB.
    let blocks = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(f.path("out/disk")).unwrap());
    assert!(blocks * 512 < 16 << 20, "extracted disk is not sparse: {} bytes allocated", blocks * 512);
}

#[test]
fn single_thread_and_parallel_builds_are_identical() {
    let f = Fixture::new();
    ok(&["build", "-o", "t1.mcb", "--disk", "disk.raw", "--threads", "1", "--name", "x"], f.d());
    ok(&["build", "-o", "t4.mcb", "--disk", "disk.raw", "--threads", "4", "--name", "x"], f.d());
    let (a, b) = (Bundle::open(&f.path("t1.mcb")).unwrap(), Bundle::open(&f.path("t4.mcb")).unwrap());
    assert_eq!(a.manifest.root_hash, b.manifest.root_hash);
    assert_eq!(a.manifest.chunks, b.manifest.chunks);
}

#[test]
fn one_gib_sparse_disk_with_128_mib_of_data_gives_a_128_mib_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let islands: Vec<(u64, usize)> = (0..4).map(|i| (i * (256 << 20), 32 << 20)).collect();
    sparse_disk(&d.join("disk.raw"), 1 << 30, &islands);
    ok(&["keygen", "k"], d);
    ok(&["build", "-o", "d.mcb", "--disk", "disk.raw", "--sign-key", "k.key"], d);
    let size = std::fs::metadata(d.join("d.mcb")).unwrap().len();
    assert!(size > 128 << 20 && size < (128 << 20) + (1 << 20), "bundle is {size} bytes");
    ok(&["extract", "d.mcb", "--key", "k.pub", "-o", "out"], d);
    let (a, b) = (std::fs::File::open(d.join("disk.raw")).unwrap(), std::fs::File::open(d.join("out/disk")).unwrap());
    assert_eq!(a.metadata().unwrap().len(), b.metadata().unwrap().len());
    let (mut x, mut y) = (vec![0u8; 8 << 20], vec![0u8; 8 << 20]);
    for off in (0..1u64 << 30).step_by(8 << 20) {
        a.read_exact_at(&mut x, off).unwrap();
        b.read_exact_at(&mut y, off).unwrap();
        assert!(x == y, "extracted disk differs in the 8 MiB at {off}");
    }

    // Flip one byte in one stored chunk: verify fails and names that chunk.
    let m = Bundle::open(&d.join("d.mcb")).unwrap().manifest;
    let victim = m.stored_chunks().nth(77).unwrap();
    flip(&d.join("d.mcb"), DATA_OFFSET + victim.offset + 1000);
    let err = fails(&["verify", "d.mcb", "--key", "k.pub"], d, 3);
    assert!(err.contains(&format!("chunk {} ", victim.index)), "{err}");
    assert!(err.contains("1 of 128 stored chunks are corrupt"), "{err}");
}

fn flip(path: &Path, at: u64) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
}

#[test]
fn corrupt_chunk_is_named_and_extract_leaves_nothing() {
    let f = Fixture::new();
    let m = Bundle::open(&f.path("b.mcb")).unwrap().manifest;
    // A chunk of the disk part, so the error names part and offset.
    let disk = m.part("disk").unwrap();
    let idx = (disk.first_chunk..disk.first_chunk + disk.chunk_count).find(|&i| !m.chunks[i].is_hole()).unwrap();
    let off = m.chunks[idx].offset.unwrap();
    flip(&f.path("b.mcb"), DATA_OFFSET + off + u64::from(m.chunks[idx].stored) / 2);
    let err = fails(&["verify", "b.mcb", "--key", "k.pub"], f.d(), 3);
    assert!(err.contains(&format!("chunk {idx} (part disk, offset 0)")), "{err}");
    let err = fails(&["extract", "b.mcb", "--key", "k.pub", "-o", "out"], f.d(), 3);
    assert!(err.contains(&format!("chunk {idx}")), "{err}");
    let left: Vec<_> = std::fs::read_dir(f.path("out")).unwrap().collect();
    assert!(left.is_empty(), "extract left files behind: {left:?}");
}

#[test]
fn signatures_wrong_missing_and_tampered() {
    let f = Fixture::new();
    let err = fails(&["verify", "b.mcb", "--key", "other.pub"], f.d(), 3);
    assert!(err.contains("not a trusted key"), "{err}");
    ok(&["build", "-o", "u.mcb", "--kernel", "vmlinuz"], f.d());
    let err = fails(&["verify", "u.mcb", "--key", "k.pub"], f.d(), 3);
    assert!(err.contains("not signed"), "{err}");
    ok(&["verify", "u.mcb", "--allow-unsigned"], f.d());
    ok(&["sign", "u.mcb", "--key", "k.key"], f.d());
    ok(&["verify", "u.mcb", "--key", "k.pub"], f.d());
    // Re-signing with another key and trusting only the first key fails.
    ok(&["sign", "u.mcb", "--key", "other.key"], f.d());
    fails(&["verify", "u.mcb", "--key", "k.pub"], f.d(), 3);
    // Tampering with the manifest (same length) breaks the signature.
    let b = Bundle::open(&f.path("b.mcb")).unwrap();
    let at = b.header.manifest_offset + b.manifest_bytes.windows(5).position(|w| w == b"quiet").unwrap() as u64;
    flip(&f.path("b.mcb"), at);
    let err = fails(&["verify", "b.mcb", "--key", "k.pub"], f.d(), 3);
    assert!(err.contains("signature does not match"), "{err}");
    // No trust given at all is a usage-level error, not a silent pass.
    let err = fails(&["verify", "b.mcb"], f.d(), 1);
    assert!(err.contains("--key"), "{err}");
}

#[test]
fn truncated_bundle_and_unknown_version() {
    let f = Fixture::new();
    let full = std::fs::read(f.path("b.mcb")).unwrap();
    for cut in [10usize, 200, 5000, full.len() - 10] {
        std::fs::write(f.path("t.mcb"), &full[..cut]).unwrap();
        let err = fails(&["verify", "t.mcb", "--key", "k.pub"], f.d(), 3);
        assert!(err.contains("truncated") || err.contains("inconsistent"), "cut at {cut}: {err}");
    }
    let mut v = full.clone();
    v[8] = 2;
    std::fs::write(f.path("v.mcb"), &v).unwrap();
    let err = fails(&["inspect", "v.mcb"], f.d(), 3);
    assert!(err.contains("unsupported format version 2.0"), "{err}");
    let mut v = full.clone();
    v[10] = 2;
    std::fs::write(f.path("v.mcb"), &v).unwrap();
    let err = fails(&["inspect", "v.mcb"], f.d(), 3);
    assert!(err.contains("unsupported format version 1.2"), "{err}");
    std::fs::write(f.path("x.mcb"), b"hello world, not a bundle at all, really not; padding padding padding padding padding padding padding padding padding padding padding").unwrap();
    let err = fails(&["inspect", "x.mcb"], f.d(), 3);
    assert!(err.contains("bad magic"), "{err}");
}

/// A bzImage-shaped kernel: boot sector with a 2.15 boot protocol header,
/// 2 setup sectors, then the zstd-compressed `elf` as the payload.
fn fake_bzimage(elf: &[u8]) -> Vec<u8> {
    let payload = zstd::encode_all(elf, 3).unwrap();
    let mut bz = vec![0u8; 3 * 512 + 64];
    bz[0x1f1] = 2;
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    bz[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
    bz[0x248..0x24c].copy_from_slice(&64u32.to_le_bytes());
    bz[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    bz.extend_from_slice(&payload);
    bz
}

#[test]
fn kexec_elf_part_is_the_decompressed_kernel() {
    let f = Fixture::new();
    let mut elf = random(2 << 20, 9);
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2;
    elf[5] = 1;
    elf[16..18].copy_from_slice(&2u16.to_le_bytes());
    elf[18..20].copy_from_slice(&62u16.to_le_bytes());
    std::fs::write(f.path("bz"), fake_bzimage(&elf)).unwrap();
    ok(
        &["build", "-o", "e.mcb", "--kernel", "bz", "--initrd", "initrd.img", "--kexec-elf", "--sign-key", "k.key"],
        f.d(),
    );
    let text = ok(&["inspect", "e.mcb"], f.d());
    assert!(text.contains("format      1.1") && text.contains("kernel_elf=kernel-elf"), "{text}");
    ok(&["extract", "e.mcb", "--key", "k.pub", "-o", "out"], f.d());
    assert_eq!(std::fs::read(f.path("out/kernel-elf")).unwrap(), elf);
    assert_eq!(std::fs::read(f.path("out/kernel")).unwrap(), std::fs::read(f.path("bz")).unwrap());
    let m = Bundle::open(&f.path("e.mcb")).unwrap().manifest;
    assert_eq!(m.boot.unwrap().kernel_elf.as_deref(), Some("kernel-elf"));
    // Without the flag the same kernel gives a 1.0 bundle that 1.0 readers still read.
    ok(&["build", "-o", "p.mcb", "--kernel", "bz"], f.d());
    assert!(ok(&["inspect", "p.mcb"], f.d()).contains("format      1.0"));
}

/// Rewrites the manifest of a bundle (unsigned) with `edit` applied.
fn rewrite_manifest(src: &Path, dst: &Path, edit: impl FnOnce(&mut Manifest)) {
    let b = Bundle::open(src).unwrap();
    let mut m = b.manifest.clone();
    edit(&mut m);
    let bytes = serde_json::to_vec(&m).unwrap();
    let mut header = b.header.clone();
    header.signature = None;
    header.manifest_len = bytes.len() as u64;
    let mut file = std::fs::read(src).unwrap();
    file.truncate(b.header.manifest_offset as usize);
    file.extend_from_slice(&bytes);
    file[..128].copy_from_slice(&header.encode());
    std::fs::write(dst, file).unwrap();
}

type Edit = Box<dyn FnOnce(&mut Manifest)>;

#[test]
fn manifest_lies_about_sizes_and_offsets_are_named() {
    let f = Fixture::new();
    let cases: Vec<(&str, Edit)> = vec![
        ("data_len", Box::new(|m| m.data_len += 1)),
        (
            "chunks[",
            Box::new(|m| {
                let i = m.chunks.iter().position(|c| !c.is_hole()).unwrap();
                *m.chunks[i].offset.as_mut().unwrap() += 7;
            }),
        ),
        ("parts[0].chunk_count", Box::new(|m| m.parts[0].size *= 2)),
        ("chunk_size", Box::new(|m| m.chunk_size = 1000)),
        ("root hash", Box::new(|m| m.root_hash = "00".repeat(32))),
    ];
    for (needle, edit) in cases {
        rewrite_manifest(&f.path("b.mcb"), &f.path("l.mcb"), edit);
        let err = fails(&["verify", "l.mcb", "--allow-unsigned"], f.d(), 3);
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
}

#[test]
fn bundle_toml_directory_and_qcow2_input() {
    let f = Fixture::new();
    if Command::new("qemu-img").arg("--version").output().is_err() {
        assert!(std::env::var("METALCAST_REQUIRE_PRIVILEGED").is_err(), "qemu-img missing in CI");
        eprintln!("SKIP bundle_toml_directory_and_qcow2_input: qemu-img not installed");
        return;
    }
    let st = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2", "disk.raw", "disk.qcow2"])
        .current_dir(f.d())
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(
        f.path("bundle.toml"),
        "name = \"dir-image\"\nkernel = \"vmlinuz\"\ninitrds = [\"initrd.img\"]\ncmdline = \"ro\"\ndisk = \"disk.qcow2\"\n",
    )
    .unwrap();
    ok(&["build", "--from-dir", ".", "-o", "q.mcb"], f.d());
    ok(&["extract", "q.mcb", "--allow-unsigned", "--part", "disk", "-o", "q"], f.d());
    assert_eq!(std::fs::read(f.path("q/disk")).unwrap(), std::fs::read(f.path("disk.raw")).unwrap());
    assert!(!f.path("q/kernel").exists(), "--part disk extracted the kernel too");

    std::fs::write(f.path("bundle.toml"), "kernel = \"vmlinuz\"\nsurprise = 1\n").unwrap();
    let err = fails(&["build", "--from-dir", ".", "-o", "bad.mcb"], f.d(), 1);
    assert!(err.contains("surprise"), "{err}");
    assert!(!f.path("bad.mcb").exists());
}

#[test]
fn vm_mode_payload_and_exported_manifest() {
    let f = Fixture::new();
    ok(
        &[
            "build",
            "-o",
            "vm.mcb",
            "--vm-disk",
            "disk.raw",
            "--qemu-arg",
            "-m",
            "--qemu-arg",
            "512",
            "--sign-key",
            "k.key",
        ],
        f.d(),
    );
    ok(&["export-manifest", "vm.mcb", "-o", "vm.mcm"], f.d());
    let sm = metalcast_image::SignedManifest::from_bytes(&std::fs::read(f.path("vm.mcm")).unwrap()).unwrap();
    let pk = metalcast_image::PublicKey::load(&f.path("k.pub")).unwrap();
    sm.verify_signature(&[pk], false).unwrap();
    let vm = sm.manifest.vm.as_ref().unwrap();
    assert_eq!(vm.qemu_args, ["-m", "512"]);
    assert_eq!(sm.manifest.part(&vm.disk).unwrap().kind, metalcast_image::PartKind::VmDisk);
}

#[test]
fn bad_build_inputs_leave_no_output() {
    let f = Fixture::new();
    let err = fails(&["build", "-o", "n.mcb", "--kernel", "missing"], f.d(), 1);
    assert!(err.contains("missing"), "{err}");
    let err = fails(&["build", "-o", "n.mcb", "--kernel", "vmlinuz", "--chunk-size", "1000"], f.d(), 1);
    assert!(err.contains("chunk size"), "{err}");
    let err = fails(&["build", "-o", "n.mcb", "--cmdline", "x"], f.d(), 1);
    assert!(err.contains("without a kernel"), "{err}");
    // The fixture's kernel is random bytes, not a bzImage.
    let err = fails(&["build", "-o", "n.mcb", "--kernel", "vmlinuz", "--kexec-elf"], f.d(), 1);
    assert!(err.contains("--kexec-elf") && err.contains("not a bzImage"), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(f.d())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".metalcast") || e.file_name() == "n.mcb")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
