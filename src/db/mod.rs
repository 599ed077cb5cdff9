//! The SQLite pool (pragmas chosen here, not by apalis), both sets of migrations, and the
//! group-commit writer the consumers' small writes go through.

pub mod batch;

use std::{path::Path, str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlitePool, migrate::Migrator};

static APP_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// Opens (creating if missing) the database and runs the job storage's and the app's migrations.
#[tracing::instrument(skip_all, fields(database_url = %database_url))]
pub async fn connect_and_migrate(database_url: &str) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(database_url)
        .with_context(|| format!("DATABASE_URL {database_url:?} is not a SQLite URL"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // NORMAL is durable in WAL mode except on power loss; apalis' own setup() would set OFF.
        .synchronous(SqliteSynchronous::Normal)
        // Replaced per connection by `busy_handler` below (same 10 s budget, shorter sleeps).
        .busy_timeout(BUSY_BUDGET)
        .foreign_keys(true);
    if let Some(parent) = Path::new(options.get_filename()).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the database folder {}", parent.display()))?;
    }
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
    migrate(&pool).await?;
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
