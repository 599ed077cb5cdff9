//! Operator queries on the job table: counts, listings, retrying failed jobs, retention.
//! Used by `signup-queue jobs ...`; they work on the database directly, no server needed.

use sqlx::SqlitePool;

use crate::jobs::status::public_status;

/// One job as an operator sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobRow {
    pub id: String,
    pub queue: String,
    pub status: &'static str,
    pub attempts: i64,
    pub max_attempts: i64,
    /// Unix seconds: when it runs (pending), ran (running), or is retried (retrying).
    pub run_at: i64,
    pub done_at: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct RawJob {
    id: String,
    job_type: String,
    status: String,
    attempts: i64,
    max_attempts: i64,
    run_at: i64,
    done_at: Option<i64>,
    last_result: Option<String>,
}

impl From<RawJob> for JobRow {
    fn from(raw: RawJob) -> Self {
        let status = public_status(&raw.status, raw.attempts, raw.max_attempts);
        let last_error = if status == "done" {
            None
        } else {
            raw.last_result
                .as_deref()
                .and_then(crate::jobs::status::error_text)
        };
        JobRow {
            id: raw.id,
            queue: raw.job_type,
            status,
            attempts: raw.attempts,
            max_attempts: raw.max_attempts,
            run_at: raw.run_at,
            done_at: raw.done_at,
            last_error,
        }
    }
}

/// The public statuses as SQL conditions on the job table; the same mapping as
/// [`public_status`], which a test checks.
pub fn status_condition(status: &str) -> Option<&'static str> {
    Some(match status {
        "pending" => "(status IN ('Pending', 'Queued') AND attempts = 0)",
        "running" => "(status = 'Running')",
        "retrying" => {
            "((status IN ('Pending', 'Queued') AND attempts > 0) OR (status = 'Failed' AND attempts < max_attempts))"
        }
        "done" => "(status = 'Done')",
        "failed" => FAILED,
        _ => return None,
    })
}

/// Failed for good: attempts exhausted, or aborted.
const FAILED: &str = "(status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))";

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
    let condition = |s| status_condition(s).unwrap_or("0");
    let sql = format!(
        "SELECT job_type AS queue,
                COALESCE(SUM({}), 0) AS pending, COALESCE(SUM({}), 0) AS running,
                COALESCE(SUM({}), 0) AS retrying, COALESCE(SUM({}), 0) AS done,
                COALESCE(SUM({}), 0) AS failed,
                MIN(CASE WHEN {} OR {} THEN run_at END) AS oldest_waiting_run_at
         FROM Jobs GROUP BY job_type ORDER BY job_type",
        condition("pending"),
        condition("running"),
        condition("retrying"),
        condition("done"),
        condition("failed"),
        condition("pending"),
        condition("retrying"),
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
}

const SELECT_JOBS: &str =
    "SELECT id, job_type, status, attempts, max_attempts, run_at, done_at, last_result FROM Jobs";

/// Latest jobs first (ids are ULIDs: time-ordered), optionally of one public status.
pub async fn list(
    pool: &SqlitePool,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<JobRow>, sqlx::Error> {
    let filter = status.and_then(status_condition).unwrap_or("1");
    let rows: Vec<RawJob> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_JOBS} WHERE {filter} ORDER BY id DESC LIMIT ?1"
    )))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(JobRow::from).collect())
}

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no job with id {0}")]
    Unknown(String),
    #[error("job {id} is {status}, not failed: only failed jobs are retried")]
    NotFailed { id: String, status: &'static str },
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
    match crate::jobs::status::job_status(pool, id).await? {
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
