//! metalcast control plane: HIL-model bare-metal inventory, projects,
//! networks and BMC power, served over a HIL-compatible REST API (`/v0`)
//! plus metalcast additions (`/v1`), backed by SQLite or PostgreSQL.
//!
//! See `docs/control-plane.md` and `docs/rest-api.md`. The `metalcast`
//! binary (CLI, `serve`, `send`, `demo`) is the `metalcast-cli` crate.

pub mod actions;
pub mod api_v0;
pub mod api_v1;
pub mod auth;
pub mod bootstrap;
pub mod console;
pub mod db;
pub mod deploy;
pub mod drivers;
pub mod error;
pub mod extract;
pub mod images;
pub mod keypairs;
pub mod metadata;
pub mod metrics;
pub mod quotas;
pub mod reclaim;
pub mod registry;
pub mod server;
pub mod state;
pub mod upstream;

#[cfg(test)]
mod tests;

pub use error::ApiError;
pub use server::{app, serve, serve_tls};
pub use state::{AppState, VlanPool};

/// Current time as unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Install rustls' ring crypto provider as the process default (idempotent).
/// Needed before any TLS client or server is built.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err only means another provider is installed already; keep it.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
