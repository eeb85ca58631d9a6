//! RaptorQ-coded, authenticated UDP multicast for image bundles.
//!
//! One sender streams a bundle's stored chunks, one RaptorQ source block
//! each, to a multicast group: first every block's source symbols (a receiver
//! that lost nothing never runs the decoder), then fresh repair symbols sized
//! to the largest per-block deficit any receiver reports, so one repair
//! symbol fixes different losses at different receivers. Every packet carries
//! a MAC under a per-session key, and every decoded chunk is checked against
//! the signed manifest before a byte of it is written. The protocol is
//! specified in `docs/wire-protocol.md`.
//!
//! Parts:
//! - [`key`]: the per-session key and its packet MAC state;
//! - [`session`]: what sender and receivers agree on out of band;
//! - [`packet`]: packet formats and their authentication;
//! - [`layout`]: chunks to source blocks;
//! - [`sender`] and [`receiver`]: the two ends;
//! - [`rate`]: the adaptive send rate;
//! - [`feedback`]: plans, back-off and status intervals: feedback that scales with the fleet;
//! - [`outlier`]: which receivers' repair may wait (lossy outliers, late joiners);
//! - [`erasure`]: the cheap decode for blocks that lost a few source symbols;
//! - [`source`]: where the receiver's datagrams come from (socket or fast path);
//! - `sys`: sockets, GSO and `recvmmsg` (all the unsafe code).

pub mod erasure;
pub mod error;
pub mod feedback;
mod gf256;
pub mod key;
pub mod layout;
pub mod outlier;
pub mod packet;
pub mod rate;
pub mod receiver;
pub mod sender;
pub mod seq;
pub mod session;
pub mod source;
mod sys;

pub use error::TransportError;
pub use key::SessionKey;
pub use outlier::OutlierKind;
pub use receiver::{ChunkSink, MemorySink, Receiver, ReceiverConfig, ReceiverProgress, ReceiverSummary, Rejected};
pub use sender::{
    ESI_EPOCH_STRIDE, MAX_EPOCH, ReceiverStatus, RejectedReports, Resume, Sender, SenderConfig, SenderProgress,
    SenderSummary, StoredImage,
};
pub use session::SessionSpec;
pub use source::{PacketSource, SocketSource};
