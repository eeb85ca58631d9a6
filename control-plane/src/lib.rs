//! metalcast control plane: HIL-model bare-metal inventory, projects,
//! networks and BMC power, served over a HIL-compatible REST API (`/v0`)
//! plus metalcast additions (`/v1`), backed by SQLite or PostgreSQL.
//!
//! See `docs/control-plane.md` and `docs/rest-api.md`. The `metalcast`
//! binary (CLI, `serve`, `send`, `demo`) is the `metalcast-cli` crate.
//!
//! Layers, arrows pointing down only (`docs/architecture.md`):
//! - [`http`]: routers and thin handlers, views, [`http::ApiError`];
//! - [`app`]: the use cases, with their own [`app::Error`];
//! - [`authz`] (the one policy), [`db`] (every SQL statement), [`drivers`]
//!   (BMCs and switches), [`auth`] (who the caller is);
//! - plain types and helpers: [`names`], [`registry`], [`metrics`],
//!   [`console`], [`tasks`] (background work and its shutdown).
//!
//! [`server`] serves [`http::app`] and drains the background tasks at shutdown.

pub mod app;
pub mod auth;
pub mod authz;
pub mod console;
pub mod db;
pub mod drivers;
pub mod http;
pub mod metrics;
pub mod names;
pub mod registry;
pub mod server;
pub mod tasks;

#[cfg(test)]
mod tests;

pub use app::{AppState, VlanPool};
pub use http::{ApiError, app};
pub use server::{serve, serve_tls};

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
