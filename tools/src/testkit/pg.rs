//! A fresh PostgreSQL database per test, dropped when the test is done: tests that need Postgres
//! read `DATABASE_URL_PG` (a server they may create databases on, e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`) and skip, with one line, when it is unset.
//!
//! ```no_run
//! # async fn demo() {
//! use signup_queue_tools::testkit::pg::pg_or_skip;
//! let Some(db) = pg_or_skip("the register tests on PostgreSQL").await else {
//!     return;
//! };
//! // ... start the app on db.url() ...
//! drop(db); // DROP DATABASE ... WITH (FORCE), even with connections still open
//! # }
//! ```

use std::time::Duration;

use anyhow::Context as _;
use sqlx::{AssertSqlSafe, Connection as _, Executor as _, PgConnection};

/// The environment variable naming the server the Postgres tests create their databases on.
pub const DATABASE_URL_PG: &str = "DATABASE_URL_PG";

/// How long creating or dropping a database may take before we give up (a server that stopped
/// answering must not hang a test, or its `Drop`, for ever).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A uniquely named database on a PostgreSQL server, dropped (with `FORCE`, so connections a test
/// left open do not keep it alive) when this value is dropped.
#[derive(Debug)]
pub struct TempPgDatabase {
    /// The server's admin URL this database was created from; `Drop` connects there to drop it
    /// (a database cannot be dropped from a connection to itself).
    admin_url: String,
    url: String,
    name: String,
}

impl TempPgDatabase {
    /// Creates a fresh, uniquely named database (`sq_test_<lowercase ulid>`) on the server of
    /// `admin_url`.
    pub async fn create(admin_url: &str) -> anyhow::Result<TempPgDatabase> {
        let name = format!(
            "sq_test_{}",
            ulid::Ulid::generate().to_string().to_lowercase()
        );
        let url = with_database(admin_url, &name)?;
        let create = async {
            let mut conn = PgConnection::connect(admin_url).await?;
            conn.execute(AssertSqlSafe(format!("CREATE DATABASE {}", quoted(&name))))
                .await?;
            conn.close().await
        };
        tokio::time::timeout(ADMIN_TIMEOUT, create)
            .await
            .with_context(|| {
                format!("creating database {name}: no answer within {ADMIN_TIMEOUT:?}")
            })?
            .with_context(|| format!("creating database {name} on {}", server_of(admin_url)))?;
        Ok(TempPgDatabase {
            admin_url: admin_url.to_owned(),
            url,
            name,
        })
    }

    /// `postgres://` URL of the new database (same host and user as the admin URL, this
    /// database's name).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TempPgDatabase {
    /// Drops the database from a plain thread with its own current-thread runtime: `Drop` often
    /// runs inside a test's runtime, where blocking on a future would panic (a current-thread
    /// runtime cannot `block_in_place`). A failure is only reported: a leftover `sq_test_*`
    /// database is untidy, a panic in `Drop` would hide the test's own outcome.
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropper = std::thread::Builder::new()
            .name(format!("drop {name}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => return Err(anyhow::anyhow!("no runtime to drop it: {e}")),
                };
                runtime.block_on(async {
                    let drop = async {
                        let mut conn = PgConnection::connect(&admin_url).await?;
                        conn.execute(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                            quoted(&name)
                        )))
                        .await?;
                        conn.close().await
                    };
                    match tokio::time::timeout(ADMIN_TIMEOUT, drop).await {
                        Ok(result) => result.map_err(anyhow::Error::from),
                        Err(_) => Err(anyhow::anyhow!("no answer within {ADMIN_TIMEOUT:?}")),
                    }
                })
            });
        let outcome = match dropper {
            Ok(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the dropping thread panicked"))),
            Err(e) => Err(anyhow::anyhow!("cannot start a thread to drop it: {e}")),
        };
        if let Err(e) = outcome {
            eprintln!("cannot drop test database {}: {e:#}", self.name);
        }
    }
}

/// Reads `DATABASE_URL_PG`. Unset (or empty): prints one line on stderr,
/// `skipped: <what> needs PostgreSQL (set DATABASE_URL_PG)`, and returns `None`. Set: creates a
/// [`TempPgDatabase`] there, and panics when that fails (whoever set the variable said a server
/// is there, so its absence is an error, not a skip).
pub async fn pg_or_skip(what: &str) -> Option<TempPgDatabase> {
    let Some(admin_url) = std::env::var(DATABASE_URL_PG)
        .ok()
        .filter(|v| !v.is_empty())
    else {
        use std::io::Write;
        // Straight to stderr, past the test harness's capture, like `service_or_skip`.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: {what} needs PostgreSQL (set {DATABASE_URL_PG})"
        );
        return None;
    };
    match TempPgDatabase::create(&admin_url).await {
        Ok(db) => Some(db),
        Err(e) => panic!("{DATABASE_URL_PG} is set, so a PostgreSQL server should be there: {e:#}"),
    }
}

/// `admin_url` with its database (the URL's path) replaced by `name`; user, host, port and query
/// parameters are kept.
fn with_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(admin_url)
        .with_context(|| format!("{DATABASE_URL_PG} is not a URL: {}", server_of(admin_url)))?;
    anyhow::ensure!(
        matches!(url.scheme(), "postgres" | "postgresql"),
        "{DATABASE_URL_PG} must be a postgres:// URL, got {}://",
        url.scheme()
    );
    url.set_path(&format!("/{name}"));
    Ok(url.into())
}

/// The URL without its password, for messages.
fn server_of(admin_url: &str) -> String {
    match url::Url::parse(admin_url) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.into()
        }
        Err(_) => "(an unparsable URL)".into(),
    }
}

/// An identifier in double quotes. The names here are ours (`sq_test_` and a ULID's digits and
/// letters), so this is belt and braces.
fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_replaces_the_path_and_keeps_the_rest() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "sq_test_x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/sq_test_x"
        );
        assert_eq!(
            with_database("postgresql://u:p@db:6543?sslmode=disable", "sq_test_x").unwrap(),
            "postgresql://u:p@db:6543/sq_test_x?sslmode=disable"
        );
        assert!(with_database("sqlite://data/x.db", "sq_test_x").is_err());
    }

    #[test]
    fn messages_do_not_show_the_password() {
        assert_eq!(
            server_of("postgres://u:secret@db/postgres"),
            "postgres://u:***@db/postgres"
        );
    }
}
