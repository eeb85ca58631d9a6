//! The server loop: serves the HTTP API ([`crate::http::app`]) over HTTP or
//! HTTPS until shutdown, after recovering work a restart interrupted.

use std::future::Future;

use crate::app::AppState;
use crate::http::app;

/// Serve `app(state)` on an already bound listener until `shutdown`
/// completes; in-flight requests are allowed to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    recover(&state).await;
    tracing::info!(addr = ?listener.local_addr().ok(), "metalcast control plane listening (http)");
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
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
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    axum_server::from_tcp_rustls(listener.into_std()?, config)?
        .handle(handle)
        .serve(app(state).into_make_service())
        .await
}

async fn recover(state: &AppState) {
    match crate::app::actions::recover(state).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(n, "marked networking actions interrupted by a restart as ERROR"),
        Err(e) => tracing::error!(error = %e, "cannot recover pending networking actions"),
    }
    match crate::deploy::recover(state).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(n, "marked nodes of deployments interrupted by a restart as failed"),
        Err(e) => tracing::error!(error = %e, "cannot recover interrupted deployments"),
    }
}
