//! The bootstrap initramfs: the static `metalcast-node` as `/init`, the
//! kernel modules a node needs (with their dependencies, in load order), and
//! a few configuration files, as a zstd-compressed newc cpio archive (the
//! Linux initramfs format; Debian's kernel has `CONFIG_RD_ZSTD=y`).
//!
//! Layout inside the archive:
//! - `/init`: the runtime binary;
//! - `/lib/modules/metalcast/<name>.ko`: the modules;
//! - `/etc/metalcast/modules`: their file names, one per line, in load order
//!   (dependencies first), read by the runtime when it runs as PID 1;
//! - `/dev/console`, and empty `/proc`, `/sys`, `/run`, `/tmp`, `/mnt`;
//! - any extra files (e.g. `/etc/metalcast/trusted/<name>.pub`);
//! - extra programs (e.g. kexec-tools' `kexec`, the runtime's legacy
//!   `kexec_load` path) with exactly the shared libraries they need: the
//!   program interpreter from `PT_INTERP` and the `DT_NEEDED` libraries,
//!   recursively, found in the system library directories and placed at
//!   the same paths (the dynamic loader's default search path; no
//!   `ld.so.cache`, no NSS modules).
//!
//! Module dependencies come from each module's own `.modinfo` `depends=`
//! list (what `depmod` turns into `modules.dep`), so a kernel package that
//! was only unpacked (`dpkg-deb -x`, no `depmod` run) works as well.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{BundleError, Result};

/// Where modules go inside the initramfs.
pub const MODULE_DIR: &str = "lib/modules/metalcast";
/// The load-order list inside the initramfs.
pub const MODULE_LIST: &str = "etc/metalcast/modules";

/// What to put into a bootstrap initramfs.
#[derive(Debug, Clone)]
pub struct InitramfsSpec {
    /// The program to run as PID 1 (a static binary).
    pub init: PathBuf,
    /// A kernel's module tree (`.../lib/modules/<release>`), searched recursively for `<name>.ko`.
    pub modules_root: Option<PathBuf>,
    /// Modules to include, by name (`virtio_net`, `e1000`); dependencies are added.
    pub modules: Vec<String>,
    /// Extra files: (source on this machine, absolute destination in the initramfs).
    pub files: Vec<(PathBuf, String)>,
    /// Dynamically linked (or static) programs: (source on this machine,
    /// absolute destination); their interpreter and shared libraries are added.
    pub programs: Vec<(PathBuf, String)>,
    /// zstd level of the archive (1-19).
    pub zstd_level: i32,
}

/// Where shared libraries are looked up (in order), and put at the same
/// paths inside the initramfs: the dynamic loader's built-in search path on
/// Debian amd64 (`ld.so --help`).
pub const LIBRARY_DIRS: [&str; 4] = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib"];

/// What was built.
#[derive(Debug, Clone)]
pub struct InitramfsSummary {
    /// Modules in load order.
    pub modules: Vec<String>,
    /// Interpreters and shared libraries added for `programs`, as paths inside the initramfs.
    pub libraries: Vec<String>,
    /// Size of the cpio archive before compression.
    pub cpio_bytes: u64,
    /// Size of the compressed file.
    pub bytes: u64,
}

fn bad(what: &str, reason: impl Into<String>) -> BundleError {
    BundleError::BadInput { what: what.into(), reason: reason.into() }
}

/// A module's canonical name: file stem with `-` as `_` (as the kernel does).
pub fn module_name(file_name: &str) -> Option<String> {
    file_name.strip_suffix(".ko").map(|s| s.replace('-', "_"))
}

/// The `depends=` list from a module's `.modinfo` ELF section.
pub fn module_depends(elf: &[u8]) -> std::result::Result<Vec<String>, String> {
    let modinfo = elf_section(elf, ".modinfo")?.ok_or("no .modinfo section")?;
    for entry in modinfo.split(|b| *b == 0) {
        if let Some(v) = entry.strip_prefix(b"depends=") {
            let v = std::str::from_utf8(v).map_err(|_| "depends= is not UTF-8")?;
            return Ok(v.split(',').filter(|s| !s.is_empty()).map(|s| s.replace('-', "_")).collect());
        }
    }
    Ok(Vec::new())
}

/// The bytes of a named section of a little-endian ELF64 file, bounds-checked.
fn elf_section<'a>(elf: &'a [u8], name: &str) -> std::result::Result<Option<&'a [u8]>, String> {
    let rd = |off: usize, len: usize| -> std::result::Result<u64, String> {
        let b =
            off.checked_add(len).and_then(|end| elf.get(off..end)).ok_or_else(|| format!("truncated ELF at {off}"))?;
        let mut v = [0u8; 8];
        v[..len].copy_from_slice(b);
        Ok(u64::from_le_bytes(v))
    };
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Err("not a little-endian ELF64 file".into());
    }
    let shoff = rd(0x28, 8)? as usize;
    let shentsize = rd(0x3a, 2)? as usize;
    let shnum = rd(0x3c, 2)? as usize;
    let shstrndx = rd(0x3e, 2)? as usize;
    if shentsize < 0x40 || shstrndx >= shnum {
        return Err("bad section header table".into());
    }
    let section = |i: usize| -> std::result::Result<(u64, &'a [u8]), String> {
        let h = shoff.saturating_add(i.saturating_mul(shentsize));
        let (name, off, size) =
            (rd(h, 4)?, rd(h.saturating_add(0x18), 8)? as usize, rd(h.saturating_add(0x20), 8)? as usize);
        let end = off.checked_add(size).ok_or("section size overflows")?;
        Ok((name, elf.get(off..end).ok_or_else(|| format!("section {i} outside the file"))?))
    };
    let (_, strtab) = section(shstrndx)?;
    for i in 0..shnum {
        let (n, data) = section(i)?;
        let s = strtab.get(n as usize..).ok_or("section name outside the string table")?;
        let s = &s[..s.iter().position(|b| *b == 0).unwrap_or(s.len())];
        if s == name.as_bytes() {
            return Ok(Some(data));
        }
    }
    Ok(None)
}

/// The dynamic facts of an ELF64 executable or library: its program
/// interpreter (`PT_INTERP`, none for static and shared-library files) and
/// its `DT_NEEDED` names, bounds-checked (read through the program headers,
/// so stripped files work).
pub fn elf_dynamic(elf: &[u8]) -> std::result::Result<(Option<String>, Vec<String>), String> {
    let rd = |off: u64, len: usize| -> std::result::Result<u64, String> {
        let off = usize::try_from(off).map_err(|_| format!("offset {off} too large"))?;
        let b =
            off.checked_add(len).and_then(|end| elf.get(off..end)).ok_or_else(|| format!("truncated ELF at {off}"))?;
        let mut v = [0u8; 8];
        v[..len].copy_from_slice(b);
        Ok(u64::from_le_bytes(v))
    };
    let cstr = |off: u64| -> std::result::Result<String, String> {
        let s = usize::try_from(off).ok().and_then(|o| elf.get(o..)).ok_or("string outside the file")?;
        let end = s.iter().position(|b| *b == 0).ok_or("unterminated string")?;
        String::from_utf8(s[..end].to_vec()).map_err(|_| "string is not UTF-8".to_string())
    };
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Err("not a little-endian ELF64 file".into());
    }
    let (phoff, phentsize, phnum) = (rd(0x20, 8)?, rd(0x36, 2)?, rd(0x38, 2)?);
    if phnum > 0 && phentsize < 0x38 {
        return Err("bad program header table".into());
    }
    let mut interp = None;
    let mut dynamic = None;
    let mut loads = Vec::new();
    for i in 0..phnum {
        let h = phoff.checked_add(i * phentsize).ok_or("program header offset overflows")?;
        let (ty, off, vaddr, filesz) = (rd(h, 4)?, rd(h + 8, 8)?, rd(h + 16, 8)?, rd(h + 32, 8)?);
        match ty {
            1 => loads.push((vaddr, off, filesz)),
            2 => dynamic = Some((off, filesz)),
            3 => interp = Some(cstr(off)?),
            _ => {}
        }
    }
    let Some((dyn_off, dyn_size)) = dynamic else { return Ok((interp, Vec::new())) };
    // DT_NEEDED values are offsets into the string table, whose address (DT_STRTAB) is virtual.
    let (mut needed, mut strtab) = (Vec::new(), None);
    for k in 0..dyn_size / 16 {
        let e = dyn_off.saturating_add(k * 16);
        match (rd(e, 8)?, rd(e.saturating_add(8), 8)?) {
            (0, _) => break,
            (1, v) => needed.push(v),
            (5, v) => strtab = Some(v),
            _ => {}
        }
    }
    if needed.is_empty() {
        return Ok((interp, Vec::new()));
    }
    let strtab = strtab.ok_or("DT_NEEDED without DT_STRTAB")?;
    let strtab_off = loads
        .iter()
        .find(|(va, _, sz)| strtab >= *va && strtab - va < *sz)
        .map(|(va, off, _)| off.saturating_add(strtab - va))
        .ok_or("DT_STRTAB outside every loaded segment")?;
    let names = needed
        .into_iter()
        .map(|n| cstr(strtab_off.checked_add(n).ok_or("DT_NEEDED offset overflows")?))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((interp, names))
}

/// The interpreter and every shared library `programs` need, recursively,
/// looked up in `dirs`: (source path, path inside the initramfs). A name
/// that is the interpreter itself is not added twice.
pub fn resolve_libraries(programs: &[PathBuf], dirs: &[PathBuf]) -> Result<Vec<(PathBuf, String)>> {
    let mut out: Vec<(PathBuf, String)> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut todo: Vec<PathBuf> = programs.to_vec();
    let mut interps: Vec<String> = Vec::new();
    while let Some(file) = todo.pop() {
        let bytes = std::fs::read(&file).map_err(|e| BundleError::io("reading", &file, e))?;
        let (interp, needed) = elf_dynamic(&bytes).map_err(|e| bad("programs", format!("{}: {e}", file.display())))?;
        if let Some(i) = interp
            && !out.iter().any(|(_, d)| *d == i)
        {
            if !i.starts_with('/') {
                return Err(bad("programs", format!("{}: relative interpreter {i:?}", file.display())));
            }
            interps.push(Path::new(&i).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            out.push((PathBuf::from(&i), i));
        }
        for n in needed {
            if seen.contains(&n) || interps.contains(&n) {
                continue;
            }
            if n.contains('/') {
                return Err(bad("programs", format!("{}: needs a library by path ({n})", file.display())));
            }
            seen.push(n.clone());
            let dir = dirs.iter().find(|d| d.join(&n).is_file()).ok_or_else(|| {
                bad("programs", format!("{} needs {n}, which is in none of {dirs:?}", file.display()))
            })?;
            let src = dir.join(&n);
            out.push((src.clone(), src.to_string_lossy().into_owned()));
            todo.push(src);
        }
    }
    Ok(out)
}

/// Finds `names` (and everything they depend on) under `root`; returns
/// (name, path) with every module after its dependencies.
pub fn resolve_modules(root: &Path, names: &[String]) -> Result<Vec<(String, PathBuf)>> {
    let mut index: HashMap<String, PathBuf> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| BundleError::io("reading directory", &dir, e))?;
        for e in rd {
            let e = e.map_err(|e| BundleError::io("reading directory", &dir, e))?;
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str()).and_then(module_name) {
                index.entry(n).or_insert(p);
            }
        }
    }
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut order = Vec::new();
    // Depth-first post-order: dependencies before dependents; `visiting` catches cycles.
    fn visit(
        n: &str,
        index: &HashMap<String, PathBuf>,
        deps: &mut BTreeMap<String, Vec<String>>,
        visiting: &mut Vec<String>,
        order: &mut Vec<(String, PathBuf)>,
        root: &Path,
    ) -> Result<()> {
        if order.iter().any(|(o, _)| o == n) {
            return Ok(());
        }
        if visiting.iter().any(|v| v == n) {
            return Err(bad("modules", format!("dependency cycle through {n}: {visiting:?}")));
        }
        let path = index
            .get(n)
            .ok_or_else(|| bad("modules", format!("module {n} not found under {}", root.display())))?
            .clone();
        if !deps.contains_key(n) {
            let bytes = std::fs::read(&path).map_err(|e| BundleError::io("reading", &path, e))?;
            let d = module_depends(&bytes).map_err(|e| bad("modules", format!("{}: {e}", path.display())))?;
            deps.insert(n.to_owned(), d);
        }
        visiting.push(n.to_owned());
        for d in deps[n].clone() {
            visit(&d, index, deps, visiting, order, root)?;
        }
        visiting.pop();
        order.push((n.to_owned(), path));
        Ok(())
    }
    for n in names {
        let n = n.replace('-', "_");
        visit(&n, &index, &mut deps, &mut Vec::new(), &mut order, root)?;
    }
    Ok(order)
}

struct Archive {
    out: Vec<u8>,
    ino: u32,
}

impl Archive {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: Option<(u32, u32)>) -> Result<()> {
        self.ino += 1;
        let size = u32::try_from(data.len()).map_err(|_| bad("initramfs", format!("{name} is larger than 4 GiB")))?;
        let mut b = cpio::newc::Builder::new(name).ino(self.ino).mode(mode).nlink(1);
        if let Some((major, minor)) = rdev {
            b = b.rdev_major(major).rdev_minor(minor);
        }
        let mut w = b.write(&mut self.out, size);
        w.write_all(data).and_then(|()| w.finish().map(drop)).map_err(|e| bad("initramfs", e.to_string()))
    }

    fn dir(&mut self, name: &str) -> Result<()> {
        self.entry(name, 0o040_755, &[], None)
    }
}

/// Builds the initramfs described by `spec` into `out` (written atomically).
pub fn build_initramfs(spec: &InitramfsSpec, out: &Path) -> Result<InitramfsSummary> {
    let init = std::fs::read(&spec.init).map_err(|e| BundleError::io("reading", &spec.init, e))?;
    if init.get(..4) != Some(b"\x7fELF") {
        return Err(bad("init", format!("{} is not an ELF executable", spec.init.display())));
    }
    let modules = match (&spec.modules_root, spec.modules.is_empty()) {
        (_, true) => Vec::new(),
        (Some(root), false) => resolve_modules(root, &spec.modules)?,
        (None, false) => return Err(bad("modules", "modules were named but no module directory was given")),
    };
    let mut a = Archive { out: Vec::with_capacity(init.len() + (8 << 20)), ino: 0 };
    for d in ["dev", "proc", "sys", "run", "tmp", "mnt", "etc", "etc/metalcast", "lib", "lib/modules", MODULE_DIR] {
        a.dir(d)?;
    }
    a.entry("dev/console", 0o020_600, &[], Some((5, 1)))?;
    a.entry("init", 0o100_755, &init, None)?;
    let mut list = String::new();
    for (name, path) in &modules {
        let bytes = std::fs::read(path).map_err(|e| BundleError::io("reading", path, e))?;
        a.entry(&format!("{MODULE_DIR}/{name}.ko"), 0o100_644, &bytes, None)?;
        list.push_str(&format!("{name}.ko\n"));
    }
    a.entry(MODULE_LIST, 0o100_644, list.as_bytes(), None)?;
    let mut made_dirs: Vec<String> =
        ["dev", "proc", "sys", "run", "tmp", "mnt", "etc", "etc/metalcast", "lib", "lib/modules", MODULE_DIR]
            .map(String::from)
            .to_vec();
    let mut add = |a: &mut Archive, dest: &str, mode: u32, bytes: &[u8]| -> Result<()> {
        let rel = dest.trim_start_matches('/');
        if !dest.starts_with('/') || rel.is_empty() || rel.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return Err(bad("file destination", format!("{dest:?} is not a clean absolute path")));
        }
        // Parent directories that the archive does not have yet.
        let comps: Vec<&str> = rel.split('/').collect();
        for i in 1..comps.len() {
            let d = comps[..i].join("/");
            if !made_dirs.contains(&d) {
                a.dir(&d)?;
                made_dirs.push(d);
            }
        }
        a.entry(rel, mode, bytes, None)
    };
    for (src, dest) in &spec.files {
        let bytes = std::fs::read(src).map_err(|e| BundleError::io("reading", src, e))?;
        add(&mut a, &format!("/{}", dest.trim_start_matches('/')), 0o100_644, &bytes)?;
    }
    let programs: Vec<PathBuf> = spec.programs.iter().map(|(s, _)| s.clone()).collect();
    let dirs: Vec<PathBuf> = LIBRARY_DIRS.iter().map(PathBuf::from).collect();
    let libraries = resolve_libraries(&programs, &dirs)?;
    for (src, dest) in spec.programs.iter().chain(&libraries) {
        let bytes = std::fs::read(src).map_err(|e| BundleError::io("reading", src, e))?;
        if bytes.get(..4) != Some(b"\x7fELF") {
            return Err(bad("programs", format!("{} is not an ELF file", src.display())));
        }
        add(&mut a, dest, 0o100_755, &bytes)?;
    }
    cpio::newc::trailer(&mut a.out).map_err(|e| bad("initramfs", e.to_string()))?;
    let cpio_bytes = a.out.len() as u64;
    let compressed =
        zstd::bulk::compress(&a.out, spec.zstd_level).map_err(|e| BundleError::io("compressing", out, e))?;
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut t = tempfile::NamedTempFile::new_in(dir).map_err(|e| BundleError::io("creating a file in", dir, e))?;
    t.write_all(&compressed).map_err(|e| BundleError::io("writing", out, e))?;
    // Not secret, and served by TFTP/HTTP daemons running as other users: world-readable
    // (the temporary file starts as 0600).
    t.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(|e| BundleError::io("setting the mode of", out, e))?;
    t.persist(out).map_err(|e| BundleError::io("renaming into", out, e.error))?;
    Ok(InitramfsSummary {
        modules: modules.into_iter().map(|(n, _)| n).collect(),
        libraries: libraries.into_iter().map(|(_, d)| d).collect(),
        cpio_bytes,
        bytes: compressed.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with a `.modinfo` section (and the section-name table).
    fn fake_module(depends: &str) -> Vec<u8> {
        let modinfo = format!("license=GPL\0depends={depends}\0name=x\0");
        let shstr = b"\0.modinfo\0.shstrtab\0";
        let mut f = vec![0u8; 0x40];
        f[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        let mi_off = f.len();
        f.extend_from_slice(modinfo.as_bytes());
        let ss_off = f.len();
        f.extend_from_slice(shstr);
        let shoff = f.len();
        let mut sh = |name: u32, off: usize, size: usize| {
            let mut h = [0u8; 0x40];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            f.extend_from_slice(&h);
        };
        sh(0, 0, 0);
        sh(1, mi_off, modinfo.len());
        sh(10, ss_off, shstr.len());
        f[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&0x40u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        f
    }

    #[test]
    fn depends_and_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("kernel/net")).unwrap();
        std::fs::write(d.path().join("kernel/net/virtio_net.ko"), fake_module("net_failover,virtio")).unwrap();
        std::fs::write(d.path().join("kernel/net/net_failover.ko"), fake_module("failover")).unwrap();
        std::fs::write(d.path().join("kernel/failover.ko"), fake_module("")).unwrap();
        std::fs::write(d.path().join("kernel/virtio.ko"), fake_module("")).unwrap();
        assert_eq!(module_depends(&fake_module("a,b-c")).unwrap(), ["a", "b_c"]);
        let order: Vec<String> =
            resolve_modules(d.path(), &["virtio_net".into()]).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(order, ["failover", "net_failover", "virtio", "virtio_net"]);
        let missing = resolve_modules(d.path(), &["e1000".into()]).unwrap_err();
        assert!(missing.to_string().contains("e1000"), "{missing}");
        std::fs::write(d.path().join("kernel/failover.ko"), fake_module("virtio_net")).unwrap();
        let cycle = resolve_modules(d.path(), &["virtio_net".into()]).unwrap_err();
        assert!(cycle.to_string().contains("cycle"), "{cycle}");
    }

    #[test]
    fn garbage_modules_are_errors_not_panics() {
        for bad in [&b""[..], b"\x7fELF\x02\x01", &[0xffu8; 200][..]] {
            assert!(module_depends(bad).is_err());
        }
        let mut m = fake_module("x");
        m[0x28] = 0xf0; // section table offset past the end
        assert!(module_depends(&m).is_err());
    }

    #[test]
    fn archive_lists_init_modules_and_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("virtio.ko"), fake_module("")).unwrap();
        let init = d.path().join("init");
        std::fs::write(&init, b"\x7fELF-not-really").unwrap();
        let key = d.path().join("k.pub");
        std::fs::write(&key, b"key").unwrap();
        let out = d.path().join("initrd.img");
        let spec = InitramfsSpec {
            init,
            modules_root: Some(d.path().to_path_buf()),
            modules: vec!["virtio".into()],
            files: vec![(key, "/etc/metalcast/trusted/k.pub".into())],
            programs: Vec::new(),
            zstd_level: 3,
        };
        let s = build_initramfs(&spec, &out).unwrap();
        assert_eq!(s.modules, ["virtio"]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o644, "world-readable for TFTP");
        let cpio = zstd::decode_all(std::fs::File::open(&out).unwrap()).unwrap();
        let mut names = Vec::new();
        let mut r = &cpio[..];
        loop {
            let e = cpio::newc::Reader::new(r).unwrap();
            if e.entry().is_trailer() {
                break;
            }
            names.push((e.entry().name().to_owned(), e.entry().mode()));
            r = e.finish().unwrap();
        }
        let has = |n: &str| names.iter().any(|(x, _)| x == n);
        for n in ["init", "dev/console", "lib/modules/metalcast/virtio.ko", MODULE_LIST, "etc/metalcast/trusted/k.pub"]
        {
            assert!(has(n), "{n} missing from {names:?}");
        }
        assert!(names.iter().any(|(n, m)| n == "init" && m & 0o111 != 0));
        let bad = InitramfsSpec { files: vec![(out.clone(), "/../x".into())], ..spec };
        assert!(build_initramfs(&bad, &d.path().join("o2")).is_err());
    }

    /// Entry names of a built initramfs.
    fn entries(path: &Path) -> Vec<String> {
        let cpio = zstd::decode_all(std::fs::File::open(path).unwrap()).unwrap();
        let (mut names, mut r) = (Vec::new(), &cpio[..]);
        loop {
            let e = cpio::newc::Reader::new(r).unwrap();
            if e.entry().is_trailer() {
                return names;
            }
            names.push(e.entry().name().to_owned());
            r = e.finish().unwrap();
        }
    }

    #[test]
    fn program_with_its_shared_libraries() {
        // This test binary is a real dynamically linked executable (glibc).
        let exe = std::env::current_exe().unwrap();
        let (interp, needed) = elf_dynamic(&std::fs::read(&exe).unwrap()).unwrap();
        let interp = interp.expect("a dynamically linked executable has PT_INTERP");
        assert!(interp.starts_with('/') && interp.contains("ld-linux"), "{interp}");
        assert!(needed.iter().any(|n| n == "libc.so.6"), "{needed:?}");
        let dirs: Vec<PathBuf> = LIBRARY_DIRS.iter().map(PathBuf::from).collect();
        let libs = resolve_libraries(std::slice::from_ref(&exe), &dirs).unwrap();
        let dests: Vec<&str> = libs.iter().map(|(_, d)| d.as_str()).collect();
        assert!(dests.contains(&interp.as_str()), "{dests:?}");
        assert!(dests.iter().any(|d| d.ends_with("/libc.so.6")), "{dests:?}");
        assert_eq!(dests.iter().filter(|d| d.contains("ld-linux")).count(), 1, "interpreter once: {dests:?}");
        // A library nowhere in the search path is an error naming it.
        let e = resolve_libraries(std::slice::from_ref(&exe), &[PathBuf::from("/nonexistent")]).unwrap_err();
        assert!(e.to_string().contains("which is in none of"), "{e}");

        let d = tempfile::tempdir().unwrap();
        let init = d.path().join("init");
        std::fs::write(&init, b"\x7fELF-not-really").unwrap();
        let out = d.path().join("initrd.img");
        let spec = InitramfsSpec {
            init,
            modules_root: None,
            modules: Vec::new(),
            files: Vec::new(),
            programs: vec![(exe.clone(), "/sbin/tool".into())],
            zstd_level: 1,
        };
        let s = build_initramfs(&spec, &out).unwrap();
        let names = entries(&out);
        for want in ["sbin", "sbin/tool", interp.trim_start_matches('/')] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
        for l in &s.libraries {
            assert!(names.iter().any(|n| *n == l[1..]), "{l} missing from {names:?}");
        }
        // Not an ELF file: refused.
        let txt = d.path().join("script");
        std::fs::write(&txt, b"#!/bin/sh\n").unwrap();
        let bad = InitramfsSpec { programs: vec![(txt, "/bin/x".into())], ..spec };
        assert!(build_initramfs(&bad, &d.path().join("o2")).is_err());
    }

    #[test]
    fn garbage_elf_dynamic_is_an_error_not_a_panic() {
        for bad in [&b""[..], b"\x7fELF\x02\x01", &[0xffu8; 200][..]] {
            assert!(elf_dynamic(bad).is_err());
        }
        let mut exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        exe[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes()); // program headers past the end
        assert!(elf_dynamic(&exe).is_err());
        // A file without program headers (like a module) has no dynamic facts.
        assert_eq!(elf_dynamic(&fake_module("")).unwrap(), (None, Vec::new()));
    }
}
