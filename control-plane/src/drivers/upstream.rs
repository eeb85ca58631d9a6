//! The `upstream` BMC and switch of a node imported from a parent control
//! plane: every operation is delegated to the parent's API through its
//! client ([`super::parent::Upstream`]), handed in by whoever builds the
//! driver.

use std::sync::Arc;
use std::time::Duration;

use metalcast_operator_api::v0::PowerState;

use super::parent::{Upstream, UpstreamError};
use super::{Bmc, ConsoleStream, DriverError, DriverFuture, PowerOp, Switch};

/// An imported node's BMC: the parent's power, boot device and console.
#[derive(Debug)]
pub(super) struct UpstreamBmc {
    /// The parent's client, or why there is none.
    pub(super) parent: Result<Arc<Upstream>, UpstreamError>,
    /// The node's name at the parent.
    pub(super) node: String,
}

impl UpstreamBmc {
    fn up(&self) -> Result<&Arc<Upstream>, DriverError> {
        self.parent.as_ref().map_err(|e| DriverError::Upstream(e.clone()))
    }
}

impl Bmc for UpstreamBmc {
    fn power(&self, op: PowerOp) -> DriverFuture<'_, ()> {
        Box::pin(async move { Ok(self.up()?.power(&self.node, op).await?) })
    }

    fn power_status(&self) -> DriverFuture<'_, bool> {
        Box::pin(async move { Ok(self.up()?.power_status(&self.node).await? == PowerState::On) })
    }

    fn set_bootdev<'a>(&'a self, dev: &'a str) -> DriverFuture<'a, ()> {
        Box::pin(async move { Ok(self.up()?.set_bootdev(&self.node, dev).await?) })
    }

    fn open_console(&self) -> DriverFuture<'_, ConsoleStream> {
        Box::pin(async move {
            let up = self.up()?.clone();
            up.console_start(&self.node).await?;
            Ok(upstream_console(up, self.node.clone()))
        })
    }
}

/// An imported node's switch: ports are the node's NIC names; a nested
/// network with VLAN label `v` is the parent network `<project>-v<v>`.
#[derive(Debug)]
pub(super) struct UpstreamSwitch {
    /// The parent's client, or why there is none.
    pub(super) parent: Result<Arc<Upstream>, UpstreamError>,
    /// The node's name at the parent.
    pub(super) node: String,
}

impl Switch for UpstreamSwitch {
    fn add_vlan<'a>(&'a self, port: &'a str, vlan: u16, native: bool) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            if !native {
                return Err(DriverError::Unsupported(
                    "nested (upstream) networks carry only the native channel: tags are not translated between levels",
                ));
            }
            let up = self.parent.as_ref().map_err(|e| DriverError::Upstream(e.clone()))?;
            Ok(up.connect(&self.node, port, &up.network_name(vlan)).await?)
        })
    }

    fn del_vlan<'a>(&'a self, port: &'a str, vlan: u16, _native: bool) -> DriverFuture<'a, ()> {
        Box::pin(async move {
            let up = self.parent.as_ref().map_err(|e| DriverError::Upstream(e.clone()))?;
            Ok(up.detach(&self.node, port, &up.network_name(vlan)).await?)
        })
    }
}

/// The console of an upstream node: the parent's console log, polled once a
/// second; new bytes are passed on. Dropping the stream stops the parent's
/// capture.
fn upstream_console(up: Arc<Upstream>, node: String) -> ConsoleStream {
    use tokio::io::AsyncWriteExt;
    let (mut tx, rx) = tokio::io::duplex(64 * 1024);
    let cancel = tokio_util::sync::CancellationToken::new();
    let stopped = cancel.clone();
    tokio::spawn(async move {
        let mut seen = String::new();
        loop {
            match up.console_show(&node).await {
                Ok(log) => {
                    // The parent keeps a bounded log: continue after what we
                    // passed on when it is still there, else pass it all.
                    let new = match log.strip_prefix(seen.as_str()) {
                        Some(rest) => rest.to_string(),
                        None => log.clone(),
                    };
                    if !new.is_empty() && tx.write_all(new.as_bytes()).await.is_err() {
                        break;
                    }
                    seen = log;
                }
                Err(UpstreamError::NodeGone(_)) => break,
                Err(e) => tracing::debug!(%node, error = %e, "upstream console poll failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                // The reader is gone: stop polling.
                _ = stopped.cancelled() => break,
            }
        }
        let _ = up.console_stop(&node).await;
    });
    Box::new(UpstreamConsole { rx, _stop: cancel.drop_guard() })
}

/// Read end of an upstream console; dropping it stops the poller.
struct UpstreamConsole {
    rx: tokio::io::DuplexStream,
    _stop: tokio_util::sync::DropGuard,
}

impl tokio::io::AsyncRead for UpstreamConsole {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.rx).poll_read(cx, buf)
    }
}
