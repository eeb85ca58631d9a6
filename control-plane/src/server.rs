//! The server loop: serves the HTTP API ([`crate::http::app`]) over HTTP or
//! HTTPS until shutdown, after registering as a replica
//! ([`crate::app::replicas`]; refused on SQLite while another process uses
//! the database) and recovering work that stopped replicas left behind.
//!
//! Shutdown, when the `shutdown` future completes (SIGTERM / SIGINT in
//! `metalcast serve`):
//! 1. Drain: new deployments, retries and reclaims are refused (503 with
//!    `Retry-After`); everything else, the node runtimes' API (check-ins,
//!    reports) and the progress streams stay up, so running deployments can
//!    finish, for at most the drain time (`Tasks::drain_time`, `serve
//!    --drain-secs`, default 120 s). An idle server skips this at once.
//! 2. Stop: background work is told to stop (a deployment still running
//!    stops its sender and records its nodes in flight as failed, with the
//!    reason), the nodes' long-polls are answered at once with "come back"
//!    (503), and the listener stops accepting; once in-flight requests are
//!    done, `serve` waits up to [`DEFAULT_DRAIN`] for the background tasks
//!    to record where they stopped, then returns.

use std::future::Future;

use crate::app::AppState;
use crate::http::app;
pub use crate::tasks::DEFAULT_DRAIN;

/// `shutdown`, then the drain (running deployments may finish, bounded),
/// then the signal to every background task; the listener closes when this
/// returns.
async fn signal_tasks(state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) {
    shutdown.await;
    let bound = state.tasks.drain_time();
    state.tasks.begin_drain();
    let running = state.deploys.running();
    if running > 0 {
        tracing::info!(running, secs = bound.as_secs(), "shutting down: no new work; waiting for running deployments");
        let deadline = tokio::time::Instant::now() + bound;
        while state.deploys.running() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let left = state.deploys.running();
        if left > 0 {
            tracing::warn!(left, secs = bound.as_secs(), "drain time passed: stopping the deployments still running");
        }
    }
    tracing::info!("shutting down: stopping background work");
    state.tasks.begin_shutdown();
    state.runtime.stop_polls();
}

/// Waits (bounded) for the background tasks and stops console captures;
/// then this replica leaves (its work is finished or recorded as failed).
async fn drain(state: &AppState) {
    let left = state.tasks.drain(DEFAULT_DRAIN).await;
    state.consoles.stop_all();
    if left > 0 {
        tracing::warn!(left, secs = DEFAULT_DRAIN.as_secs(), "background tasks still running after the drain time");
    }
    if let Err(e) = crate::app::replicas::leave(state).await {
        tracing::error!(error = %e, "cannot remove this replica's row (others reap it after the dead timeout)");
    }
}

/// Serve `app(state)` on an already bound listener until `shutdown`
/// completes; in-flight requests are allowed to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    recover(&state).await?;
    tracing::info!(addr = ?listener.local_addr().ok(), "metalcast control plane listening (http)");
    let r =
        axum::serve(listener, app(state.clone())).with_graceful_shutdown(signal_tasks(state.clone(), shutdown)).await;
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
    recover(&state).await?;
    tracing::info!(addr = ?listener.local_addr().ok(), "metalcast control plane listening (https)");
    let handle = axum_server::Handle::new();
    let (h, signal) = (handle.clone(), signal_tasks(state.clone(), shutdown));
    tokio::spawn(async move {
        signal.await;
        h.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    let r = axum_server::from_tcp_rustls(listener.into_std()?, config)?
        .handle(handle)
        .serve(app(state.clone()).layer(axum::Extension(crate::http::ui::Tls)).into_make_service())
        .await;
    drain(&state).await;
    r
}

async fn recover(state: &AppState) -> std::io::Result<()> {
    // First this process registers as a replica (refused on SQLite while another one runs), so the
    // work of live replicas is told from the work of dead ones below.
    crate::app::replicas::join(state).await.map_err(|e| std::io::Error::other(e.public_message()))?;
    if state.netboot.config.is_some()
        && let Err(e) = crate::app::netboot::prepare(state).await
    {
        tracing::error!(error = %e, "netboot: cannot load the token key: scripts and token check-ins will fail");
    }
    // PostgreSQL: one LISTEN connection wakes this replica's change streams.
    crate::app::deployments::changes::spawn_listener(state);
    match crate::app::runtime::take_id_block(state).await {
        Ok(block) => tracing::info!(block, "runtime instruction ids from this process's own block"),
        // The runtime API's own ids (from the start time) stay unique unless the clock steps back.
        Err(e) => tracing::error!(error = %e, "cannot take a block of instruction ids: ids from the start time"),
    }
    match crate::app::runtime::prune(state).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(n, "pruned runtime instructions and reports older than a week"),
        Err(e) => tracing::error!(error = %e, "cannot prune old runtime instructions and reports"),
    }
    match crate::app::actions::recover(state).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(n, "marked networking actions of stopped replicas as ERROR"),
        Err(e) => tracing::error!(error = %e, "cannot recover pending networking actions"),
    }
    match crate::app::deployments::recover(state).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(n, "marked nodes of deployments of stopped replicas as failed"),
        Err(e) => tracing::error!(error = %e, "cannot recover interrupted deployments"),
    }
    // The market's driver resumes leases a restart interrupted (granting, revoking).
    crate::app::market::driver::spawn(state);
    // After the recovery above, so the first tick's reaping does not race it for the same rows.
    crate::app::replicas::spawn_heartbeat(state);
    Ok(())
}
