//! Where a receiver's multicast datagrams come from: the seam between the
//! protocol ([`crate::Receiver`]) and the receive path.
//!
//! [`SocketSource`] is the plain path: a UDP socket joined to the group, read
//! with `recvmmsg`. Other paths (the XDP/AF_XDP fast path in `metalcast-ebpf`,
//! wired up by the node runtime) implement [`PacketSource`] too and hand the
//! receiver the UDP payloads of their frames.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use crate::error::TransportError;
use crate::packet::OVERHEAD;
use crate::session::SessionSpec;
use crate::sys::{self, RecvBatch};

/// Datagrams (UDP payloads) of the session's group, in batches.
///
/// The receiver calls [`recv`](PacketSource::recv), reads the batch with
/// [`get`](PacketSource::get), and calls [`block_done`](PacketSource::block_done)
/// each time a block is written: from then on the source may stop delivering
/// that block's symbols (the XDP path drops them in the kernel).
pub trait PacketSource {
    /// Waits at most `timeout` for datagrams; returns how many are in the
    /// batch (0 on timeout). Invalidates the previous batch.
    fn recv(&mut self, timeout: Duration) -> Result<usize, TransportError>;

    /// Datagram `i` (< the last `recv`'s count) of the current batch: a UDP payload.
    fn get(&self, i: usize) -> &[u8];

    /// Hook: block `block` is decoded, verified and written; its symbols are no longer needed.
    fn block_done(&mut self, block: u32) {
        let _ = block;
    }

    /// Packets of the session that arrived but were dropped on purpose before
    /// reaching [`get`](PacketSource::get) (symbols of finished blocks). They
    /// count as received when the receiver estimates loss from sequence gaps.
    fn dropped_on_purpose(&self) -> u64 {
        0
    }
}

impl<T: PacketSource + ?Sized> PacketSource for &mut T {
    fn recv(&mut self, timeout: Duration) -> Result<usize, TransportError> {
        (**self).recv(timeout)
    }
    fn get(&self, i: usize) -> &[u8] {
        (**self).get(i)
    }
    fn block_done(&mut self, block: u32) {
        (**self).block_done(block)
    }
    fn dropped_on_purpose(&self) -> u64 {
        (**self).dropped_on_purpose()
    }
}

/// The socket path: a UDP socket bound to the group's port and joined to the
/// group, read with `recvmmsg` (32 reads per call). With UDP GRO (the kernel
/// accepts it since 5.0) a NIC or veth that coalesces on receive hands over
/// up to 64 KiB of same-size datagrams per read, split here again: fewer
/// socket buffers, wake-ups and reads per packet.
#[derive(Debug)]
pub struct SocketSource {
    sock: UdpSocket,
    batch: RecvBatch,
    gro: bool,
}

impl SocketSource {
    /// Binds the group's port and joins the group on the interface with
    /// address `iface` (or any), sized for `spec`'s symbols.
    pub fn join(spec: &SessionSpec, iface: Ipv4Addr) -> Result<Self, TransportError> {
        Self::join_group(spec.group_addr(), iface, usize::from(spec.symbol_size))
    }

    /// Like [`join`](Self::join) for a group and symbol size.
    pub fn join_group(group: SocketAddrV4, iface: Ipv4Addr, symbol_size: usize) -> Result<Self, TransportError> {
        let sock = sys::receiver_socket(group, iface)?;
        let gro = sys::enable_gro(&sock);
        let cap = if gro { 65536 } else { OVERHEAD + symbol_size + 64 };
        Ok(SocketSource { sock, batch: RecvBatch::new(if gro { 32 } else { 64 }, cap), gro })
    }

    /// Whether the kernel accepted UDP GRO on the socket.
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// Reads so far that carried several coalesced datagrams (GRO at work).
    pub fn coalesced_reads(&self) -> u64 {
        self.batch.coalesced_reads()
    }
}

impl AsFd for SocketSource {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl PacketSource for SocketSource {
    fn recv(&mut self, timeout: Duration) -> Result<usize, TransportError> {
        self.batch.recv(&self.sock, timeout)
    }

    fn get(&self, i: usize) -> &[u8] {
        self.batch.get(i)
    }
}
