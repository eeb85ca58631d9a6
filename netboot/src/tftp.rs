//! Read-only TFTP of the files directly in `boot_dir`, with async-tftp (RFC 1350/2347/2348/2349/
//! 7440). async-tftp runs its transfers on its own small executor inside one tokio task; the task
//! (and every transfer) ends when the shutdown token is cancelled.
//!
//! Names are checked before any file is opened: no NUL, no absolute path, no `..`, no `/`
//! (nothing below `boot_dir`): a client names an entry directly in `boot_dir`, and that entry
//! must be (or link to) a regular file. Symlinks in `boot_dir` are followed wherever they point,
//! as tftpd-hpa does: the directory is the operator's configuration (Debian's `ipxe` package
//! itself links `/usr/lib/ipxe/ipxe.efi` to `/boot/ipxe.efi`), and a name from the network can
//! only pick one of its entries. A NUL cannot reach the handler over the wire (it ends the name in the
//! packet; async-tftp then drops the request for its bad mode), but the check stays.
//!
//! Limits of async-tftp 0.4: each transfer runs on its own socket bound to `server_ip:0`, without
//! `SO_BINDTODEVICE` (only the listening socket is bound to `interface`); malformed requests are
//! dropped silently (no ERROR, not counted); concurrent transfers are bounded here, by refusing
//! opens beyond `max_tftp_transfers`.

use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_tftp::packet;
use async_tftp::server::{Handler, TftpServerBuilder};
use blocking::Unblock;
use futures_lite::AsyncRead;
use futures_lite::io::Sink;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::backend::Backend;
use crate::config::Config;
use crate::counters::{Counters, inc};
use crate::error::NetbootError;
use crate::event::Event;
use crate::peers::Peers;
use crate::sys;

/// Largest TFTP block: fits a 1500-byte MTU (what U-Boot, iPXE and EDK2 ask for).
const BLOCK_SIZE_LIMIT: u16 = 1468;
/// Largest RFC 7440 window.
const WINDOW_SIZE_LIMIT: u16 = 32;
/// A transfer whose client stops answering gives up after this many resends of one block.
const MAX_SEND_RETRIES: u32 = 8;

/// Why a TFTP name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) reason: &'static str,
    pub(crate) not_found: bool,
}

fn refuse(reason: &'static str) -> Refusal {
    Refusal { reason, not_found: false }
}

/// The file `name` resolves to in `dir` (already canonical), or why not.
pub(crate) fn resolve(dir: &Path, name: &str) -> Result<PathBuf, Refusal> {
    if name.is_empty() {
        return Err(refuse("empty file name"));
    }
    if name.contains('\0') {
        return Err(refuse("NUL byte in file name"));
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Err(refuse("absolute path"));
    }
    if name.split(['/', '\\']).any(|part| part == "..") {
        return Err(refuse("parent directory (..) in file name"));
    }
    if name.contains(['/', '\\']) || name == "." {
        return Err(refuse("not a file directly in the boot directory"));
    }
    // The entry itself (not where a symlink leads) is directly in `dir`: the checks above.
    let path =
        std::fs::canonicalize(dir.join(name)).map_err(|_| Refusal { reason: "no such file", not_found: true })?;
    let meta = std::fs::metadata(&path).map_err(|_| Refusal { reason: "no such file", not_found: true })?;
    if !meta.is_file() {
        return Err(refuse("not a regular file"));
    }
    Ok(path)
}

struct Shared<B> {
    backend: Arc<B>,
    counters: Arc<Counters>,
    peers: Arc<Peers>,
    /// Transfers whose reader is alive, bounded by `max_transfers`.
    active: AtomicUsize,
    max_transfers: usize,
}

impl<B: Backend> Shared<B> {
    fn report(&self, peer: IpAddr, event: Event) {
        let mac = self.peers.lookup(peer);
        debug!(?mac, %peer, %event, "netboot event");
        self.backend.event(mac, peer, event);
    }

    fn refused(&self, peer: IpAddr, file: &str, reason: &str) {
        inc(&self.counters.tftp_refused);
        info!(%peer, file, reason, "TFTP request refused");
        self.report(peer, Event::TftpRefused { file: file.to_owned(), reason: reason.to_owned() });
    }
}

/// async-tftp handler over `boot_dir`.
struct BootDir<B> {
    dir: PathBuf,
    shared: Arc<Shared<B>>,
}

/// A file being sent: counts bytes, and reports `TftpSent` when dropped after the whole file was read.
struct Sending<B: Backend> {
    inner: Unblock<File>,
    sent: u64,
    size: u64,
    file: String,
    peer: IpAddr,
    shared: Arc<Shared<B>>,
}

impl<B: Backend> AsyncRead for Sending<B> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.sent += n as u64;
        }
        poll
    }
}

impl<B: Backend> Drop for Sending<B> {
    fn drop(&mut self) {
        self.shared.active.fetch_sub(1, Ordering::Relaxed);
        if self.sent == self.size {
            inc(&self.shared.counters.tftp_sent);
            self.shared.counters.tftp_bytes.fetch_add(self.sent, Ordering::Relaxed);
            self.shared.report(self.peer, Event::TftpSent { file: std::mem::take(&mut self.file), bytes: self.sent });
        } else {
            info!(peer = %self.peer, file = self.file, sent = self.sent, size = self.size, "TFTP transfer ended early");
        }
    }
}

impl<B: Backend> Handler for BootDir<B> {
    type Reader = Sending<B>;
    type Writer = Sink;

    async fn read_req_open(
        &mut self,
        client: &SocketAddr,
        path: &Path,
    ) -> Result<(Self::Reader, Option<u64>), packet::Error> {
        let name = path.to_string_lossy().into_owned();
        let refused = |r: Refusal| {
            self.shared.refused(client.ip(), &name, r.reason);
            if r.not_found { packet::Error::FileNotFound } else { packet::Error::PermissionDenied }
        };
        let resolved = resolve(&self.dir, &name).map_err(refused)?;
        if self.shared.active.load(Ordering::Relaxed) >= self.shared.max_transfers {
            return Err(refused(refuse("too many transfers in progress")));
        }
        let opened = File::open(&resolved).and_then(|f| f.metadata().map(|m| (f, m.len())));
        let (file, size) = opened.map_err(|_| refused(refuse("cannot open file")))?;
        debug!(peer = %client, file = name, size, "TFTP read");
        // Opens run one at a time (async-tftp holds the handler's lock), so check-then-add is exact.
        self.shared.active.fetch_add(1, Ordering::Relaxed);
        let reader = Sending {
            inner: Unblock::new(file),
            sent: 0,
            size,
            file: name,
            peer: client.ip(),
            shared: Arc::clone(&self.shared),
        };
        Ok((reader, Some(size)))
    }

    async fn write_req_open(
        &mut self,
        client: &SocketAddr,
        path: &Path,
        _size: Option<u64>,
    ) -> Result<Self::Writer, packet::Error> {
        self.shared.refused(client.ip(), &path.to_string_lossy(), "writes are not allowed");
        Err(packet::Error::PermissionDenied)
    }
}

/// Binds the TFTP socket on `server_ip:tftp_port` and spawns the server; returns the bound address.
pub(crate) async fn start<B: Backend>(
    cfg: &Config,
    backend: Arc<B>,
    counters: Arc<Counters>,
    peers: Arc<Peers>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), NetbootError> {
    let dir_err = |source| NetbootError::BootDir { dir: cfg.boot_dir.clone(), source };
    let dir = std::fs::canonicalize(&cfg.boot_dir).map_err(dir_err)?;
    if !dir.is_dir() {
        return Err(dir_err(io::Error::new(io::ErrorKind::NotADirectory, "not a directory")));
    }
    let addr = SocketAddr::V4(SocketAddrV4::new(cfg.server_ip, cfg.tftp_port));
    let socket = sys::udp_socket("TFTP", addr, cfg.interface.as_deref())?;
    let bound = socket.local_addr().map_err(|source| NetbootError::Bind { what: "TFTP", addr, source })?;
    let handler = BootDir {
        dir,
        shared: Arc::new(Shared {
            backend,
            counters,
            peers,
            active: AtomicUsize::new(0),
            max_transfers: cfg.max_tftp_transfers,
        }),
    };
    let tftp_err = |source| NetbootError::Tftp { addr: bound, source };
    let server = TftpServerBuilder::with_handler(handler)
        .std_socket(socket)
        .map_err(tftp_err)?
        .block_size_limit(BLOCK_SIZE_LIMIT)
        .window_size_limit(WINDOW_SIZE_LIMIT)
        .max_send_retries(MAX_SEND_RETRIES)
        .timeout(Duration::from_secs(2))
        .build()
        .await
        .map_err(tftp_err)?;
    let task = tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            r = server.serve() => if let Err(e) = r {
                warn!(error = %e, "TFTP server stopped");
            },
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_opening() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = std::fs::canonicalize(tmp.path()).expect("canonical");
        std::fs::write(dir.join("undionly.kpxe"), b"x").expect("write");
        std::fs::create_dir(dir.join("sub")).expect("mkdir");
        std::fs::write(dir.join("sub/f"), b"x").expect("write");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let outside = std::fs::canonicalize(elsewhere.path()).expect("canonical").join("ipxe.efi");
        std::fs::write(&outside, b"efi").expect("write");
        std::os::unix::fs::symlink(&outside, dir.join("out")).expect("symlink");
        std::os::unix::fs::symlink(elsewhere.path(), dir.join("outdir")).expect("symlink");
        std::os::unix::fs::symlink("undionly.kpxe", dir.join("in")).expect("symlink");
        assert_eq!(resolve(&dir, "undionly.kpxe"), Ok(dir.join("undionly.kpxe")));
        assert_eq!(resolve(&dir, "in"), Ok(dir.join("undionly.kpxe")), "symlink inside the dir is fine");
        // The operator's symlink to a file elsewhere (Debian: ipxe.efi -> /boot/ipxe.efi) is followed.
        assert_eq!(resolve(&dir, "out"), Ok(outside.clone()));
        for (name, why) in [
            ("", "empty file name"),
            ("a\0b", "NUL byte in file name"),
            ("/etc/passwd", "absolute path"),
            ("../etc/passwd", "parent directory (..) in file name"),
            ("sub/../undionly.kpxe", "parent directory (..) in file name"),
            ("..", "parent directory (..) in file name"),
            ("sub/f", "not a file directly in the boot directory"),
            ("sub", "not a regular file"),
            (".", "not a file directly in the boot directory"),
            ("outdir", "not a regular file"),
            ("outdir/ipxe.efi", "not a file directly in the boot directory"),
            ("missing", "no such file"),
        ] {
            assert_eq!(resolve(&dir, name).map_err(|r| r.reason), Err(why), "{name:?}");
        }
    }
}
