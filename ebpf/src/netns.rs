//! Network-namespace plumbing for loaders: remember the namespace a program
//! was attached in and run its teardown there.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;

use nix::sched::{CloneFlags, setns};

/// Opens the calling thread's network namespace.
pub(crate) fn current() -> io::Result<File> {
    File::open("/proc/thread-self/ns/net")
}

/// Whether `ns` is the calling thread's network namespace.
pub(crate) fn is_current(ns: &File) -> bool {
    match (ns.metadata(), std::fs::metadata("/proc/thread-self/ns/net")) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Runs `f` on the calling thread if it already is in `ns`, else on a
/// short-lived thread that entered `ns` first. If entering fails, `f` is not
/// run and the error is returned.
pub(crate) fn run_in<T: Send>(ns: &File, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    if is_current(ns) {
        return Ok(f());
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
