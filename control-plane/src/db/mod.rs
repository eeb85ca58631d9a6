//! The datastore: every SQL statement of the control plane lives under
//! `db/`, one file per table group, with typed rows; the use cases
//! (`app/`) call these functions and never write SQL themselves. One
//! `sqlx::AnyPool` over SQLite or PostgreSQL, with the embedded migrations in
//! `control-plane/migrations/`.
//!
//! All SQL is portable between the two backends: `$N` placeholders (SQLite
//! accepts them too), TEXT and BIGINT columns only. Functions return
//! `sqlx::Error`; the use cases turn constraint violations into conflicts
//! with their own words (`app::error::conflict`).

/// A closed set of values stored as TEXT: `as_str`, `Display`, and `FromStr`
/// (an unknown value is a decode error).
macro_rules! text_enum {
    ($t:ty { $($v:ident = $s:literal),* $(,)? }) => {
        impl $t {
            /// The stored and serialized name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
        impl std::str::FromStr for $t {
            type Err = sqlx::Error;
            fn from_str(s: &str) -> Result<Self, sqlx::Error> {
                match s {
                    $($s => Ok(Self::$v),)*
                    other => Err(sqlx::Error::Decode(format!("unknown {} {other:?}", stringify!($t)).into())),
                }
            }
        }
    };
}

pub mod actions;
pub mod deployment_events;
pub mod deployments;
pub mod enrollments;
pub mod events;
pub mod images;
pub mod keypairs;
pub mod market;
pub mod metadata;
pub mod netboot;
pub mod networks;
pub mod nics;
pub mod nodes;
pub mod projects;
pub mod quotas;
pub mod reclaim;
pub mod replicas;
pub mod runtime;
pub mod sessions;
pub mod switches;
pub mod tokens;
pub mod upstream;
pub mod users;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

/// A trivial query: the database answers.
pub async fn ping(pool: &AnyPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").fetch_one(pool).await.map(drop)
}

/// Whether `e` is a unique or foreign-key violation (the object exists, or is in use).
pub fn is_conflict(e: &sqlx::Error) -> bool {
    use sqlx::error::ErrorKind;
    e.as_database_error()
        .is_some_and(|d| matches!(d.kind(), ErrorKind::UniqueViolation | ErrorKind::ForeignKeyViolation))
}

/// A transaction.
pub type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;

/// Embedded schema migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A query of the database's clock in unix seconds: `now()` (the
/// transaction's start) on PostgreSQL, `'now'` on SQLite. Times that several
/// replicas compare (market windows, heartbeats) come from here, never from
/// a replica's own clock.
pub fn clock_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "SELECT CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)",
        Backend::Sqlite => "SELECT CAST(strftime('%s', 'now') AS BIGINT)",
    }
}

/// The database's clock ([`clock_sql`]) inside a transaction (PostgreSQL:
/// the transaction's start).
pub async fn now(tx: &mut Tx<'_>, backend: Backend) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(clock_sql(backend)).fetch_one(&mut **tx).await
}

/// [`now`] outside a transaction.
pub async fn now_pool(pool: &AnyPool, backend: Backend) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(clock_sql(backend)).fetch_one(pool).await
}

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
    /// The connection pool, for reads.
    pub pool: AnyPool,
    /// Where writes go: every statement or transaction that writes takes
    /// this ([`Writer`]), never [`Db::pool`].
    pub writer: Writer,
    /// The backend kind.
    pub backend: Backend,
    /// The URL it was opened with (for a dedicated connection: PostgreSQL's `LISTEN`).
    pub url: DbUrl,
}

/// A database URL; its `Debug` form hides it (it may hold a password).
#[derive(Clone)]
pub struct DbUrl(pub String);

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbUrl(<redacted>)")
    }
}

/// The way to the database for writes. Functions of this module that write
/// take a `&Writer`, so the compiler finds every writer; the two that write
/// through a generic executor so they can also run in a transaction
/// (`events::insert`, `networks::grant`) are given `writer.pool()` or a
/// transaction of [`Writer::begin`] by their callers.
///
/// SQLite has one writer at a time. With writers spread over a pool, the
/// ones that find the lock taken sleep in SQLite's busy handler (1, 2, 5,
/// 10 ... 100 ms, whatever the lock's holder needs), which made write p99
/// 250 ms at eight concurrent writers while p50 was 2 ms. On SQLite the
/// writer is therefore a pool of exactly one connection: writers queue for
/// it in order (sqlx's pool hands connections out fairly) and never meet
/// the busy handler; reads stay on [`Db::pool`] beside it (WAL). On
/// PostgreSQL, which has row locks, the writer is the read pool itself.
///
/// Never call a function taking a `&Writer` while holding a transaction of
/// [`Writer::begin`]: on SQLite it would wait for its own connection.
#[derive(Debug, Clone)]
pub struct Writer(AnyPool, Backend);

impl Writer {
    /// The pool writes run on (one connection on SQLite).
    pub fn pool(&self) -> &AnyPool {
        &self.0
    }

    /// A write transaction.
    pub async fn begin(&self) -> Result<Tx<'static>, sqlx::Error> {
        self.0.begin().await
    }

    /// The backend it writes to.
    pub fn backend(&self) -> Backend {
        self.1
    }
}

/// Default database URL: a SQLite file in the working directory.
pub const DEFAULT_URL: &str = "sqlite://metalcast.db?mode=rwc";

/// Connections in the SQLite pool (readers run in parallel in WAL mode;
/// SQLite itself serializes writers).
pub const SQLITE_POOL: u32 = 8;

/// Connections in the PostgreSQL pool.
pub const POSTGRES_POOL: u32 = 16;

/// Connect to `url`, run pending migrations and return the pool.
///
/// SQLite: the database is switched to WAL (persistent in the file) and
/// migrated over one setup connection, then served by a pool of
/// [`SQLITE_POOL`] connections for reads (a single one for in-memory
/// databases, which are per-connection) and one writer connection
/// ([`Writer`]). Every transaction in this crate starts with a write, so a
/// connection waits for SQLite's write lock (sqlx's 5 s busy timeout)
/// instead of failing a read-to-write lock upgrade with `SQLITE_BUSY`.
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
        Backend::Sqlite if url.contains(":memory:") || url.contains("mode=memory") => 1,
        Backend::Sqlite => {
            let setup = AnyPoolOptions::new().max_connections(1).connect(url).await.map_err(DbError::Connect)?;
            setup.execute("PRAGMA journal_mode = WAL").await?;
            MIGRATOR.run(&setup).await.map_err(DbError::Migrate)?;
            setup.close().await;
            SQLITE_POOL
        }
        Backend::Postgres => POSTGRES_POOL,
    };
    let pool = AnyPoolOptions::new().max_connections(max).connect(url).await.map_err(DbError::Connect)?;
    if max == 1 && backend == Backend::Sqlite {
        pool.execute("PRAGMA journal_mode = WAL").await?;
    }
    MIGRATOR.run(&pool).await.map_err(DbError::Migrate)?;
    if backend == Backend::Postgres {
        market::install_postgres(&pool).await?;
    }
    let writer = match backend {
        // An in-memory database lives in its one connection: reads and writes share it.
        Backend::Sqlite if max == 1 => Writer(pool.clone(), backend),
        Backend::Sqlite => {
            Writer(AnyPoolOptions::new().max_connections(1).connect(url).await.map_err(DbError::Connect)?, backend)
        }
        Backend::Postgres => Writer(pool.clone(), backend),
    };
    Ok(Db { pool, writer, backend, url: DbUrl(url.to_string()) })
}

/// Creates a fresh database `name` (lower-case letters, digits, `_`) on the
/// PostgreSQL server of `admin_url` (a role with CREATEDB), for a drill or
/// a test; returns its URL (`admin_url` with its database name replaced).
pub async fn create_postgres_database(admin_url: &str, name: &str) -> Result<String, DbError> {
    let url = postgres_database_url(admin_url, name)?;
    sqlx::any::install_default_drivers();
    let admin = AnyPoolOptions::new().max_connections(1).connect(admin_url).await.map_err(DbError::Connect)?;
    let created = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await;
    admin.close().await;
    created?;
    Ok(url)
}

/// Drops database `name` (made by [`create_postgres_database`]) if it exists.
pub async fn drop_postgres_database(admin_url: &str, name: &str) -> Result<(), DbError> {
    postgres_database_url(admin_url, name)?;
    sqlx::any::install_default_drivers();
    let admin = AnyPoolOptions::new().max_connections(1).connect(admin_url).await.map_err(DbError::Connect)?;
    let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&admin)
        .await;
    admin.close().await;
    dropped?;
    Ok(())
}

/// `url` (a PostgreSQL URL) naming database `name` instead, query kept.
fn postgres_database_url(url: &str, name: &str) -> Result<String, DbError> {
    let bad = || DbError::UnsupportedUrl(format!("{url} (expected postgres://user:password@host[:port]/database)"));
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(bad());
    }
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(DbError::UnsupportedUrl(format!("database name {name:?} (lower-case letters, digits, _)")));
    }
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let prefix = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    Ok(match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    })
}

#[cfg(test)]
mod tests {
    use sqlx::{Acquire, Row};

    #[test]
    fn database_urls_name_the_new_database() {
        let u = |url: &str, name: &str| super::postgres_database_url(url, name).map_err(|e| e.to_string());
        assert_eq!(u("postgres://a:b@h:5432/x", "d1").unwrap(), "postgres://a:b@h:5432/d1");
        assert_eq!(u("postgres://a:b@h/x?host=/run/pg", "d_2").unwrap(), "postgres://a:b@h/d_2?host=/run/pg");
        assert_eq!(u("postgresql://h", "d").unwrap(), "postgresql://h/d");
        assert!(u("sqlite://x.db", "d").is_err());
        assert!(u("postgres://h/x", "d; DROP").is_err());
        assert!(u("postgres://h/x", "").is_err());
    }

    /// The SQLite pool really has several connections: a write commits
    /// while another connection holds an open read transaction (with one
    /// connection this would wait for the pool and time out).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_pool_is_wal_and_concurrent() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
        let db = super::connect(&url).await.unwrap();
        assert_eq!(db.pool.options().get_max_connections(), super::SQLITE_POOL);
        assert_eq!(db.writer.pool().options().get_max_connections(), 1, "SQLite writes queue for one connection");
        let mode: String = sqlx::query("PRAGMA journal_mode").fetch_one(&db.pool).await.unwrap().try_get(0).unwrap();
        assert_eq!(mode, "wal");

        let mut held = db.pool.acquire().await.unwrap();
        let mut reader = held.begin().await.unwrap();
        let before: i64 =
            sqlx::query("SELECT COUNT(*) FROM projects").fetch_one(&mut *reader).await.unwrap().try_get(0).unwrap();
        let write = sqlx::query("INSERT INTO projects (name) VALUES ('p1')").execute(db.writer.pool());
        tokio::time::timeout(std::time::Duration::from_secs(10), write)
            .await
            .expect("a write must not wait for the held connection")
            .unwrap();
        // The reader keeps its snapshot; a fresh read sees the write.
        let still: i64 =
            sqlx::query("SELECT COUNT(*) FROM projects").fetch_one(&mut *reader).await.unwrap().try_get(0).unwrap();
        assert_eq!(still, before);
        reader.rollback().await.unwrap();
        let after: i64 =
            sqlx::query("SELECT COUNT(*) FROM projects").fetch_one(&db.pool).await.unwrap().try_get(0).unwrap();
        assert_eq!(after, before + 1);
    }
}
