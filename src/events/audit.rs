//! Audit log consumer: appends every `user_registered` event to `audit_events`, once (the event
//! id is unique, so a re-run of the job adds nothing).

use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::SqlitePool;

use crate::{
    events::{Consumer, ConsumerError, Deps, Envelope, JobInfo, UserRegistered},
    jobs::batch::BatchWriter,
};

pub const AUDIT_QUEUE: &str = "audit_log";

/// Rows are written in batches with other jobs' rows (see `jobs::batch`); `handle` returns once
/// its own row is committed.
pub struct AuditLog {
    rows: BatchWriter<Envelope<UserRegistered>>,
}

impl AuditLog {
    pub fn new(deps: &Deps) -> Self {
        AuditLog {
            rows: BatchWriter::new(
                deps.pool.clone(),
                Arc::new(|pool, events| Box::pin(record(pool, events))),
            ),
        }
    }
}

async fn record(
    pool: SqlitePool,
    events: Arc<[Envelope<UserRegistered>]>,
) -> Result<(), sqlx::Error> {
    let mut query = sqlx::QueryBuilder::new(
        "INSERT INTO audit_events (event_id, event_type, event_version, user_id, occurred_at) ",
    );
    query.push_values(events.iter(), |mut row, event| {
        row.push_bind(event.id.as_str())
            .push_bind(event.kind.as_str())
            .push_bind(event.version)
            .push_bind(event.payload.user_id)
            .push_bind(event.occurred_at.to_rfc3339());
    });
    query.push(" ON CONFLICT (event_id) DO NOTHING");
    query.build().execute(&pool).await?;
    Ok(())
}

impl Consumer for AuditLog {
    fn name(&self) -> &'static str {
        AUDIT_QUEUE
    }

    fn handle<'a>(
        &'a self,
        event: &'a Envelope<UserRegistered>,
        _job: &'a JobInfo,
    ) -> BoxFuture<'a, Result<(), ConsumerError>> {
        Box::pin(async move {
            self.rows
                .write(event.clone())
                .await
                .map_err(|e| ConsumerError::Retry(Box::new(e)))?;
            tracing::info!("audit event recorded");
            Ok(())
        })
    }
}
