//! PostgreSQL: the pool (with short timeouts, so requests fail fast while the server is away), the
//! database created if missing, and both sets of migrations (apalis-postgres' and ours, each in
//! its own bookkeeping table). Many processes may start at once: sqlx's migrator takes an
//! advisory lock, so the migrations run once.

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{
    Connection, PgPool,
    migrate::{MigrateDatabase, Migrator},
    postgres::{PgConnectOptions, PgPoolOptions},
};

static APP_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per process. A worker process also holds one listening connection per consumer
/// queue (LISTEN/NOTIFY) outside this pool.
const MAX_CONNECTIONS: u32 = 10;
/// How long a request waits for a connection before it fails (503): while the server restarts,
/// requests fail fast instead of queueing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn connect_and_migrate(database_url: &str) -> anyhow::Result<PgPool> {
    let options = options(database_url)?;
    let where_ = describe(&options);
    let exists = sqlx::Postgres::database_exists(database_url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL at {where_}: {}", cause(&e)))?;
    if !exists {
        tracing::info!(database = options.get_database(), "creating the database");
        if let Err(e) = sqlx::Postgres::create_database(database_url).await {
            // Another process may have created it at the same moment.
            if !sqlx::Postgres::database_exists(database_url)
                .await
                .unwrap_or(false)
            {
                anyhow::bail!("cannot create the database at {where_}: {}", cause(&e));
            }
        }
    }
    let pool = open(options, &where_).await?;
    migrate(&pool).await?;
    Ok(pool)
}

pub async fn open_existing(database_url: &str) -> anyhow::Result<PgPool> {
    let options = options(database_url)?;
    let where_ = describe(&options);
    let pool = open(options, &where_).await?;
    let has_jobs: Option<String> = sqlx::query_scalar("SELECT to_regclass('apalis.jobs')::text")
        .fetch_one(&pool)
        .await?;
    if has_jobs.is_none() {
        pool.close().await;
        anyhow::bail!("{where_} is not a signup-queue database (it has no job table)");
    }
    migrate(&pool).await?;
    Ok(pool)
}

fn options(database_url: &str) -> anyhow::Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(database_url)
        .with_context(|| {
            format!(
                "DATABASE_URL {:?} is not a PostgreSQL URL",
                super::redact(database_url)
            )
        })?
        .application_name("signup-queue"))
}

/// `host:port (database name)`, never the password.
fn describe(options: &PgConnectOptions) -> String {
    format!(
        "{}:{} (database {})",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres")
    )
}

/// The innermost cause of a connection error, in one line.
fn cause(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text = inner.to_string();
        source = inner.source();
    }
    text.replace('\n', " ")
}

async fn open(options: PgConnectOptions, where_: &str) -> anyhow::Result<PgPool> {
    // One plain connection first: the pool would report a refused connection as "pool timed
    // out" after its timeout, and the operator needs the real cause at once.
    let probe = sqlx::PgConnection::connect_with(&options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL at {where_}: {}", cause(&e)))?;
    let _ = probe.close().await;
    PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // A connection the server closed (restart, pg_terminate_backend) is found out before use.
        .test_before_acquire(true)
        .connect_with(options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL at {where_}: {}", cause(&e)))
}

/// apalis keeps its migrations in its own bookkeeping table, as on SQLite.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    let mut storage = apalis_postgres::PostgresStorage::migrations();
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
