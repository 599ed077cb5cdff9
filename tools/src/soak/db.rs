//! The soak's view of the database, read-only: the job counts per queue (the same query as
//! `signup-queue jobs stats`) and the size of the SQLite file (file and WAL on disk, and the
//! pages in use, since SQLite keeps deleted rows' pages as free pages rather than shrinking).

use std::{path::PathBuf, str::FromStr, time::Duration};

use anyhow::Context;
use serde::Serialize;
use signup_queue::queue::inspect::{self, QueueStats};
use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqlitePoolOptions},
};

/// Job counts summed over the queues.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Totals {
    pub pending: i64,
    pub running: i64,
    pub retrying: i64,
    pub done: i64,
    pub failed: i64,
}

impl Totals {
    pub fn from_stats(stats: &[QueueStats]) -> Totals {
        stats.iter().fold(Totals::default(), |t, s| Totals {
            pending: t.pending + s.pending,
            running: t.running + s.running,
            retrying: t.retrying + s.retrying,
            done: t.done + s.done,
            failed: t.failed + s.failed,
        })
    }

    /// Jobs not finished yet: waiting, retrying or running.
    pub fn left(&self) -> i64 {
        self.pending + self.running + self.retrying
    }
}

/// The database's size at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DbSize {
    /// The main file on disk.
    pub file_bytes: u64,
    /// The write-ahead log beside it (`-wal`), not yet checkpointed into the file.
    pub wal_bytes: u64,
    /// Pages holding data: `(page_count - freelist_count) * page_size`.
    pub used_bytes: u64,
    pub free_pages: i64,
    /// Rows in the job table.
    pub job_rows: i64,
}

/// A read-only pool on the soak's database.
pub struct DbView {
    pool: SqlitePool,
    file: PathBuf,
}

impl DbView {
    pub async fn open(database_url: &str) -> anyhow::Result<DbView> {
        let options = SqliteConnectOptions::from_str(database_url)
            .with_context(|| format!("bad database URL {database_url}"))?
            .read_only(true)
            .busy_timeout(Duration::from_secs(10));
        let file = options.get_filename().to_owned();
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open {} read-only", file.display()))?;
        Ok(DbView { pool, file })
    }

    pub async fn stats(&self) -> anyhow::Result<Vec<QueueStats>> {
        inspect::stats(&signup_queue::db::Db::Sqlite(self.pool.clone()))
            .await
            .context("cannot count the jobs")
    }

    pub async fn totals(&self) -> anyhow::Result<Totals> {
        Ok(Totals::from_stats(&self.stats().await?))
    }

    /// The file's bytes on disk only (cheap, for the progress lines).
    pub fn file_bytes(&self) -> u64 {
        file_len(&self.file) + file_len(&wal_path(&self.file))
    }

    pub async fn size(&self) -> anyhow::Result<DbSize> {
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
            .fetch_one(&self.pool)
            .await?;
        let page_count: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&self.pool)
            .await?;
        let free_pages: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(&self.pool)
            .await?;
        let job_rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM Jobs")
            .fetch_one(&self.pool)
            .await?;
        Ok(DbSize {
            file_bytes: file_len(&self.file),
            wal_bytes: file_len(&wal_path(&self.file)),
            used_bytes: u64::try_from((page_count - free_pages).max(0) * page_size).unwrap_or(0),
            free_pages,
            job_rows,
        })
    }

    pub async fn close(self) {
        self.pool.close().await;
    }
}

fn wal_path(file: &std::path::Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
