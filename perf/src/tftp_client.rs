//! A TFTP read client for the netboot benchmark: RFC 1350 with the option
//! extension (RFC 2347), blksize (2348), tsize (2349) and windowsize (7440),
//! so one client measures both servers with and without windowsize. No
//! maintained Rust crate offers a TFTP client with windowsize (async-tftp,
//! which the server uses, is server-only), and firmware clients cannot be
//! driven from a benchmark.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// How a transfer went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The file's bytes.
    pub data: Vec<u8>,
    /// Block size in use (the server's OACK, else 512).
    pub blksize: usize,
    /// Window size in use (1 when the server did not acknowledge the option).
    pub windowsize: u16,
    /// ACKs sent for data (a lower count with a larger window).
    pub acks: u64,
    /// Timeouts that resent an ACK.
    pub timeouts: u64,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum TftpError {
    /// Socket error.
    #[error("tftp socket: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered with an ERROR packet.
    #[error("tftp server error {code}: {msg}")]
    Server {
        /// Error code.
        code: u16,
        /// Its message.
        msg: String,
    },
    /// A packet we cannot use.
    #[error("tftp: {0}")]
    Protocol(String),
    /// Too many timeouts in a row.
    #[error("tftp: no answer after {0} timeouts")]
    TimedOut(u32),
}

const RRQ: u16 = 1;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

fn ack(block: u16) -> [u8; 4] {
    let [a, b] = ACK.to_be_bytes();
    let [c, d] = block.to_be_bytes();
    [a, b, c, d]
}

fn parse_options(body: &[u8]) -> Vec<(String, String)> {
    let fields: Vec<String> =
        body.split(|b| *b == 0).filter(|f| !f.is_empty()).map(|f| String::from_utf8_lossy(f).to_lowercase()).collect();
    fields.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0].clone(), c[1].clone())).collect()
}

/// Reads `file` from `server` (port 69 or another), asking for `blksize`
/// and, when `windowsize` > 1, that window (RFC 7440). Each wait is bounded
/// by `timeout`; five in a row end the transfer.
pub fn fetch(
    server: SocketAddr,
    file: &str,
    blksize: u16,
    windowsize: u16,
    timeout: Duration,
) -> Result<Fetched, TftpError> {
    let sock = UdpSocket::bind(if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    sock.set_read_timeout(Some(timeout))?;
    let mut rrq = RRQ.to_be_bytes().to_vec();
    for field in [file, "octet", "blksize", &blksize.to_string(), "tsize", "0"] {
        rrq.extend_from_slice(field.as_bytes());
        rrq.push(0);
    }
    if windowsize > 1 {
        for field in ["windowsize", &windowsize.to_string()] {
            rrq.extend_from_slice(field.as_bytes());
            rrq.push(0);
        }
    }
    sock.send_to(&rrq, server)?;

    let mut buf = vec![0u8; 65_536];
    let mut peer: Option<SocketAddr> = None;
    let (mut size, mut window) = (512usize, 1u16);
    let mut out = Fetched { data: Vec::new(), blksize: 512, windowsize: 1, acks: 0, timeouts: 0 };
    let (mut expected, mut in_window, mut misses) = (1u16, 0u16, 0u32);
    let mut last_ack: Option<[u8; 4]> = None;
    loop {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                misses += 1;
                out.timeouts += 1;
                if misses >= 5 {
                    return Err(TftpError::TimedOut(misses));
                }
                match (peer, last_ack) {
                    (Some(p), Some(a)) => sock.send_to(&a, p)?,
                    _ => sock.send_to(&rrq, server)?,
                };
                in_window = 0;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // The transfer's TID is the first answer's port; anything else is not ours.
        match peer {
            None if from.ip() == server.ip() => peer = Some(from),
            Some(p) if p == from => {}
            _ => continue,
        }
        misses = 0;
        let pkt = &buf[..n];
        if pkt.len() < 4 {
            return Err(TftpError::Protocol(format!("{n}-byte packet")));
        }
        let op = u16::from_be_bytes([pkt[0], pkt[1]]);
        match op {
            OACK => {
                for (k, v) in parse_options(&pkt[2..]) {
                    match k.as_str() {
                        "blksize" => size = v.parse().map_err(|_| TftpError::Protocol(format!("blksize {v:?}")))?,
                        "windowsize" => {
                            window = v.parse().map_err(|_| TftpError::Protocol(format!("windowsize {v:?}")))?
                        }
                        _ => {}
                    }
                }
                out.blksize = size;
                out.windowsize = window;
                let a = ack(0);
                sock.send_to(&a, from)?;
                last_ack = Some(a);
            }
            DATA => {
                let block = u16::from_be_bytes([pkt[2], pkt[3]]);
                let payload = &pkt[4..];
                if block != expected {
                    // Out of order (a loss) or a repeat: acknowledge the last block in order once, and
                    // the server resends from there (RFC 7440 section 4); the rest of that window
                    // arrives out of order too and is dropped without another ACK.
                    let a = ack(expected.wrapping_sub(1));
                    if last_ack != Some(a) {
                        sock.send_to(&a, from)?;
                        last_ack = Some(a);
                    }
                    in_window = 0;
                    continue;
                }
                out.data.extend_from_slice(payload);
                in_window += 1;
                let last = payload.len() < size;
                if last || in_window >= window {
                    let a = ack(block);
                    sock.send_to(&a, from)?;
                    out.acks += 1;
                    last_ack = Some(a);
                    in_window = 0;
                }
                if last {
                    return Ok(out);
                }
                expected = expected.wrapping_add(1);
            }
            ERROR => {
                let code = u16::from_be_bytes([pkt[2], pkt[3]]);
                let msg = String::from_utf8_lossy(pkt[4..].split(|b| *b == 0).next().unwrap_or_default()).into_owned();
                return Err(TftpError::Server { code, msg });
            }
            other => return Err(TftpError::Protocol(format!("opcode {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_pair_up_case_insensitively() {
        assert_eq!(
            parse_options(b"blksize\x001468\x00WindowSize\x0016\x00tsize\x00"),
            [("blksize".to_string(), "1468".to_string()), ("windowsize".into(), "16".into())]
        );
    }

    #[test]
    fn unreachable_server_times_out_with_a_bound() {
        // A port nothing listens on: ICMP port unreachable or silence; either way an error, not a hang.
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead = sock.local_addr().unwrap();
        drop(sock);
        let t0 = std::time::Instant::now();
        assert!(fetch(dead, "x", 1468, 4, Duration::from_millis(50)).is_err());
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
