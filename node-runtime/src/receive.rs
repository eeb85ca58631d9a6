//! Receiving one image: check the signed manifest, join the session, write
//! every verified chunk, and make the outputs appear only when complete. A
//! receive stopped by SIGINT or SIGTERM ([`StopSignals`]) removes its partial
//! outputs, as on any other failure.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use metalcast_image::{PartFiles, PublicKey, SignedManifest};
use metalcast_transport::layout::Layout;
use metalcast_transport::{Receiver, ReceiverConfig, ReceiverProgress, ReceiverSummary, SessionSpec, TransportError};

use crate::rx_path::{self, RxPath, RxPathError, RxReport};

/// What can go wrong, grouped by what the control plane should do about it.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// Reading the manifest or session file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is malformed or its signature is not trusted.
    #[error("manifest not trusted: {0}")]
    Untrusted(#[source] metalcast_image::BundleError),
    /// The session spec is unusable.
    #[error("session: {0}")]
    Session(#[source] TransportError),
    /// The receive path could not be set up (`--rx-path xdp` without XDP, or no socket).
    #[error("receive path: {0}")]
    RxPath(#[source] RxPathError),
    /// The transfer failed.
    #[error("receive: {0}")]
    Transport(#[source] TransportError),
    /// Creating or finishing the output files failed.
    #[error("output: {0}")]
    Output(#[source] metalcast_image::BundleError),
}

impl ReceiveError {
    /// The process exit code for this error (see [`crate::exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            ReceiveError::Untrusted(_) => crate::exit::UNTRUSTED,
            ReceiveError::Transport(TransportError::Timeout { .. }) => crate::exit::TIMEOUT,
            ReceiveError::Transport(TransportError::CorruptBlock { .. }) => crate::exit::CORRUPT,
            ReceiveError::Transport(TransportError::Sink { .. }) | ReceiveError::Output(_) => crate::exit::WRITE,
            _ => crate::exit::FAILURE,
        }
    }
}

/// A receive job.
#[derive(Debug, Clone)]
pub struct ReceiveJob {
    /// The standalone signed manifest (`metalcast-image export-manifest`, or from the control plane).
    pub manifest: PathBuf,
    /// The session spec (JSON).
    pub session: PathBuf,
    /// Trusted public keys; empty with `allow_unsigned` accepts unsigned manifests.
    pub trusted: Vec<PublicKey>,
    /// Accept an unsigned manifest (hashes are still checked).
    pub allow_unsigned: bool,
    /// Output directory.
    pub out: PathBuf,
    /// Interface address to receive on.
    pub iface: Ipv4Addr,
    /// Receiver id reported to the sender.
    pub id: u64,
    /// Give up after this long without data.
    pub idle_timeout: Duration,
    /// XDP/AF_XDP fast path, plain socket, or XDP when available.
    pub rx_path: RxPath,
    /// Set to stop the receive (e.g. [`StopSignals::cancel`]): it fails with
    /// [`TransportError::ReceiveCancelled`] and removes its partial outputs.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// SIGINT and SIGTERM turned from ending the process on the spot (which left
/// `.partial` outputs behind) into a stop of the receive: the first one sets
/// [`cancel`](Self::cancel), which the receiver checks every few
/// milliseconds; it then fails, its partial outputs are removed as on any
/// failure, and the process exits with [`crate::exit::SIGNALLED`] plus the
/// signal's number. A second signal ends the process at once, with the same code.
#[derive(Debug, Clone)]
pub struct StopSignals {
    /// Set by the first signal.
    pub cancel: Arc<AtomicBool>,
    signal: Arc<AtomicI32>,
}

impl StopSignals {
    /// Blocks SIGINT and SIGTERM in the calling thread and every thread it
    /// starts later, and starts the thread that waits for them. Call it
    /// before any other thread is started.
    pub fn catch() -> std::io::Result<StopSignals> {
        crate::sys::block_stop_signals()?;
        let me = StopSignals { cancel: Arc::new(AtomicBool::new(false)), signal: Arc::new(AtomicI32::new(0)) };
        let (cancel, signal) = (Arc::clone(&me.cancel), Arc::clone(&me.signal));
        std::thread::Builder::new().name("metalcast-signals".into()).spawn(move || {
            let Ok(first) = crate::sys::wait_stop_signal() else { return };
            tracing::warn!(signal = first, "stopping: removing partial outputs");
            signal.store(first, Ordering::Relaxed);
            cancel.store(true, Ordering::Relaxed);
            if let Ok(second) = crate::sys::wait_stop_signal() {
                std::process::exit(i32::from(crate::exit::SIGNALLED) + second);
            }
        })?;
        Ok(me)
    }

    /// The number of the signal that stopped the receive, if one came.
    pub fn signal(&self) -> Option<i32> {
        Some(self.signal.load(Ordering::Relaxed)).filter(|&s| s != 0)
    }

    /// The exit code for `e`: [`crate::exit::SIGNALLED`] plus the signal's
    /// number if a signal stopped the receive, else `e`'s own.
    pub fn exit_code(&self, e: &ReceiveError) -> u8 {
        match (e, self.signal()) {
            (ReceiveError::Transport(TransportError::ReceiveCancelled { .. }), Some(sig)) => {
                crate::exit::SIGNALLED.saturating_add(u8::try_from(sig).unwrap_or(u8::MAX))
            }
            _ => e.exit_code(),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ReceiveError> {
    std::fs::read(path).map_err(|source| ReceiveError::Read { path: path.to_path_buf(), source })
}

/// Runs a receive job to completion.
pub fn run(
    job: &ReceiveJob,
    progress: &mut dyn FnMut(&ReceiverProgress),
) -> Result<(ReceiverSummary, Vec<PathBuf>), ReceiveError> {
    run_with_rx_report(job, progress).map(|(s, paths, _)| (s, paths))
}

/// Like [`run`], also reporting the receive path used and its counters.
pub fn run_with_rx_report(
    job: &ReceiveJob,
    progress: &mut dyn FnMut(&ReceiverProgress),
) -> Result<(ReceiverSummary, Vec<PathBuf>, RxReport), ReceiveError> {
    let sm = SignedManifest::from_bytes(&read(&job.manifest)?).map_err(ReceiveError::Untrusted)?;
    sm.verify_signature(&job.trusted, job.allow_unsigned).map_err(ReceiveError::Untrusted)?;
    let spec = SessionSpec::from_json(&read(&job.session)?).map_err(ReceiveError::Session)?;
    let cfg = ReceiverConfig {
        id: job.id,
        iface: job.iface,
        idle_timeout: job.idle_timeout,
        cancel: job.cancel.clone(),
        ..Default::default()
    };
    spec.validate().map_err(ReceiveError::Session)?;
    let nblocks = Layout::new(&sm.manifest, spec.symbol_size).blocks.len() as u32;
    let mut source = rx_path::open(job.rx_path, &spec, nblocks, job.iface).map_err(ReceiveError::RxPath)?;
    let rx = Receiver::with_source(&spec, &sm.manifest, cfg, Box::new(&mut source)).map_err(ReceiveError::Session)?;
    let mut files = PartFiles::create(&job.out, &sm.manifest, &[]).map_err(ReceiveError::Output)?;
    let summary = rx.run(&mut files, progress).map_err(ReceiveError::Transport)?;
    let paths = files.finish().map_err(ReceiveError::Output)?;
    Ok((summary, paths, source.report()))
}
