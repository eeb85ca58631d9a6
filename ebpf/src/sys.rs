//! Everything unsafe in this crate, outside `#[repr(C)]` map mirrors: the
//! AF_XDP packet memory (UMEM) and waiting on several descriptors.

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::time::Duration;

use xdpilone::{Umem, UmemConfig};

/// Anonymous, page-aligned, pre-faulted memory shared with the kernel as an
/// AF_XDP UMEM. Unmapped on drop, which must come after the [`Umem`] using it.
#[derive(Debug)]
pub(crate) struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Area` exclusively owns its mapping; the pointer is only
// dereferenced through `&self`/`&mut self` methods.
unsafe impl Send for Area {}

impl Area {
    /// Maps `len` bytes (rounded up to whole pages by the kernel).
    pub(crate) fn new(len: usize) -> io::Result<Area> {
        // SAFETY: an anonymous private mapping at an address of the kernel's
        // choosing aliases nothing; the result is checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Area { ptr, len })
    }

    /// Registers the area as a UMEM with `config`.
    pub(crate) fn umem(&self, config: UmemConfig) -> io::Result<Umem> {
        let area = NonNull::slice_from_raw_parts(self.ptr, self.len);
        // SAFETY: the area is page aligned (mmap), `len` bytes long and valid
        // for reads and writes; it outlives the Umem because every owner
        // (`XskRx`) declares the Umem before the Area, so drops it first.
        unsafe { Umem::new(config, area) }.map_err(|e| io::Error::from_raw_os_error(e.get_raw().abs()))
    }

    /// The `len` bytes at `offset`, or `None` if out of bounds.
    ///
    /// Callers only ask for frames the kernel has handed back on the RX ring
    /// and that are not yet returned to the fill ring: the kernel does not
    /// write them meanwhile.
    pub(crate) fn get(&self, offset: u64, len: u32) -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(len as usize)?;
        if end > self.len {
            return None;
        }
        // SAFETY: start..end lies within the mapping (checked above), which
        // lives as long as `self`; see the note above on kernel writes.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(start), len as usize) })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; no reference into
        // the area outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Waits until one of `fds` is readable or `timeout` passes. Returns which
/// are readable (all false on timeout or interruption).
pub(crate) fn wait_readable(fds: &[RawFd], timeout: Duration) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: pfds is a valid array of pfds.len() pollfd for the whole call.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds.iter().map(|p| p.revents & libc::POLLIN != 0).collect())
}
