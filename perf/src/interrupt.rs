//! Clean-up when the bench is ended by a signal (Ctrl-C, `kill`), which runs
//! no destructors: the contenders' processes, the fabrics' namespaces and the
//! scratch images would all outlive the bench.
//!
//! [`install`] starts a thread that waits for SIGINT, SIGTERM or SIGHUP, then
//! kills every contender process still running ([`crate::sys::kill_live_procs`]),
//! deletes every live fabric's namespaces by name
//! ([`metalcast_fabric::delete_live_namespaces`]), removes the scratch
//! directories made with [`scratch_dir`], and exits with 128 + the signal.
//! QEMU guests (`kexec-boot`, `recursion`) are not tracked.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use tokio::signal::unix::{SignalKind, signal};

static SCRATCH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn scratch() -> MutexGuard<'static, Vec<PathBuf>> {
    // A panic while holding the lock cannot leave a list of paths inconsistent.
    SCRATCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A temporary directory in `parent`, removed when dropped or, after
/// [`install`], when the bench is ended by a signal.
#[derive(Debug)]
pub struct ScratchDir {
    dir: tempfile::TempDir,
}

/// Creates a [`ScratchDir`] in `parent`.
pub fn scratch_dir(parent: &Path) -> std::io::Result<ScratchDir> {
    let dir = tempfile::tempdir_in(parent)?;
    scratch().push(dir.path().to_owned());
    Ok(ScratchDir { dir })
}

impl ScratchDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        scratch().retain(|p| p != self.dir.path());
    }
}

/// Starts the clean-up thread (see the module doc). Call once, early in `main`.
pub fn install() -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let mut streams = rt.block_on(async {
        Ok::<_, std::io::Error>([
            (libc::SIGINT, signal(SignalKind::interrupt())?),
            (libc::SIGTERM, signal(SignalKind::terminate())?),
            (libc::SIGHUP, signal(SignalKind::hangup())?),
        ])
    })?;
    std::thread::Builder::new().name("interrupt".into()).spawn(move || {
        let signo = rt.block_on(async {
            let [(i, a), (t, b), (h, c)] = &mut streams;
            tokio::select! {
                _ = a.recv() => *i,
                _ = b.recv() => *t,
                _ = c.recv() => *h,
            }
        });
        eprintln!("metalcast-bench: signal {signo}: stopping contenders, deleting the fabric, exiting");
        let procs = crate::sys::kill_live_procs();
        let namespaces = metalcast_fabric::delete_live_namespaces();
        let dirs = std::mem::take(&mut *scratch());
        for d in &dirs {
            if let Err(e) = std::fs::remove_dir_all(d) {
                eprintln!("metalcast-bench: could not remove {}: {e}", d.display());
            }
        }
        eprintln!(
            "metalcast-bench: killed {procs} processes, deleted namespaces [{}], removed {} scratch directories",
            namespaces.join(" "),
            dirs.len()
        );
        std::process::exit(128 + signo);
    })?;
    Ok(())
}
