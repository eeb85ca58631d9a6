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
//! - any extra files (e.g. `/etc/metalcast/trusted/<name>.pub`).
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
    /// zstd level of the archive (1-19).
    pub zstd_level: i32,
}

/// What was built.
#[derive(Debug, Clone)]
pub struct InitramfsSummary {
    /// Modules in load order.
    pub modules: Vec<String>,
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
    let mut made_dirs: Vec<String> = Vec::new();
    for (src, dest) in &spec.files {
        let rel = dest.trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            return Err(bad("file destination", format!("{dest:?} is not a clean absolute path")));
        }
        // Parent directories that the fixed layout does not have yet.
        let comps: Vec<&str> = rel.split('/').collect();
        for i in 1..comps.len() {
            let d = comps[..i].join("/");
            let fixed = ["dev", "proc", "sys", "run", "tmp", "mnt", "etc", "etc/metalcast", "lib", "lib/modules"];
            if !fixed.contains(&d.as_str()) && d != MODULE_DIR && !made_dirs.contains(&d) {
                a.dir(&d)?;
                made_dirs.push(d);
            }
        }
        let bytes = std::fs::read(src).map_err(|e| BundleError::io("reading", src, e))?;
        a.entry(rel, 0o100_644, &bytes, None)?;
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
}
