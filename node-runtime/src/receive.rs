//! Receiving one image: check the signed manifest, join the session, write
//! every verified chunk, and make the outputs appear only when complete.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
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
    let cfg = ReceiverConfig { id: job.id, iface: job.iface, idle_timeout: job.idle_timeout, ..Default::default() };
    spec.validate().map_err(ReceiveError::Session)?;
    let nblocks = Layout::new(&sm.manifest, spec.symbol_size).blocks.len() as u32;
    let mut source = rx_path::open(job.rx_path, &spec, nblocks, job.iface).map_err(ReceiveError::RxPath)?;
    let rx = Receiver::with_source(&spec, &sm.manifest, cfg, Box::new(&mut source)).map_err(ReceiveError::Session)?;
    let mut files = PartFiles::create(&job.out, &sm.manifest, &[]).map_err(ReceiveError::Output)?;
    let summary = rx.run(&mut files, progress).map_err(ReceiveError::Transport)?;
    let paths = files.finish().map_err(ReceiveError::Output)?;
    Ok((summary, paths, source.report()))
}
