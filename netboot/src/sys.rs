//! The one place sockets are made: `SO_REUSEADDR`, `SO_BROADCAST`, `SO_BINDTODEVICE` via socket2
//! (no `unsafe`, no raw fds).

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::NetbootError;

/// A non-blocking UDP socket bound to `addr` (and to `interface` when set).
pub(crate) fn udp_socket(
    what: &'static str,
    addr: SocketAddr,
    interface: Option<&str>,
) -> Result<std::net::UdpSocket, NetbootError> {
    let bind_err = |source| NetbootError::Bind { what, addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(bind_err)?;
    socket.set_reuse_address(true).map_err(bind_err)?;
    socket.set_broadcast(true).map_err(bind_err)?;
    if let Some(interface) = interface {
        socket.bind_device(Some(interface.as_bytes())).map_err(|source| NetbootError::BindDevice {
            what,
            interface: interface.to_owned(),
            source,
        })?;
    }
    socket.set_nonblocking(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    Ok(socket.into())
}
