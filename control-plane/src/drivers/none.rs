//! A BMC that cannot be driven: a node without out-of-band management
//! (`none`, e.g. a namespace node of the demo fabric: reclaim works only
//! through the node's runtime), or an obmd node whose OBM is not enabled.
//! Every call is a 501 naming why.

use super::{Bmc, ConsoleStream, DriverError, DriverFuture, PowerOp};

/// No usable BMC; the message says why.
#[derive(Debug, Clone, Copy)]
pub(super) struct NoBmc(pub(super) &'static str);

/// A node registered with `obm` type `none`.
pub(super) const NONE: NoBmc = NoBmc("the node has no BMC (obm type none)");
/// An obmd node without a node token.
pub(super) const DISABLED: NoBmc = NoBmc("the node's OBM is not enabled (PUT /v0/node/<n>/obm)");

impl Bmc for NoBmc {
    fn power(&self, _op: PowerOp) -> DriverFuture<'_, ()> {
        Box::pin(async { Err(DriverError::Unsupported(self.0)) })
    }

    fn power_status(&self) -> DriverFuture<'_, bool> {
        Box::pin(async { Err(DriverError::Unsupported(self.0)) })
    }

    fn set_bootdev<'a>(&'a self, _dev: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async { Err(DriverError::Unsupported(self.0)) })
    }

    fn open_console(&self) -> DriverFuture<'_, ConsoleStream> {
        Box::pin(async { Err(DriverError::Unsupported(self.0)) })
    }
}
