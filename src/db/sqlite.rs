//! SQLite: the pool (pragmas chosen here, not by apalis), both sets of migrations, the
//! operator commands' "open an existing database", and the database file's identity for `/health`.

use std::{path::Path, str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlitePool, migrate::Migrator};

static APP_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Opens (creating if missing) the database and runs the job storage's and the app's migrations.
#[tracing::instrument(skip_all, fields(database_url = %database_url))]
pub async fn connect_and_migrate(database_url: &str) -> anyhow::Result<SqlitePool> {
    let options = options(database_url)?.create_if_missing(true);
    if let Some(parent) = Path::new(options.get_filename()).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the database folder {}", parent.display()))?;
    }
    let pool = open(options, database_url).await?;
    migrate(&pool).await?;
    Ok(pool)
}

/// Opens a database the application created before, for the operator commands: a mistyped
/// DATABASE_URL must say so, not create an empty database and report "no jobs".
pub async fn open_existing(database_url: &str) -> anyhow::Result<SqlitePool> {
    let options = options(database_url)?.create_if_missing(false);
    let file = options.get_filename().to_owned();
    if !file.exists() {
        anyhow::bail!(
            "no database at {} (DATABASE_URL={database_url}); the operator commands open an \
             existing database only",
            file.display()
        );
    }
    let pool = open(options, database_url).await?;
    let has_jobs: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'Jobs'")
            .fetch_optional(&pool)
            .await?;
    if has_jobs.is_none() {
        pool.close().await;
        anyhow::bail!(
            "{} is not a signup-queue database (it has no job table)",
            file.display()
        );
    }
    migrate(&pool).await?;
    Ok(pool)
}

/// Our pragmas, for a `sqlite:` URL only: any other scheme is an error, never a file name.
fn options(database_url: &str) -> anyhow::Result<SqliteConnectOptions> {
    if super::Backend::of_url(database_url)? != super::Backend::Sqlite {
        anyhow::bail!("DATABASE_URL {database_url:?} is not a SQLite URL");
    }
    Ok(SqliteConnectOptions::from_str(database_url)
        .with_context(|| format!("DATABASE_URL {database_url:?} is not a SQLite URL"))?
        .journal_mode(SqliteJournalMode::Wal)
        // NORMAL is durable in WAL mode except on power loss; apalis' own setup() would set OFF.
        .synchronous(SqliteSynchronous::Normal)
        // Replaced per connection by `busy_handler` below (same 10 s budget, shorter sleeps).
        .busy_timeout(BUSY_BUDGET)
        .foreign_keys(true))
}

async fn open(options: SqliteConnectOptions, database_url: &str) -> anyhow::Result<SqlitePool> {
    // No `after_release` hook: sqlx 0.9 already rolls back a dropped `Transaction` on its
    // connection's worker thread and resets a statement whose future was dropped, and it pings
    // every connection on release. An extra `ROLLBACK` per release (once used here as a safety
    // net) was 41 % of all statements in the pipeline benchmark (BENCHMARKS.md).
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .after_connect(|conn, _| {
            Box::pin(async move {
                let mut handle = conn.lock_handle().await?;
                let raw = handle.as_raw_handle();
                // SAFETY: the connection handle is valid and locked for the duration of the call;
                // the callback keeps no state and is a plain `extern "C"` function.
                unsafe {
                    libsqlite3_sys::sqlite3_busy_handler(
                        raw.as_ptr(),
                        Some(busy_handler),
                        std::ptr::null_mut(),
                    );
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .with_context(|| format!("cannot open the database {database_url}"))?;
    Ok(pool)
}

/// apalis keeps its migrations in its own bookkeeping table: sharing `_sqlx_migrations` makes each
/// migrator fail on the other's rows.
pub async fn migrate(pool: &SqlitePool) -> anyhow::Result<()> {
    let mut storage = apalis_sqlite::SqliteStorage::migrations();
    storage.dangerous_set_table_name("_apalis_migrations");
    storage
        .run(pool)
        .await
        .context("job storage migrations failed")?;
    APP_MIGRATIONS
        .run(pool)
        .await
        .context("application migrations failed")?;
    Ok(())
}

/// How long a statement waits for another connection's write lock before "database is locked".
const BUSY_BUDGET: Duration = Duration::from_secs(10);

/// SQLite's own busy handler (`busy_timeout`) sleeps 1, 2, 5, 10, 15, 20, 25 ms and then 25-100 ms
/// between retries, so a writer that waits behind a 0.2 ms transaction often sleeps 10-25 ms:
/// that was most of the registration's p99. This one retries after 50 us, doubling to at most
/// 1 ms, within the same 10 s budget. It runs on the connection's own blocking thread.
extern "C" fn busy_handler(_: *mut std::ffi::c_void, attempts: std::ffi::c_int) -> std::ffi::c_int {
    let attempts = u64::try_from(attempts).unwrap_or(0);
    let sleep_us = (50u64 << attempts.min(5)).min(1000);
    // After the ramp-up every retry sleeps 1 ms: the budget is about that many retries.
    if attempts > 5 + BUSY_BUDGET.as_millis() as u64 {
        return 0;
    }
    std::thread::sleep(Duration::from_micros(sleep_us));
    1
}

/// The database file as it was when the app opened it. SQLite keeps writing to an open file that
/// was deleted (or replaced) under it, and everything written after that is lost at the next
/// restart: `/health` compares the path's file with this one to notice.
#[derive(Debug, Clone)]
pub struct DbFile {
    path: std::path::PathBuf,
    identity: (u64, u64),
}

impl DbFile {
    /// The file behind a `sqlite:` URL (`None` for an in-memory database or one not found).
    pub fn of(database_url: &str) -> Option<DbFile> {
        let options = options(database_url).ok()?;
        let path = options.get_filename().to_owned();
        let identity = file_identity(&path)?;
        Some(DbFile { path, identity })
    }

    /// `Err` says what happened to the file.
    pub fn check(&self) -> Result<(), String> {
        match file_identity(&self.path) {
            Some(identity) if identity == self.identity => Ok(()),
            Some(_) => Err(format!(
                "the database file {} was replaced while the app runs: its writes go to the old file; restart the app",
                self.path.display()
            )),
            None => Err(format!(
                "the database file {} was deleted while the app runs: its writes will be lost; restart the app",
                self.path.display()
            )),
        }
    }
}

#[cfg(unix)]
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|_| (0, 0))
}
