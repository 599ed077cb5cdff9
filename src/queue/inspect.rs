//! Queries on the job table for operators and status panels: counts, listings, retrying failed
//! jobs, retention. The `jobs` CLI, the admin listener, `/metrics` and the page's queue panel
//! read the queue through these; they work on the database directly, no server needed.

use crate::{
    db::Db,
    queue::state::{Job, JobRow, JobState, JobTable},
};

const FAILED: &str = JobState::Failed.sql_condition();

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct QueueStats {
    pub queue: String,
    pub pending: i64,
    pub running: i64,
    pub retrying: i64,
    pub done: i64,
    pub failed: i64,
    pub oldest_waiting_run_at: Option<i64>,
}

pub async fn stats(pool: &Db) -> Result<Vec<QueueStats>, sqlx::Error> {
    use JobState::*;
    let jobs = JobTable::of(pool.backend());
    let sql = format!(
        "SELECT job_type AS queue,
                COUNT(*) FILTER (WHERE {}) AS pending, COUNT(*) FILTER (WHERE {}) AS running,
                COUNT(*) FILTER (WHERE {}) AS retrying, COUNT(*) FILTER (WHERE {}) AS done,
                COUNT(*) FILTER (WHERE {}) AS failed,
                MIN(CASE WHEN {} OR {} THEN {} END) AS oldest_waiting_run_at
         FROM {} GROUP BY job_type ORDER BY job_type",
        Pending.sql_condition(),
        Running.sql_condition(),
        Retrying.sql_condition(),
        Done.sql_condition(),
        Failed.sql_condition(),
        Pending.sql_condition(),
        Retrying.sql_condition(),
        jobs.run_at,
        jobs.table,
    );
    crate::with_db!(pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await)
}

impl QueueStats {
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

pub async fn list(pool: &Db, state: Option<JobState>, limit: i64) -> Result<Vec<Job>, sqlx::Error> {
    let filter = state.map_or("TRUE", JobState::sql_condition);
    let select = JobTable::of(pool.backend()).select;
    let sql = format!("{select} WHERE {filter} ORDER BY id DESC LIMIT $1");
    let rows: Vec<JobRow> = crate::with_db!(pool, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(pool).await?
    });
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

/// Back to the queue, due now, with its attempts reset.
fn requeue_failed(pool: &Db, which: &str) -> String {
    let jobs = JobTable::of(pool.backend());
    format!(
        "UPDATE {} SET status = 'Pending', attempts = 0, run_at = {},
                lock_by = NULL, lock_at = NULL, done_at = NULL
         WHERE {which} AND {FAILED}",
        jobs.table, jobs.now
    )
}

pub async fn retry(pool: &Db, id: &str) -> Result<(), RetryError> {
    let sql = requeue_failed(pool, "id = $1");
    let done = crate::with_db!(pool, pool => {
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).execute(pool).await?.rows_affected()
    });
    if done == 1 {
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

pub async fn retry_all_failed(pool: &Db) -> Result<u64, sqlx::Error> {
    let sql = requeue_failed(pool, "TRUE");
    Ok(crate::with_db!(pool, pool => {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await?.rows_affected()
    }))
}

pub async fn purge_done(pool: &Db, older_than_secs: i64) -> Result<u64, sqlx::Error> {
    let jobs = JobTable::of(pool.backend());
    let sql = format!(
        "DELETE FROM {} WHERE status = 'Done' AND done_at IS NOT NULL AND done_at < {}",
        jobs.table, jobs.seconds_ago
    );
    Ok(crate::with_db!(pool, pool => {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(older_than_secs)
            .execute(pool)
            .await?
            .rows_affected()
    }))
}
