//! The database: SQLite (embedded, the default) or PostgreSQL (`DATABASE_URL=postgres://...`, for
//! many web and worker processes on many machines), chosen once from the URL. [`Db`] is the pool
//! of either; [`with_db!`](crate::with_db) runs one body of code against whichever it is, so a
//! query that both dialects accept is written once. The group-commit writer for the consumers'
//! small writes lives here too.

pub mod batch;
pub mod postgres;
pub mod sqlite;

use sqlx::{PgConnection, PgPool, SqliteConnection, SqlitePool};

pub use sqlite::DbFile;

/// The application's database pool: users, the consumers' tables and the job storage.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the [`Db`]'s typed pool (`&SqlitePool` or `&PgPool`). The
/// body is compiled once per backend, so it must be SQL both accept: `$1` placeholders (sqlx
/// maps them on SQLite too), `RETURNING`, `ON CONFLICT`, `COUNT(*) FILTER (WHERE ...)`.
/// Where the dialects differ, ask [`Db::backend`] first.
#[macro_export]
macro_rules! with_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

/// Like [`with_db!`](crate::with_db), for a [`DbConn`]: `$conn` is `&mut SqliteConnection` or
/// `&mut PgConnection`.
#[macro_export]
macro_rules! with_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::db::DbConn::Sqlite($c) => $body,
            $crate::db::DbConn::Postgres($c) => $body,
        }
    };
}

/// A transaction on either database.
pub enum DbTx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// A connection (usually inside a [`DbTx`]) on either database.
pub enum DbConn<'a> {
    Sqlite(&'a mut SqliteConnection),
    Postgres(&'a mut PgConnection),
}

impl DbConn<'_> {
    /// The same connection, borrowed again (to pass it to one call after another).
    pub fn reborrow(&mut self) -> DbConn<'_> {
        match self {
            DbConn::Sqlite(conn) => DbConn::Sqlite(conn),
            DbConn::Postgres(conn) => DbConn::Postgres(conn),
        }
    }
}

impl DbTx {
    pub fn conn(&mut self) -> DbConn<'_> {
        match self {
            DbTx::Sqlite(tx) => DbConn::Sqlite(tx),
            DbTx::Postgres(tx) => DbConn::Postgres(tx),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            DbTx::Sqlite(tx) => tx.commit().await,
            DbTx::Postgres(tx) => tx.commit().await,
        }
    }
}

/// Which database a [`Db`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a `DATABASE_URL` selects; any other scheme is an error naming both.
    pub fn of_url(database_url: &str) -> anyhow::Result<Backend> {
        if database_url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            Ok(Backend::Postgres)
        } else {
            let scheme = database_url
                .split_once("://")
                .map_or("none", |(scheme, _)| scheme);
            anyhow::bail!(
                "DATABASE_URL {:?} is not a SQLite or PostgreSQL URL (scheme: {scheme}); use \
                 sqlite://path/to/file.db (e.g. sqlite://data/signup-queue.db) or \
                 postgres://user@host:5432/database",
                redact(database_url)
            )
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// "The current time" as ISO-8601 text (SQLite) or timestamptz (PostgreSQL), for columns the
    /// database stamps.
    pub fn now(self) -> &'static str {
        match self {
            Backend::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            Backend::Postgres => "now()",
        }
    }
}

impl Db {
    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// The SQLite pool, for code and tests that only exist on SQLite.
    pub fn sqlite(&self) -> Option<&SqlitePool> {
        match self {
            Db::Sqlite(pool) => Some(pool),
            Db::Postgres(_) => None,
        }
    }

    pub fn postgres(&self) -> Option<&PgPool> {
        match self {
            Db::Postgres(pool) => Some(pool),
            Db::Sqlite(_) => None,
        }
    }

    pub async fn begin(&self) -> Result<DbTx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(pool) => DbTx::Sqlite(pool.begin().await?),
            Db::Postgres(pool) => DbTx::Postgres(pool.begin().await?),
        })
    }

    /// Is the database answering? (`/health`)
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        with_db!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
    }

    pub async fn close(&self) {
        with_db!(self, pool => pool.close().await)
    }
}

/// Does this error mean "the database cannot be reached right now" (rather than "this query is
/// wrong")? Pool timeouts, broken connections, and a server shutting down or starting up.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception) and 57P01-57P03 (admin shutdown, crash
        // shutdown, cannot connect now).
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// Opens (creating it if missing) the database of `database_url` and runs the job storage's and
/// the application's migrations.
pub async fn connect_and_migrate(database_url: &str) -> anyhow::Result<Db> {
    Ok(match Backend::of_url(database_url)? {
        Backend::Sqlite => Db::Sqlite(sqlite::connect_and_migrate(database_url).await?),
        Backend::Postgres => Db::Postgres(postgres::connect_and_migrate(database_url).await?),
    })
}

/// Opens a database the application created before, for the operator commands: a mistyped
/// DATABASE_URL must say so, not create an empty database and report "no jobs".
pub async fn open_existing(database_url: &str) -> anyhow::Result<Db> {
    Ok(match Backend::of_url(database_url)? {
        Backend::Sqlite => Db::Sqlite(sqlite::open_existing(database_url).await?),
        Backend::Postgres => Db::Postgres(postgres::open_existing(database_url).await?),
    })
}

/// The URL without its password, for messages and logs.
pub fn redact(database_url: &str) -> String {
    match url_parts(database_url) {
        Some((scheme, userinfo, rest)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{rest}")
        }
        _ => database_url.to_owned(),
    }
}

fn url_parts(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let (userinfo, rest) = rest.rsplit_once('@')?;
    Some((scheme, userinfo, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_chooses_the_backend() {
        assert_eq!(
            Backend::of_url("sqlite://data/x.db").expect("ok"),
            Backend::Sqlite
        );
        assert_eq!(
            Backend::of_url("postgres://u@h/d").expect("ok"),
            Backend::Postgres
        );
        assert_eq!(
            Backend::of_url("postgresql://u@h/d").expect("ok"),
            Backend::Postgres
        );
        let error = Backend::of_url("mysql://u:secret@h/d").expect_err("refused");
        assert!(error.to_string().contains("not a SQLite or PostgreSQL URL"));
        assert!(!error.to_string().contains("secret"));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
