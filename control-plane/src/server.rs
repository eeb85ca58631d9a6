//! The server loop: serves the HTTP API ([`crate::http::app`]) over HTTP or
//! HTTPS until shutdown, after recovering work a restart interrupted.
//!
//! Shutdown: when the `shutdown` future completes, background work is told
//! to stop (`AppState::tasks`; a running deployment records its nodes in
//! flight as failed, with the reason) and the listener stops accepting; once
//! in-flight requests are done, `serve` waits up to [`DEFAULT_DRAIN`] for the
//! background tasks, then returns.

use std::future::Future;

use crate::app::AppState;
use crate::http::app;
pub use crate::tasks::DEFAULT_DRAIN;

/// `shutdown`, then the signal to every background task.
async fn signal_tasks(tasks: crate::tasks::Tasks, shutdown: impl Future<Output = ()> + Send + 'static) {
    shutdown.await;
    tracing::info!("shutting down: stopping background work");
    tasks.begin_shutdown();
}

/// Waits (bounded) for the background tasks and stops console captures.
async fn drain(state: &AppState) {
    let left = state.tasks.drain(DEFAULT_DRAIN).await;
    state.consoles.stop_all();
    if left > 0 {
        tracing::warn!(left, secs = DEFAULT_DRAIN.as_secs(), "background tasks still running after the drain time");
    }
}

/// Serve `app(state)` on an already bound listener until `shutdown`
/// completes; in-flight requests are allowed to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    recover(&state).await;
    tracing::info!(addr = ?listener.local_addr().ok(), "metalcast control plane listening (http)");
    let r = axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(signal_tasks(state.tasks.clone(), shutdown))
        .await;
    drain(&state).await;
    r
}

/// Like [`serve`], over TLS with a PEM certificate chain and private key.
/// On shutdown, in-flight requests get up to 30 s to finish.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    cert_pem: std::path::PathBuf,
    key_pem: std::path::PathBuf,
) -> std::io::Result<()> {
    crate::install_tls_provider();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert_pem, key_pem).await?;
    recover(&state).await;
    tracing::info!(addr = ?listener.local_addr().ok(), "metalcast control plane listening (https)");
    let handle = axum_server::Handle::new();
    let (h, signal) = (handle.clone(), signal_tasks(state.tasks.clone(), shutdown));
    tokio::spawn(async move {
        signal.await;
        h.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    let r = axum_server::from_tcp_rustls(listener.into_std()?, config)?
        .handle(handle)
        .serve(app(state.clone()).into_make_service())
        .await;
    drain(&state).await;
    r
}

async fn recover(state: &AppState) {
    match crate::app::actions::recover(state).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(n, "marked networking actions interrupted by a restart as ERROR"),
        Err(e) => tracing::error!(error = %e, "cannot recover pending networking actions"),
    }
    match crate::app::deployments::recover(state).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(n, "marked nodes of deployments interrupted by a restart as failed"),
        Err(e) => tracing::error!(error = %e, "cannot recover interrupted deployments"),
    }
}
