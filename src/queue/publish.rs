//! Publishing an event: one job per consumer queue, written through the caller's transaction.

use apalis::prelude::{MetadataStore, TaskBuilder, TaskId};
use sqlx::Connection;

use crate::{db::DbConn, events::Envelope};

/// Metadata key of the id of the HTTP request that published an event: the worker's log lines
/// name the request that caused the job, so one registration can be followed from HTTP to SMTP.
pub const REQUEST_ID: &str = "request_id";

/// The jobs written for one event.
#[derive(Debug, Clone)]
pub struct Published {
    pub event_id: String,
    /// (queue name, job id)
    pub jobs: Vec<(&'static str, String)>,
}

impl Published {
    pub fn job_for(&self, queue: &str) -> Option<&str> {
        self.jobs
            .iter()
            .find(|(name, _)| *name == queue)
            .map(|(_, id)| id.as_str())
    }
}

/// Writes one job per queue through the caller's transaction: the caller's rows and every
/// consumer's job commit together, or none does. Idempotency keys `{queue}:{key}` make a second
/// publish for the same subject a no-op, on both databases.
#[tracing::instrument(skip(conn, event, queues), fields(event_id = %event.id))]
pub async fn publish<P: serde::Serialize>(
    mut conn: DbConn<'_>,
    event: &Envelope<P>,
    idempotency_key: &str,
    queues: &[&'static str],
    max_attempts: u32,
    request_id: Option<&str>,
) -> Result<Published, PublishError> {
    let args = serde_json::to_vec(event).map_err(|e| PublishError::Encode(e.to_string()))?;
    let mut jobs = Vec::with_capacity(queues.len());
    for &queue in queues {
        let job_id = ulid::Ulid::generate().to_string();
        let mut metadata = MetadataStore::new();
        if let Some(request_id) = request_id {
            let _ = metadata.insert(REQUEST_ID, request_id);
        }
        let task = TaskBuilder::new(args.clone())
            .with_metadata(metadata)
            .task_id(TaskId::from_string(job_id.clone()))
            .max_attempts(max_attempts as usize)
            .idempotency_key(format!("{queue}:{idempotency_key}"));
        match conn.reborrow() {
            // apalis-sqlite inserts with ON CONFLICT DO NOTHING: a duplicate key adds nothing.
            DbConn::Sqlite(conn) => {
                apalis_sqlite::queries::push_tasks(&mut *conn, queue, &[task.build()])
                    .await
                    .map_err(|e| match e {
                        apalis_sqlite::Error::Database(e) => PublishError::Database(e),
                        other => PublishError::Storage(other.to_string()),
                    })?
            }
            DbConn::Postgres(conn) => push_postgres(conn, queue, task).await?,
        }
        jobs.push((queue, job_id));
    }
    Ok(Published {
        event_id: event.id.clone(),
        jobs,
    })
}

/// apalis-postgres' insert has no `ON CONFLICT`: a duplicate idempotency key raises a unique
/// violation, which would abort the caller's whole transaction (the user row with it). The push
/// runs inside a savepoint, and a duplicate only rolls the savepoint back: a clean no-op, as on
/// SQLite.
async fn push_postgres(
    conn: &mut sqlx::PgConnection,
    queue: &str,
    task: TaskBuilder<Vec<u8>>,
) -> Result<(), PublishError> {
    // Job rows carry `run_at` in whole seconds, and the insert trigger notifies the workers only
    // when `run_at <= now()`, where now() is the *transaction's* start: a transaction that began
    // in the previous second would write a job that notifies nobody (and waits for the polling
    // fallback). One second back keeps every new job due, and notified, at once.
    let due = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().saturating_sub(1));
    let task = task.run_at_timestamp(due).build();
    let mut savepoint = conn.begin().await?;
    match apalis_postgres::queries::push_tasks(&mut *savepoint, queue, vec![task]).await {
        Ok(()) => Ok(savepoint.commit().await?),
        Err(apalis_postgres::Error::Database(sqlx::Error::Database(e)))
            if e.is_unique_violation() =>
        {
            savepoint.rollback().await?;
            tracing::debug!(
                queue,
                "job already published (same idempotency key); nothing added"
            );
            Ok(())
        }
        Err(apalis_postgres::Error::Database(e)) => Err(PublishError::Database(e)),
        Err(other) => Err(PublishError::Storage(other.to_string())),
    }
}

/// Writing the jobs failed (the caller's transaction should roll back). The database's own error
/// is kept as the source, so a caller can tell "unreachable" (503) from "broken" (500).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot write the jobs: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot write the jobs: {0}")]
    Storage(String),
    #[error("cannot encode the event: {0}")]
    Encode(String),
}
