//! Writing parts out: a bundle's parts to a directory, byte-identical, with
//! holes left sparse. [`PartFiles`] is also the directory sink of the
//! multicast receiver: it writes verified chunks in any order and makes the
//! files appear only when every chunk is in.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;

use crate::codec::decode_chunk;
use crate::error::{BundleError, Result};
use crate::manifest::Manifest;
use crate::reader::Bundle;

/// Partially written part files in a directory. Files are created as
/// `.<name>.partial` with their final size (sparse), receive chunks at their
/// offsets, and are renamed to `<name>` by [`PartFiles::finish`]. Dropped
/// unfinished, the partial files are removed: a half-written output is never
/// left behind as if complete.
#[derive(Debug)]
pub struct PartFiles {
    dir: PathBuf,
    /// `(part index, partial path, file)`, for the selected parts only.
    files: Vec<(usize, PathBuf, File)>,
    finished: bool,
}

impl PartFiles {
    /// Creates the partial files of `parts` (all parts if empty) in `dir`.
    pub fn create(dir: &Path, m: &Manifest, parts: &[String]) -> Result<Self> {
        for name in parts {
            if m.part(name).is_none() {
                return Err(BundleError::BadInput { what: name.clone(), reason: "no such part in the bundle".into() });
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| BundleError::io("creating directory", dir, e))?;
        let mut me = PartFiles { dir: dir.to_path_buf(), files: Vec::new(), finished: false };
        for (i, p) in m.parts.iter().enumerate() {
            if !parts.is_empty() && !parts.contains(&p.name) {
                continue;
            }
            let path = dir.join(format!(".{}.partial", p.name));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| BundleError::io("creating", &path, e))?;
            me.files.push((i, path.clone(), f));
            me.files.last().expect("just pushed").2.set_len(p.size).map_err(|e| BundleError::io("sizing", &path, e))?;
        }
        Ok(me)
    }

    /// Writes the verified, uncompressed bytes of chunk `index`. Chunks of
    /// parts that were not selected are ignored.
    pub fn write_chunk(&self, m: &Manifest, index: usize, data: &[u8]) -> Result<()> {
        let Some((part, off)) = m.locate(index) else {
            return Err(BundleError::invalid(format!("chunks[{index}]"), "outside every part"));
        };
        let pi = m.parts.iter().position(|p| std::ptr::eq(p, part)).expect("part comes from this manifest");
        if let Some((_, path, f)) = self.files.iter().find(|(i, _, _)| *i == pi) {
            f.write_all_at(data, off).map_err(|e| BundleError::io("writing", path, e))?;
        }
        Ok(())
    }

    /// Flushes every file to stable storage and renames it into place.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for (_, path, f) in &self.files {
            f.sync_all().map_err(|e| BundleError::io("syncing", path, e))?;
        }
        for (_, path, _) in &self.files {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix('.'))
                .and_then(|n| n.strip_suffix(".partial"))
                .expect("partial names are built by create()");
            let dest = self.dir.join(name);
            std::fs::rename(path, &dest).map_err(|e| BundleError::io("renaming into place", &dest, e))?;
            out.push(dest);
        }
        self.finished = true;
        Ok(out)
    }
}

impl Drop for PartFiles {
    fn drop(&mut self) {
        if !self.finished {
            for (_, path, _) in &self.files {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Extracts the selected parts (all if empty) of an opened bundle into `dir`,
/// checking every chunk before it is written. The caller checks the signature first.
pub fn extract(bundle: &Bundle, dir: &Path, parts: &[String], progress: &ProgressBar) -> Result<Vec<PathBuf>> {
    let m = &bundle.manifest;
    let out = PartFiles::create(dir, m, parts)?;
    let mut dec =
        zstd::bulk::Decompressor::new().map_err(|e| BundleError::Tool { tool: "zstd", reason: e.to_string() })?;
    let (mut stored, mut data) = (Vec::new(), Vec::new());
    let selected: Vec<_> = m.parts.iter().filter(|p| parts.is_empty() || parts.contains(&p.name)).collect();
    progress.set_length(selected.iter().map(|p| p.size).sum());
    for p in selected {
        for i in p.first_chunk..p.first_chunk + p.chunk_count {
            if !m.chunks[i].is_hole() {
                bundle.read_stored(i, &mut stored)?;
                decode_chunk(m, i, &stored, &mut dec, &mut data)?;
                out.write_chunk(m, i, &data)?;
            }
            progress.inc(u64::from(m.chunks[i].len));
        }
    }
    let paths = out.finish()?;
    progress.finish_and_clear();
    Ok(paths)
}
