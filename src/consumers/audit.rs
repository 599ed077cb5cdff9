//! Audit log consumer: appends every `user_registered` event to `audit_events`, once (the event
//! id is unique, so a re-run of the job adds nothing).

use std::sync::Arc;

use crate::{
    consumers::{Consumer, ConsumerError, Deps, JobInfo},
    db::{Db, batch::BatchWriter},
    events::{Envelope, UserRegistered},
};

pub const AUDIT_QUEUE: &str = "audit_log";

/// Rows are written in batches with other jobs' rows (see `db::batch`); `handle` returns once
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

async fn record(db: Db, events: Arc<[Envelope<UserRegistered>]>) -> Result<(), sqlx::Error> {
    crate::with_db!(&db, pool => {
        let mut query = sqlx::QueryBuilder::new(
            "INSERT INTO audit_events (event_id, event_type, event_version, user_id, occurred_at) ",
        );
        query.push_values(events.iter(), |mut row, event| {
            row.push_bind(event.id.as_str())
                .push_bind(event.kind.as_str())
                .push_bind(i64::from(event.version))
                .push_bind(event.payload.user_id)
                .push_bind(event.occurred_at.to_rfc3339());
        });
        query.push(" ON CONFLICT (event_id) DO NOTHING");
        query.build().execute(pool).await?;
    });
    Ok(())
}

#[async_trait::async_trait]
impl Consumer for AuditLog {
    fn name(&self) -> &'static str {
        AUDIT_QUEUE
    }

    async fn handle(
        &self,
        event: &Envelope<UserRegistered>,
        _job: &JobInfo,
    ) -> Result<(), ConsumerError> {
        self.rows
            .write(event.clone())
            .await
            .map_err(ConsumerError::retry)?;
        tracing::info!("audit event recorded");
        Ok(())
    }
}
