//! A BMC driver that reports every call's duration and outcome to an
//! observer (the server's metrics), around whichever driver does the work.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Bmc, ConsoleStream, DriverError, DriverFuture, PowerOp};

/// Told of each finished call: the operation (`power_on`, `power_status`,
/// `set_bootdev`, `open_console` ...), its duration, and whether it succeeded.
pub type Observer = Arc<dyn Fn(&'static str, Duration, bool) + Send + Sync>;

/// `inner`, with every call reported to `observe`.
pub struct Measured {
    inner: Box<dyn Bmc>,
    observe: Observer,
}

impl std::fmt::Debug for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measured").finish_non_exhaustive()
    }
}

impl Measured {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Bmc>, observe: Observer) -> Self {
        Measured { inner, observe }
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        call: impl std::future::Future<Output = Result<T, DriverError>>,
    ) -> Result<T, DriverError> {
        let start = Instant::now();
        let r = call.await;
        (self.observe)(op, start.elapsed(), r.is_ok());
        r
    }
}

impl Bmc for Measured {
    fn power(&self, op: PowerOp) -> DriverFuture<'_, ()> {
        let name = match op {
            PowerOp::On => "power_on",
            PowerOp::Off => "power_off",
            PowerOp::Cycle => "power_cycle",
        };
        Box::pin(self.timed(name, self.inner.power(op)))
    }

    fn power_status(&self) -> DriverFuture<'_, bool> {
        Box::pin(self.timed("power_status", self.inner.power_status()))
    }

    fn set_bootdev<'a>(&'a self, dev: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(self.timed("set_bootdev", self.inner.set_bootdev(dev)))
    }

    fn open_console(&self) -> DriverFuture<'_, ConsoleStream> {
        Box::pin(self.timed("open_console", self.inner.open_console()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    struct Fails;

    impl Bmc for Fails {
        fn power(&self, _: PowerOp) -> DriverFuture<'_, ()> {
            Box::pin(async { Ok(()) })
        }
        fn power_status(&self) -> DriverFuture<'_, bool> {
            Box::pin(async { Err(DriverError::Unsupported("no BMC")) })
        }
        fn set_bootdev<'a>(&'a self, _: &'a str) -> DriverFuture<'a, ()> {
            Box::pin(async { Ok(()) })
        }
        fn open_console(&self) -> DriverFuture<'_, ConsoleStream> {
            Box::pin(async { Err(DriverError::Unsupported("no console")) })
        }
    }

    #[tokio::test]
    async fn every_call_is_reported_with_its_outcome() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        let m = Measured::new(Box::new(Fails), Arc::new(move |op, _, ok| s.lock().unwrap().push((op, ok))));
        m.power(PowerOp::Cycle).await.unwrap();
        assert!(m.power_status().await.is_err());
        m.set_bootdev("pxe").await.unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![("power_cycle", true), ("power_status", false), ("set_bootdev", true)]);
    }
}
