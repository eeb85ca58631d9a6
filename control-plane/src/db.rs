//! Database access: one `sqlx::AnyPool` over SQLite or PostgreSQL, with the
//! embedded migrations in `control-plane/migrations/`.
//!
//! All SQL in this crate is portable between the two backends: `$N`
//! placeholders (SQLite accepts them too), TEXT and BIGINT columns only.

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

/// Embedded schema migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Which database server is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file (the default).
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// Errors opening or migrating the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL scheme is neither `sqlite:` nor `postgres:`/`postgresql:`.
    #[error("unsupported database URL {0:?} (expected sqlite:// or postgres://)")]
    UnsupportedUrl(String),
    /// Connecting failed.
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    /// Running migrations failed.
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// Another query failed.
    #[error("database error")]
    Query(#[from] sqlx::Error),
}

/// A connected, migrated database.
#[derive(Debug, Clone)]
pub struct Db {
    /// The connection pool.
    pub pool: AnyPool,
    /// The backend kind.
    pub backend: Backend,
}

/// Default database URL: a SQLite file in the working directory.
pub const DEFAULT_URL: &str = "sqlite://metalcast.db?mode=rwc";

/// Connect to `url`, run pending migrations and return the pool.
///
/// SQLite uses a single connection: SQLite serialises writers anyway, and one
/// connection avoids `SQLITE_BUSY` on lock upgrades inside transactions.
pub async fn connect(url: &str) -> Result<Db, DbError> {
    sqlx::any::install_default_drivers();
    let backend = if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Backend::Postgres
    } else {
        return Err(DbError::UnsupportedUrl(url.into()));
    };
    let max = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 16,
    };
    let pool = AnyPoolOptions::new().max_connections(max).connect(url).await.map_err(DbError::Connect)?;
    if backend == Backend::Sqlite {
        pool.execute("PRAGMA journal_mode = WAL").await?;
    }
    MIGRATOR.run(&pool).await.map_err(DbError::Migrate)?;
    Ok(Db { pool, backend })
}
