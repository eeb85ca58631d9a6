//! The `none` BMC: a node without out-of-band management (e.g. a namespace
//! node of the demo fabric). Every call is a 501; reclaim works only through
//! the node's runtime.

use super::{Bmc, ConsoleStream, DriverError, DriverFuture, PowerOp};

/// No BMC.
#[derive(Debug, Clone, Copy)]
pub(super) struct NoBmc;

const NONE: DriverError = DriverError::Unsupported("the node has no BMC (obm type none)");

impl Bmc for NoBmc {
    fn power(&self, _op: PowerOp) -> DriverFuture<'_, ()> {
        Box::pin(async { Err(NONE) })
    }

    fn power_status(&self) -> DriverFuture<'_, bool> {
        Box::pin(async { Err(NONE) })
    }

    fn set_bootdev<'a>(&'a self, _dev: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async { Err(NONE) })
    }

    fn open_console(&self) -> DriverFuture<'_, ConsoleStream> {
        Box::pin(async { Err(NONE) })
    }
}

/// An obmd node whose OBM is not enabled (no node token).
#[derive(Debug, Clone, Copy)]
pub(super) struct Disabled;

const DISABLED: DriverError = DriverError::Unsupported("the node's OBM is not enabled (PUT /v0/node/<n>/obm)");

impl Bmc for Disabled {
    fn power(&self, _op: PowerOp) -> DriverFuture<'_, ()> {
        Box::pin(async { Err(DISABLED) })
    }

    fn power_status(&self) -> DriverFuture<'_, bool> {
        Box::pin(async { Err(DISABLED) })
    }

    fn set_bootdev<'a>(&'a self, _dev: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async { Err(DISABLED) })
    }

    fn open_console(&self) -> DriverFuture<'_, ConsoleStream> {
        Box::pin(async { Err(DISABLED) })
    }
}
