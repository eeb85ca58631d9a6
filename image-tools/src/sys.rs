//! The few system calls the bundle tools make beyond std: hole probing.

use std::fs::File;

use nix::unistd::{Whence, lseek};

/// True when `[off, off+len)` of `file` lies entirely in a hole, according to
/// `SEEK_DATA`. Filesystems without hole support report data everywhere, so a
/// `false` here only means "read it and look".
pub fn range_is_hole(file: &File, off: u64, len: u64) -> bool {
    let Ok(start) = i64::try_from(off) else { return false };
    match lseek(file, start, Whence::SeekData) {
        Ok(next_data) => next_data as u64 >= off + len,
        // ENXIO: no data at or after `off`.
        Err(nix::errno::Errno::ENXIO) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn probes_holes_in_a_sparse_file() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(&[1u8; 4096], 32 << 20).unwrap();
        assert!(range_is_hole(&f, 0, 1 << 20));
        assert!(!range_is_hole(&f, 32 << 20, 1 << 20));
        assert!(!range_is_hole(&f, (32 << 20) - 4096, 8192));
        assert!(range_is_hole(&f, 48 << 20, 1 << 20));
    }
}
