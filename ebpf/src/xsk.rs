//! AF_XDP receive socket (with [xdpilone]): frames the XDP program redirects
//! land in our own memory (the UMEM) without passing the network stack.
//!
//! The fill-ring gotcha: the kernel consumes fill-ring entries lazily, so the
//! UMEM has more frames than fill slots ([`XskConfig::frames`] >
//! [`XskConfig::fill_size`]); frames handed back by the RX ring go to a free
//! list and the fill ring is topped up from it on every receive.

use std::ffi::CString;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, Socket, SocketConfig, Umem, UmemConfig, User};

use crate::sys::{self, Area};

/// Sizes of one AF_XDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XskConfig {
    /// UMEM frames (more than `fill_size`).
    pub frames: u32,
    /// Bytes per frame: 2048 or 4096 (a frame holds one whole Ethernet frame).
    pub frame_size: u32,
    /// Fill-ring entries (a power of two).
    pub fill_size: u32,
    /// RX-ring entries (a power of two).
    pub rx_size: u32,
}

impl Default for XskConfig {
    /// 4096 frames of 4 KiB (16 MiB), 2048 fill and RX slots.
    fn default() -> Self {
        XskConfig { frames: 4096, frame_size: 4096, fill_size: 2048, rx_size: 2048 }
    }
}

impl XskConfig {
    /// A tiny socket for tests.
    pub fn small() -> Self {
        XskConfig { frames: 64, frame_size: 4096, fill_size: 32, rx_size: 32 }
    }

    /// Largest frame (Ethernet header included) that fits one UMEM frame.
    pub fn max_frame(&self) -> u32 {
        self.frame_size
    }
}

/// Errors setting up an AF_XDP socket.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// A step of the setup failed.
    #[error("AF_XDP {step} on {ifname} queue {queue}: {source}")]
    Setup {
        /// What failed.
        step: &'static str,
        /// Interface.
        ifname: String,
        /// Rx queue.
        queue: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Bad sizes.
    #[error("AF_XDP config: {0}")]
    Config(&'static str),
}

/// AF_XDP statistics of one socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct XskStats {
    /// Frames the kernel dropped for this socket (RX ring or fill ring empty).
    pub rx_dropped: u64,
    /// Of those, because the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub fill_ring_empty: u64,
}

/// One AF_XDP socket bound to one rx queue of one interface, receive only.
pub struct XskRx {
    // Field order is drop order: rings and sockets before the UMEM, the UMEM
    // before the memory it describes.
    rx: RingRx,
    fq: DeviceQueue,
    user: User,
    _sock: Socket,
    _umem: Umem,
    area: Area,
    frame_size: u32,
    /// Frames we own and the kernel does not: ready for the fill ring.
    free: Vec<u64>,
    /// Frames of the current batch (returned to `free` on the next receive).
    held: Vec<XdpDesc>,
}

impl std::fmt::Debug for XskRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskRx").field("fd", &self.as_raw_fd()).field("held", &self.held.len()).finish_non_exhaustive()
    }
}

impl XskRx {
    /// Creates a socket with its own UMEM and binds it to `queue` of `ifname`
    /// (in the calling thread's network namespace). The kernel picks copy or
    /// zero-copy mode. Frames arrive once an XDP program redirects to it.
    pub fn bind(ifname: &str, queue: u32, cfg: XskConfig) -> Result<XskRx, XskError> {
        if !matches!(cfg.frame_size, 2048 | 4096) {
            return Err(XskError::Config("frame_size must be 2048 or 4096"));
        }
        if !cfg.fill_size.is_power_of_two() || !cfg.rx_size.is_power_of_two() || cfg.frames <= cfg.fill_size {
            return Err(XskError::Config("ring sizes must be powers of two, with more frames than fill slots"));
        }
        let err = |step: &'static str| {
            let ifname = ifname.to_owned();
            move |source: io::Error| XskError::Setup { step, ifname, queue, source }
        };
        let errno = |e: xdpilone::Errno| io::Error::from_raw_os_error(e.get_raw().abs());
        let area = Area::new(cfg.frames as usize * cfg.frame_size as usize).map_err(err("mapping UMEM"))?;
        let umem = area
            .umem(UmemConfig {
                fill_size: cfg.fill_size,
                complete_size: cfg.fill_size,
                frame_size: cfg.frame_size,
                headroom: 0,
                flags: 0,
            })
            .map_err(err("registering UMEM"))?;
        let name = CString::new(ifname).map_err(|_| err("naming interface")(io::ErrorKind::InvalidInput.into()))?;
        let mut info = IfInfo::invalid();
        info.from_name(&name).map_err(|e| err("finding interface")(errno(e)))?;
        info.set_queue(queue);
        let sock = Socket::with_shared(&info, &umem).map_err(|e| err("creating socket")(errno(e)))?;
        let fq = umem.fq_cq(&sock).map_err(|e| err("creating fill/completion rings")(errno(e)))?;
        let user = umem
            .rx_tx(&sock, &SocketConfig { rx_size: NonZeroU32::new(cfg.rx_size), tx_size: None, bind_flags: 0 })
            .map_err(|e| err("creating RX ring")(errno(e)))?;
        let rx = user.map_rx().map_err(|e| err("mapping RX ring")(errno(e)))?;
        umem.bind(&user).map_err(|e| err("binding")(errno(e)))?;
        let free = (0..u64::from(cfg.frames)).map(|i| i * u64::from(cfg.frame_size)).rev().collect();
        let mut x =
            XskRx { rx, fq, user, _sock: sock, _umem: umem, area, frame_size: cfg.frame_size, free, held: Vec::new() };
        x.refill();
        Ok(x)
    }

    /// Tops the fill ring up from the free list.
    fn refill(&mut self) {
        let want = self.free.len() as u32;
        if want == 0 {
            return;
        }
        let mut w = self.fq.fill(want);
        let n = w.insert(self.free.iter().rev().copied());
        w.commit();
        drop(w);
        self.free.truncate(self.free.len() - n as usize);
    }

    /// Returns the previous batch's frames, then takes up to `max` received
    /// frames without waiting. Returns how many; read them with [`frame`](Self::frame).
    pub fn recv(&mut self, max: usize) -> usize {
        let fs = u64::from(self.frame_size);
        self.free.extend(self.held.drain(..).map(|d| d.addr - d.addr % fs));
        self.refill();
        let mut r = self.rx.receive(max as u32);
        while let Some(d) = r.read() {
            self.held.push(d);
        }
        r.release();
        drop(r);
        self.held.len()
    }

    /// Waits at most `timeout` for frames (without taking them).
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        Ok(sys::wait_readable(&[self.as_raw_fd()], timeout)?[0])
    }

    /// Frame `i` of the current batch: a whole Ethernet frame.
    pub fn frame(&self, i: usize) -> &[u8] {
        let d = self.held[i];
        self.area.get(d.addr, d.len).expect("the kernel hands out descriptors inside the UMEM")
    }

    /// The socket's drop counters.
    pub fn stats(&self) -> XskStats {
        let s = self.user.statistics_v2().unwrap_or_default();
        XskStats { rx_dropped: s.rx_dropped, rx_ring_full: s.rx_ring_full, fill_ring_empty: s.rx_fill_ring_empty_descs }
    }
}

impl AsRawFd for XskRx {
    fn as_raw_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }
}
