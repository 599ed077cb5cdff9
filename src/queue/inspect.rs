//! Queries on the job table for operators and status panels: counts, listings, retrying failed
//! jobs, retention. The `jobs` CLI, the admin listener, `/metrics` and the page's queue panel
//! read the queue through these; they work on the database directly, no server needed.

use sqlx::SqlitePool;

use crate::queue::state::{Job, JobRow, JobState, SELECT_JOBS};

/// Failed for good: attempts exhausted, or aborted.
const FAILED: &str = JobState::Failed.sql_condition();

/// Counts per queue and public status.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct QueueStats {
    pub queue: String,
    pub pending: i64,
    pub running: i64,
    pub retrying: i64,
    pub done: i64,
    pub failed: i64,
    /// Unix seconds of the oldest job waiting to run (pending or retrying).
    pub oldest_waiting_run_at: Option<i64>,
}

pub async fn stats(pool: &SqlitePool) -> Result<Vec<QueueStats>, sqlx::Error> {
    use JobState::*;
    let sql = format!(
        "SELECT job_type AS queue,
                COALESCE(SUM({}), 0) AS pending, COALESCE(SUM({}), 0) AS running,
                COALESCE(SUM({}), 0) AS retrying, COALESCE(SUM({}), 0) AS done,
                COALESCE(SUM({}), 0) AS failed,
                MIN(CASE WHEN {} OR {} THEN run_at END) AS oldest_waiting_run_at
         FROM Jobs GROUP BY job_type ORDER BY job_type",
        Pending.sql_condition(),
        Running.sql_condition(),
        Retrying.sql_condition(),
        Done.sql_condition(),
        Failed.sql_condition(),
        Pending.sql_condition(),
        Retrying.sql_condition(),
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
}

impl QueueStats {
    /// The count of one state.
    pub fn count(&self, state: JobState) -> i64 {
        match state {
            JobState::Pending => self.pending,
            JobState::Running => self.running,
            JobState::Retrying => self.retrying,
            JobState::Done => self.done,
            JobState::Failed => self.failed,
        }
    }
}

/// Latest jobs first (ids are ULIDs: time-ordered), optionally of one state.
pub async fn list(
    pool: &SqlitePool,
    state: Option<JobState>,
    limit: i64,
) -> Result<Vec<Job>, sqlx::Error> {
    let filter = state.map_or("1", JobState::sql_condition);
    let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_JOBS} WHERE {filter} ORDER BY id DESC LIMIT ?1"
    )))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Job::from).collect())
}

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no job with id {0}")]
    Unknown(String),
    #[error("job {id} is {status}, not failed: only failed jobs are retried")]
    NotFailed { id: String, status: JobState },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Puts a failed job back in the queue with a fresh attempt budget (its last error stays
/// visible until the next attempt).
pub async fn retry(pool: &SqlitePool, id: &str) -> Result<(), RetryError> {
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE Jobs SET status = 'Pending', attempts = 0, run_at = strftime('%s', 'now'),
                lock_by = NULL, lock_at = NULL, done_at = NULL
         WHERE id = ?1 AND {FAILED}"
    )))
    .bind(id)
    .execute(pool)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(());
    }
    match crate::queue::state::find_job(pool, id).await? {
        None => Err(RetryError::Unknown(id.to_owned())),
        Some(job) => Err(RetryError::NotFailed {
            id: id.to_owned(),
            status: job.status,
        }),
    }
}

/// Retries every failed job; returns how many.
pub async fn retry_all_failed(pool: &SqlitePool) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE Jobs SET status = 'Pending', attempts = 0, run_at = strftime('%s', 'now'),
                lock_by = NULL, lock_at = NULL, done_at = NULL
         WHERE {FAILED}"
    )))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Retention: deletes jobs finished (`done`) more than `older_than_secs` ago; returns how many.
/// (apalis-sqlite's own vacuum compares an integer column with a date string and deletes fresh
/// jobs; this does not.)
pub async fn purge_done(pool: &SqlitePool, older_than_secs: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM Jobs WHERE status = 'Done' AND done_at IS NOT NULL
           AND done_at < CAST(strftime('%s', 'now') AS INTEGER) - ?1",
    )
    .bind(older_than_secs)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
