//! Publishing an event: one job per consumer queue, written through the caller's transaction.

use apalis::prelude::{MetadataStore, TaskBuilder, TaskId};
use sqlx::SqliteConnection;

use crate::events::Envelope;

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
/// publish for the same subject a no-op.
#[tracing::instrument(skip(conn, event, queues), fields(event_id = %event.id))]
pub async fn publish<P: serde::Serialize>(
    conn: &mut SqliteConnection,
    event: &Envelope<P>,
    idempotency_key: &str,
    queues: &[&'static str],
    max_attempts: u32,
    request_id: Option<&str>,
) -> Result<Published, apalis_sqlite::Error> {
    let args = serde_json::to_vec(event)
        .map_err(|e| apalis_sqlite::Error::from(sqlx::Error::Encode(Box::new(e))))?;
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
            .idempotency_key(format!("{queue}:{idempotency_key}"))
            .build();
        apalis_sqlite::queries::push_tasks(&mut *conn, queue, &[task]).await?;
        jobs.push((queue, job_id));
    }
    Ok(Published {
        event_id: event.id.clone(),
        jobs,
    })
}
