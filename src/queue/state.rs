//! A job's state as the API, the live streams, the `jobs` CLI and the metrics report it, and the
//! one mapping from the job table's rows to it.

use crate::db::{Backend, Db};
use serde::Serialize;

/// The five public states. apalis stores six (`Pending`, `Queued`, `Running`, `Done`, `Failed`,
/// `Killed`) plus attempts; a job back in the queue after a failure is `retrying`, not `pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Running,
    Retrying,
    Done,
    Failed,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Pending,
        JobState::Running,
        JobState::Retrying,
        JobState::Done,
        JobState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    /// `done` or `failed`: nothing more will happen to the job on its own.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed)
    }

    /// Maps one stored row's status and attempts onto the public state.
    pub fn of_row(storage_status: &str, attempts: i64, max_attempts: i64) -> JobState {
        match storage_status {
            "Running" => JobState::Running,
            "Done" => JobState::Done,
            "Failed" if attempts < max_attempts => JobState::Retrying,
            "Failed" | "Killed" => JobState::Failed,
            // Back in the queue after a failed attempt or a crashed worker.
            _ if attempts > 0 => JobState::Retrying,
            _ => JobState::Pending,
        }
    }

    /// The same mapping as an SQL condition on the job table (counts and listings run in SQL);
    /// a test checks that both agree.
    pub const fn sql_condition(self) -> &'static str {
        match self {
            JobState::Pending => "(status IN ('Pending', 'Queued') AND attempts = 0)",
            JobState::Running => "(status = 'Running')",
            JobState::Retrying => {
                "((status IN ('Pending', 'Queued') AND attempts > 0) OR (status = 'Failed' AND attempts < max_attempts))"
            }
            JobState::Done => "(status = 'Done')",
            JobState::Failed => {
                "(status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))"
            }
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One job as the API and operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    pub id: String,
    pub queue: String,
    pub status: JobState,
    pub attempts: i64,
    pub max_attempts: i64,
    /// Unix seconds: when it runs (pending), ran (running), or is retried (retrying).
    pub run_at: i64,
    pub done_at: Option<i64>,
    pub last_error: Option<String>,
}

/// `GET /api/jobs/{id}`: `{"id", "status", "attempts", "last_error"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct JobStatus {
    pub id: String,
    pub status: JobState,
    pub attempts: i64,
    pub last_error: Option<String>,
}

impl From<Job> for JobStatus {
    fn from(job: Job) -> Self {
        JobStatus {
            id: job.id,
            status: job.status,
            attempts: job.attempts,
            last_error: job.last_error,
        }
    }
}

/// A row of the job table, as read by [`SELECT_JOBS`].
#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    id: String,
    job_type: String,
    status: String,
    attempts: i64,
    max_attempts: i64,
    run_at: i64,
    done_at: Option<i64>,
    last_result: Option<String>,
}

/// The job table and its columns in the shape [`JobRow`] reads, per backend: apalis-sqlite keeps
/// times as Unix seconds and counts as integers; apalis-postgres keeps timestamptz, int4 and
/// jsonb, converted here so every query above this line is shared.
pub(crate) struct JobTable {
    /// The table's name.
    pub table: &'static str,
    /// `SELECT ... FROM <table>`, in [`JobRow`]'s shape.
    pub select: &'static str,
    /// `run_at` as Unix seconds.
    pub run_at: &'static str,
    /// "Now" in the type of `run_at`/`done_at`.
    pub now: &'static str,
    /// "Now minus $1 seconds" in the type of `done_at`.
    pub seconds_ago: &'static str,
    /// `$N seconds from now` in the type of `run_at`, with the placeholder named by the caller.
    pub in_seconds: fn(&str) -> String,
}

impl JobTable {
    pub(crate) fn of(backend: Backend) -> &'static JobTable {
        match backend {
            Backend::Sqlite => &SQLITE_JOBS,
            Backend::Postgres => &POSTGRES_JOBS,
        }
    }
}

static SQLITE_JOBS: JobTable = JobTable {
    table: "Jobs",
    select: "SELECT id, job_type, status, attempts, max_attempts, run_at, done_at, last_result FROM Jobs",
    run_at: "run_at",
    now: "strftime('%s', 'now')",
    seconds_ago: "CAST(strftime('%s', 'now') AS INTEGER) - $1",
    in_seconds: |p| format!("strftime('%s', 'now') + {p}"),
};

static POSTGRES_JOBS: JobTable = JobTable {
    table: "apalis.jobs",
    select: "SELECT id, job_type, status, attempts::BIGINT AS attempts,
                    max_attempts::BIGINT AS max_attempts,
                    EXTRACT(EPOCH FROM run_at)::BIGINT AS run_at,
                    EXTRACT(EPOCH FROM done_at)::BIGINT AS done_at,
                    last_result::TEXT AS last_result
             FROM apalis.jobs",
    run_at: "EXTRACT(EPOCH FROM run_at)::BIGINT",
    now: "now()",
    seconds_ago: "now() - make_interval(secs => $1)",
    in_seconds: |p| format!("now() + make_interval(secs => {p})"),
};

impl From<JobRow> for Job {
    fn from(row: JobRow) -> Self {
        let status = JobState::of_row(&row.status, row.attempts, row.max_attempts);
        let last_error = (status != JobState::Done)
            .then(|| row.last_result.as_deref().and_then(error_text))
            .flatten();
        Job {
            id: row.id,
            queue: row.job_type,
            status,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            run_at: row.run_at,
            done_at: row.done_at,
            last_error,
        }
    }
}

#[tracing::instrument(skip(pool))]
pub async fn find_job(pool: &Db, id: &str) -> Result<Option<Job>, sqlx::Error> {
    let select = JobTable::of(pool.backend()).select;
    let sql = format!("{select} WHERE id = $1");
    let row: Option<JobRow> = crate::with_db!(pool, pool => {
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?
    });
    Ok(row.map(Job::from))
}

/// apalis stores a result as JSON; an error is `{"Err": "..."}`.
fn error_text(stored: &str) -> Option<String> {
    match serde_json::from_str::<serde_json::Value>(stored) {
        Ok(serde_json::Value::Object(map)) => match map.get("Err") {
            Some(serde_json::Value::String(text)) => Some(text.clone()),
            Some(other) => Some(other.to_string()),
            None => None,
        },
        Ok(_) => None,
        Err(_) => Some(stored.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_the_documented_five() {
        use JobState::*;
        assert_eq!(JobState::of_row("Pending", 0, 10), Pending);
        assert_eq!(JobState::of_row("Queued", 0, 10), Pending);
        assert_eq!(JobState::of_row("Running", 1, 10), Running);
        assert_eq!(JobState::of_row("Done", 1, 10), Done);
        assert_eq!(JobState::of_row("Failed", 3, 10), Retrying);
        assert_eq!(JobState::of_row("Pending", 2, 10), Retrying);
        assert_eq!(JobState::of_row("Failed", 10, 10), Failed);
        assert_eq!(JobState::of_row("Killed", 1, 10), Failed);
    }

    #[test]
    fn states_serialize_as_their_names() {
        for state in JobState::ALL {
            assert_eq!(
                serde_json::to_value(state).expect("serializes"),
                state.as_str()
            );
        }
    }

    #[test]
    fn error_text_is_unwrapped() {
        assert_eq!(error_text(r#"{"Err":"boom"}"#).as_deref(), Some("boom"));
        assert_eq!(error_text(r#"{"Ok":null}"#), None);
    }
}
